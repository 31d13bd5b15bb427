/**
 * The mvcc store's backend on LMDB (the only file that imports lmdb), implementing the
 * transaction views of ./core/backend.ts plus natcd's `dedup` table, with etcd's batched
 * write transaction and buffered reads.
 *
 * One LMDB environment per member in the file <data-dir>/<member>/mvcc/kv.mdb (and its
 * kv.mdb-lock), with named databases:
 * - `key`, `meta`: the buckets of core/backend.ts (revision-keyed records, store metadata,
 *   alarms);
 * - `dedup`: request id (8 bytes big-endian) -> the proposer's deadline (ms since the epoch)
 *   and the raft index that applied it (8 bytes big-endian each; earlier versions wrote the
 *   deadline alone), so a retried proposal is applied once (see ./apply.ts, ./core/dedup.ts).
 *
 * Batching (etcd server/storage/backend/batch_tx.go batchTxBuffered, tx_buffer.go): writes
 * made through {@link LmdbBackend.write} do not touch LMDB. They go into an in-memory write
 * buffer, one sorted map per bucket holding the new value or a deletion mark per key. Every
 * read ({@link LmdbBackend.read}, and reads inside `write`) sees the buffer laid over the last
 * committed LMDB state, so readers see a consistent view that includes the not-yet-committed
 * batch, as etcd's txReadBuffer does. {@link LmdbBackend.commit} writes the whole buffer in one
 * LMDB transaction and syncs it to disk; the caller decides when (etcd: every 100 ms or 10000
 * operations, see ./apply.ts). Because the consistent index is a `meta` record written through
 * the same buffer, it is always committed in the same LMDB transaction as the writes it covers.
 *
 * Unlike etcd's read buffer (which holds only puts of the key bucket, because etcd deletes
 * only during compaction and commits right after), this buffer also records deletions, so a
 * buffered view is exact for every bucket and every write.
 *
 * Values are copied out of LMDB on read, so callers may keep them. The buffer keeps its own
 * copies of written values.
 */
import { open } from "lmdb"
import type { Database, RootDatabase } from "lmdb"
import { statSync } from "node:fs"
import type { BackendEntry, BackendReadTx, BackendWriteTx, Bucket } from "./core/backend.ts"
import { BTree, type BTreeOf } from "./core/btree.ts"
import { fromKeyString, toKeyString } from "./core/key-bytes.ts"

/** The backend's write transaction: the store's buckets plus the dedup table. */
export interface LmdbWriteTx extends BackendWriteTx {
  readonly dedupGet: (id: Uint8Array) => Uint8Array | undefined
  readonly dedupPut: (id: Uint8Array, value: Uint8Array) => void
  readonly dedupDelete: (id: Uint8Array) => void
}

type BinaryDb = Database<Uint8Array, Uint8Array>
type AnyBucket = Bucket | "dedup"
/** A buffered write: the new value, or null for a deletion. */
type Buffered = Uint8Array | null
type BufferTree = BTreeOf<string, Buffered>

const buckets: ReadonlyArray<AnyBucket> = ["key", "meta", "dedup"]

/** Sizes of the database, in bytes (Maintenance.Status dbSize / dbSizeInUse, and the quota). */
export interface BackendSize {
  /** Size of the kv.mdb file. */
  readonly fileBytes: number
  /**
   * Bytes of the pages that hold data (branch, leaf and overflow pages of every database and of
   * LMDB's free list), plus the bytes waiting in the write buffer. Unlike the file, this shrinks
   * after a compaction frees records (etcd's dbSizeInUse: size minus free pages).
   */
  readonly inUseBytes: number
}

/**
 * An open LMDB backend with a write buffer.
 * Invariant: `pending` counts the buffered writes since the last commit; the buffer is empty
 * exactly when pending is 0.
 */
export class LmdbBackend {
  private readonly env: RootDatabase
  private readonly dbs: Readonly<Record<AnyBucket, BinaryDb>>
  private readonly path: string
  private readonly buffer: Record<AnyBucket, BufferTree> = {
    key: new BTree<string, Buffered>(),
    meta: new BTree<string, Buffered>(),
    dedup: new BTree<string, Buffered>()
  }
  private pending = 0
  private bufferedBytes = 0
  private committedInUse = 0
  /** Commits done, for tests and the shutdown log. */
  commits = 0
  /** Reads of the buffered view: the last commit plus the write buffer. */
  readonly read: BackendReadTx

  private constructor(path: string) {
    this.path = path
    this.env = open({ path, maxDbs: 8, keyEncoding: "binary", encoding: "binary", compression: false })
    const db = (name: string): BinaryDb =>
      this.env.openDB({ name, keyEncoding: "binary", encoding: "binary", compression: false }) as unknown as BinaryDb
    this.dbs = { key: db("key"), meta: db("meta"), dedup: db("dedup") }
    this.read = { get: (b, k) => this.get(b, k), range: (b, s, e, l) => this.range(b, s, e, l) }
    this.committedInUse = this.measureInUse()
  }

  /** Opens (creating) the environment in file `path`. Throws when LMDB cannot open it. */
  static open(path: string): LmdbBackend {
    return new LmdbBackend(path)
  }

  private get(bucket: AnyBucket, key: Uint8Array): Uint8Array | undefined {
    const b = this.buffer[bucket].get(toKeyString(key))
    if (b !== undefined) return b === null ? undefined : b.slice()
    const v = this.dbs[bucket].getBinary(key as Buffer) as Uint8Array | undefined
    return v === undefined ? undefined : Uint8Array.from(v)
  }

  /**
   * The records with start <= key < end (end undefined: no bound), at most `limit` when
   * limit > 0: LMDB's committed records merged with the buffer, the buffer winning.
   */
  private range(bucket: AnyBucket, start: Uint8Array, end: Uint8Array | undefined, limit = 0): ReadonlyArray<BackendEntry> {
    const out: BackendEntry[] = []
    const startKey = toKeyString(start)
    const endKey = end === undefined ? undefined : toKeyString(end)
    const buffered: Array<[string, Buffered]> = []
    for (const [k, v] of this.buffer[bucket].entries(startKey)) {
      if (endKey !== undefined && k >= endKey) break
      buffered.push([k, v])
    }
    const full = () => limit > 0 && out.length >= limit
    let bi = 0
    const options = { start: start as Buffer, ...(end === undefined ? {} : { end: end as Buffer }) }
    for (const { key, value } of this.dbs[bucket].getRange(options)) {
      const k = toKeyString(key as Uint8Array)
      // Buffered keys before this committed one.
      while (bi < buffered.length && buffered[bi]![0] < k && !full()) {
        const [bk, bv] = buffered[bi++]!
        if (bv !== null) out.push({ key: fromKeyString(bk), value: bv.slice() })
      }
      if (full()) return out
      if (bi < buffered.length && buffered[bi]![0] === k) {
        const bv = buffered[bi++]![1]
        if (bv !== null) out.push({ key: fromKeyString(k), value: bv.slice() })
      } else {
        out.push({ key: Uint8Array.from(key as Uint8Array), value: Uint8Array.from(value as Uint8Array) })
      }
      if (full()) return out
    }
    while (bi < buffered.length && !full()) {
      const [bk, bv] = buffered[bi++]!
      if (bv !== null) out.push({ key: fromKeyString(bk), value: bv.slice() })
    }
    return out
  }

  /**
   * Runs `fn` with a write transaction over the buffered view; its writes go into the write
   * buffer (not durable until {@link commit}). `fn` must be synchronous. If it throws, every
   * buffered write it made is undone and the error rethrown.
   */
  write<A>(fn: (tx: LmdbWriteTx) => A): A {
    const undo = new Map<string, { bucket: AnyBucket; key: string; prev: Buffered | undefined }>()
    const set = (bucket: AnyBucket, key: Uint8Array, value: Buffered) => {
      const k = toKeyString(key)
      const tree = this.buffer[bucket]
      const id = `${bucket}:${k}`
      const prev = tree.get(k)
      if (!undo.has(id)) undo.set(id, { bucket, key: k, prev })
      tree.set(k, value === null ? null : value.slice(), true)
      this.pending++
      this.bufferedBytes += k.length + (value?.length ?? 0)
    }
    const tx: LmdbWriteTx = {
      ...this.read,
      put: (bucket, key, value) => set(bucket, key, value),
      delete: (bucket, key) => set(bucket, key, null),
      dedupGet: (id) => this.get("dedup", id),
      dedupPut: (id, value) => set("dedup", id, value),
      dedupDelete: (id) => set("dedup", id, null)
    }
    const pendingBefore = this.pending
    const bytesBefore = this.bufferedBytes
    try {
      return fn(tx)
    } catch (e) {
      for (const { bucket, key, prev } of undo.values()) {
        if (prev === undefined) this.buffer[bucket].delete(key)
        else this.buffer[bucket].set(key, prev, true)
      }
      this.pending = pendingBefore
      this.bufferedBytes = bytesBefore
      throw e
    }
  }

  /** Buffered writes not yet committed (etcd batchTx pending). */
  pendingWrites(): number {
    return this.pending
  }

  /**
   * Writes the buffer to LMDB in one transaction, synced to disk before returning, and empties
   * it (etcd batchTx.Commit). A no-op when nothing is buffered. Throws when LMDB fails; the
   * buffer is then kept, so a later commit can retry.
   */
  commit(): void {
    if (this.pending === 0) return
    const dbs = this.dbs
    this.env.transactionSync(() => {
      for (const bucket of buckets) {
        for (const [k, v] of this.buffer[bucket].entries()) {
          const key = Buffer.from(fromKeyString(k))
          if (v === null) dbs[bucket].removeSync(key)
          else dbs[bucket].putSync(key, v as Buffer)
        }
      }
    })
    for (const bucket of buckets) this.buffer[bucket].clear()
    this.pending = 0
    this.bufferedBytes = 0
    this.commits++
    this.committedInUse = this.measureInUse()
  }

  /**
   * Drops the write buffer without committing: what a crash does. For tests of the restart
   * path only (a process that dies loses its buffer the same way).
   */
  unsafeDiscardBuffer(): void {
    for (const bucket of buckets) this.buffer[bucket].clear()
    this.pending = 0
    this.bufferedBytes = 0
  }

  /** Every dedup record, in key order (read once at startup). */
  dedupEntries(): ReadonlyArray<BackendEntry> {
    return this.range("dedup", new Uint8Array(), undefined)
  }

  private measureInUse(): number {
    const pages = (s: { treeBranchPageCount?: number; treeLeafPageCount?: number; overflowPages?: number } | undefined) =>
      s === undefined ? 0 : (s.treeBranchPageCount ?? 0) + (s.treeLeafPageCount ?? 0) + (s.overflowPages ?? 0)
    const env = this.env.getStats() as { pageSize: number; root?: object; free?: object }
    let total = pages(env.root) + pages(env.free)
    for (const bucket of buckets) total += pages(this.dbs[bucket].getStats() as object)
    return total * env.pageSize
  }

  /** Sizes of the database in bytes; cheap (the in-use part is measured at each commit). */
  size(): BackendSize {
    let fileBytes = 0
    try {
      fileBytes = statSync(this.path).size
    } catch {
      fileBytes = 0
    }
    return { fileBytes, inUseBytes: this.committedInUse + this.bufferedBytes }
  }

  /**
   * Copies the committed environment to file `path` (LMDB's consistent copy; `compact` leaves
   * out free pages, which is what defragmenting needs). Commit first to include buffered writes.
   */
  backup(path: string, compact = false): Promise<void> {
    return this.env.backup(path, compact)
  }

  /** Commits what is buffered, then closes the environment. */
  close(): Promise<void> {
    this.commit()
    return this.env.close()
  }
}
