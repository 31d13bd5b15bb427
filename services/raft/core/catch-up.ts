/**
 * Where the in-memory log is compacted after a snapshot: the entries kept before the snapshot
 * index for slow followers (the catch-up entries), bounded by a count, as etcd, and by bytes of
 * entry data, which natcd adds.
 *
 * Follows etcd server/etcdserver/server.go (`snapshot` then `raftStorage.Compact(snapi -
 * SnapshotCatchUpEntries)`). natcd departs from it: etcd's bound is a count only (5000 entries),
 * which with etcd's own 1.5 MiB request limit could keep 7.5 GB in memory; natcd also stops at a
 * byte bound, so large values cost a slow follower a snapshot sooner instead of costing every
 * member memory. A follower that needs a compacted entry gets a snapshot, as in etcd.
 *
 * Worked example: snapshot at 10, log in memory from 4, entry data sizes in bytes:
 *
 *     index   4   5   6   7   8   9   10
 *     bytes   1   1   1   5   2   2   3       limits: 5 entries, 8 bytes
 *
 * The count alone keeps 6..10 (compact at 5). Walking down from 10: 3, +2 = 5, +2 = 7, then 7
 * would make 12 > 8, so the bytes keep 8..10 only: compact at 7, the larger of the two.
 */
import type { Entry } from "../../../shared/raft-types.ts"

/** How much of the log to keep before a snapshot for slow followers. */
export interface CatchUpLimits {
  /** At most this many entries (etcd SnapshotCatchUpEntries). */
  readonly entries: number
  /** At most this many bytes of entry data (the sum of `data.byteLength`; natcd's own bound). */
  readonly bytes: number
}

/**
 * The index to compact the in-memory log at after a snapshot at `snapshotIndex`: the smallest
 * index c such that the kept entries (c, snapshotIndex] number at most `limits.entries` and hold
 * at most `limits.bytes` of entry data; that is, max(snapshotIndex - entries, the first index
 * whose following entries fit in the bytes). c may be snapshotIndex itself when the entry at
 * the snapshot alone exceeds the bytes (nothing is kept before the snapshot).
 *
 * `log` is the log in memory up to the snapshot, [firstIndex, snapshotIndex]: ascending,
 * contiguous, ending at the snapshot index. Returns undefined when nothing should be dropped
 * (c would be below the first index, e.g. `log` is empty); otherwise c, with
 * firstIndex <= c <= snapshotIndex, for MemoryStorage.compact.
 */
export const catchUpCompactIndex = (log: ReadonlyArray<Pick<Entry, "index" | "data">>, limits: CatchUpLimits): number | undefined => {
  if (log.length === 0) return undefined
  const firstIndex = log[0]!.index
  const snapshotIndex = log[log.length - 1]!.index
  // Entries at or below `floor` are never kept: below the log, or beyond the count.
  const floor = Math.max(firstIndex - 1, snapshotIndex - limits.entries)
  let c = snapshotIndex
  let keptBytes = 0
  while (c > floor) {
    const size = log[c - firstIndex]!.data.byteLength
    if (keptBytes + size > limits.bytes) break
    keptBytes += size
    c--
  }
  return c >= firstIndex ? c : undefined
}
