/**
 * What the wal service keeps in memory of its log between appends: the latest hard state and
 * the range of indexes the log holds after its last snapshot. The entries themselves stay on
 * disk: `wal.load` reads them back from the segment files (./files.ts `Wal.readBack`) and pages
 * through that copy ({@link pageOf}). Raft's own MemoryStorage is the one in-memory copy of a
 * member's log, as in etcd, where the WAL is read only at start (server/storage/wal/wal.go
 * `ReadAll`).
 *
 * Applies raft's overwrite rule to the range (entries starting at index i replace the suffix
 * from i on) and refuses an append that would leave a hole, as the log on disk would not
 * replay past one.
 *
 * Bound: two indexes and one hard state, whatever the log's length.
 */
import type { Entry, HardState } from "../../shared/raft-types.ts"

export class LogBounds {
  private hardState: HardState
  /** First and last index of the entries after the last snapshot; undefined when there are none. */
  private held: { first: number; last: number } | undefined

  /** Starts from what the WAL replayed at open: its hard state and its entries (contiguous). */
  constructor(hardState: HardState, entries: ReadonlyArray<Entry>) {
    this.hardState = hardState
    this.held = entries.length === 0 ? undefined : { first: entries[0]!.index, last: entries[entries.length - 1]!.index }
  }

  /**
   * True when `hardState` is older than the one recorded: a lower term, or the same term with a
   * lower commit index or without the recorded vote. Raft never moves its hard state back, so
   * such a write is a late copy (e.g. the retry of a commit-only write that the raft service did
   * not wait for) and must not replace the newer one.
   */
  isStale(hardState: HardState): boolean {
    const current = this.hardState
    if (hardState.term !== current.term) return hardState.term < current.term
    return hardState.commit < current.commit || (hardState.vote === 0n && current.vote !== 0n)
  }

  /** Index of the last entry, or 0 when the log holds none after its last snapshot. */
  lastIndex(): number {
    return this.held?.last ?? 0
  }

  /**
   * Records an append: the hard state (when given) and `entries`, which must start at most one
   * past the last index (raft never leaves a hole); an earlier start overwrites the suffix.
   * Throws on a hole (a defect in the caller), leaving the record as it was.
   */
  save(hardState: HardState | undefined, entries: ReadonlyArray<Entry>): void {
    const held = this.held
    if (entries.length > 0 && held !== undefined && entries[0]!.index > held.last + 1) {
      throw new Error(`WAL append leaves a hole: last ${held.last}, next ${entries[0]!.index}`)
    }
    if (hardState !== undefined) this.hardState = hardState
    if (entries.length === 0) return
    const first = entries[0]!.index
    const last = entries[entries.length - 1]!.index
    // After a snapshot the log may be empty; raft appends from the snapshot index + 1 on.
    this.held = held === undefined || first <= held.first ? { first, last } : { first: held.first, last }
  }

  /** Forgets entries with index <= `index` (covered by a snapshot); appends continue from there. */
  compactTo(index: number): void {
    const held = this.held
    if (held === undefined || index < held.first) return
    this.held = index >= held.last ? undefined : { first: index + 1, last: held.last }
  }
}

/**
 * The page of `entries` (contiguous, index order) that starts at `fromIndex`: entries up to
 * about `maxBytes` of data, each counted as its data plus 32 bytes, at least one when any
 * remain; `more` tells whether entries remain after it.
 */
export const pageOf = (entries: ReadonlyArray<Entry>, fromIndex: number, maxBytes: number): { entries: Entry[]; more: boolean } => {
  const base = entries.length === 0 ? 0 : entries[0]!.index
  let k = Math.max(0, fromIndex - base)
  const out: Entry[] = []
  let bytes = 0
  while (k < entries.length) {
    const e = entries[k]!
    if (out.length > 0 && bytes + e.data.length > maxBytes) break
    out.push(e)
    bytes += e.data.length + 32
    k++
  }
  return { entries: out, more: k < entries.length }
}
