/**
 * The applier's dedup table: the ids of applied proposals, kept in the backend's `dedup` table
 * (8-byte big-endian request id -> deadline and raft index) in the same transaction as the
 * writes, and mirrored in memory by the pure window of ./core/dedup.ts, which decides what to
 * forget. This module only moves records between the two: restore at start, record and forget
 * in an apply's transaction. Why ids are kept and for how long: ./core/dedup.ts.
 */
import { decodeUint64 } from "./core/backend.ts"
import { decodeDedupValue, type DedupBounds, type DedupRecord, DedupWindow, encodeDedupValue, metaDedupClockKey } from "./core/dedup.ts"
import type { LmdbBackend, LmdbWriteTx } from "./backend-lmdb.ts"

/** The dedup key of request id `requestId`: its 8 bytes, big-endian. */
const idKey = (requestId: bigint): Uint8Array => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, requestId)
  return b
}

/** The request id stored under an 8-byte dedup key. */
const idOf = (key: Uint8Array): bigint => new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(0)

/**
 * The table and its mirror. Invariant: `window` holds exactly the dedup table's records, in
 * apply order, except `pending`, which are already out of the window and are deleted from the
 * table with the next proposal.
 */
export class DedupTable {
  private readonly window: DedupWindow
  /** Records dropped from the window at restore (a lowered cap), deleted from the table with the next proposal. */
  private pending: ReadonlyArray<DedupRecord>

  private constructor(window: DedupWindow, pending: ReadonlyArray<DedupRecord>) {
    this.window = window
    this.pending = pending
  }

  /** Reads the table and the log clock from the backend (`bounds`: mutable only so tests can shrink them). */
  static restore(backend: LmdbBackend, bounds: Partial<DedupBounds> | undefined): DedupTable {
    const clock = backend.read.get("meta", metaDedupClockKey)
    const records: DedupRecord[] = backend.dedupEntries().map(({ key, value }) => ({ id: idOf(key), ...decodeDedupValue(value) }))
    const { window, dropped } = DedupWindow.restore(clock === undefined ? 0 : decodeUint64(clock), records, bounds)
    // Only when the cap was lowered: the table is trimmed alike on every member at its next apply.
    return new DedupTable(window, dropped)
  }

  /** The log clock (ms), to be stored in meta under metaDedupClockKey when it moved. */
  clockMs(): number {
    return this.window.clockMs()
  }

  /**
   * Before a proposal at raft index `index` with deadline `deadlineMs` is checked: moves the
   * clock and deletes in `tx` the records that expire (and those left over from restore).
   */
  advance(tx: LmdbWriteTx, deadlineMs: number, index: number): void {
    this.forget(tx, this.pending)
    this.pending = []
    this.forget(tx, this.window.advance(deadlineMs, index))
  }

  /** Whether proposal `requestId` was applied before (its record is still kept). */
  has(tx: LmdbWriteTx, requestId: bigint): boolean {
    return tx.dedupGet(idKey(requestId)) !== undefined
  }

  /** Records proposal `requestId` as applied at `index` in `tx`, deleting what the cap pushes out. */
  add(tx: LmdbWriteTx, requestId: bigint, deadlineMs: number, index: number): void {
    tx.dedupPut(idKey(requestId), encodeDedupValue(deadlineMs, index))
    this.forget(tx, this.window.add({ id: requestId, deadlineMs, index }))
  }

  /** Deletes dropped dedup records from the table, in the apply's transaction. */
  private forget(tx: LmdbWriteTx, records: ReadonlyArray<DedupRecord>): void {
    for (const r of records) tx.dedupDelete(idKey(r.id))
  }
}
