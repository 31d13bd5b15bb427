/**
 * An in-memory backend for tests and simulation: each bucket is a B+ tree ordered by key bytes
 * (keys held as binary strings, see key-bytes.ts).
 *
 * One object is both the read and the write transaction: writes apply at once and there is no
 * commit or abort. {@link MemoryBackend.clone} takes an independent copy in O(1), which tests
 * use as a "crash and reopen" point. Values are copied on the way in and out, so callers can
 * reuse their buffers as with LMDB.
 */
import { BTree, type BTreeOf } from "./btree.ts"
import type { BackendEntry, BackendWriteTx, Bucket } from "./backend.ts"
import { fromKeyString, toKeyString } from "./key-bytes.ts"
type Tree = BTreeOf<string, Uint8Array>

/** Implements {@link BackendWriteTx} (and so BackendReadTx) over two in-memory trees. */
export class MemoryBackend implements BackendWriteTx {
  private readonly buckets: Record<Bucket, Tree>

  constructor(buckets?: Record<Bucket, Tree>) {
    this.buckets = buckets ?? { key: new BTree<string, Uint8Array>(), meta: new BTree<string, Uint8Array>() }
  }

  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined {
    const v = this.buckets[bucket].get(toKeyString(key))
    return v === undefined ? undefined : v.slice()
  }

  range(bucket: Bucket, start: Uint8Array, end: Uint8Array | undefined, limit = 0): ReadonlyArray<BackendEntry> {
    const endKey = end === undefined ? undefined : toKeyString(end)
    const out: BackendEntry[] = []
    for (const [k, v] of this.buckets[bucket].entries(toKeyString(start))) {
      if (endKey !== undefined && k >= endKey) break
      out.push({ key: fromKeyString(k), value: v.slice() })
      if (limit > 0 && out.length >= limit) break
    }
    return out
  }

  put(bucket: Bucket, key: Uint8Array, value: Uint8Array): void {
    this.buckets[bucket].set(toKeyString(key), value.slice(), true)
  }

  delete(bucket: Bucket, key: Uint8Array): void {
    this.buckets[bucket].delete(toKeyString(key))
  }

  /** Number of records in a bucket. */
  size(bucket: Bucket): number {
    return this.buckets[bucket].size
  }

  /** An independent copy (copy-on-write, O(1)). */
  clone(): MemoryBackend {
    return new MemoryBackend({ key: this.buckets.key.clone(), meta: this.buckets.meta.clone() })
  }
}
