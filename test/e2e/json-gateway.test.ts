/**
 * The client port's HTTP side against etcd 3.4's: the same curl requests to natcd and to the
 * reference etcd, bodies compared after normalising what differs by nature (cluster and member
 * ids, raft terms, lease ids, versions and sizes of Status, member names and URLs):
 *
 * - the JSON gateway: put, range with base64 keys and a range end, txn, delete, an error (a put
 *   with an unknown lease: the same body and HTTP status), an empty key, a GET where POST is
 *   required, a body that is not JSON, bodies of the wrong shape (each with etcd's message, read
 *   as Go's encoding/json and jsonpb read them) and bodies in the other forms Go accepts; a
 *   stream whose first request is unreadable, and one with garbage after its first;
 * - a watch stream over HTTP/1.1 (chunked lines of `{"result":…}`) that sees two puts;
 * - leases: grant, keep-alive (one result, then the stream ends), time-to-live with keys,
 *   revoke;
 * - member list and status (their shapes), `/health`, `/version` (their fields);
 * - authentication: a user and the root role, auth enable, a put refused without a token and
 *   accepted with the token of /v3/auth/authenticate in the Authorization header, auth disable;
 * - v3lock and v3election: lock, unlock, campaign, leader, resign;
 * - gRPC on the same port still works (etcdctl), and a gateway path under the `/v3beta/` prefix.
 */
import { execFile, spawn } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Etcd, Natcd } from "./harness.ts"
import { etcdctl, sleep, startEtcd, startNatcd, tempDir } from "./harness.ts"

const portOffset = 2240
const etcdPorts = { clientPort: 28860, peerPort: 28861 }

const b64 = (s: string) => Buffer.from(s).toString("base64")

/** `curl -s` of `url` with `args`: HTTP status and body. */
const curl = (url: string, args: ReadonlyArray<string> = []): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) =>
    execFile("curl", ["-s", "-w", "\n%{http_code}", ...args, url], { encoding: "utf8", timeout: 15_000 }, (err, stdout) => {
      if (err !== null && stdout === "") return reject(err)
      const i = stdout.lastIndexOf("\n")
      resolve({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) })
    })
  )
const post = (base: string, path: string, json: unknown) => curl(`${base}${path}`, ["-X", "POST", "-d", typeof json === "string" ? json : JSON.stringify(json)])

/** A response body with the ids and terms that differ between two clusters replaced. */
const normalise = (body: string): unknown => {
  const walk = (v: unknown, key = ""): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x))
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    if (["cluster_id", "member_id", "raft_term", "ID", "leader", "raftTerm"].includes(key)) return "<n>"
    return v
  }
  return walk(JSON.parse(body))
}

/** The shape of a JSON value: its keys, recursively (first array element), values dropped. */
const shape = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.length === 0 ? [] : [shape(v[0])]
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, shape(x)]))
  return typeof v
}

/** Starts `curl -N` streaming a watch of `key`; `lines()` are the lines received so far. */
const watchStream = (base: string, key: string) => {
  const child = spawn("curl", ["-s", "-N", "-X", "POST", `${base}/v3/watch`, "-d", JSON.stringify({ create_request: { key: b64(key) } })])
  let text = ""
  child.stdout.on("data", (d: Buffer) => (text += d.toString()))
  return {
    lines: () => text.split("\n").filter((l) => l.trim() !== ""),
    stop: () => child.kill()
  }
}

/** The same session on one system: every request and what it answered. */
const session = async (base: string, endpoint: string): Promise<Record<string, { status: number; body: unknown }>> => {
  const out: Record<string, { status: number; body: unknown }> = {}
  const record = async (name: string, r: Promise<{ status: number; body: string }>, how: (body: string) => unknown = normalise) => {
    const { status, body } = await r
    out[name] = { status, body: how(body) }
    return body
  }
  await record("put", post(base, "/v3/kv/put", { key: b64("foo"), value: b64("bar") }))
  await record("put foo1", post(base, "/v3/kv/put", { key: b64("foo1"), value: b64("bar1"), prev_kv: true }))
  await record("put foo1 again, prev_kv", post(base, "/v3/kv/put", { key: b64("foo1"), value: b64("bar2"), prev_kv: true }))
  await record("range one key", post(base, "/v3/kv/range", { key: b64("foo") }))
  await record("range with range_end", post(base, "/v3/kv/range", { key: b64("foo"), range_end: b64("fop") }))
  await record("range count_only", post(base, "/v3/kv/range", { key: b64("foo"), range_end: b64("fop"), count_only: true }))
  await record("range of nothing", post(base, "/v3/kv/range", { key: b64("nothing") }))
  await record("txn", post(base, "/v3/kv/txn", {
    compare: [{ key: b64("foo"), result: "EQUAL", target: "VALUE", value: b64("bar") }],
    success: [{ request_put: { key: b64("foo"), value: b64("baz") } }, { request_range: { key: b64("foo") } }],
    failure: []
  }))
  await record("txn that fails", post(base, "/v3/kv/txn", {
    compare: [{ key: b64("foo"), result: "EQUAL", target: "CREATE", create_revision: 1 }],
    success: [],
    failure: [{ request_delete_range: { key: b64("foo1"), prev_kv: true } }]
  }))
  await record("put, unknown lease", post(base, "/v3/kv/put", { key: b64("foo"), value: b64("bar"), lease: "123" }))
  await record("put, empty key", post(base, "/v3/kv/put", { key: "" }))
  await record("range, future revision", post(base, "/v3/kv/range", { key: b64("foo"), revision: 1000 }))
  await record("range by GET", curl(`${base}/v3/kv/range`), (body) => body.trim())
  await record("not JSON", post(base, "/v3/kv/range", "not json"))
  // Bodies etcd's gateway reads with Go's JSON and jsonpb: refused with their messages (and
  // nothing written), or read in the forms Go accepts.
  const bodies: ReadonlyArray<readonly [string, string]> = [
    ["/v3/kv/put", `{"key":"${b64("foo")}","value":5}`],
    ["/v3/kv/put", `{"key":"${b64("foo")}","value":"${b64("x")}","lease":"abc"}`],
    ["/v3/kv/range", `{"key":"${b64("foo")}","keys_only":"true"}`],
    ["/v3/kv/range", `{"key":"${b64("foo")}","limit":99999999999999999999}`],
    ["/v3/kv/range", `{"key":"${b64("foo")}","sort_order":"NOPE"}`],
    ["/v3/kv/range", '{"key":"Zm9vYg"}'],
    ["/v3/kv/range", "[1]"],
    ["/v3/kv/range", '{"key":"Zm9v",}'],
    ["/v3/kv/range", '{"key":'],
    ["/v3/kv/txn", '{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VERSION","version":"x"}]}'],
    ["/v3/kv/range", `{"key":"${b64("foo")}","limit":"1","sortOrder":"DESCEND","keysOnly":true}`],
    ["/v3/kv/range", `{"key":"Zm9\\nv"} {"key":"${b64("nothing")}"} trailing`]
  ]
  for (const [path, body] of bodies) await record(`${path} ${body}`, post(base, path, body))
  await record("range after the refused puts", post(base, "/v3/kv/range", { key: b64("foo") }))
  // A stream whose first request cannot be read fails (code Unknown, HTTP 500); a later one ends
  // the client's side, as the end of the body does.
  await record("watch, first request unreadable", post(base, "/v3/watch", '{"create_request":{"key":5}}'))
  await record("keep-alive, then garbage", post(base, "/v3/lease/keepalive", '{"ID":"1"} x'))
  await record("v3beta range", post(base, "/v3beta/kv/range", { key: b64("foo") }))

  // A watch stream that sees two puts.
  const watch = watchStream(base, "wk")
  const deadline = Date.now() + 10_000
  while (watch.lines().length < 1 && Date.now() < deadline) await sleep(50)
  await post(base, "/v3/kv/put", { key: b64("wk"), value: b64("1") })
  await post(base, "/v3/kv/put", { key: b64("wk"), value: b64("2") })
  const events = () => watch.lines().flatMap((l) => (JSON.parse(l) as { result: { events?: unknown[] } }).result.events ?? [])
  while (events().length < 2 && Date.now() < deadline) await sleep(50)
  watch.stop()
  out["watch: created"] = { status: 200, body: normalise(watch.lines()[0] ?? "{}") }
  out["watch: events"] = { status: 200, body: events() }

  // Leases.
  const granted = JSON.parse(await record("lease grant", post(base, "/v3/lease/grant", { TTL: 30 }))) as { ID: string }
  await record("put with the lease", post(base, "/v3/kv/put", { key: b64("leased"), value: b64("v"), lease: granted.ID }))
  await record("keepalive", post(base, "/v3/lease/keepalive", { ID: granted.ID }), (body) => body.split("\n").filter((l) => l !== "").map(normalise))
  await record("timetolive with keys", post(base, "/v3/lease/timetolive", { ID: granted.ID, keys: true }), (body) => {
    const r = normalise(body) as { TTL: string }
    return { ...r, TTL: Number(r.TTL) > 25 ? "> 25" : r.TTL }
  })
  await record("revoke", post(base, "/v3/lease/revoke", { ID: granted.ID }))
  await record("range after revoke", post(base, "/v3/kv/range", { key: b64("leased") }))

  // v3lock and v3election through the gateway (keys end in the lease id, in hex).
  const leaseForLock = (JSON.parse((await post(base, "/v3/lease/grant", { TTL: 30 })).body) as { ID: string }).ID
  const withoutLeaseSuffix = (body: string) => {
    const r = normalise(body) as Record<string, unknown> & { key?: string; leader?: { key?: string }; kv?: { key?: string } }
    const strip = (k: string | undefined) => (k === undefined ? undefined : Buffer.from(k, "base64").toString().replace(/\/[0-9a-f]+$/, "/<lease>"))
    return {
      ...r,
      ...(r.key === undefined ? {} : { key: strip(r.key) }),
      ...(r.leader?.key === undefined ? {} : { leader: { ...r.leader, key: strip(r.leader.key), lease: "<n>" } }),
      ...(r.kv?.key === undefined ? {} : { kv: { ...r.kv, key: strip(r.kv.key), lease: "<n>" } })
    }
  }
  await record("lock", post(base, "/v3/lock/lock", { name: b64("lk"), lease: leaseForLock }), withoutLeaseSuffix)
  const held = JSON.parse((await post(base, "/v3/kv/range", { key: b64("lk/"), range_end: b64("lk0") })).body) as { kvs: Array<{ key: string }> }
  await record("unlock", post(base, "/v3/lock/unlock", { key: held.kvs[0]!.key }))
  await record("campaign", post(base, "/v3/election/campaign", { name: b64("el"), lease: leaseForLock, value: b64("me") }), withoutLeaseSuffix)
  const campaign = JSON.parse((await post(base, "/v3/kv/range", { key: b64("el/"), range_end: b64("el0") })).body) as { kvs: Array<{ key: string; create_revision: string }> }
  await record("election leader", post(base, "/v3/election/leader", { name: b64("el") }), withoutLeaseSuffix)
  await record("resign", post(base, "/v3/election/resign", { leader: { name: b64("el"), key: campaign.kvs[0]!.key, rev: campaign.kvs[0]!.create_revision, lease: leaseForLock } }))
  await record("election leader after resign", post(base, "/v3/election/leader", { name: b64("el") }))
  await post(base, "/v3/lease/revoke", { ID: leaseForLock })

  // Cluster and maintenance: their shapes (names, URLs, versions and sizes differ by nature).
  await record("member list", post(base, "/v3/cluster/member/list", {}), (body) => shape(JSON.parse(body)))
  await record("status", post(base, "/v3/maintenance/status", {}), (body) => {
    const s = JSON.parse(body) as Record<string, unknown>
    return Object.keys(s).filter((k) => !["dbSizeInUse", "raftAppliedIndex"].includes(k)).sort()
  })
  await record("health", curl(`${base}/health`), (body) => (JSON.parse(body) as { health: string }).health)
  await record("version", curl(`${base}/version`), (body) => Object.keys(JSON.parse(body)).sort())
  // Authentication through the gateway: users, roles, a token in the Authorization header.
  await record("auth: user add root", post(base, "/v3/auth/user/add", { name: "root", password: "pw" }))
  await record("auth: grant root the root role", post(base, "/v3/auth/user/grant", { user: "root", role: "root" }))
  await record("auth: enable", post(base, "/v3/auth/enable", {}))
  await record("auth: put without a token", post(base, "/v3/kv/put", { key: b64("a"), value: b64("b") }))
  await record("auth: wrong password", post(base, "/v3/auth/authenticate", { name: "root", password: "nope" }))
  const auth = JSON.parse(await record("auth: authenticate", post(base, "/v3/auth/authenticate", { name: "root", password: "pw" }), (body) => {
    const r = normalise(body) as { token?: string }
    return { ...r, token: r.token === undefined ? "missing" : "<token>" }
  })) as { token: string }
  const withToken = (path: string, json: unknown) => curl(`${base}${path}`, ["-X", "POST", "-H", `Authorization: ${auth.token}`, "-d", JSON.stringify(json)])
  await record("auth: put with the token", withToken("/v3/kv/put", { key: b64("a"), value: b64("b") }))
  await record("auth: user list", withToken("/v3/auth/user/list", {}))
  await record("auth: disable", withToken("/v3/auth/disable", {}))
  // gRPC on the same port.
  const ctl = await etcdctl(endpoint, ["get", "foo"])
  out["etcdctl get on the same port"] = { status: ctl.code, body: ctl.stdout.trim() }
  return out
}

describe("the JSON gateway and HTTP endpoints on the client port, against etcd 3.4", () => {
  const natcdDir = tempDir("natcd-json")
  const etcdDir = tempDir("etcd-json")
  let natcd: Natcd
  let etcd: Etcd

  beforeAll(async () => {
    ;[natcd, etcd] = await Promise.all([
      startNatcd({ dataDir: natcdDir.dir, portOffset }),
      startEtcd({ dataDir: etcdDir.dir, ...etcdPorts })
    ])
  }, 90_000)

  afterAll(async () => {
    await Promise.all([natcd?.stop(), etcd?.stop()])
    natcdDir.remove()
    etcdDir.remove()
  })

  it("answers the same requests the same", async () => {
    const fromEtcd = await session(`http://${etcd.endpoint}`, etcd.endpoint)
    const fromNatcd = await session(`http://${natcd.endpoints[0]}`, natcd.endpoints[0]!)
    // What etcd 3.4 answers on its own (the table is not vacuous).
    expect(fromEtcd["put, unknown lease"]).toEqual({ status: 404, body: { error: "etcdserver: requested lease not found", message: "etcdserver: requested lease not found", code: 5 } })
    expect(fromEtcd["watch: events"]!.body).toHaveLength(2)
    expect(fromEtcd[`/v3/kv/put {"key":"${b64("foo")}","value":5}`]).toEqual({
      status: 400,
      body: { error: "json: cannot unmarshal number into Go value of type []uint8", message: "json: cannot unmarshal number into Go value of type []uint8", code: 3 }
    })
    expect(fromEtcd.health!.body).toBe("true")
    for (const name of Object.keys(fromEtcd)) expect({ name, ...fromNatcd[name] }).toEqual({ name, ...fromEtcd[name] })
    expect(Object.keys(fromNatcd).sort()).toEqual(Object.keys(fromEtcd).sort())
  }, 120_000)

  it("serves /metrics, /livez and /readyz, and 404 elsewhere", async () => {
    const base = `http://${natcd.endpoints[0]}`
    const metrics = await curl(`${base}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.body).toMatch(/^grpc_server_handled_total\{.*grpc_method="Range".*\} \d+$/m)
    expect((await curl(`${base}/readyz`)).status).toBe(200)
    expect((await curl(`${base}/livez`)).body).toMatch(/livez check passed/)
    expect(await curl(`${base}/nope`)).toEqual({ status: 404, body: "404 page not found\n" })
    expect((await curl(`${base}/health?serializable=true&exclude=NOSPACE`)).body).toBe('{"health":"true","reason":""}')
  })
})
