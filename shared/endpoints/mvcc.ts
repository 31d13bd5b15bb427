/**
 * The mvcc service's endpoints: committed entries in (mvcc.apply), reads, status, alarms, HashKV,
 * snapshot files, defragment, the event stream and history for watch, the lease table, auth;
 * and the apply results it publishes back to the process that proposed (gateway.result,
 * lease.result). Each declaration is the single source of its subject, schemas, server and
 * callers (see ../endpoints.ts).
 */
import * as S from "../schema.ts"
import { any, onMember, own, pub, server } from "./declare.ts"

/** mvcc.apply: committed entries in index order, from the member's raft. */
export const mvccApply = pub({
  name: "mvcc.apply", subject: "natcd.{cluster}.{member}.mvcc.apply",
  kind: "apply", request: S.ApplyBody,
  servers: [server("mvcc")], callers: [own("raft")],
  doc: "committed entries, in index order, from the member's raft"
})
/** mvcc.range: Range requests (batched) at or after an applied index. */
export const mvccRange = onMember("mvcc", "range", {
  kind: "range", request: S.RangeBody, reply: S.RangeReply, callers: [own("gateway")],
  doc: "Range requests at or after an applied index"
})
/** mvcc.status: applied index, revision, db size. */
export const mvccStatus = onMember("mvcc", "status", {
  kind: "mvcc.status", request: S.EmptyBody, reply: S.MvccStatus, callers: [own("gateway"), own("raft"), any("cli")],
  doc: "applied index, revision, compact revision, db size"
})
/** mvcc.alarms: the member's active alarms (Maintenance.Status errors). */
export const mvccAlarms = onMember("mvcc", "alarms", {
  kind: "mvcc.alarms", request: S.MvccAlarmsBody, reply: S.MvccAlarmsReply, callers: [own("gateway")],
  doc: "the active alarms"
})
/** mvcc.hashkv: hash of the key space up to a revision (HashKV, corruption check). */
export const mvccHashKv = onMember("mvcc", "hashkv", {
  kind: "hashkv", request: S.HashKvBody, reply: S.HashKvReply, callers: [own("gateway"), any("mvcc"), any("cli")],
  doc: "hash of the key space up to a revision (HashKV; peers' corruption check)"
})
/** mvcc.snapshot: copy the state into a snapshot file. */
export const mvccSnapshot = onMember("mvcc", "snapshot", {
  kind: "mvcc.snapshot", request: S.MvccSnapshotBody, reply: S.MvccSnapshotReply, callers: [own("raft"), own("gateway")],
  doc: "copy the state into a snapshot file (raft snapshots, Maintenance.Snapshot)"
})
/** mvcc.chunk: a piece of a snapshot file. */
export const mvccChunk = onMember("mvcc", "chunk", {
  kind: "mvcc.chunk", request: S.MvccChunkBody, reply: S.MvccChunkReply, callers: [own("gateway"), any("mvcc")],
  doc: "a piece of a snapshot file (a member installing it, Maintenance.Snapshot)"
})
/** mvcc.install: fetch a snapshot from another member and install it. */
export const mvccInstall = onMember("mvcc", "install", {
  kind: "mvcc.install", request: S.MvccInstallBody, reply: S.MvccInstallReply, callers: [own("raft")],
  doc: "fetch a raft snapshot's state from another member and install it"
})
/** mvcc.defragment: rewrite the backend compacted. */
export const mvccDefragment = onMember("mvcc", "defragment", {
  kind: "mvcc.defragment", request: S.EmptyBody, reply: S.DefragmentReply, callers: [own("gateway")],
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
export const mvccHistory = onMember("mvcc", "history", {
  kind: "mvcc.history", request: S.HistoryBody, reply: S.HistoryReply, callers: [any("watch")],
  doc: "events between two revisions, read from the backend (watch catch-up)"
})
/** mvcc.leases: the lease table's changes since a raft index. */
export const mvccLeases = onMember("mvcc", "leases", {
  kind: "mvcc.leases", request: S.MvccLeasesBody, reply: S.MvccLeasesReply, callers: [own("lease"), own("gateway")],
  doc: "the lease table's changes since a raft index (lease service, LeaseLeases)"
})
/** mvcc.auth: token resolution, password checks and permission checks against the auth store. */
export const mvccAuth = onMember("mvcc", "auth", {
  kind: "mvcc.auth", request: S.MvccAuthBody, reply: S.MvccAuthReply, callers: [own("gateway")],
  doc: "auth: who a token or certificate names, password checks, permission checks"
})
/** mvcc.lease: one lease with its keys. */
export const mvccLease = onMember("mvcc", "lease", {
  kind: "mvcc.lease", request: S.MvccLeaseBody, reply: S.MvccLeaseReply, callers: [own("lease")],
  doc: "one lease and its keys (LeaseTimeToLive)"
})

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
