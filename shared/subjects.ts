/**
 * Every NATS subject natcd uses, built by one validating function.
 *
 * Layout: `natcd.<cluster>.<member>.<service>.<endpoint>`, where `cluster` is the cluster
 * name (`--cluster`, default "natcd"), `member` the member name (m1, m2, ...), `service` one of
 * the service names and `endpoint` one of that service's endpoints below. Tokens are
 * restricted to `[A-Za-z0-9_-]` so that no token can smuggle a `.`, `*` or `>` into a subject.
 *
 * | service | endpoint | pattern | body |
 * |---|---|---|---|
 * | raft | propose | request/reply | a proposal (entry data); reply: accepted or NoLeader |
 * | raft | readindex | request/reply | reply: the index a linearizable read must wait for |
 * | raft | status | request/reply | reply: raft status (term, leader, commit, applied) |
 * | raft | entries | request/reply | committed entries from an index, for apply gap repair |
 * | raft | msg | publish | raft messages from a peer member's raft service |
 * | raft | members | request/reply | the membership: ids, names, URLs, learners |
 * | raft | confchange | request/reply | add/remove/promote a member; served by the leader |
 * | raft | transfer | request/reply | leader transfer (MoveLeader); served by the leader |
 * | wal | append | request/reply | hard state + entries; reply after fdatasync |
 * | wal | load | request/reply | everything the WAL holds, in pages |
 * | wal | snapshot | request/reply | save a raft snapshot, then release what it covers |
 * | mvcc | apply | publish | committed entries, in index order, from raft |
 * | mvcc | range | request/reply | a Range request at or after an applied index |
 * | mvcc | status | request/reply | applied index, revision, db size |
 * | mvcc | alarms | request/reply | the active alarms (Maintenance.Alarm GET) |
 * | mvcc | hashkv | request/reply | hash of the key space up to a revision (Maintenance.HashKV) |
 * | mvcc | snapshot | request/reply | copy the state into a snapshot file |
 * | mvcc | chunk | request/reply | a piece of a snapshot file, for a member installing it |
 * | mvcc | install | request/reply | fetch a snapshot file from another member and install it |
 * | mvcc | defragment | request/reply | rewrite the backend compacted (Maintenance.Defragment) |
 * | gateway | result.<instance> | publish | apply results for that gateway instance's proposals |
 * | mvcc | events | publish | the committed events of each applied batch, in revision order, plus idle heartbeats |
 * | mvcc | history | request/reply | events between two revisions, read from the backend (watch catch-up) |
 * | gateway | watch.<instance> | publish | watch responses from the watch replicas to that gateway instance |
 *
 * The watch service's replicas belong to no member; their subjects are built by
 * {@link watchSubject}: `natcd.<cluster>.watch.<endpoint>` for the queue group that spreads new
 * watch sessions over the replicas, `natcd.<cluster>.watch.<replica>.<endpoint>` for a session's
 * requests to the replica that holds it.
 */

/** The services of a member. */
export type ServiceName = "gateway" | "raft" | "wal" | "mvcc"

/** Endpoints of each service. */
export interface Endpoints {
  readonly raft: "propose" | "readindex" | "status" | "entries" | "msg" | "members" | "confchange" | "transfer"
  readonly wal: "append" | "load" | "snapshot"
  readonly mvcc: "apply" | "range" | "status" | "alarms" | "hashkv" | "snapshot" | "chunk" | "install" | "defragment" | "events" | "history"
  readonly gateway: "result" | "watch"
}

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/

/** Throws when `token` is not a valid subject token (a programming or configuration error). */
export const checkToken = (what: string, token: string): string => {
  if (!TOKEN.test(token)) {
    throw new Error(`invalid ${what} ${JSON.stringify(token)}: use 1-64 characters of [A-Za-z0-9_-]`)
  }
  return token
}

/**
 * Builds a subject. `instance` is required for `gateway.result` (one subject per gateway
 * process) and rejected elsewhere. Throws on an invalid token.
 */
export const subject = <S extends ServiceName>(
  parts: {
    readonly cluster: string
    readonly member: string
    readonly service: S
    readonly endpoint: Endpoints[S]
    readonly instance?: string
  }
): string => {
  const base = `natcd.${checkToken("cluster name", parts.cluster)}.${checkToken("member name", parts.member)}.${parts.service}.${parts.endpoint}`
  if (parts.service === "gateway") {
    if (parts.instance === undefined) throw new Error(`gateway.${parts.endpoint} needs an instance token`)
    return `${base}.${checkToken("gateway instance", parts.instance)}`
  }
  if (parts.instance !== undefined) throw new Error(`${parts.service}.${parts.endpoint} takes no instance token`)
  return base
}

/** Endpoints of the watch service (services/watch). */
export type WatchEndpoint = "open" | "create" | "cancel" | "progress" | "ack" | "ping" | "close"

/**
 * Builds a watch service subject: `natcd.<cluster>.watch.open` (no replica: the queue group
 * every replica joins), else `natcd.<cluster>.watch.<replica>.<endpoint>`. Throws on an invalid
 * token.
 */
export const watchSubject = (parts: { readonly cluster: string; readonly endpoint: WatchEndpoint; readonly replica?: string }): string => {
  const base = `natcd.${checkToken("cluster name", parts.cluster)}.watch`
  if (parts.replica === undefined) {
    if (parts.endpoint !== "open") throw new Error(`watch.${parts.endpoint} needs a replica token`)
    return `${base}.open`
  }
  return `${base}.${checkToken("watch replica", parts.replica)}.${parts.endpoint}`
}

/**
 * The subject matching every member's `mvcc.events` of `cluster` (a watch replica follows all
 * of them and keeps the first copy of each revision).
 */
export const allMembersEventsSubject = (cluster: string): string => `natcd.${checkToken("cluster name", cluster)}.*.mvcc.events`

/** Endpoints of a member's lease service (services/lease). */
export type LeaseEndpoint = "keepalive" | "timetolive" | "result"

/**
 * Builds a lease service subject: `natcd.<cluster>.<member>.lease.<endpoint>`, and for `result`
 * (apply results of the lease service's own proposals, one subject per process)
 * `natcd.<cluster>.<member>.lease.result.<instance>`. Endpoints: keepalive and timetolive
 * (request/reply, served by the leader's lease service, forwarded by the others), result
 * (publish). Throws on an invalid token.
 */
export const leaseSubject = (parts: { readonly cluster: string; readonly member: string; readonly endpoint: LeaseEndpoint; readonly instance?: string }): string => {
  const base = `natcd.${checkToken("cluster name", parts.cluster)}.${checkToken("member name", parts.member)}.lease.${parts.endpoint}`
  if (parts.endpoint === "result") {
    if (parts.instance === undefined) throw new Error("lease.result needs an instance token")
    return `${base}.${checkToken("lease instance", parts.instance)}`
  }
  if (parts.instance !== undefined) throw new Error(`lease.${parts.endpoint} takes no instance token`)
  return base
}

/** The mvcc service's lease table endpoints (services/mvcc/lease-endpoints.ts). */
export type MvccLeaseEndpoint = "leases" | "lease"

/**
 * Builds `natcd.<cluster>.<member>.mvcc.<endpoint>` for the lease table endpoints, both
 * request/reply: `leases` (the table's changes since a raft index, for the lease service and
 * LeaseLeases), `lease` (one lease with its keys, for LeaseTimeToLive). Throws on an invalid token.
 */
export const mvccLeaseSubject = (parts: { readonly cluster: string; readonly member: string; readonly endpoint: MvccLeaseEndpoint }): string =>
  `natcd.${checkToken("cluster name", parts.cluster)}.${checkToken("member name", parts.member)}.mvcc.${parts.endpoint}`

/**
 * The health endpoint of one service process (request/reply, every service has one):
 * `natcd.<cluster>.<member>.<service>.health`, where `member` is the watch replica's name for a
 * watch replica. Throws on an invalid token.
 */
export const healthSubject = (parts: { readonly cluster: string; readonly member: string; readonly service: string }): string =>
  `natcd.${checkToken("cluster name", parts.cluster)}.${checkToken("member name", parts.member)}.${checkToken("service name", parts.service)}.health`

/** The subject of trace keep notices of `cluster` (publish; every process listens). */
export const traceKeepSubject = (cluster: string): string => `natcd.${checkToken("cluster name", cluster)}.trace.keep`
