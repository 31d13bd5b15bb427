/**
 * HashKV: a hash of the member's key space up to a revision, for comparing members (etcd
 * server/storage/mvcc/hash.go, in spirit). It is a CRC-32 over the bucket name and every
 * revision-keyed record (key and value bytes) of the key space with main revision <= the
 * requested one, in revision order. Members that applied the same log hold the same key space,
 * so equal hashes mean equal key spaces. The value is natcd's own: it is not comparable with
 * etcd's hash of its bbolt records.
 *
 * A compaction's dropped records leave the backend in background batches (./apply.ts), so two
 * members at the same revision may hold different garbage for a while. As etcd 3.4's
 * HashByRev ("skip revisions that are scheduled for deletion due to compacting", using
 * kvindex.Keep), records the compaction dropped are left out: `live` (KvStore.isLiveRecord)
 * says which records the index still holds. The hash is therefore the one of the fully
 * compacted store, whatever the progress of the deletion, and equals the hash natcd computed
 * before compaction ran in the background. natcd filters with the index (the revisions the
 * compaction keeps) instead of etcd's Keep(rev), which also leaves out kept records that a
 * later revision <= rev superseded; the result only has to agree between natcd members.
 */
import { crc32 } from "node:zlib"
import type { BackendReadTx } from "./core/backend.ts"
import { mainPrefix } from "./core/revision.ts"

const chunkRecords = 10_000

/**
 * The hash of the key space's records with main revision <= `revision`: records for which
 * `live` is false (waiting for a compaction's deletion) are skipped.
 */
export const hashKv = (read: BackendReadTx, revision: number, live: (bucketKey: Uint8Array, value: Uint8Array) => boolean): number => {
  let crc = crc32(Buffer.from("key"))
  const end = mainPrefix(revision + 1)
  let start: Uint8Array = new Uint8Array(0)
  for (;;) {
    const records = read.range("key", start, end, chunkRecords)
    for (const { key, value } of records) {
      if (!live(key, value)) continue
      crc = crc32(key, crc)
      crc = crc32(value, crc)
    }
    if (records.length < chunkRecords) return crc >>> 0
    const last = records[records.length - 1]!.key
    start = new Uint8Array(last.length + 1)
    start.set(last)
  }
}
