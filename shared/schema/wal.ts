/**
 * Schemas of the wal service's endpoints: append (hard state and entries, acknowledged after
 * fdatasync), load (the WAL's contents in pages, at raft start-up) and snapshot (save a raft
 * snapshot, then release what it covers). Follows etcd server/storage/wal's record kinds.
 */
import * as Schema from "effect/Schema"
import { Bytes, Int, okOrErr, opt } from "./codec.ts"
import { EntrySchema, HardStateSchema, SnapshotSchema } from "./raft.ts"

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
