/**
 * The mvcc store's backend on LMDB (the only file that imports lmdb), implementing the
 * transaction views of ./core/backend.ts plus natcd's `dedup` table.
 *
 * One LMDB environment per member in the file <data-dir>/<member>/mvcc/kv.mdb (and its
 * kv.mdb-lock), with named databases:
 * - `key`, `meta`: the buckets of core/backend.ts (revision-keyed records, store metadata);
 * - `dedup`: request id (8 bytes big-endian) -> the proposer's deadline (8 bytes, ms since
 *   the epoch), so a retried proposal is applied once (see ./apply.ts).
 *
 * Writes happen in `writeSync` transactions that commit (durably) before it returns; reads
 * outside a transaction see the last committed state. Values are copied out of LMDB on read,
 * so callers may keep them.
 */
import { open } from "lmdb"
import type { Database, RootDatabase } from "lmdb"
import { statSync } from "node:fs"
import type { BackendEntry, BackendReadTx, BackendWriteTx, Bucket } from "./core/backend.ts"

/** The backend's write transaction: the store's buckets plus the dedup table. */
export interface LmdbWriteTx extends BackendWriteTx {
  readonly dedupGet: (id: Uint8Array) => Uint8Array | undefined
  readonly dedupPut: (id: Uint8Array, value: Uint8Array) => void
  readonly dedupDelete: (id: Uint8Array) => void
}

type BinaryDb = Database<Uint8Array, Uint8Array>

/** An open LMDB backend. */
export class LmdbBackend {
  private readonly env: RootDatabase
  private readonly dbs: Readonly<Record<Bucket | "dedup", BinaryDb>>
  private readonly path: string
  /** Reads of committed state (used outside write transactions). */
  readonly read: BackendReadTx

  private constructor(path: string) {
    this.path = path
    this.env = open({ path, maxDbs: 8, keyEncoding: "binary", encoding: "binary", compression: false })
    const db = (name: string): BinaryDb =>
      this.env.openDB({ name, keyEncoding: "binary", encoding: "binary", compression: false }) as unknown as BinaryDb
    this.dbs = { key: db("key"), meta: db("meta"), dedup: db("dedup") }
    this.read = this.view()
  }

  /** Opens (creating) the environment in file `path`. Throws when LMDB cannot open it. */
  static open(path: string): LmdbBackend {
    return new LmdbBackend(path)
  }

  private view(): BackendReadTx {
    const dbs = this.dbs
    return {
      get: (bucket, key) => dbs[bucket].getBinary(key as Buffer) as Uint8Array | undefined,
      range: (bucket, start, end, limit) => {
        const out: BackendEntry[] = []
        const options = {
          start: start as Buffer,
          ...(end === undefined ? {} : { end: end as Buffer }),
          ...(limit !== undefined && limit > 0 ? { limit } : {})
        }
        for (const { key, value } of dbs[bucket].getRange(options)) {
          out.push({ key: key as Uint8Array, value: Uint8Array.from(value as Uint8Array) })
        }
        return out
      }
    }
  }

  /**
   * Runs `fn` in one write transaction and commits it durably before returning `fn`'s
   * result. `fn` must be synchronous; if it throws, nothing of the transaction is kept.
   */
  writeSync<A>(fn: (tx: LmdbWriteTx) => A): A {
    const dbs = this.dbs
    const base = this.view()
    return this.env.transactionSync(() =>
      fn({
        ...base,
        put: (bucket, key, value) => void dbs[bucket].putSync(key as Buffer, value as Buffer),
        delete: (bucket, key) => void dbs[bucket].removeSync(key as Buffer),
        dedupGet: (id) => dbs.dedup.getBinary(id as Buffer) as Uint8Array | undefined,
        dedupPut: (id, value) => void dbs.dedup.putSync(id as Buffer, value as Buffer),
        dedupDelete: (id) => void dbs.dedup.removeSync(id as Buffer)
      })
    )
  }

  /** Every dedup record, in key order (read once at startup). */
  dedupEntries(): BackendEntry[] {
    const out: BackendEntry[] = []
    for (const { key, value } of this.dbs.dedup.getRange({})) {
      out.push({ key: Uint8Array.from(key as Uint8Array), value: Uint8Array.from(value as Uint8Array) })
    }
    return out
  }

  /** Size of the database file, and of the pages in use, in bytes (Maintenance.Status dbSize/dbSizeInUse). */
  size(): { readonly fileBytes: number; readonly inUseBytes: number } {
    const fileBytes = statSync(this.path).size
    const stats = this.env.getStats() as { pageSize: number; lastPageNumber?: number; treeBranchPageCount?: number }
    const inUseBytes = stats.lastPageNumber === undefined ? fileBytes : Math.min(fileBytes, (stats.lastPageNumber + 1) * stats.pageSize)
    return { fileBytes, inUseBytes }
  }

  /** Closes the environment; outstanding writes were committed by writeSync. */
  close(): Promise<void> {
    return this.env.close()
  }
}
