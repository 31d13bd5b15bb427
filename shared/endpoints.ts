/**
 * Every NATS endpoint natcd uses, declared once: its subject pattern, the frame kinds and
 * schemas of its request and reply, which service type serves it and which may call or
 * publish to it.
 *
 * Everything about the bus derives from this table:
 * - `serveEndpoint` / `callEndpoint` / `publishEndpoint` (services/runtime/rpc-server.ts, rpc.ts) take a
 *   declaration, so a handler's body and a caller's reply are typed and decoded by the
 *   declared schemas, never chosen per call site;
 * - {@link permissionsFor} turns the table into each identity's NATS permissions (what it may
 *   publish and subscribe), which the supervisor writes into nats-server's config
 *   (services/supervisor/nats-config.ts); a process can publish only what its service calls or
 *   emits and subscribe only to what it serves plus its own reply inbox;
 * - the README's subjects table and the attack tests walk {@link endpoints}.
 *
 * Subjects are templates over tokens in braces: `{cluster}` (`--cluster`), `{member}` (the
 * member whose service serves the endpoint), `{replica}` (a watch replica), `{from}` (the
 * sending member, for raft messages: the subject carries the sender so that the sender's
 * permission binds the claim), `{instance}` (a process's random instance token), `{role}` (the
 * service type). Tokens are `[A-Za-z0-9_-]{1,64}` (shared/subjects.ts checkToken).
 *
 * Parties: `servers` subscribe to the subject, `callers` publish to it (request/reply or
 * publish-only). A party's `self` list names the tokens bound to its own identity: a server
 * binds `member` (or `replica`, `role`) by default, so mN's raft subscribes only to mN's raft
 * subjects; a caller with `self: ["member"]` may reach only its own member's endpoint (raft of
 * m1 publishes only `natcd.<cluster>.m1.wal.append`), one without may reach any member's.
 */
import type * as Schema from "effect/Schema"
import * as S from "./schema.ts"
import type { FrameKind } from "./schema.ts"
import { checkToken } from "./subjects.ts"

/** The service types, each a kind of NATS identity (plus `cli`, the operator's tools). */
export type Role = "raft" | "wal" | "mvcc" | "lease" | "gateway" | "watch" | "cli"

/** Every role, in the order the README lists them. */
export const roles: ReadonlyArray<Role> = ["raft", "wal", "mvcc", "lease", "gateway", "watch", "cli"]

/** The tokens a subject template names. */
export type TokensOf<T extends string> = T extends `${string}{${infer K}}${infer Rest}` ? K | TokensOf<Rest> : never

/** A service type's part in an endpoint: its role and the tokens bound to its own identity. */
export interface Party {
  readonly role: Role
  /** Tokens replaced by the identity's own value in its permission (others become `*`). */
  readonly self: ReadonlyArray<"member" | "replica" | "from" | "role">
}

/**
 * One endpoint. `reply` absent: publish-only (nobody answers). `Req`/`Rep` are the decoded
 * body types of the request and reply schemas.
 */
export interface Endpoint<T extends string = string, Req = any, Rep = any> {
  /** Stable name: `<service>.<endpoint>`, as the README lists it. */
  readonly name: string
  readonly subject: T
  /** Frame kind of the request (its version comes from shared/schema.ts FrameKinds). */
  readonly kind: FrameKind
  readonly request: Schema.Codec<Req, any>
  readonly reply: { readonly kind: FrameKind; readonly schema: Schema.Codec<Rep, any> } | undefined
  readonly servers: ReadonlyArray<Party>
  readonly callers: ReadonlyArray<Party>
  /** One line for the README's subjects table. */
  readonly doc: string
  /** A NATS queue group the servers join (one of them receives each message). */
  readonly queue?: string
}

/** The bindings a party's identity gives: its role and name (member or replica). */
const server = (role: Role, self: Party["self"] = ["member"]): Party => ({ role, self })
const own = (role: Role): Party => ({ role, self: ["member"] })
const any = (role: Role): Party => ({ role, self: [] })

const rr = <T extends string, Req, Rep>(e: {
  name: string
  subject: T
  kind: FrameKind
  request: Schema.Codec<Req, any>
  reply: FrameKind
  replySchema: Schema.Codec<Rep, any>
  servers: ReadonlyArray<Party>
  callers: ReadonlyArray<Party>
  doc: string
  queue?: string
}): Endpoint<T, Req, Rep> => ({
  name: e.name,
  subject: e.subject,
  kind: e.kind,
  request: e.request,
  reply: { kind: e.reply, schema: e.replySchema },
  servers: e.servers,
  callers: e.callers,
  doc: e.doc,
  ...(e.queue === undefined ? {} : { queue: e.queue })
})

const pub = <T extends string, Req>(e: {
  name: string
  subject: T
  kind: FrameKind
  request: Schema.Codec<Req, any>
  servers: ReadonlyArray<Party>
  callers: ReadonlyArray<Party>
  doc: string
}): Endpoint<T, Req, never> => ({ ...e, reply: undefined })

const memberRoles: ReadonlyArray<Role> = ["raft", "wal", "mvcc", "lease", "gateway"]

// ---------------------------------------------------------------------------------------------
// raft

/** raft.propose: proposals of the member's clients; forwarded to the leader by raft itself. */
export const raftPropose = rr({
  name: "raft.propose", subject: "natcd.{cluster}.{member}.raft.propose",
  kind: "propose", request: S.ProposeBody, reply: "propose.reply", replySchema: S.ProposeReply,
  servers: [server("raft")], callers: [own("gateway"), own("lease"), own("mvcc")],
  doc: "proposals (entry data, batched); reply: accepted with the leader, or NoLeader"
})
/** raft.readindex: the index a linearizable read must wait for. */
export const raftReadIndex = rr({
  name: "raft.readindex", subject: "natcd.{cluster}.{member}.raft.readindex",
  kind: "readindex", request: S.ReadIndexBody, reply: "readindex.reply", replySchema: S.ReadIndexReply,
  servers: [server("raft")], callers: [own("gateway")],
  doc: "ReadIndex: the commit index a linearizable read waits for"
})
/** raft.status: term, leader, commit and applied index. */
export const raftStatus = rr({
  name: "raft.status", subject: "natcd.{cluster}.{member}.raft.status",
  kind: "raft.status", request: S.EmptyBody, reply: "raft.status.reply", replySchema: S.RaftStatus,
  servers: [server("raft")], callers: [own("gateway"), own("lease"), own("mvcc"), any("cli")],
  doc: "raft status: ids, term, leader, commit and applied index"
})
/**
 * raft.state: the member's raft status (as raft.status answers it), published by its raft
 * service within a tick of a change of leader, role or term, and at least every
 * {@link raftStateEveryMs} ms; the member's gateway and lease service follow it instead of
 * polling raft.status.
 */
export const raftState = pub({
  name: "raft.state", subject: "natcd.{cluster}.{member}.raft.state",
  kind: "raft.state", request: S.RaftStatus,
  servers: [server("gateway"), server("lease")], callers: [own("raft")],
  doc: "the member's raft status, pushed on a change of leader, role or term and every second"
})
/** The longest gap between two raft.state frames of a running raft service, in ms. */
export const raftStateEveryMs = 1000
/** raft.entries: committed entries from an index, for mvcc's apply gap repair. */
export const raftEntries = rr({
  name: "raft.entries", subject: "natcd.{cluster}.{member}.raft.entries",
  kind: "entries", request: S.EntriesBody, reply: "entries.reply", replySchema: S.EntriesReply,
  servers: [server("raft")], callers: [own("mvcc")],
  doc: "committed entries from an index (apply gap repair)"
})
/** raft.msg: raft messages from member `{from}`'s raft to member `{member}`'s. */
export const raftMsg = pub({
  name: "raft.msg", subject: "natcd.{cluster}.{member}.raft.msg.{from}",
  kind: "raft.msg", request: S.RaftMessagesBody,
  servers: [server("raft")], callers: [{ role: "raft", self: ["from"] }],
  doc: "raft messages between members; the sender's name is in the subject, bound by its permission"
})
/** raft.members: the membership. */
export const raftMembers = rr({
  name: "raft.members", subject: "natcd.{cluster}.{member}.raft.members",
  kind: "raft.members", request: S.EmptyBody, reply: "raft.members.reply", replySchema: S.MembersReply,
  servers: [server("raft")], callers: [own("gateway"), own("lease"), own("mvcc"), any("cli")],
  doc: "the membership: ids, names, URLs, learners, leader"
})
/** raft.confchange: add/remove/promote/update a member; served by the leader. */
export const raftConfChange = rr({
  name: "raft.confchange", subject: "natcd.{cluster}.{member}.raft.confchange",
  kind: "confchange", request: S.ConfChangeBody, reply: "confchange.reply", replySchema: S.ConfChangeReply,
  servers: [server("raft")], callers: [own("gateway"), any("raft")],
  doc: "membership change (MemberAdd/Remove/Promote/Update); a follower's raft forwards it to the leader's"
})
/** raft.transfer: leader transfer (MoveLeader). */
export const raftTransfer = rr({
  name: "raft.transfer", subject: "natcd.{cluster}.{member}.raft.transfer",
  kind: "transfer", request: S.TransferBody, reply: "transfer.reply", replySchema: S.TransferReply,
  servers: [server("raft")], callers: [own("gateway")],
  doc: "leader transfer (MoveLeader)"
})

// ---------------------------------------------------------------------------------------------
// wal

/** wal.append: hard state and entries; the reply follows fdatasync. */
export const walAppend = rr({
  name: "wal.append", subject: "natcd.{cluster}.{member}.wal.append",
  kind: "wal.append", request: S.WalAppendBody, reply: "wal.append.reply", replySchema: S.WalAppendReply,
  servers: [server("wal")], callers: [own("raft")],
  doc: "persist hard state and entries; reply after fdatasync"
})
/** wal.load: the WAL's contents, in pages. */
export const walLoad = rr({
  name: "wal.load", subject: "natcd.{cluster}.{member}.wal.load",
  kind: "wal.load", request: S.WalLoadBody, reply: "wal.load.reply", replySchema: S.WalLoadReply,
  servers: [server("wal")], callers: [own("raft")],
  doc: "everything the WAL holds, in pages (raft start-up)"
})
/** wal.snapshot: save a raft snapshot, then release the segments it covers. */
export const walSnapshot = rr({
  name: "wal.snapshot", subject: "natcd.{cluster}.{member}.wal.snapshot",
  kind: "wal.snapshot", request: S.WalSnapshotBody, reply: "wal.snapshot.reply", replySchema: S.WalSnapshotReply,
  servers: [server("wal")], callers: [own("raft")],
  doc: "save a raft snapshot, then release what it covers"
})

// ---------------------------------------------------------------------------------------------
// mvcc

/** mvcc.apply: committed entries in index order, from the member's raft. */
export const mvccApply = pub({
  name: "mvcc.apply", subject: "natcd.{cluster}.{member}.mvcc.apply",
  kind: "apply", request: S.ApplyBody,
  servers: [server("mvcc")], callers: [own("raft")],
  doc: "committed entries, in index order, from the member's raft"
})
/** mvcc.range: Range requests (batched) at or after an applied index. */
export const mvccRange = rr({
  name: "mvcc.range", subject: "natcd.{cluster}.{member}.mvcc.range",
  kind: "range", request: S.RangeBody, reply: "range.reply", replySchema: S.RangeReply,
  servers: [server("mvcc")], callers: [own("gateway")],
  doc: "Range requests at or after an applied index"
})
/** mvcc.status: applied index, revision, db size. */
export const mvccStatus = rr({
  name: "mvcc.status", subject: "natcd.{cluster}.{member}.mvcc.status",
  kind: "mvcc.status", request: S.EmptyBody, reply: "mvcc.status.reply", replySchema: S.MvccStatus,
  servers: [server("mvcc")], callers: [own("gateway"), own("raft"), any("cli")],
  doc: "applied index, revision, compact revision, db size"
})
/** mvcc.alarms: the member's active alarms (Maintenance.Status errors). */
export const mvccAlarms = rr({
  name: "mvcc.alarms", subject: "natcd.{cluster}.{member}.mvcc.alarms",
  kind: "mvcc.alarms", request: S.MvccAlarmsBody, reply: "mvcc.alarms.reply", replySchema: S.MvccAlarmsReply,
  servers: [server("mvcc")], callers: [own("gateway")],
  doc: "the active alarms"
})
/** mvcc.hashkv: hash of the key space up to a revision (HashKV, corruption check). */
export const mvccHashKv = rr({
  name: "mvcc.hashkv", subject: "natcd.{cluster}.{member}.mvcc.hashkv",
  kind: "hashkv", request: S.HashKvBody, reply: "hashkv.reply", replySchema: S.HashKvReply,
  servers: [server("mvcc")], callers: [own("gateway"), any("mvcc"), any("cli")],
  doc: "hash of the key space up to a revision (HashKV; peers' corruption check)"
})
/** mvcc.snapshot: copy the state into a snapshot file. */
export const mvccSnapshot = rr({
  name: "mvcc.snapshot", subject: "natcd.{cluster}.{member}.mvcc.snapshot",
  kind: "mvcc.snapshot", request: S.MvccSnapshotBody, reply: "mvcc.snapshot.reply", replySchema: S.MvccSnapshotReply,
  servers: [server("mvcc")], callers: [own("raft"), own("gateway")],
  doc: "copy the state into a snapshot file (raft snapshots, Maintenance.Snapshot)"
})
/** mvcc.chunk: a piece of a snapshot file. */
export const mvccChunk = rr({
  name: "mvcc.chunk", subject: "natcd.{cluster}.{member}.mvcc.chunk",
  kind: "mvcc.chunk", request: S.MvccChunkBody, reply: "mvcc.chunk.reply", replySchema: S.MvccChunkReply,
  servers: [server("mvcc")], callers: [own("gateway"), any("mvcc")],
  doc: "a piece of a snapshot file (a member installing it, Maintenance.Snapshot)"
})
/** mvcc.install: fetch a snapshot from another member and install it. */
export const mvccInstall = rr({
  name: "mvcc.install", subject: "natcd.{cluster}.{member}.mvcc.install",
  kind: "mvcc.install", request: S.MvccInstallBody, reply: "mvcc.install.reply", replySchema: S.MvccInstallReply,
  servers: [server("mvcc")], callers: [own("raft")],
  doc: "fetch a raft snapshot's state from another member and install it"
})
/** mvcc.defragment: rewrite the backend compacted. */
export const mvccDefragment = rr({
  name: "mvcc.defragment", subject: "natcd.{cluster}.{member}.mvcc.defragment",
  kind: "mvcc.defragment", request: S.EmptyBody, reply: "mvcc.defragment.reply", replySchema: S.DefragmentReply,
  servers: [server("mvcc")], callers: [own("gateway")],
  doc: "rewrite the backend compacted (Maintenance.Defragment)"
})
/** mvcc.events: the committed events of each applied batch, plus idle heartbeats. */
export const mvccEvents = pub({
  name: "mvcc.events", subject: "natcd.{cluster}.{member}.mvcc.events",
  kind: "mvcc.events", request: S.MvccEventsBody,
  servers: [{ role: "watch", self: [] }], callers: [own("mvcc")],
  doc: "committed events of each applied batch in revision order, and idle heartbeats (to the watch replicas)"
})
/** mvcc.history: events between two revisions (watch catch-up). */
export const mvccHistory = rr({
  name: "mvcc.history", subject: "natcd.{cluster}.{member}.mvcc.history",
  kind: "mvcc.history", request: S.HistoryBody, reply: "mvcc.history.reply", replySchema: S.HistoryReply,
  servers: [server("mvcc")], callers: [any("watch")],
  doc: "events between two revisions, read from the backend (watch catch-up)"
})
/** mvcc.leases: the lease table's changes since a raft index. */
export const mvccLeases = rr({
  name: "mvcc.leases", subject: "natcd.{cluster}.{member}.mvcc.leases",
  kind: "mvcc.leases", request: S.MvccLeasesBody, reply: "mvcc.leases.reply", replySchema: S.MvccLeasesReply,
  servers: [server("mvcc")], callers: [own("lease"), own("gateway")],
  doc: "the lease table's changes since a raft index (lease service, LeaseLeases)"
})
/** mvcc.auth: token resolution, password checks and permission checks against the auth store. */
export const mvccAuth = rr({
  name: "mvcc.auth", subject: "natcd.{cluster}.{member}.mvcc.auth",
  kind: "mvcc.auth", request: S.MvccAuthBody, reply: "mvcc.auth.reply", replySchema: S.MvccAuthReply,
  servers: [server("mvcc")], callers: [own("gateway")],
  doc: "auth: who a token or certificate names, password checks, permission checks"
})
/** mvcc.lease: one lease with its keys. */
export const mvccLease = rr({
  name: "mvcc.lease", subject: "natcd.{cluster}.{member}.mvcc.lease",
  kind: "mvcc.lease", request: S.MvccLeaseBody, reply: "mvcc.lease.reply", replySchema: S.MvccLeaseReply,
  servers: [server("mvcc")], callers: [own("lease")],
  doc: "one lease and its keys (LeaseTimeToLive)"
})

// ---------------------------------------------------------------------------------------------
// Apply results, back to the process that proposed (published by the proposer's member's mvcc).

/** gateway.result: apply results of a gateway process's proposals. */
export const gatewayResult = pub({
  name: "gateway.result", subject: "natcd.{cluster}.{member}.gateway.result.{instance}",
  kind: "apply.result", request: S.ApplyResults,
  servers: [server("gateway")], callers: [own("mvcc")],
  doc: "apply results of that gateway process's proposals"
})
/** lease.result: apply results of a lease process's proposals. */
export const leaseResult = pub({
  name: "lease.result", subject: "natcd.{cluster}.{member}.lease.result.{instance}",
  kind: "apply.result", request: S.ApplyResults,
  servers: [server("lease")], callers: [own("mvcc")],
  doc: "apply results of that lease process's proposals"
})

// ---------------------------------------------------------------------------------------------
// lease

/** lease.keepalive: renew a lease; served by the leader's lease service, forwarded by others. */
export const leaseKeepAlive = rr({
  name: "lease.keepalive", subject: "natcd.{cluster}.{member}.lease.keepalive",
  kind: "lease.keepalive", request: S.LeaseKeepAliveBody, reply: "lease.keepalive.reply", replySchema: S.LeaseKeepAliveReply,
  servers: [server("lease")], callers: [own("gateway"), any("lease")],
  doc: "LeaseKeepAlive; followers' lease services forward to the leader's"
})
/** lease.timetolive: a lease's remaining TTL, from the leader's lease service. */
export const leaseTimeToLive = rr({
  name: "lease.timetolive", subject: "natcd.{cluster}.{member}.lease.timetolive",
  kind: "lease.timetolive", request: S.LeaseTimeToLiveBody, reply: "lease.timetolive.reply", replySchema: S.LeaseTimeToLiveReply,
  servers: [server("lease")], callers: [own("gateway"), any("lease")],
  doc: "LeaseTimeToLive's remaining TTL, from the leader's lease service"
})

// ---------------------------------------------------------------------------------------------
// watch

/** watch.open: a new watch session, to one replica of the queue group. */
export const watchOpen = rr({
  name: "watch.open", subject: "natcd.{cluster}.watch.open",
  kind: "watch.open", request: S.WatchOpenBody, reply: "watch.open.reply", replySchema: S.WatchOpenReply,
  servers: [server("watch", [])], callers: [any("gateway")], queue: "watch",
  doc: "open a watch session on one replica"
})
const watchSessionEndpoint = <E extends string, Req, Rep>(endpoint: E, kind: FrameKind, request: Schema.Codec<Req, any>, reply: FrameKind, replySchema: Schema.Codec<Rep, any>, doc: string) =>
  rr({
    name: `watch.${endpoint}`, subject: `natcd.{cluster}.watch.{replica}.${endpoint}` as `natcd.{cluster}.watch.{replica}.${E}`,
    kind, request, reply, replySchema,
    servers: [server("watch", ["replica"])], callers: [any("gateway")], doc
  })
/**
 * watch.place: a new watch session on this replica, the one the gateway placed it on (the least
 * loaded it knows of, services/gateway/watch-placement.ts); same bodies as watch.open.
 */
export const watchPlace = watchSessionEndpoint("place", "watch.open", S.WatchOpenBody, "watch.open.reply", S.WatchOpenReply, "open a watch session on this replica, the least loaded the gateway knows of")
/** watch.create: add a watcher to a session. */
export const watchCreate = watchSessionEndpoint("create", "watch.create", S.WatchCreateBody, "watch.create.reply", S.WatchCtlReply, "add a watcher to a session")
/** watch.cancel: cancel a watcher. */
export const watchCancel = watchSessionEndpoint("cancel", "watch.cancel", S.WatchCancelBody, "watch.cancel.reply", S.WatchCtlReply, "cancel a watcher")
/** watch.progress: a progress notification request. */
export const watchProgress = watchSessionEndpoint("progress", "watch.progress", S.WatchProgressBody, "watch.progress.reply", S.WatchCtlReply, "request a progress notification")
/** watch.ping: which of the gateway's sessions the replica still holds. */
export const watchPing = watchSessionEndpoint("ping", "watch.ping", S.WatchPingBody, "watch.ping.reply", S.WatchPingReply, "which sessions the replica still holds")
/** watch.ack: flow control, the responses a gateway has delivered. */
export const watchAck = pub({
  name: "watch.ack", subject: "natcd.{cluster}.watch.{replica}.ack",
  kind: "watch.ack", request: S.WatchAckBody,
  servers: [server("watch", ["replica"])], callers: [any("gateway")],
  doc: "flow control: the responses a gateway delivered"
})
/** watch.close: close a session. */
export const watchClose = pub({
  name: "watch.close", subject: "natcd.{cluster}.watch.{replica}.close",
  kind: "watch.close", request: S.WatchCloseBody,
  servers: [server("watch", ["replica"])], callers: [any("gateway")],
  doc: "close a session"
})
/** watch.load: a replica's load, every {@link watchLoadEveryMs} ms, for the gateways' placement. */
export const watchLoad = pub({
  name: "watch.load", subject: "natcd.{cluster}.watch.{replica}.load",
  kind: "watch.load", request: S.WatchLoadBody,
  servers: [server("gateway", [])], callers: [{ role: "watch", self: ["replica"] }],
  doc: "a replica's load (sessions, unacknowledged bytes, draining), every second: gateways open new sessions on the least loaded"
})
/** The longest gap between two watch.load frames of a running replica, in ms. */
export const watchLoadEveryMs = 1000
/** gateway.watch: watch responses from the replicas to a gateway process. */
export const gatewayWatch = pub({
  name: "gateway.watch", subject: "natcd.{cluster}.{member}.gateway.watch.{instance}",
  kind: "watch.responses", request: S.WatchResponsesBody,
  servers: [server("gateway")], callers: [any("watch")],
  doc: "watch responses from the replicas to that gateway process: etcd WatchResponses protobuf-encoded and gRPC-framed, relayed as they are (shared/watch-relay.ts)"
})

// ---------------------------------------------------------------------------------------------
// Every process

/** health: a service process's readiness, polled by its member's gateway. */
export const health = rr({
  name: "health", subject: "natcd.{cluster}.{member}.{role}.health",
  kind: "health", request: S.HealthBody, reply: "health.reply", replySchema: S.HealthReply,
  servers: [...memberRoles.map((r) => server(r, ["member", "role"])), server("watch", ["member", "role"])],
  callers: [own("gateway"), any("cli")],
  doc: "a process's health (`{member}` is a watch replica's name for a replica)"
})
/** trace.keep: keep every span of a trace (tail sampling). */
export const traceKeep = pub({
  name: "trace.keep", subject: "natcd.{cluster}.trace.keep",
  kind: "trace.keep", request: S.TraceKeepBody,
  servers: [...memberRoles, "watch" as const].map((r) => server(r, [])),
  callers: [any("gateway")],
  doc: "keep every span of a slow request's trace (tail sampling)"
})

/** Every endpoint, in the README's order. */
export const endpoints: ReadonlyArray<Endpoint> = [
  raftPropose, raftReadIndex, raftStatus, raftState, raftEntries, raftMsg, raftMembers, raftConfChange, raftTransfer,
  walAppend, walLoad, walSnapshot,
  mvccApply, mvccRange, mvccStatus, mvccAlarms, mvccHashKv, mvccSnapshot, mvccChunk, mvccInstall, mvccDefragment,
  mvccEvents, mvccHistory, mvccLeases, mvccLease, mvccAuth,
  gatewayResult, leaseResult, leaseKeepAlive, leaseTimeToLive,
  watchOpen, watchPlace, watchCreate, watchCancel, watchProgress, watchPing, watchAck, watchClose, watchLoad, gatewayWatch,
  health, traceKeep
]

// ---------------------------------------------------------------------------------------------
// Subjects

const TOKEN_RE = /\{([a-z]+)\}/g

/**
 * The subject of `endpoint` for `tokens` (each checked: `[A-Za-z0-9_-]{1,64}`). Throws on a
 * missing or invalid token (a programming or configuration error). With `wildcards`, a token
 * may be `*` (a server's subscription to every value of a token it does not bind, e.g. raft.msg's
 * `{from}`).
 */
export const subjectOf = <T extends string>(
  endpoint: Endpoint<T>,
  tokens: { readonly [K in TokensOf<T>]: string },
  options: { readonly wildcards?: boolean } = {}
): string =>
  endpoint.subject.replace(TOKEN_RE, (_, name: string) => {
    const value = (tokens as Record<string, string | undefined>)[name]
    if (value === undefined) throw new Error(`${endpoint.name}: subject token {${name}} missing`)
    return options.wildcards === true && value === "*" ? value : checkToken(name, value)
  })

/**
 * The tokens of a concrete `subject` of `endpoint`, or undefined when it does not match the
 * template (used by servers of subjects with wildcards, e.g. raft.msg's `{from}`).
 */
export const tokensOf = <T extends string>(endpoint: Endpoint<T>, subject: string): { readonly [K in TokensOf<T>]: string } | undefined => {
  const want = endpoint.subject.split(".")
  const got = subject.split(".")
  if (want.length !== got.length) return undefined
  const out: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!
    if (w.startsWith("{")) out[w.slice(1, -1)] = got[i]!
    else if (w !== got[i]) return undefined
  }
  return out as { readonly [K in TokensOf<T>]: string }
}

// ---------------------------------------------------------------------------------------------
// Identities and permissions

/** A NATS identity: a service type and the member (or watch replica) it runs for. */
export interface Identity {
  readonly role: Role
  /** Member name (m1, ...) for member services, replica name (w1, ...) for watch, "" for cli. */
  readonly name: string
}

/** The file name of an identity's NKey seed under `<data-dir>/creds/`: `<role>.<name>.nk`, `cli.nk`. */
export const credsFileName = (identity: Identity): string =>
  identity.role === "cli" ? "cli.nk" : `${identity.role}.${checkToken("identity name", identity.name)}.nk`

/** The prefix of an identity's reply inboxes: `_INBOX.natcd.<cluster>.<role>.<name>`. */
export const inboxPrefix = (cluster: string, identity: Identity): string =>
  `_INBOX.natcd.${checkToken("cluster name", cluster)}.${identity.role}.${identity.role === "cli" ? "cli" : checkToken("identity name", identity.name)}`

const render = (endpoint: Endpoint, cluster: string, identity: Identity, party: Party): string =>
  endpoint.subject.replace(TOKEN_RE, (_, name: string) => {
    if (name === "cluster") return cluster
    if (name === "role" && party.self.includes("role")) return identity.role
    if ((name === "member" || name === "replica" || name === "from") && party.self.includes(name)) return identity.name
    return "*"
  })

/**
 * How long after the latest request from an inbox a server may still answer it, in seconds
 * (nats-server's `allow_responses.expires`). A caller re-sends a request at least every
 * `retryAfterMs` while it waits, so every call's `retryAfterMs` must stay below this
 * (services/runtime/rpc.ts refuses one that does not): the longest single wait today is an
 * mvcc.install of a large snapshot, 600 s.
 */
export const replyWindowSeconds = 900

/** What an identity may publish and subscribe to (NATS subject patterns), and why. */
export interface Permissions {
  readonly publish: ReadonlyArray<string>
  readonly subscribe: ReadonlyArray<string>
}

/**
 * The NATS permissions of `identity` in `cluster`, derived from {@link endpoints}: publish to
 * every subject its role calls or publishes (bound to its own member where the declaration
 * says so), subscribe to every subject its role serves (bound to its own member or replica)
 * and to its own reply inboxes. Replies to requests it received go through nats-server's
 * `allow_responses` (the requester's inbox, once per request), never through a publish grant
 * on `_INBOX.>`.
 */
export const permissionsFor = (cluster: string, identity: Identity): Permissions => {
  checkToken("cluster name", cluster)
  const publish = new Set<string>()
  const subscribe = new Set<string>([`${inboxPrefix(cluster, identity)}.>`])
  for (const e of endpoints) {
    for (const p of e.callers) if (p.role === identity.role) publish.add(render(e, cluster, identity, p))
    for (const p of e.servers) if (p.role === identity.role) subscribe.add(render(e, cluster, identity, p))
  }
  return { publish: [...publish].sort(), subscribe: [...subscribe].sort() }
}

// ---------------------------------------------------------------------------------------------
// Documentation

const partyText = (p: Party, side: "server" | "caller"): string => {
  if (side === "caller") {
    if (p.self.includes("from")) return `${p.role} (as {from})`
    if (p.self.includes("replica")) return `${p.role} (as {replica})`
    return p.self.includes("member") ? `${p.role} (own member)` : `${p.role} (any)`
  }
  return p.self.includes("replica") ? `${p.role} ({replica})` : p.self.length === 0 ? `${p.role} (all)` : p.role
}

/**
 * The README's subjects table (markdown), generated from {@link endpoints}: name, subject,
 * request and reply kinds, who serves, who may call or publish, what it carries.
 */
export const subjectsTable = (): string =>
  [
    "| endpoint | subject | request → reply | served by | callers | carries |",
    "|---|---|---|---|---|---|",
    ...endpoints.map((e) =>
      `| ${e.name} | \`${e.subject}\` | ${e.kind} → ${e.reply === undefined ? "(publish)" : e.reply.kind} | ${
        [...new Set(e.servers.map((p) => partyText(p, "server")))].join(", ")
      } | ${e.callers.map((p) => partyText(p, "caller")).join(", ")} | ${e.doc}${e.queue === undefined ? "" : ` (queue group \`${e.queue}\`)`} |`
    )
  ].join("\n")
