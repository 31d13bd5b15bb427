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
 */

/** The services of a member. */
export type ServiceName = "gateway" | "raft" | "wal" | "mvcc"

/** Endpoints of each service. */
export interface Endpoints {
  readonly raft: "propose" | "readindex" | "status" | "entries" | "msg" | "members" | "confchange" | "transfer"
  readonly wal: "append" | "load" | "snapshot"
  readonly mvcc: "apply" | "range" | "status" | "alarms" | "hashkv" | "snapshot" | "chunk" | "install" | "defragment"
  readonly gateway: "result"
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
    if (parts.instance === undefined) throw new Error("gateway.result needs an instance token")
    return `${base}.${checkToken("gateway instance", parts.instance)}`
  }
  if (parts.instance !== undefined) throw new Error(`${parts.service}.${parts.endpoint} takes no instance token`)
  return base
}
