/**
 * The wal service's in-memory view of what its log holds (hard state and entries), kept in step
 * with every append so that `wal.load` can page through it without re-reading files. Applies
 * raft's overwrite rule: entries starting at index i replace the suffix from i on.
 *
 * Bound: the mirror holds only the entries after the last snapshot, plus those appended since:
 * the wal service calls {@link LogMirror.compactTo} with each snapshot it saves (raft's
 * `--snapshot-count` and `--snapshot-bytes` decide how often). The entries it holds own their
 * data ({@link ownedEntry}), so dropping them frees their memory.
 *
 * Invariant: `entries` are contiguous, `entries[k].index === firstIndex + k`.
 */
import type { Entry, HardState } from "../../shared/raft-types.ts"
import { ownedEntry } from "../../shared/raft-types.ts"

export class LogMirror {
  private hardState: HardState
  private entries: Entry[]
  private readonly metadata: Uint8Array

  constructor(hardState: HardState, entries: ReadonlyArray<Entry>, metadata: Uint8Array) {
    this.hardState = hardState
    this.entries = entries.map(ownedEntry)
    this.metadata = metadata
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

  /** Index of the last entry, or 0 when the log holds none. */
  lastIndex(): number {
    return this.entries.length === 0 ? 0 : this.entries[this.entries.length - 1]!.index
  }

  /**
   * Records an append: the hard state (when given) and `entries`, which must start at most one
   * past the last index (raft never leaves a hole); an earlier start overwrites the suffix.
   * Throws on a hole (a defect in the caller). Data that is a view into a larger buffer is
   * copied ({@link ownedEntry}).
   */
  save(hardState: HardState | undefined, entries: ReadonlyArray<Entry>): void {
    // Checked before anything changes, so a refused append leaves the mirror as it was.
    if (entries.length > 0 && this.entries.length > 0 && entries[0]!.index > this.lastIndex() + 1) {
      throw new Error(`WAL append leaves a hole: last ${this.lastIndex()}, next ${entries[0]!.index}`)
    }
    if (hardState !== undefined) this.hardState = hardState
    if (entries.length === 0) return
    const first = entries[0]!.index
    if (this.entries.length === 0) {
      // After a snapshot the log may be empty; raft appends from the snapshot index + 1 on.
      this.entries = entries.map(ownedEntry)
      return
    }
    const base = this.entries[0]!.index
    if (first <= base) this.entries = entries.map(ownedEntry)
    else {
      this.entries.length = first - base
      for (const e of entries) this.entries.push(ownedEntry(e))
    }
  }

  /**
   * Drops entries with index <= `index` (covered by a snapshot); later appends continue from
   * there. The kept entries move to a new array, so the dropped ones are freed.
   */
  compactTo(index: number): void {
    if (this.entries.length === 0) return
    const base = this.entries[0]!.index
    if (index < base) return
    this.entries = this.entries.slice(index - base + 1)
  }

  /**
   * Entries with index >= `fromIndex`, up to about `maxBytes` of entry data (at least one entry
   * when any remain), with the hard state and metadata; `more` tells whether entries remain.
   */
  page(fromIndex: number, maxBytes: number) {
    const base = this.entries.length === 0 ? 0 : this.entries[0]!.index
    let k = Math.max(0, fromIndex - base)
    const out: Entry[] = []
    let bytes = 0
    while (k < this.entries.length) {
      const e = this.entries[k]!
      if (out.length > 0 && bytes + e.data.length > maxBytes) break
      out.push(e)
      bytes += e.data.length + 32
      k++
    }
    return { metadata: this.metadata, hardState: this.hardState, entries: out, more: k < this.entries.length }
  }
}
