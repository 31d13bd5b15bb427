/**
 * HashKV: a hash of the member's key space up to a revision, for comparing members (etcd
 * server/storage/mvcc/hash.go, in spirit). It is a CRC-32 over the bucket name and every
 * revision-keyed record (key and value bytes) with main revision <= the requested one, in
 * revision order. Members that applied the same log hold the same records (compaction removes
 * the same ones everywhere), so equal hashes mean equal key spaces. The value is natcd's own:
 * it is not comparable with etcd's hash of its bbolt records.
 */
import { crc32 } from "node:zlib"
import type { BackendReadTx } from "./core/backend.ts"
import { mainPrefix } from "./core/revision.ts"

const chunkRecords = 10_000

/** The hash of records with main revision <= `revision`. */
export const hashKv = (read: BackendReadTx, revision: number): number => {
  let crc = crc32(Buffer.from("key"))
  const end = mainPrefix(revision + 1)
  let start: Uint8Array = new Uint8Array(0)
  for (;;) {
    const records = read.range("key", start, end, chunkRecords)
    for (const { key, value } of records) {
      crc = crc32(key, crc)
      crc = crc32(value, crc)
    }
    if (records.length < chunkRecords) return crc >>> 0
    const last = records[records.length - 1]!.key
    start = new Uint8Array(last.length + 1)
    start.set(last)
  }
}
