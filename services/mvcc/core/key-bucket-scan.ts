/**
 * Walks of the backend's key bucket in revision order, the two readers that go past the key
 * index: rebuilding the index at start ({@link restoreIndex}, etcd kvstore.go restore /
 * restoreIntoIndex) and replaying revisions as events ({@link unsafeReadEvents}, etcd
 * watchable_store.go syncWatchers). Both read in chunks of {@link chunkRecords} records. Pure:
 * no IO but the read transaction given; the store (./store.ts) decides when they run.
 */
import { Revision } from "../../../shared/ids.ts"
import type { BackendReadTx } from "./backend.ts"
import { toKeyString } from "./key-bytes.ts"
import { KeyIndex } from "./key-index.ts"
import { decodeKeyValue } from "./kv-codec.ts"
import { bytesToRev, isTombstone, mainPrefix, revToBytes } from "./revision.ts"
import type { TreeIndex } from "./tree-index.ts"
import type { MvccEvent } from "./write-txn.ts"

/** Records read per backend range call during restore and event reads. */
const chunkRecords = 10_000

/**
 * Rebuilds `index` (empty) from every record of the key bucket, read in revision order
 * (etcd restore / restoreIntoIndex). Returns the highest main revision read (1 for an empty
 * bucket). Throws on a corrupt backend (revisions out of order).
 */
export const restoreIndex = (tx: BackendReadTx, index: TreeIndex): number => {
  let currentRev = 1
  let start = revToBytes({ main: 1, sub: 0 })
  for (;;) {
    const records = tx.range("key", start, undefined, chunkRecords)
    for (const { key: bucketKey, value } of records) {
      const r = bytesToRev(bucketKey)
      if (r.main < currentRev) throw new Error(`restore: revision ${r.main} below previous ${currentRev}`)
      currentRev = r.main
      const kv = decodeKeyValue(value)
      const key = toKeyString(kv.key)
      const tomb = isTombstone(bucketKey)
      const ki = index.keyIndex(key)
      if (ki !== undefined) {
        // A tombstone on an already-deleted key cannot be written by natcd; etcd only warns.
        if (tomb) ki.tombstone(r.main, r.sub)
        else ki.put(r.main, r.sub)
      } else {
        const nki = new KeyIndex(key)
        if (tomb) nki.restoreTombstone(r.main, r.sub)
        else nki.restore({ main: kv.createRevision, sub: 0 }, r, kv.version)
        index.insert(nki)
      }
    }
    if (records.length < chunkRecords) break
    start = successor(records[records.length - 1]!.key)
  }
  return currentRev
}

/**
 * The key changes of main revisions startRev..endRev (inclusive), in revision order, read from
 * the backend's key bucket as etcd's watchable store does when a watcher catches up
 * (watchable_store.go syncWatchers). Events carry no prevKv. Revisions at or below the compact
 * revision may be partly gone, or wait for deletion: callers check the compact revision first
 * and pass `live` (KvStore.isLiveRecord) to leave out records a compaction dropped.
 */
export const unsafeReadEvents = (
  tx: BackendReadTx,
  startRev: number,
  endRev: number,
  live?: (bucketKey: Uint8Array, value: Uint8Array) => boolean
): MvccEvent[] => {
  const events: MvccEvent[] = []
  if (endRev < startRev) return events
  const end = mainPrefix(endRev + 1)
  let start = mainPrefix(Math.max(startRev, 0))
  for (;;) {
    const records = tx.range("key", start, end, chunkRecords)
    for (const { key: bucketKey, value } of records) {
      if (live !== undefined && !live(bucketKey, value)) continue
      const kv = decodeKeyValue(value)
      if (isTombstone(bucketKey)) {
        const main = Revision(bytesToRev(bucketKey).main)
        events.push({ type: "DELETE", kv: { ...kv, modRevision: main } })
      } else {
        events.push({ type: "PUT", kv })
      }
    }
    if (records.length < chunkRecords) break
    start = successor(records[records.length - 1]!.key)
  }
  return events
}

/** The smallest byte string above `b`: b followed by a zero byte. */
const successor = (b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(b.length + 1)
  out.set(b)
  return out
}
