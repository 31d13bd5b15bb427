/**
 * The storage the MVCC store runs on, seen from the store: two ordered byte-keyed buckets
 * behind a synchronous transaction. The shell implements it over LMDB (backend-lmdb.ts);
 * tests use backend-memory.ts.
 *
 * Buckets (etcd server/storage/schema):
 * - `key`: one record per key change. Key: the 17-byte revision (18 with the tombstone mark
 *   't'), see revision.ts. Value: the encoded KeyValue (kv-codec.ts), which holds the user key.
 *   Keying by revision keeps LMDB keys short whatever the user key's size.
 * - `meta`: store metadata, under the names below.
 *
 * Meta records (names and encodings as etcd's schema, so a dump reads the same):
 * - `consistent_index`: 8-byte big-endian raft index of the last applied entry.
 * - `scheduledCompactRev`, `finishedCompactRev`: the compact revision as a 17-byte revision
 *   key {main: rev, sub: 0}. The scheduled one is written by the apply of a compaction, the
 *   finished one by the last batch of its background deletion (store.ts compactBatch); they
 *   differ while that deletion runs, or when it was cut short by a crash (resumed at restart).
 *
 * The store calls the transaction from one thread and never keeps a returned array past the
 * call that produced it; a backend may therefore hand out buffers it reuses.
 */
import { bytesToRev, mainPrefix, revToBytes } from "./revision.ts"

/** A bucket name. */
export type Bucket = "key" | "meta"

/** One record of a bucket range. */
export interface BackendEntry {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

/** A read view of the backend (etcd backend.ReadTx, UnsafeReader). */
export interface BackendReadTx {
  /** The value stored under `key` exactly, or undefined. */
  get(bucket: Bucket, key: Uint8Array): Uint8Array | undefined
  /**
   * The records with start <= key < end in ascending bytewise key order; `end` undefined means
   * no upper bound. At most `limit` records when limit > 0.
   */
  range(bucket: Bucket, start: Uint8Array, end: Uint8Array | undefined, limit?: number): ReadonlyArray<BackendEntry>
}

/**
 * A write transaction (etcd backend.BatchTx). Writes are visible to later reads of the same
 * transaction. The caller commits or aborts it; the store never does.
 */
export interface BackendWriteTx extends BackendReadTx {
  /** Stores `value` under `key`, replacing any previous value. */
  put(bucket: Bucket, key: Uint8Array, value: Uint8Array): void
  /** Removes `key`; no-op when absent. */
  delete(bucket: Bucket, key: Uint8Array): void
}

const ascii = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

/** Meta key of the consistent index (etcd schema.MetaConsistentIndexKeyName). */
export const metaConsistentIndexKey = ascii("consistent_index")
/** Meta key of the scheduled compact revision (etcd schema.ScheduledCompactKeyName). */
export const metaScheduledCompactKey = ascii("scheduledCompactRev")
/** Meta key of the finished compact revision (etcd schema.FinishedCompactKeyName). */
export const metaFinishedCompactKey = ascii("finishedCompactRev")

/** Encodes a uint64 (safe integer) as 8 bytes big-endian. */
export const encodeUint64 = (n: number): Uint8Array => mainPrefix(n)

/** Decodes 8 bytes big-endian into a safe integer; throws on another length or beyond 2^53. */
export const decodeUint64 = (b: Uint8Array): number => {
  if (b.length !== 8) throw new Error(`expected 8 bytes, got ${b.length}`)
  let n = 0
  for (let i = 0; i < 8; i++) n = n * 256 + b[i]!
  if (!Number.isSafeInteger(n)) throw new Error("uint64 beyond 2^53")
  return n
}

/** Reads the consistent index; 0 when never written. */
export const unsafeReadConsistentIndex = (tx: BackendReadTx): number => {
  const b = tx.get("meta", metaConsistentIndexKey)
  return b === undefined ? 0 : decodeUint64(b)
}

/** Writes the consistent index. */
export const unsafeUpdateConsistentIndex = (tx: BackendWriteTx, index: number): void => {
  tx.put("meta", metaConsistentIndexKey, encodeUint64(index))
}

/** Reads a compact revision record; undefined when never written. */
export const unsafeReadCompactRev = (tx: BackendReadTx, which: "scheduled" | "finished"): number | undefined => {
  const b = tx.get("meta", which === "scheduled" ? metaScheduledCompactKey : metaFinishedCompactKey)
  return b === undefined ? undefined : bytesToRev(b).main
}

/** Writes a compact revision record (etcd UnsafeSetScheduledCompact / UnsafeSetFinishedCompact). */
export const unsafeSetCompactRev = (tx: BackendWriteTx, which: "scheduled" | "finished", rev: number): void => {
  tx.put("meta", which === "scheduled" ? metaScheduledCompactKey : metaFinishedCompactKey, revToBytes({ main: rev, sub: 0 }))
}
