/**
 * etcd's JSON gateway on the client port: `POST /v3/<service>/<method>` with a JSON body,
 * answered with the gRPC method's response as JSON (etcd 3.4 embed/serve.go: grpc-gateway
 * handlers registered from the client endpoint, with `runtime.JSONPb{OrigName: true}`).
 *
 * As etcd's, the gateway is a gRPC client of its own server: each request becomes a call to
 * the gateway's gRPC server over a private Unix socket (./main.ts), so it runs through exactly
 * the handlers, checks, errors, authentication and metrics a gRPC client meets. The protocol
 * work is protobufjs's (the same .proto files, shared/proto): its `toObject` writes a response
 * in the proto3 JSON mapping etcd's gateway uses, and its `fromObject` builds a request once
 * ./go-json.ts and ./jsonpb.ts have read the body as etcd's gateway reads it (Go's JSON and
 * jsonpb, their errors).
 *
 * - Field names are the proto's own (`create_revision`, `ID`, `TTL`, `peerURLs`); int64 and
 *   uint64 are decimal strings, bytes base64, enums by name; fields at their default value are
 *   left out (etcd's EmitDefaults is off). A request may give int64 as a number or a string,
 *   and name a field by its JSON name (`sortOrder`) as well.
 * - An `Authorization` header is the call's `authorization` metadata (the token etcd's auth
 *   reads), and `Grpc-Metadata-<name>` headers pass as metadata `<name>`, as grpc-gateway does.
 * - Errors: the gRPC status as `{"error":…,"message":…,"code":…}` with grpc-gateway's HTTP
 *   status for the code ({@link httpStatusOf}); a body that is not JSON, or not of the
 *   request's shape, is code 3 (InvalidArgument).
 * - Streams (`/v3/watch`, `/v3/lease/keepalive`, `/v3/maintenance/snapshot`,
 *   `/v3/election/observe`): each response is a line `{"result":…}`; an error ends the stream
 *   with a line `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`. For the
 *   bidirectional ones the body is a sequence of JSON requests, sent as they arrive; the end of
 *   the body ends the client's side of the stream (a watch then keeps streaming, a keep-alive
 *   stream ends after its answers), as etcd's gateway does.
 *
 * This module is pure (no IO): routes, JSON mapping, error bodies, the request splitter. The
 * HTTP shell is ./http-gateway.ts.
 */
import * as Schema from "effect/Schema"
import protobuf from "protobufjs"
import { loadProtoRoot } from "../../shared/protos.ts"
import { GoJsonError, readGoJson } from "./go-json.ts"
import { unmarshalMessage } from "./jsonpb.ts"

/** How a method streams. */
export type RouteKind = "unary" | "server-stream" | "bidi-stream"

/** One gateway path: the gRPC method it calls and the types it maps. */
export interface JsonRoute {
  /** The HTTP path, e.g. `/v3/kv/range`. */
  readonly path: string
  /** The gRPC method's full path, e.g. `/etcdserverpb.KV/Range`. */
  readonly grpcPath: string
  readonly request: protobuf.Type
  readonly response: protobuf.Type
  readonly kind: RouteKind
}

/**
 * etcd's gateway paths (the `google.api.http` options of etcd's rpc.proto, v3lock.proto and
 * v3election.proto) and the methods they call: `[path, service, method]`.
 */
const gatewayPaths: ReadonlyArray<readonly [string, string, string]> = [
  ["/v3/kv/range", "etcdserverpb.KV", "Range"],
  ["/v3/kv/put", "etcdserverpb.KV", "Put"],
  ["/v3/kv/deleterange", "etcdserverpb.KV", "DeleteRange"],
  ["/v3/kv/txn", "etcdserverpb.KV", "Txn"],
  ["/v3/kv/compaction", "etcdserverpb.KV", "Compact"],
  ["/v3/watch", "etcdserverpb.Watch", "Watch"],
  ["/v3/lease/grant", "etcdserverpb.Lease", "LeaseGrant"],
  ["/v3/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"],
  ["/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"],
  ["/v3/lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"],
  ["/v3/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"],
  ["/v3/kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"],
  ["/v3/lease/leases", "etcdserverpb.Lease", "LeaseLeases"],
  ["/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"],
  ["/v3/cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"],
  ["/v3/cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"],
  ["/v3/cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"],
  ["/v3/cluster/member/list", "etcdserverpb.Cluster", "MemberList"],
  ["/v3/cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"],
  ["/v3/maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"],
  ["/v3/maintenance/status", "etcdserverpb.Maintenance", "Status"],
  ["/v3/maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"],
  ["/v3/maintenance/hash", "etcdserverpb.Maintenance", "Hash"],
  ["/v3/maintenance/hashkv", "etcdserverpb.Maintenance", "HashKV"],
  ["/v3/maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"],
  ["/v3/maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"],
  ["/v3/auth/enable", "etcdserverpb.Auth", "AuthEnable"],
  ["/v3/auth/disable", "etcdserverpb.Auth", "AuthDisable"],
  ["/v3/auth/status", "etcdserverpb.Auth", "AuthStatus"],
  ["/v3/auth/authenticate", "etcdserverpb.Auth", "Authenticate"],
  ["/v3/auth/user/add", "etcdserverpb.Auth", "UserAdd"],
  ["/v3/auth/user/get", "etcdserverpb.Auth", "UserGet"],
  ["/v3/auth/user/list", "etcdserverpb.Auth", "UserList"],
  ["/v3/auth/user/delete", "etcdserverpb.Auth", "UserDelete"],
  ["/v3/auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"],
  ["/v3/auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"],
  ["/v3/auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"],
  ["/v3/auth/role/add", "etcdserverpb.Auth", "RoleAdd"],
  ["/v3/auth/role/get", "etcdserverpb.Auth", "RoleGet"],
  ["/v3/auth/role/list", "etcdserverpb.Auth", "RoleList"],
  ["/v3/auth/role/delete", "etcdserverpb.Auth", "RoleDelete"],
  ["/v3/auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"],
  ["/v3/auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"],
  ["/v3/lock/lock", "v3lockpb.Lock", "Lock"],
  ["/v3/lock/unlock", "v3lockpb.Lock", "Unlock"],
  ["/v3/election/campaign", "v3electionpb.Election", "Campaign"],
  ["/v3/election/proclaim", "v3electionpb.Election", "Proclaim"],
  ["/v3/election/leader", "v3electionpb.Election", "Leader"],
  ["/v3/election/observe", "v3electionpb.Election", "Observe"],
  ["/v3/election/resign", "v3electionpb.Election", "Resign"]
]

const buildRoutes = (): ReadonlyMap<string, JsonRoute> => {
  const root = loadProtoRoot()
  const routes = new Map<string, JsonRoute>()
  for (const [httpPath, serviceName, methodName] of gatewayPaths) {
    const service = root.lookupService(serviceName)
    const method = service.methods[methodName]
    if (method === undefined) throw new Error(`${serviceName} has no method ${methodName}`)
    routes.set(httpPath, {
      path: httpPath,
      grpcPath: `/${serviceName}/${methodName}`,
      request: method.resolvedRequestType!,
      response: method.resolvedResponseType!,
      kind: method.requestStream === true ? "bidi-stream" : method.responseStream === true ? "server-stream" : "unary"
    })
  }
  return routes
}

/** Every gateway path, by path. */
export const jsonRoutes: ReadonlyMap<string, JsonRoute> = buildRoutes()

/**
 * The route of request path `pathname`: a `/v3/...` path, or the same under `/v3beta/` (etcd
 * 3.4 still answers the 3.3 prefix, rewriting it to /v3/). Undefined when there is none.
 */
export const routeOf = (pathname: string): JsonRoute | undefined =>
  jsonRoutes.get(pathname.startsWith("/v3beta/") ? `/v3/${pathname.slice("/v3beta/".length)}` : pathname)

/**
 * A request body that could not be read, thrown by {@link JsonValueSplitter.push}: etcd's
 * gateway answers code 3 (InvalidArgument) with its message. It never crosses the bus, so it is
 * declared here rather than in shared/errors.ts.
 */
export class BadRequestError extends Schema.TaggedError<BadRequestError>()("BadRequest", { message: Schema.String }) {}

/** The plain-data form of {@link BadRequestError}, as {@link decodeJsonRequest} returns it. */
export type BadRequest = Schema.Struct<typeof BadRequestError.fields>["Type"]

/**
 * Reads one JSON request of `route` from `text` as etcd's gateway does (./go-json.ts: Go's JSON
 * syntax; ./jsonpb.ts: jsonpb's mapping; with their messages): the first JSON value of `text` (what
 * follows it is not read, as Go's json.Decoder); none, or null, is the empty request. A Txn
 * nested past protobuf's recursion limit is refused as etcd refuses it ("too many operations").
 */
export const decodeJsonRequest = (route: JsonRoute, text: string): protobuf.Message | BadRequest => {
  try {
    const node = readGoJson(text, "decoder")
    return route.request.fromObject(node === undefined ? {} : unmarshalMessage(route.request, node))
  } catch (e) {
    if (e instanceof GoJsonError) return { _tag: "BadRequest", message: e.message }
    // Nested past what protobuf encodes: only a Txn nests (RequestOp in TxnRequest), and etcd
    // answers one that deep as its txn check does.
    if (e instanceof RangeError || (e instanceof Error && /depth exceeded/.test(e.message))) {
      return { _tag: "BadRequest", message: "etcdserver: too many operations in txn request" }
    }
    return { _tag: "BadRequest", message: (e as Error)?.message ?? String(e) }
  }
}

/** protobufjs's proto3 JSON mapping options, as etcd's gateway emits JSON. */
const toJsonOptions: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String, defaults: false, arrays: false, objects: false, oneofs: false, json: true }

/** A response message of `route` as etcd's gateway writes it (one JSON object, no newline). */
export const encodeJsonResponse = (route: JsonRoute, message: protobuf.Message): string =>
  JSON.stringify(withoutDefaults(route.response, route.response.toObject(message, toJsonOptions)))

/**
 * `object` (`type`'s toObject output) without the fields at their proto3 default (0, false, "",
 * the enum's first value, empty lists): Go's jsonpb leaves them out whether or not the sender
 * wrote them on the wire, while protobufjs keeps what the wire carried.
 */
const withoutDefaults = (type: protobuf.Type, object: Record<string, unknown>): Record<string, unknown> => {
  for (const field of type.fieldsArray) {
    const v = object[field.name]
    if (v === undefined || field.map) continue
    const resolved = field.resolvedType
    if (field.repeated) {
      if (!Array.isArray(v) || v.length === 0) delete object[field.name]
      else if (resolved instanceof protobuf.Type) for (const x of v) withoutDefaults(resolved, x as Record<string, unknown>)
      continue
    }
    if (resolved instanceof protobuf.Type) withoutDefaults(resolved, v as Record<string, unknown>)
    else if (resolved instanceof protobuf.Enum ? v === resolved.valuesById[0] : v === "0" || v === 0 || v === false || v === "") delete object[field.name]
  }
  return object
}

/**
 * grpc-gateway's HTTP status of a gRPC status code (runtime.HTTPStatusFromCode, the version
 * etcd 3.4 vendors).
 */
export const httpStatusOf = (code: number): number => grpcToHttp[code] ?? 500

const grpcToHttp: Readonly<Record<number, number>> = {
  0: 200, // OK
  1: 408, // Canceled
  2: 500, // Unknown
  3: 400, // InvalidArgument
  4: 504, // DeadlineExceeded
  5: 404, // NotFound
  6: 409, // AlreadyExists
  7: 403, // PermissionDenied
  8: 429, // ResourceExhausted
  9: 412, // FailedPrecondition
  10: 409, // Aborted
  11: 400, // OutOfRange
  12: 501, // Unimplemented
  13: 500, // Internal
  14: 503, // Unavailable
  15: 500, // DataLoss
  16: 401 // Unauthenticated
}

/** The body of a failed unary call: `{"error":…,"message":…,"code":…}`. */
export const errorBody = (code: number, message: string): string => JSON.stringify({ error: message, message, code })

/** The line that ends a failed stream (grpc-gateway's stream error). */
export const streamErrorLine = (code: number, message: string): string =>
  JSON.stringify({ error: { grpc_code: code, http_code: httpStatusOf(code), message, http_status: httpStatusText[httpStatusOf(code)] ?? "" } })

const httpStatusText: Readonly<Record<number, string>> = {
  200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
  412: "Precondition Failed", 429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
  504: "Gateway Timeout"
}

/** A streamed response line: `{"result":…}`. */
export const resultLine = (route: JsonRoute, message: protobuf.Message): string => `{"result":${encodeJsonResponse(route, message)}}`

/**
 * Splits a stream of JSON values (a streaming request body: concatenated or newline-separated
 * objects, as Go's json.Decoder reads them) into complete values as bytes arrive. `push` takes
 * the next text and returns the complete values it closed; what is incomplete waits for more.
 * Something other than an object or array where a value starts (`x`, `5`, a stray `}`) is
 * returned with all that follows as the last value, for {@link decodeJsonRequest} to refuse with
 * Go's message; nothing is split after it. At most `maxPendingChars` characters wait (an
 * unterminated value beyond that throws {@link BadRequestError}).
 */
export class JsonValueSplitter {
  private pending = ""
  private depth = 0
  private inString = false
  private escaped = false
  private scanned = 0
  private ended = false
  private readonly maxPendingChars: number

  constructor(maxPendingChars: number) {
    this.maxPendingChars = maxPendingChars
  }

  /** The complete values in `text` and what came before it. */
  push(text: string): string[] {
    if (this.ended) return []
    this.pending += text
    const values: string[] = []
    let start = 0
    for (let i = this.scanned; i < this.pending.length; i++) {
      const c = this.pending[i]!
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (c === "\\") this.escaped = true
        else if (c === "\"") this.inString = false
        continue
      }
      if (c === "\"" && this.depth > 0) this.inString = true
      else if (c === "{" || c === "[") this.depth++
      else if ((c === "}" || c === "]") && this.depth > 0) {
        if (--this.depth === 0) {
          values.push(this.pending.slice(start, i + 1).trim())
          start = i + 1
        }
      } else if (this.depth === 0 && !/\s/.test(c)) {
        values.push(this.pending.slice(i))
        this.pending = ""
        this.ended = true
        return values
      }
    }
    this.pending = this.pending.slice(start)
    this.scanned = this.pending.length
    if (this.pending.length > this.maxPendingChars) throw new BadRequestError({ message: "request is too large" })
    return values
  }

  /** Characters of an incomplete value still waiting (not whitespace). */
  get incomplete(): boolean {
    return this.pending.trim() !== ""
  }
}
