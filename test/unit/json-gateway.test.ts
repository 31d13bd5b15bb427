/**
 * The JSON gateway's pure part (services/gateway/json-gateway.ts): etcd's paths and the methods
 * they call, the JSON mapping of requests and responses as etcd 3.4's gateway writes them
 * (outputs taken from a real etcd 3.4 with curl), error bodies and HTTP statuses, and the
 * splitter of streamed request bodies.
 */
import { describe, expect, it } from "vitest"
import { encodeJsonResponse, errorBody, httpStatusOf, JsonValueSplitter, jsonRoutes, decodeJsonRequest, routeOf, streamErrorLine } from "../../services/gateway/json-gateway.ts"
import type { BadRequest, JsonRoute } from "../../services/gateway/json-gateway.ts"

const route = (path: string): JsonRoute => {
  const r = routeOf(path)
  if (r === undefined) throw new Error(`no route ${path}`)
  return r
}

describe("routes", () => {
  it("covers etcd's gateway paths, each calling its method with the right streaming", () => {
    const table = Object.fromEntries([...jsonRoutes.values()].map((r) => [r.path, `${r.grpcPath} ${r.kind}`]))
    expect(table).toMatchObject({
      "/v3/kv/range": "/etcdserverpb.KV/Range unary",
      "/v3/kv/compaction": "/etcdserverpb.KV/Compact unary",
      "/v3/watch": "/etcdserverpb.Watch/Watch bidi-stream",
      "/v3/lease/keepalive": "/etcdserverpb.Lease/LeaseKeepAlive bidi-stream",
      "/v3/kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive unary",
      "/v3/cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote unary",
      "/v3/maintenance/snapshot": "/etcdserverpb.Maintenance/Snapshot server-stream",
      "/v3/maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader unary",
      "/v3/auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword unary",
      "/v3/lock/lock": "/v3lockpb.Lock/Lock unary",
      "/v3/election/observe": "/v3electionpb.Election/Observe server-stream"
    })
    expect(jsonRoutes.size).toBe(50)
  })

  it("answers the 3.3 prefix /v3beta/ as /v3/, and nothing else", () => {
    expect(routeOf("/v3beta/kv/put")?.path).toBe("/v3/kv/put")
    expect(routeOf("/v3/kv/nope")).toBeUndefined()
    expect(routeOf("/v3alpha/kv/put")).toBeUndefined()
  })
})

describe("requests", () => {
  const cases: ReadonlyArray<readonly [string, string, string, unknown]> = [
    ["bytes base64, int64 as a string or a number, enums by name", "/v3/kv/range", '{"key":"Zm9v","range_end":"Zm9w","revision":"5","limit":2,"sort_order":"DESCEND"}',
      { key: "Zm9v", range_end: "Zm9w", revision: "5", limit: "2", sort_order: "DESCEND" }],
    ["nested messages and oneofs", "/v3/kv/txn", '{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_range":{"key":"Zm9v"}}]}',
      { compare: [{ key: "Zm9v", result: "EQUAL", target: "VALUE", value: "YmFy" }], success: [{ request_range: { key: "Zm9v" } }] }],
    ["an empty body is the empty request", "/v3/cluster/member/list", "", {}],
    ["unknown fields are ignored, as Go's encoding/json", "/v3/lease/grant", '{"TTL":30,"whatever":1}', { TTL: "30" }],
    ["JSON names too, the JSON name winning", "/v3/kv/range", '{"key":"Zm9v","sortOrder":"DESCEND","sort_target":"MOD","keys_only":false,"keysOnly":true}',
      { key: "Zm9v", sort_order: "DESCEND", sort_target: "MOD", keys_only: true }],
    ["null is the empty request", "/v3/lease/grant", "null", {}],
    ["only the first value is read, as Go's json.Decoder", "/v3/kv/range", '{"key":"Zm9v"} {"key":"YmFy"} x', { key: "Zm9v" }],
    ["base64 with newlines, bytes as an array of numbers", "/v3/kv/range", '{"key":"Zm9v\\nYmFy","range_end":[1,2]}', { key: "Zm9vYmFy", range_end: "AQI=" }],
    ["uint64 up to its maximum", "/v3/cluster/member/remove", '{"ID":"18446744073709551615"}', { ID: "18446744073709551615" }],
    ["a oneof member given as null is set", "/v3/kv/txn", '{"success":[{"request_range":null}]}', { success: [{ request_range: {} }] }]
  ]
  it.each(cases)("%s", (_name, path, body, expected) => {
    const r = route(path)
    const m = decodeJsonRequest(r, body)
    expect((m as BadRequest)._tag).toBeUndefined()
    expect(r.request.toObject(m as never, { longs: String, enums: String, bytes: String })).toEqual(expected)
  })

  // Each as etcd 3.4's gateway answered it (curl -X POST …/v3/<path> -d '<body>', code 3).
  const bad: ReadonlyArray<readonly [string, string, string]> = [
    ["/v3/kv/range", '{"key":5}', "json: cannot unmarshal number into Go value of type []uint8"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":"x"}', "invalid character 'x' looking for beginning of value"],
    ["/v3/kv/range", '{"key":"Zm9v","keys_only":"true"}', "json: cannot unmarshal string into Go value of type bool"],
    ["/v3/kv/range", "[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"],
    ["/v3/kv/range", "5", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"],
    ["/v3/kv/range", '"x"', "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"],
    ["/v3/kv/range", '{"key":"!!"}', "illegal base64 data at input byte 0"],
    ["/v3/kv/range", '{"key":"Zm9"}', "illegal base64 data at input byte 0"],
    ["/v3/kv/range", '{"key":"Zm9v!"}', "illegal base64 data at input byte 4"],
    ["/v3/kv/range", '{"key":"Zm-v"}', "illegal base64 data at input byte 2"],
    ["/v3/kv/range", '{"key":"Zm9vYg"}', "illegal base64 data at input byte 4"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":1.5}', "json: cannot unmarshal number 1.5 into Go value of type int64"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":"1.5"}', "json: cannot unmarshal number 1.5 into Go value of type int64"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":99999999999999999999}', "json: cannot unmarshal number 99999999999999999999 into Go value of type int64"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":true}', "json: cannot unmarshal bool into Go value of type int64"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":""}', "unexpected end of JSON input"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":"12x"}', "invalid character 'x' after top-level value"],
    ["/v3/kv/range", '{"key":"Zm9v","limit":{}}', "json: cannot unmarshal object into Go value of type int64"],
    ["/v3/kv/range", '{"key":"Zm9v","sort_order":"NOPE"}', 'unknown value "NOPE" for enum etcdserverpb.RangeRequest_SortOrder'],
    ["/v3/kv/range", '{"key":"Zm9v","sort_order":true}', "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder"],
    ["/v3/kv/range", '{"key":"Zm9v","keys_only":1}', "json: cannot unmarshal number into Go value of type bool"],
    ["/v3/kv/range", '{"key":', "unexpected EOF"],
    ["/v3/kv/range", '{"key":"Zm9v",}', "invalid character '}' looking for beginning of object key string"],
    ["/v3/kv/range", "{key:1}", "invalid character 'k' looking for beginning of object key string"],
    ["/v3/kv/put", '{"key":"Zm9v","value":"YmFy","lease":"abc"}', "invalid character 'a' looking for beginning of value"],
    ["/v3/kv/put", '{"key":"Zm9v","value":5}', "json: cannot unmarshal number into Go value of type []uint8"],
    ["/v3/kv/txn", '{"compare":{}}', "json: cannot unmarshal object into Go value of type []json.RawMessage"],
    ["/v3/kv/txn", '{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VERSION","version":"x"}]}', "invalid character 'x' looking for beginning of value"],
    ["/v3/kv/txn", '{"success":[{"request_put":"x"}]}', "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"],
    ["/v3/kv/txn", '{"success":[{"requestPut":{"key":"Zm9v","value":1}}]}', "json: cannot unmarshal number into Go value of type []uint8"],
    ["/v3/kv/txn", '{"compare":[{"key":"Zm9v","result":"NOPE"}]}', 'unknown value "NOPE" for enum etcdserverpb.Compare_CompareResult'],
    ["/v3/lease/grant", '{"TTL":"x"}', "invalid character 'x' looking for beginning of value"],
    ["/v3/cluster/member/add", '{"peerURLs":"x"}', "json: cannot unmarshal string into Go value of type []json.RawMessage"],
    ["/v3/cluster/member/add", '{"peerURLs":["http://127.0.0.1:1"],"isLearner":"yes"}', "json: cannot unmarshal string into Go value of type bool"]
  ]
  it("refuses a Txn nested past protobuf's recursion limit as etcd does, and past Go's nesting limit with Go's message", () => {
    const nested = (levels: number) => {
      let body = '{"request_range":{"key":"Zm9v"}}'
      for (let i = 0; i < levels; i++) body = `{"request_txn":{"success":[${body}]}}`
      return `{"success":[${body}]}`
    }
    expect(decodeJsonRequest(route("/v3/kv/txn"), nested(1000))).toEqual({ _tag: "BadRequest", message: "etcdserver: too many operations in txn request" })
    expect(decodeJsonRequest(route("/v3/kv/txn"), nested(3333))).toEqual({ _tag: "BadRequest", message: "invalid character '[' exceeded max depth" })
  })

  it.each(bad)("%s %s: etcd's message", (path, body, message) => {
    expect(decodeJsonRequest(route(path), body)).toEqual({ _tag: "BadRequest", message })
  })
})

describe("responses", () => {
  it("writes etcd 3.4's JSON: proto field names, 64-bit integers as strings, bytes base64", () => {
    const r = route("/v3/kv/range")
    const m = r.response.fromObject({
      header: { cluster_id: "12159129929185629783", member_id: "2593658243182244426", revision: 2, raft_term: 2 },
      kvs: [{ key: Buffer.from("foo"), create_revision: 2, mod_revision: 2, version: 1, value: Buffer.from("bar") }],
      count: 1
    })
    // As etcd 3.4 answered `curl -X POST …/v3/kv/range -d '{"key":"Zm9v"}'`.
    expect(encodeJsonResponse(r, m)).toBe(
      '{"header":{"cluster_id":"12159129929185629783","member_id":"2593658243182244426","revision":"2","raft_term":"2"},' +
        '"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}'
    )
  })

  it("leaves out fields at their default even when the wire carried them (Go's jsonpb)", () => {
    const w = route("/v3/watch")
    const created = w.response.decode(w.response.encode(w.response.fromObject({ header: { revision: 3 }, watch_id: 0, created: true, fragment: false })).finish())
    expect(encodeJsonResponse(w, created)).toBe('{"header":{"revision":"3"},"created":true}')
    const events = w.response.fromObject({ header: { revision: 3 }, events: [{ type: "DELETE", kv: { key: Buffer.from("a"), mod_revision: 3 } }, { type: "PUT", kv: { key: Buffer.from("a"), lease: 0 } }] })
    expect(encodeJsonResponse(w, events)).toBe('{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"3"}},{"kv":{"key":"YQ=="}}]}')
    const members = route("/v3/cluster/member/list")
    expect(encodeJsonResponse(members, members.response.fromObject({ members: [{ ID: "1", name: "m1", peerURLs: [], clientURLs: ["http://h:2379"], isLearner: false }] })))
      .toBe('{"members":[{"ID":"1","name":"m1","clientURLs":["http://h:2379"]}]}')
  })
})

describe("errors", () => {
  it("as grpc-gateway: the status as JSON and its HTTP status", () => {
    // etcd 3.4: a put with an unknown lease, HTTP 404.
    expect(errorBody(5, "etcdserver: requested lease not found")).toBe(
      '{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}'
    )
    expect([0, 3, 4, 5, 7, 8, 9, 11, 12, 14, 16].map(httpStatusOf)).toEqual([200, 400, 504, 404, 403, 429, 412, 400, 501, 503, 401])
    expect(JSON.parse(streamErrorLine(14, "etcdserver: no leader"))).toEqual({
      error: { grpc_code: 14, http_code: 503, message: "etcdserver: no leader", http_status: "Service Unavailable" }
    })
  })
})

describe("JsonValueSplitter", () => {
  it("splits concatenated and newline-separated values as they arrive, strings and escapes included", () => {
    const s = new JsonValueSplitter(1000)
    expect(s.push('{"a":{"b":"}\\"{"}}\n{"c"')).toEqual(['{"a":{"b":"}\\"{"}}'])
    expect(s.incomplete).toBe(true)
    expect(s.push(":1}{}")).toEqual(['{"c":1}', "{}"])
    expect(s.incomplete).toBe(false)
  })

  it("hands what does not start an object or array over whole, as the last value; refuses values longer than its bound", () => {
    const s = new JsonValueSplitter(1000)
    expect(s.push('{"a":1} x {"b":2}')).toEqual(['{"a":1}', 'x {"b":2}'])
    expect(s.push('{"c":3}')).toEqual([])
    expect(new JsonValueSplitter(1000).push(' 5 {}')).toEqual(["5 {}"])
    expect(new JsonValueSplitter(1000).push('}')).toEqual(["}"])
    expect(decodeJsonRequest(route("/v3/watch"), "5 {}")).toEqual({ _tag: "BadRequest", message: "json: cannot unmarshal number into Go value of type map[string]json.RawMessage" })
    expect(() => new JsonValueSplitter(10).push('{"a":"' + "x".repeat(20))).toThrow()
  })
})
