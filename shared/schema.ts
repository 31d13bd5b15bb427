/**
 * An Effect Schema per frame body, and the table of frame kinds and versions.
 *
 * Receivers decode every body through its schema before acting on it, so a malformed frame
 * becomes a `MalformedFrame` error (replied or counted) and never reaches a core. Decoding also
 * normalises numbers: msgpack hands 64-bit integers over as `bigint` and smaller ones as
 * `number`; {@link Int} turns both into a safe-integer `number` (revisions, indexes, terms,
 * counts) and {@link U64} into a `bigint` (member, lease, request ids).
 */
import { Schema, SchemaGetter } from "effect"
import type { EtcdErrorData } from "./errors.ts"
import type { Index, LeaseId, MemberId, Revision, Term } from "./ids.ts"
import type * as Kv from "./kv.ts"
import type { Entry, HardState, SnapshotMetadata } from "./raft-types.ts"

const NumberOrBigInt = Schema.Union([Schema.Number, Schema.BigInt])

/** A safe integer, sent as msgpack int of any width; decodes to `number`. */
export const Int = NumberOrBigInt.pipe(
  Schema.decodeTo(Schema.Number.check(Schema.isInt()), {
    decode: SchemaGetter.transform((n: number | bigint) => (typeof n === "bigint" ? Number(n) : n)),
    encode: SchemaGetter.transform((n: number) => n)
  })
)

/** An unsigned 64-bit integer (ids), sent as msgpack int of any width; decodes to `bigint`. */
export const U64 = NumberOrBigInt.pipe(
  Schema.decodeTo(Schema.BigInt, {
    decode: SchemaGetter.transform((n: number | bigint) => BigInt(n)),
    encode: SchemaGetter.transform((n: bigint) => n)
  })
)

const Bytes = Schema.Uint8Array
const opt = Schema.optionalKey

// ---------------------------------------------------------------------------------------------
// KV requests (shared/kv.ts), as they travel in proposals and range frames.

const RangeRequest = Schema.Struct({
  key: Bytes,
  rangeEnd: opt(Bytes),
  limit: opt(Int),
  revision: opt(Int),
  sortOrder: opt(Schema.Literals(["NONE", "ASCEND", "DESCEND"])),
  sortTarget: opt(Schema.Literals(["KEY", "VERSION", "CREATE", "MOD", "VALUE"])),
  serializable: opt(Schema.Boolean),
  keysOnly: opt(Schema.Boolean),
  countOnly: opt(Schema.Boolean),
  minModRevision: opt(Int),
  maxModRevision: opt(Int),
  minCreateRevision: opt(Int),
  maxCreateRevision: opt(Int)
})

const PutRequest = Schema.Struct({
  key: Bytes,
  value: Bytes,
  lease: opt(U64),
  prevKv: opt(Schema.Boolean),
  ignoreValue: opt(Schema.Boolean),
  ignoreLease: opt(Schema.Boolean)
})

const DeleteRangeRequest = Schema.Struct({
  key: Bytes,
  rangeEnd: opt(Bytes),
  prevKv: opt(Schema.Boolean)
})

const Compare = Schema.Struct({
  result: Schema.Literals(["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]),
  target: Schema.Literals(["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]),
  key: Bytes,
  rangeEnd: opt(Bytes),
  version: opt(Int),
  createRevision: opt(Int),
  modRevision: opt(Int),
  value: opt(Bytes),
  lease: opt(U64)
})

interface TxnRequestEncoded {
  readonly compare: ReadonlyArray<typeof Compare.Encoded>
  readonly success: ReadonlyArray<RequestOpEncoded>
  readonly failure: ReadonlyArray<RequestOpEncoded>
}
type RequestOpEncoded =
  | { readonly requestRange: typeof RangeRequest.Encoded }
  | { readonly requestPut: typeof PutRequest.Encoded }
  | { readonly requestDeleteRange: typeof DeleteRangeRequest.Encoded }
  | { readonly requestTxn: TxnRequestEncoded }

const RequestOp: Schema.Codec<Kv.RequestOp, RequestOpEncoded> = Schema.Union([
  Schema.Struct({ requestRange: RangeRequest }),
  Schema.Struct({ requestPut: PutRequest }),
  Schema.Struct({ requestDeleteRange: DeleteRangeRequest }),
  Schema.Struct({ requestTxn: Schema.suspend((): Schema.Codec<Kv.TxnRequest, TxnRequestEncoded> => TxnRequest) })
]) as any

const TxnRequest: Schema.Codec<Kv.TxnRequest, TxnRequestEncoded> = Schema.Struct({
  compare: Schema.Array(Compare),
  success: Schema.Array(RequestOp),
  failure: Schema.Array(RequestOp)
}) as any

/** A write request as it travels inside a proposal. */
export const WriteRequest: Schema.Codec<Kv.WriteRequest, unknown> = Schema.Union([
  Schema.Struct({ put: PutRequest }),
  Schema.Struct({ deleteRange: DeleteRangeRequest }),
  Schema.Struct({ txn: TxnRequest }),
  Schema.Struct({ compaction: Schema.Struct({ revision: Int, physical: opt(Schema.Boolean) }) }),
  Schema.Struct({
    alarm: Schema.Struct({
      action: Schema.Literals(["GET", "ACTIVATE", "DEACTIVATE"]),
      memberId: U64,
      alarm: Schema.Literals(["NONE", "NOSPACE", "CORRUPT"])
    })
  })
]) as any

// ---------------------------------------------------------------------------------------------
// Raft records.

const EntrySchema: Schema.Codec<Entry, unknown> = Schema.Struct({
  term: Int,
  index: Int,
  type: Schema.Literals(["Normal", "ConfChange"]),
  data: Bytes
}) as any

/** A raft snapshot: metadata (index, term, configuration) and opaque data. */
const SnapshotSchema: Schema.Codec<{ readonly metadata: SnapshotMetadata; readonly data: Uint8Array }, unknown> = Schema.Struct({
  metadata: Schema.Struct({
    index: Int,
    term: Int,
    confState: Schema.Struct({ voters: Schema.Array(U64), learners: Schema.Array(U64) })
  }),
  data: Bytes
}) as any

const HardStateSchema: Schema.Codec<HardState, unknown> = Schema.Struct({
  term: Int,
  vote: U64,
  commit: Int
}) as any

/** Plain error data as carried in replies; the receiver rebuilds the class with toEtcdError. */
const ErrorData: Schema.Codec<EtcdErrorData, unknown> = Schema.Struct({ _tag: Schema.String }).pipe(
  Schema.check(Schema.makeFilter((e: { _tag: string }) => e._tag.length > 0))
) as any

/** A reply that is either `{ ok: A }` or `{ err: EtcdErrorData }`. */
const okOrErr = <S extends Schema.Top>(ok: S) => Schema.Union([Schema.Struct({ ok }), Schema.Struct({ err: ErrorData })])

// ---------------------------------------------------------------------------------------------
// Frame bodies, one per kind. The reply to kind K is kind `${K}.reply`.

/**
 * A proposal, as the gateway builds it and raft stores it as the data of a Normal entry.
 * `requestId` is unique per gateway instance and reused on retries, so that the mvcc service
 * applies a retried proposal once (see services/mvcc). `replyTo` is the subject the applying
 * member of `origin` publishes the result to; `deadlineMs` is the proposer's wall-clock deadline
 * (ms since the epoch), after which it no longer waits or retries.
 */
export const Proposal = Schema.Struct({
  requestId: U64,
  origin: Schema.String,
  replyTo: Schema.String,
  deadlineMs: Int,
  /** W3C traceparent of the proposing hop, so the apply continues the request's trace. */
  traceparent: Schema.String,
  request: WriteRequest
})
export type Proposal = typeof Proposal.Type

/** raft.propose: the encoded proposal (the raft service never decodes it). */
export const ProposeBody = Schema.Struct({ data: Bytes })
export const ProposeReply = okOrErr(Schema.Struct({ leader: U64 }))

/** raft.readindex: no body fields; the reply is the index to wait for. */
export const ReadIndexBody = Schema.Struct({})
export const ReadIndexReply = okOrErr(Schema.Struct({ index: Int }))

/** raft.status reply (Maintenance.Status's raft part). */
export const RaftStatus = Schema.Struct({
  memberId: U64,
  clusterId: U64,
  leader: U64,
  term: Int,
  commitIndex: Int,
  appliedIndex: Int,
  raftState: Schema.String,
  isLearner: Schema.Boolean,
  /** Peer message counters (services/raft/peers.ts PeerCounters). */
  peers: Schema.Record(Schema.String, Schema.Number)
})
export type RaftStatus = typeof RaftStatus.Type

/** raft.entries: committed entries with index >= `from`, at most about `maxBytes`. */
export const EntriesBody = Schema.Struct({ from: Int, maxBytes: Int })
export const EntriesReply = Schema.Struct({ entries: Schema.Array(EntrySchema), commitIndex: Int })

/**
 * wal.append: what a Ready asks to persist. Reply after fdatasync. `writer` names the raft
 * process run and `seq` numbers its appends from 1: the wal service skips (and acknowledges) an
 * append whose seq is not above the last one it wrote for the same writer, so a duplicated or
 * late retry can never rewrite a suffix that a newer append already replaced.
 */
export const WalAppendBody = Schema.Struct({
  writer: Schema.String,
  seq: Int,
  hardState: opt(HardStateSchema),
  entries: Schema.Array(EntrySchema)
})
export const WalAppendReply = okOrErr(Schema.Struct({ lastIndex: Int }))

/** wal.load: page `page` of the WAL's contents (entries in index order). */
export const WalLoadBody = Schema.Struct({ fromIndex: Int, maxBytes: Int })
export const WalLoadReply = Schema.Struct({
  metadata: Bytes,
  /** The newest raft snapshot the WAL starts from (its entries follow it). */
  snapshot: opt(SnapshotSchema),
  hardState: HardStateSchema,
  entries: Schema.Array(EntrySchema),
  /** True when entries after the last one returned remain. */
  more: Schema.Boolean
})

/**
 * wal.snapshot: save a raft snapshot (file in the member's snap dir, marker in the WAL, sync),
 * then release WAL segments and snapshot files it makes unnecessary.
 */
export const WalSnapshotBody = Schema.Struct({ snapshot: SnapshotSchema })
export const WalSnapshotReply = okOrErr(Schema.Struct({ releasedSegments: Int }))

/** What the mvcc service reports of a snapshot file of its state (mvcc.snapshot reply, mvcc.install body). */
export const MvccSnapshotInfo = Schema.Struct({
  /** The consistent (raft applied) index inside the copy. */
  index: Int,
  /** File name within the member's mvcc snapshot directory. */
  file: Schema.String,
  sizeBytes: Int,
  /** Hex SHA-256 of the file. */
  sha256: Schema.String
})
export type MvccSnapshotInfo = typeof MvccSnapshotInfo.Type

/** mvcc.snapshot: copy the state now (at least at `minIndex`). */
export const MvccSnapshotBody = Schema.Struct({ minIndex: Int })
export const MvccSnapshotReply = okOrErr(MvccSnapshotInfo)

/** mvcc.install: fetch the snapshot file `snapshot` from member `fromMember`'s mvcc service and install it. */
export const MvccInstallBody = Schema.Struct({ fromMember: Schema.String, snapshot: MvccSnapshotInfo })
export const MvccInstallReply = okOrErr(Schema.Struct({ appliedIndex: Int }))

/** mvcc.chunk: `length` bytes of snapshot file `file` from `offset`. */
export const MvccChunkBody = Schema.Struct({ file: Schema.String, offset: Int, length: Int })
export const MvccChunkReply = okOrErr(Schema.Struct({ data: Bytes }))

/** mvcc.defragment: reply once the compacted copy is ready; the service then restarts on it. */
export const DefragmentReply = okOrErr(Schema.Struct({ sizeBytes: Int }))

/** mvcc.hashkv: hash of the key space up to `revision` (0: the current revision). */
export const HashKvBody = Schema.Struct({ revision: Int })
export const HashKvReply = okOrErr(Schema.Struct({ hash: Int, compactRevision: Int, hashRevision: Int, revision: Int }))

/** mvcc.apply: committed entries in index order (first.index = previous frame's last + 1). */
export const ApplyBody = Schema.Struct({ entries: Schema.Array(EntrySchema), commitIndex: Int, term: Int })

/** mvcc.range: a Range served once the member applied at least `minAppliedIndex`. */
export const RangeBody = Schema.Struct({ request: RangeRequest, minAppliedIndex: Int })
export const RangeReply = okOrErr(Schema.Struct({ response: Schema.Unknown, revision: Int, term: Int }))

/** mvcc.status reply. */
export const MvccStatus = Schema.Struct({
  appliedIndex: Int,
  revision: Int,
  compactRevision: Int,
  dbSizeBytes: Int,
  dbSizeInUseBytes: Int
})
export type MvccStatus = typeof MvccStatus.Type

/** gateway.result: the outcome of applying proposal `requestId`. */
export const ApplyResult = Schema.Union([
  Schema.Struct({ requestId: U64, ok: Schema.Struct({ response: Schema.Unknown, revision: Int, term: Int }) }),
  Schema.Struct({ requestId: U64, err: ErrorData })
])
export type ApplyResult = typeof ApplyResult.Type

// ---------------------------------------------------------------------------------------------
// Raft between members, and membership.

/** One raft message (services/raft/core/types.ts Message) as it travels between members. */
export const RaftMessage = Schema.Struct({
  type: Schema.Literals([
    "MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp", "MsgVote", "MsgVoteResp", "MsgSnap",
    "MsgHeartbeat", "MsgHeartbeatResp", "MsgUnreachable", "MsgSnapStatus", "MsgCheckQuorum",
    "MsgTransferLeader", "MsgTimeoutNow", "MsgReadIndex", "MsgReadIndexResp", "MsgPreVote", "MsgPreVoteResp"
  ]),
  to: U64,
  from: U64,
  term: Int,
  logTerm: Int,
  index: Int,
  entries: Schema.Array(EntrySchema),
  commit: Int,
  snapshot: opt(SnapshotSchema),
  reject: Schema.Boolean,
  rejectHint: Int,
  context: Bytes
})

/**
 * raft.msg: the messages one Ready addresses to one member, from member `from` named
 * `fromName` (the receiver checks that the id derives from the name).
 */
export const RaftMessagesBody = Schema.Struct({ from: U64, fromName: Schema.String, messages: Schema.Array(RaftMessage) })

/** A member as MemberList shows it (etcd etcdserverpb.Member). */
export const MemberInfo = Schema.Struct({
  id: U64,
  name: Schema.String,
  peerUrls: Schema.Array(Schema.String),
  clientUrls: Schema.Array(Schema.String),
  isLearner: Schema.Boolean
})
export type MemberInfo = typeof MemberInfo.Type

/** raft.members reply: the membership as this member applied it, and the leader it knows. */
export const MembersReply = Schema.Struct({ members: Schema.Array(MemberInfo), leader: U64, term: Int })

/** raft.confchange: one membership change, served by the leader. */
export const ConfChangeBody = Schema.Struct({
  action: Schema.Literals(["add", "addLearner", "remove", "promote", "update"]),
  memberId: U64,
  peerUrls: Schema.Array(Schema.String)
})
export const ConfChangeReply = okOrErr(Schema.Struct({ member: opt(MemberInfo), members: Schema.Array(MemberInfo), term: Int }))

/** raft.transfer: move leadership to `target`, served by the leader. */
export const TransferBody = Schema.Struct({ target: U64 })
export const TransferReply = okOrErr(Schema.Struct({ term: Int }))

/** Frame kinds and their current versions; a receiver rejects other versions. */
export const FrameKinds = {
  propose: 1,
  "propose.reply": 1,
  readindex: 1,
  "readindex.reply": 1,
  "raft.status": 1,
  "raft.status.reply": 1,
  entries: 1,
  "entries.reply": 1,
  "wal.append": 1,
  "wal.append.reply": 1,
  "wal.load": 1,
  "wal.load.reply": 1,
  apply: 1,
  range: 1,
  "range.reply": 1,
  "mvcc.status": 1,
  "mvcc.status.reply": 1,
  "apply.result": 1,
  "raft.msg": 1,
  "wal.snapshot": 1,
  "wal.snapshot.reply": 1,
  "mvcc.snapshot": 1,
  "mvcc.snapshot.reply": 1,
  "mvcc.install": 1,
  "mvcc.install.reply": 1,
  "mvcc.chunk": 1,
  "mvcc.chunk.reply": 1,
  "mvcc.defragment": 1,
  "mvcc.defragment.reply": 1,
  "raft.members": 1,
  "raft.members.reply": 1,
  confchange: 1,
  "confchange.reply": 1,
  transfer: 1,
  "transfer.reply": 1,
  "mvcc.alarms": 1,
  "mvcc.alarms.reply": 1,
  hashkv: 1,
  "hashkv.reply": 1,
  error: 1
} as const
export type FrameKind = keyof typeof FrameKinds

export type { Index, LeaseId, MemberId, Revision, Term }

// ---------------------------------------------------------------------------------------------
// mvcc alarms.

/**
 * mvcc.alarms: the member's active alarms as its store holds them (a local read, for
 * Maintenance.Status `errors`; Maintenance.Alarm goes through raft). Body: no fields.
 */
export const MvccAlarmsBody = Schema.Struct({})
export const MvccAlarmsReply = Schema.Struct({
  alarms: Schema.Array(Schema.Struct({ memberId: U64, alarm: Schema.Literals(["NONE", "NOSPACE", "CORRUPT"]) }))
})
