/**
 * The physical part of a compaction: deleting, in batches and after the compaction was
 * applied, the key-bucket records that the compacted index no longer holds. This module holds
 * the pure decisions (which records are garbage, where a batch starts and ends); the store
 * (./store.ts) keeps the scan position and writes through the shell's transaction, and the
 * shell (../apply.ts) decides when a batch runs and commits it.
 *
 * Follows etcd 3.4 mvcc/kvstore_compaction.go (scheduleCompaction): after a compaction at rev
 * is applied, records with main revision <= rev are read in revision order, `limit` at a time
 * (--experimental-compaction-batch-limit), and each one the compaction does not keep is
 * deleted; when a read returns fewer than `limit` records, finishedCompactRev = rev is written
 * in that same batch.
 *
 * natcd decides "does the compaction keep it" with the index itself ({@link isLiveRecord})
 * rather than with etcd's `keep` map captured at compaction time. The two agree: once the
 * index is compacted at rev it holds, at or below rev, exactly the revisions the compaction
 * keeps, and later writes only add revisions above rev. Using the index keeps no extra map in
 * memory, gives the same answer after a restart (the index is rebuilt and compacted again),
 * and covers a second compaction applied while the first one's deletion is still running:
 * the scan then restarts from the first record with the new revision, as etcd runs a second
 * scheduleCompaction from the start after the first. A restart rescans only what is left at or
 * below the revision (about one record per key once the garbage is gone); compactions arriving
 * faster than one scan takes only postpone finishedCompactRev, never what reads see.
 *
 * Invariant kept by scanning in revision order (which a crash mid-scan relies on): at any
 * moment, the records left of each key are a suffix of that key's history (every garbage
 * record of a key is older than every record the compaction keeps of it, and deletion goes
 * oldest first), so rebuilding the index from the backend and compacting it again
 * (KvStore.restore) gives the index the compaction produced. Deleting out of order could leave
 * a put whose later tombstone is gone, and a restart would bring the key back.
 */
import { toKeyString } from "./key-bytes.ts"
import { decodeKey } from "./kv-codec.ts"
import { bytesToRev, mainPrefix } from "./revision.ts"
import type { TreeIndex } from "./tree-index.ts"

/** One record of the key bucket: its 17/18-byte bucket key and its encoded KeyValue. */
export interface KeyRecord {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

/**
 * True when the record under bucket key `bucketKey` (value `value`) belongs to the key space,
 * i.e. the index holds its revision. Records above the last compaction always do; at or below
 * it only the ones the compaction keeps do, the rest wait for deletion.
 */
export const isLiveRecord = (index: TreeIndex, bucketKey: Uint8Array, value: Uint8Array): boolean =>
  index.holds(toKeyString(decodeKey(value)), bytesToRev(bucketKey))

/**
 * The bucket keys among `records` that a compaction batch deletes: those whose revision the
 * index does not hold. `records` must all have main revision <= the compact revision the index
 * was compacted at (above it every record is live, and this function would say so too).
 */
export const planCompactionBatch = (index: TreeIndex, records: ReadonlyArray<KeyRecord>): Uint8Array[] =>
  records.filter((r) => !isLiveRecord(index, r.key, r.value)).map((r) => r.key)

/** The exclusive end of a compaction at `revision`: every bucket key of main revision <= it sorts below. */
export const compactionEnd = (revision: number): Uint8Array => mainPrefix(revision + 1)

/** The smallest bucket key above `key` (where the next batch starts): key followed by a zero byte. */
export const nextScanKey = (key: Uint8Array): Uint8Array => {
  const out = new Uint8Array(key.length + 1)
  out.set(key)
  return out
}

/**
 * The state of a physical compaction in progress: the compact revision whose garbage is being
 * deleted and the bucket key the next batch starts at. Invariant: every record below `next`
 * with main revision <= `revision` is live (held by the index).
 */
export interface CompactionScan {
  readonly revision: number
  readonly next: Uint8Array
}

/** What one batch did: records read and deleted, and whether the compaction finished with it. */
export interface CompactionBatch {
  /** The compact revision the batch worked for; undefined when no compaction was pending. */
  readonly revision: number | undefined
  readonly scanned: number
  readonly deleted: number
  /** True when no compaction is pending any more (finishedCompactRev was written by this batch, or none was pending). */
  readonly done: boolean
}
