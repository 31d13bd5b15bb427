/**
 * An Effect Schema per frame body, and the table of frame kinds and versions.
 *
 * Receivers decode every body through its schema before acting on it, so a malformed frame
 * becomes a `MalformedFrame` error (replied or counted) and never reaches a core. Decoding also
 * normalises numbers: msgpack hands 64-bit integers over as `bigint` and smaller ones as
 * `number`; {@link Int} turns both into a safe-integer `number` (revisions, indexes, terms,
 * counts) and {@link U64} into a `bigint` (member, lease, request ids).
 */
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import type { EtcdErrorData } from "./errors.ts"
import type { Index, LeaseId, MemberId, Revision, Term } from "./ids.ts"
import type * as Auth from "./auth.ts"
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

// ---------------------------------------------------------------------------------------------
// Auth (shared/auth.ts).

const PermissionSchema = Schema.Struct({
  permType: Schema.Literals(["READ", "WRITE", "READWRITE"]),
  key: Bytes,
  rangeEnd: Bytes
})

/** Who made a request, as its member resolved it (shared/auth.ts AuthInfo). */
export const AuthInfoSchema = Schema.Struct({ username: Schema.String, revision: Int })

const Empty = Schema.Struct({})

/** An Auth request as proposed (shared/auth.ts AuthRequest). */
const AuthRequestSchema: Schema.Codec<Auth.AuthRequest, unknown> = Schema.Union([
  Schema.Struct({ authEnable: Empty }),
  Schema.Struct({ authDisable: Empty }),
  Schema.Struct({ authStatus: Empty }),
  Schema.Struct({ authenticate: Schema.Struct({ name: Schema.String, simpleToken: Schema.String }) }),
  Schema.Struct({ userAdd: Schema.Struct({ name: Schema.String, hashedPassword: Schema.String, noPassword: Schema.Boolean }) }),
  Schema.Struct({ userGet: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ userList: Empty }),
  Schema.Struct({ userDelete: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ userChangePassword: Schema.Struct({ name: Schema.String, hashedPassword: Schema.String }) }),
  Schema.Struct({ userGrantRole: Schema.Struct({ user: Schema.String, role: Schema.String }) }),
  Schema.Struct({ userRevokeRole: Schema.Struct({ name: Schema.String, role: Schema.String }) }),
  Schema.Struct({ roleAdd: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ roleGet: Schema.Struct({ role: Schema.String }) }),
  Schema.Struct({ roleList: Empty }),
  Schema.Struct({ roleDelete: Schema.Struct({ role: Schema.String }) }),
  Schema.Struct({ roleGrantPermission: Schema.Struct({ name: Schema.String, perm: PermissionSchema }) }),
  Schema.Struct({ roleRevokePermission: Schema.Struct({ role: Schema.String, key: Bytes, rangeEnd: Bytes }) })
]) as any

/** A write request as it travels inside a proposal. */
export const WriteRequest: Schema.Codec<Kv.WriteRequest | Kv.LeaseWriteRequest | Auth.AuthWriteRequest, unknown> = Schema.Union([
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
  }),
  // Leases (shared/kv.ts LeaseWriteRequest).
  Schema.Struct({ leaseGrant: Schema.Struct({ id: U64, ttl: Int, minTtl: Int }) }),
  Schema.Struct({ leaseRevoke: Schema.Struct({ id: U64 }) }),
  Schema.Struct({ leaseCheckpoint: Schema.Struct({ checkpoints: Schema.Array(Schema.Struct({ id: U64, remainingTtl: Int })) }) }),
  // Auth (shared/auth.ts AuthWriteRequest).
  Schema.Struct({ auth: AuthRequestSchema })
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

/**
 * Plain error data as carried in replies: a map with a non-empty string `_tag` and the error's
 * fields, all kept (a Struct of `_tag` alone would drop them, e.g. an AuthError's `code`); the
 * receiver rebuilds the class with toEtcdError.
 */
const ErrorData: Schema.Codec<EtcdErrorData, unknown> = Schema.Record(Schema.String, Schema.Unknown).pipe(
  Schema.check(Schema.makeFilter((e: Record<string, unknown>) => typeof e._tag === "string" && e._tag.length > 0))
) as any

/** A reply that is either `{ ok: A }` or `{ err: EtcdErrorData }`. */
const okOrErr = <S extends Schema.Top>(ok: S) => Schema.Union([Schema.Struct({ ok }), Schema.Struct({ err: ErrorData })])

/**
 * A body with no fields (status, members, defragment requests): any map (fields ignored), but a
 * map; `Schema.Struct({})` would take a string or a number too.
 */
export const EmptyBody = Schema.Record(Schema.String, Schema.Unknown)

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
  request: WriteRequest,
  /**
   * Who made the request, as the proposing gateway resolved it (etcd RequestHeader username and
   * auth_revision); the apply checks its permissions with it. Absent on the system's own
   * proposals (lease expiry, checkpoints, auto compaction), which are not checked.
   */
  authInfo: opt(AuthInfoSchema)
})
export type Proposal = typeof Proposal.Type

/**
 * raft.propose: encoded proposals, in the order they are to be appended (the raft service never
 * decodes them). A gateway sends the proposals of one event-loop turn in one frame; the reply
 * covers them all: ok once every one was handed to raft, or an error (NoLeader) from the first
 * one refused on, in which case the earlier ones may still commit (the proposer retries them
 * all with their request ids, so none is applied twice).
 */
export const ProposeBody = Schema.Struct({ proposals: Schema.Array(Bytes) })
export const ProposeReply = okOrErr(Schema.Struct({ leader: U64 }))

/** raft.readindex: no body fields; the reply is the index to wait for. */
export const ReadIndexBody = EmptyBody
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
  peers: Schema.Record(Schema.String, Schema.Number),
  /**
   * Whether the cluster's membership holds this member's name (its attributes were published
   * through raft, etcd's publish); the member's gateway serves clients only then, as etcd
   * serves them only once its publish is done (ReadyNotify).
   */
  published: opt(Schema.Boolean)
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

/**
 * mvcc.range: Ranges (a gateway's reads of one event-loop turn), each served once the member
 * applied at least its `minAppliedIndex`.
 */
export const RangeBody = Schema.Struct({
  requests: Schema.Array(Schema.Struct({
    request: RangeRequest,
    minAppliedIndex: Int,
    /** Who reads (shared/auth.ts AuthInfo): checked for READ on the range while auth is enabled. */
    authInfo: AuthInfoSchema
  }))
})
/**
 * One Range's result: the response with its header's revision and term, an error, or `retry`
 * when it did not fit the reply frame beside the others (ask again alone).
 */
const RangeResult = Schema.Union([
  Schema.Struct({ ok: Schema.Struct({ response: Schema.Unknown, revision: Int, term: Int }) }),
  Schema.Struct({ err: ErrorData }),
  Schema.Struct({ retry: Schema.Literal(true) })
])
/** mvcc.range reply: one result per request, in order. */
export const RangeReply = okOrErr(Schema.Struct({ results: Schema.Array(RangeResult) }))

/** mvcc.status reply. */
export const MvccStatus = Schema.Struct({
  appliedIndex: Int,
  revision: Int,
  compactRevision: Int,
  dbSizeBytes: Int,
  dbSizeInUseBytes: Int
})
export type MvccStatus = typeof MvccStatus.Type

/** The outcome of applying proposal `requestId`. */
export const ApplyResult = Schema.Union([
  Schema.Struct({ requestId: U64, ok: Schema.Struct({ response: Schema.Unknown, revision: Int, term: Int }) }),
  Schema.Struct({ requestId: U64, err: ErrorData })
])
export type ApplyResult = typeof ApplyResult.Type

/**
 * apply.result (to a proposer's result subject): the outcomes of the proposals of one applied
 * batch that this subject's proposer made, in index order.
 */
export const ApplyResults = Schema.Struct({ results: Schema.Array(ApplyResult) })

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

// ---------------------------------------------------------------------------------------------
// Watch: the committed event stream (mvcc -> watch replicas), history catch-up, and the watch
// sessions between gateways and watch replicas (services/watch, services/mvcc/events.ts).

/** A key-value pair as events carry it (etcd mvccpb.KeyValue). */
export const EventKeyValue = Schema.Struct({
  key: Bytes,
  createRevision: Int,
  modRevision: Int,
  version: Int,
  value: Bytes,
  lease: U64
})

/** One key change (etcd mvccpb.Event); `prevKv` only where the sender filled it. */
export const WatchEvent = Schema.Struct({
  type: Schema.Literals(["PUT", "DELETE"]),
  kv: EventKeyValue,
  prevKv: opt(EventKeyValue)
})
export type WatchEvent = typeof WatchEvent.Type

/** The events of one main revision (one write request), in sub-revision order. */
export const RevisionEvents = Schema.Struct({ rev: Int, events: Schema.Array(WatchEvent) })
export type RevisionEvents = typeof RevisionEvents.Type

/**
 * The `revs` payload of {@link MvccEventsBody} and {@link HistoryReply}: contiguous revisions in
 * order, msgpack-packed on their own so that a receiver that already has them (a watch replica
 * gets every member's copy) skips decoding them.
 */
export const PackedRevisions = Schema.Array(RevisionEvents)

/**
 * mvcc.events (publish): the revisions `fromRev`..`head` one applied batch produced, with
 * `prevKv` filled for every event that replaced or deleted a version. A heartbeat (sent when
 * idle) has no revisions and `fromRev` = `head` + 1. `compactRev` is the store's compact
 * revision (-1 before the first compaction), `term` the raft term of the last applied batch.
 */
export const MvccEventsBody = Schema.Struct({
  member: Schema.String,
  term: Int,
  head: Int,
  compactRev: Int,
  fromRev: Int,
  revs: Bytes
})

/**
 * mvcc.history: the revisions `fromRev`..`toRev` (inclusive) read from the backend, whole
 * revisions only, stopping after the first revision that brings the payload to `maxBytes`.
 * With `prevKv` each non-create event carries the version before it (etcd fills it the same
 * way, by a range at mod_revision - 1). Error: Compacted when `fromRev` < compact revision.
 */
export const HistoryBody = Schema.Struct({ fromRev: Int, toRev: Int, maxBytes: Int, prevKv: Schema.Boolean })
/** `toRev`: the last revision included (fromRev - 1 when none); `head`: the store revision. */
export const HistoryReply = okOrErr(Schema.Struct({ head: Int, compactRev: Int, term: Int, toRev: Int, revs: Bytes }))

/**
 * watch.open (queue group): gateway asks some replica to hold watch session `session`, whose
 * responses go to subject `gateway`. Idempotent per session id. `windowBytes`: the most
 * unacknowledged response bytes the gateway wants in flight for it (its own budget shared by
 * its streams). `clusterId` and `memberId`: the ids the responses' headers carry (the gateway's
 * member); `maxRequestBytes`: the fragment limit of the stream (the gateway's --max-request-bytes).
 */
export const WatchOpenBody = Schema.Struct({
  session: Schema.String,
  gateway: Schema.String,
  windowBytes: opt(Int),
  clusterId: opt(U64),
  memberId: opt(U64),
  maxRequestBytes: opt(Int)
})
export const WatchOpenReply = okOrErr(Schema.Struct({ replica: Schema.String, head: Int }))

/**
 * watch.create: a watcher with the gateway-assigned id `watchId` (unique in its session).
 * `rangeEnd` absent: the single key; empty: every key >= key; else [key, rangeEnd).
 * `startRevision` 0: from the replica's head + 1. Idempotent per (session, watchId).
 */
export const WatchCreateBody = Schema.Struct({
  session: Schema.String,
  watchId: Int,
  key: Bytes,
  rangeEnd: opt(Bytes),
  startRevision: Int,
  prevKv: Schema.Boolean,
  noPut: Schema.Boolean,
  noDelete: Schema.Boolean,
  progressNotify: Schema.Boolean,
  fragment: opt(Schema.Boolean)
})
/** watch.cancel: remove watcher `watchId` of `session` (its canceled response follows on the session). */
export const WatchCancelBody = Schema.Struct({ session: Schema.String, watchId: Int })
/** watch.progress: a progress request for every watcher of `session`. */
export const WatchProgressBody = Schema.Struct({ session: Schema.String })
/** watch.close: the gateway's stream ended; drop the session. */
export const WatchCloseBody = Schema.Struct({ session: Schema.String })
/** Reply of create, cancel, progress: `unknown` when the replica does not hold the session. */
export const WatchCtlReply = okOrErr(Schema.Struct({ known: Schema.Boolean }))
/** watch.ack (publish): the gateway has written every response message up to `seq` to its client. */
export const WatchAckBody = Schema.Struct({ session: Schema.String, seq: Int })
/** watch.ping: the sessions gateway `gateway` holds on this replica, with their acked seqs and windows (bytes). */
export const WatchPingBody = Schema.Struct({
  gateway: Schema.String,
  sessions: Schema.Array(Schema.Struct({ session: Schema.String, acked: Int, windowBytes: opt(Int) }))
})
/**
 * The pinged sessions the replica does not hold (lost or never opened); `draining` once the
 * replica is handing its sessions over (it is stopping): the gateway moves them elsewhere.
 */
export const WatchPingReply = Schema.Struct({ unknown: Schema.Array(Schema.String), draining: opt(Schema.Boolean) })
/**
 * watch.load (publish, every second and at once when it starts or stops taking sessions): the
 * load of replica `replica` (the subject's replica token, which the publisher's permission
 * binds; a body naming another is dropped), by which gateways place new sessions: the
 * `sessions` it holds, the response bytes in flight to gateways (`unackedBytes`), `draining`
 * once it takes no new sessions and hands its own over (SIGTERM).
 */
export const WatchLoadBody = Schema.Struct({ replica: Schema.String, sessions: Int, unackedBytes: Int, draining: Schema.Boolean })

/**
 * gateway.watch.<instance> (publish): message `seq` (1, 2, ... per session, no gaps: a gap
 * means a lost message and the gateway moves the session) of session `session`. `marks` and
 * `responses`: the responses, as the client's stream receives them, packed as
 * shared/watch-relay.ts describes (the gateway relays their bytes as they are).
 */
export const WatchResponsesBody = Schema.Struct({
  session: Schema.String,
  replica: Schema.String,
  seq: Int,
  marks: Bytes,
  responses: Bytes
})

/**
 * A piece of a frame too large for one NATS message (shared/chunks.ts): the `stream` number of
 * the chunked frame, piece `seq` of `count`, the whole encoding's `size` in bytes, and the bytes.
 */
export const ChunkBody = Schema.Struct({ stream: Int, seq: Int, count: Int, size: Int, bytes: Bytes })

/** Frame kinds and their current versions; a receiver rejects other versions. */
export const FrameKinds = {
  propose: 2,
  "propose.reply": 1,
  readindex: 1,
  "readindex.reply": 1,
  "raft.status": 1,
  "raft.status.reply": 1,
  "raft.state": 1,
  entries: 1,
  "entries.reply": 1,
  "wal.append": 1,
  "wal.append.reply": 1,
  "wal.load": 1,
  "wal.load.reply": 1,
  apply: 1,
  range: 3,
  "range.reply": 2,
  "mvcc.status": 1,
  "mvcc.status.reply": 1,
  "apply.result": 2,
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
  "mvcc.leases": 1,
  "mvcc.leases.reply": 1,
  "mvcc.lease": 1,
  "mvcc.lease.reply": 1,
  "lease.keepalive": 1,
  "lease.keepalive.reply": 1,
  "lease.timetolive": 1,
  "lease.timetolive.reply": 1,
  hashkv: 1,
  "hashkv.reply": 1,
  "mvcc.events": 1,
  "mvcc.history": 1,
  "mvcc.history.reply": 1,
  "watch.open": 1,
  "watch.open.reply": 1,
  "watch.create": 1,
  "watch.create.reply": 1,
  "watch.cancel": 1,
  "watch.cancel.reply": 1,
  "watch.progress": 1,
  "watch.progress.reply": 1,
  "watch.close": 1,
  "watch.ack": 1,
  "watch.ping": 1,
  "watch.ping.reply": 1,
  "watch.load": 1,
  "watch.responses": 2,
  health: 1,
  "health.reply": 1,
  "trace.keep": 1,
  "mvcc.auth": 1,
  "mvcc.auth.reply": 1,
  chunk: 1,
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
export const MvccAlarmsBody = EmptyBody
export const MvccAlarmsReply = Schema.Struct({
  alarms: Schema.Array(Schema.Struct({ memberId: U64, alarm: Schema.Literals(["NONE", "NOSPACE", "CORRUPT"]) }))
})

// ---------------------------------------------------------------------------------------------
// Leases: the mvcc service's lease table (services/mvcc/lease-table.ts) and the lease service
// (services/lease).

/** A lease of the applied table: TTL and checkpointed remaining TTL in seconds, raft index of its grant. */
export const LeaseRecordSchema = Schema.Struct({ id: U64, ttl: Int, remainingTtl: Int, grantIndex: Int })

/**
 * mvcc.leases: the lease table's changes after raft index `sinceIndex` (0: the whole table),
 * served once the member applied `minAppliedIndex`. Reply: `appliedIndex` the changes are
 * complete up to; `full` when `leases` is the whole table; `removed` the leases revoked since.
 */
export const MvccLeasesBody = Schema.Struct({ sinceIndex: Int, minAppliedIndex: Int })
export const MvccLeasesReply = Schema.Struct({
  appliedIndex: Int,
  full: Schema.Boolean,
  leases: Schema.Array(LeaseRecordSchema),
  removed: Schema.Array(U64)
})

/**
 * mvcc.lease: one lease (and with `keys` its attached keys, sorted) once the member applied
 * `minAppliedIndex`. `lease` absent: no such lease. `revision`/`term`: for response headers.
 */
export const MvccLeaseBody = Schema.Struct({ id: U64, keys: Schema.Boolean, minAppliedIndex: Int })
export const MvccLeaseReply = Schema.Struct({
  lease: opt(LeaseRecordSchema),
  keys: Schema.Array(Bytes),
  revision: Int,
  term: Int
})

/**
 * lease.keepalive: renew lease `id` (etcd LeaseRenew), served by the leader's lease service; a
 * follower's forwards it (`forwarded` is set on the forwarded copy, which is never forwarded
 * again). Reply: the lease's TTL in seconds. Errors: LeaseNotFound, NoLeader, NotLeader.
 */
export const LeaseKeepAliveBody = Schema.Struct({ id: U64, forwarded: Schema.Boolean })
export const LeaseKeepAliveReply = okOrErr(Schema.Struct({ ttl: Int }))

/**
 * lease.timetolive: granted TTL and remaining TTL (seconds, truncated as etcd's) of lease `id`,
 * with its attached keys when `keys`; served by the leader's lease service (forwarded like
 * keep-alives). Error: LeaseNotFound (the gateway answers TTL -1, as etcd).
 */
export const LeaseTimeToLiveBody = Schema.Struct({ id: U64, keys: Schema.Boolean, forwarded: Schema.Boolean })
export const LeaseTimeToLiveReply = okOrErr(Schema.Struct({ grantedTtl: Int, ttl: Int, keys: Schema.Array(Bytes) }))

// ---------------------------------------------------------------------------------------------
// Observability (services/runtime/observability.ts).

/**
 * health: a service process's health over NATS (`natcd.<cluster>.<member>.<service>.health`),
 * asked by its member's gateway for `etcdctl endpoint health`. Body: `ready` to run the
 * readiness checks as well as the liveness ones. Reply: `healthy`, and the failed checks'
 * reasons.
 */
export const HealthBody = Schema.Struct({ ready: Schema.Boolean })
/** `instance`: the answering process's instance token (its per-process subjects and inbox end with it). */
export const HealthReply = Schema.Struct({ healthy: Schema.Boolean, reasons: Schema.Array(Schema.String), instance: opt(Schema.String) })

/**
 * trace.keep (publish, `natcd.<cluster>.trace.keep`): keep every span of trace `traceId` that a
 * process holds unsampled (tail sampling of a slow request; services/runtime/tracing.ts).
 */
export const TraceKeepBody = Schema.Struct({ traceId: Schema.String })

// ---------------------------------------------------------------------------------------------
// Auth: the mvcc service's auth store and token provider (services/mvcc/auth-endpoint.ts).

/**
 * mvcc.auth: the auth questions a gateway asks its member, answered from the applied auth
 * store once it applied `minAppliedIndex` (0: at once):
 * - `infos`: who requests are made by (etcd AuthInfoFromCtx/AuthInfoFromTLS), for the callers
 *   a gateway resolves in one event-loop turn: per item, the user a `token` names (null when it
 *   names none: InvalidAuthToken), or the `commonName` of a verified client certificate, with
 *   the auth revision to check against;
 * - `checkPassword`: etcd CheckPassword, before an Authenticate is proposed: the auth revision
 *   the password was checked at, or AuthNotEnabled, AuthFailed, NoPasswordUser;
 * - `check`: whether `authInfo` may read the range (a Watch creation, a TimeToLive with keys:
 *   etcd IsRangePermitted) or is an admin (Maintenance: etcd IsAdminPermitted).
 */
export const MvccAuthBody = Schema.Union([
  Schema.Struct({ infos: Schema.Array(Schema.Union([Schema.Struct({ token: Schema.String }), Schema.Struct({ commonName: Schema.String })])) }),
  Schema.Struct({ checkPassword: Schema.Struct({ name: Schema.String, password: Schema.String, minAppliedIndex: Int }) }),
  Schema.Struct({
    check: Schema.Struct({
      authInfo: AuthInfoSchema,
      minAppliedIndex: Int,
      ranges: opt(Schema.Array(Schema.Struct({ key: Bytes, rangeEnd: opt(Bytes) }))),
      admin: opt(Schema.Boolean)
    })
  })
])
/** The answer: `infos` (in the request's order) for infos, `revision` for checkPassword, nothing for check; or an error (AuthError). */
export const MvccAuthReply = okOrErr(Schema.Struct({
  infos: opt(Schema.Array(Schema.NullOr(AuthInfoSchema))),
  revision: opt(Int)
}))
