/**
 * Schemas of the mvcc service's endpoints: committed entries in (mvcc.apply), apply results out
 * to proposers (apply.result), reads (mvcc.range), status and alarms, HashKV, and the snapshot
 * files of its state (snapshot, chunk, install) and defragment. Watch's event stream and
 * history (./watch.ts), leases (./lease.ts) and auth (./auth.ts) have their own files.
 */
import * as Schema from "effect/Schema"
import { AuthInfoSchema } from "./auth.ts"
import { Bytes, EmptyBody, ErrorData, Int, okOrErr, U64 } from "./codec.ts"
import { RangeRequest } from "./kv.ts"
import { EntrySchema } from "./raft.ts"

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


/**
 * mvcc.alarms: the member's active alarms as its store holds them (a local read, for
 * Maintenance.Status `errors`; Maintenance.Alarm goes through raft). Body: no fields.
 */
export const MvccAlarmsBody = EmptyBody
export const MvccAlarmsReply = Schema.Struct({
  alarms: Schema.Array(Schema.Struct({ memberId: U64, alarm: Schema.Literals(["NONE", "NOSPACE", "CORRUPT"]) }))
})
