/**
 * An Effect Schema per frame body, and the table of frame kinds and versions: the entry point
 * that re-exports the parts under ./schema/, one file per domain.
 *
 * Receivers decode every body through its schema before acting on it, so a malformed frame
 * becomes a `MalformedFrame` error (replied or counted) and never reaches a core. Decoding also
 * normalises numbers: msgpack hands 64-bit integers over as `bigint` and smaller ones as
 * `number`; {@link Int} turns both into a safe-integer `number` (revisions, indexes, terms,
 * counts) and {@link U64} into a `bigint` (member, lease, request ids).
 *
 * Where a schema lives (a change goes there; this file only re-exports):
 * - ./schema/codec.ts: Int, U64, byte strings, error data, the `{ ok } | { err }` reply shape;
 * - ./schema/kv.ts: KV, lease and auth write requests inside a {@link Proposal};
 * - ./schema/raft.ts: raft records, the raft service's endpoints, raft messages, membership;
 * - ./schema/wal.ts: the wal service's endpoints;
 * - ./schema/mvcc.ts: the mvcc service's endpoints (apply, results, range, status, alarms,
 *   HashKV, snapshot files, defragment);
 * - ./schema/watch.ts: the committed event stream, history, watch sessions;
 * - ./schema/lease.ts: the lease table's and the lease service's endpoints;
 * - ./schema/auth.ts: auth requests, who made a request, mvcc.auth;
 * - ./schema/process.ts: health and trace.keep, served by every process;
 * - ./schema/frames.ts: {@link FrameKinds} and the chunk body.
 */
export { EmptyBody, Int, U64 } from "./schema/codec.ts"
export { AuthInfoSchema, MvccAuthBody, MvccAuthReply } from "./schema/auth.ts"
export { Proposal, WriteRequest } from "./schema/kv.ts"
export {
  ConfChangeBody, ConfChangeReply, EntriesBody, EntriesReply, MemberInfo, MembersReply, ProposeBody, ProposeReply, RaftMessage,
  RaftMessagesBody, RaftStatus, ReadIndexBody, ReadIndexReply, TransferBody, TransferReply
} from "./schema/raft.ts"
export { WalAppendBody, WalAppendReply, WalLoadBody, WalLoadReply, WalSnapshotBody, WalSnapshotReply } from "./schema/wal.ts"
export {
  ApplyBody, ApplyResult, ApplyResults, DefragmentReply, HashKvBody, HashKvReply, MvccAlarmsBody, MvccAlarmsReply, MvccChunkBody,
  MvccChunkReply, MvccInstallBody, MvccInstallReply, MvccSnapshotBody, MvccSnapshotInfo, MvccSnapshotReply, MvccStatus, RangeBody,
  RangeReply
} from "./schema/mvcc.ts"
export {
  EventKeyValue, HistoryBody, HistoryReply, MvccEventsBody, PackedRevisions, RevisionEvents, WatchAckBody, WatchCancelBody,
  WatchCloseBody, WatchCreateBody, WatchCtlReply, WatchEvent, WatchLoadBody, WatchOpenBody, WatchOpenReply, WatchPingBody,
  WatchPingReply, WatchProgressBody, WatchResponsesBody, WatchSessionMessage
} from "./schema/watch.ts"
export {
  LeaseKeepAliveBody, LeaseKeepAliveReply, LeaseRecordSchema, LeaseTimeToLiveBody, LeaseTimeToLiveReply, MvccLeaseBody,
  MvccLeaseReply, MvccLeasesBody, MvccLeasesReply
} from "./schema/lease.ts"
export { HealthBody, HealthReply, TraceKeepBody } from "./schema/process.ts"
export { ChunkBody, type FrameKind, FrameKinds } from "./schema/frames.ts"
export type { Index, LeaseId, MemberId, Revision, Term } from "./ids.ts"
