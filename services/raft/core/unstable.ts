/**
 * The tail of the log that the shell has not yet persisted: entries appended by this member
 * (as leader) or received from the leader, and possibly a snapshot received from the leader.
 * They leave this structure when the shell acknowledges a Ready with `advance`.
 *
 * Follows etcd raft log_unstable.go (the version without asynchronous storage writes).
 *
 *     storage:  ... [5] [6] [7]
 *     unstable:             [7'] [8] [9]      offset = 7: entry 7 from a new leader replaces 7
 *
 * Invariant: entries[i].index === offset + i; when a snapshot is present, offset === snapshot.index + 1.
 */
import type { Index, Term } from "../../../shared/ids.ts"
import type { Entry } from "../../../shared/raft-types.ts"
import type { Snapshot } from "./types.ts"

/** Entries and snapshot not yet persisted by the shell (etcd unstable). */
export class Unstable {
  snapshot: Snapshot | undefined = undefined
  entries: Entry[] = []
  offset: Index

  constructor(offset: Index) {
    this.offset = offset
  }

  /** The first index the snapshot makes available, if a snapshot is pending. */
  maybeFirstIndex(): Index | undefined {
    return this.snapshot === undefined ? undefined : ((this.snapshot.metadata.index + 1) as Index)
  }

  /** The last index held here (an entry's, or the snapshot's), if any. */
  maybeLastIndex(): Index | undefined {
    if (this.entries.length > 0) return (this.offset + this.entries.length - 1) as Index
    return this.snapshot?.metadata.index
  }

  /** The term of entry i if this structure knows it. */
  maybeTerm(i: Index): Term | undefined {
    if (i < this.offset) {
      return this.snapshot !== undefined && this.snapshot.metadata.index === i ? this.snapshot.metadata.term : undefined
    }
    return this.entries[i - this.offset]?.term
  }

  /**
   * Drops entries up to and including i once persisted, provided entry i still has term t (it
   * may have been replaced by a newer leader's entry since the Ready was handed out).
   */
  stableTo(i: Index, t: Term): void {
    const gt = this.maybeTerm(i)
    if (gt === undefined || i < this.offset || gt !== t) return
    this.entries = this.entries.slice(i + 1 - this.offset)
    this.offset = (i + 1) as Index
  }

  /** Drops the pending snapshot once persisted, if it is still the one at index i. */
  stableSnapTo(i: Index): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined
  }

  /** Replaces everything with a snapshot received from the leader. */
  restore(s: Snapshot): void {
    this.offset = (s.metadata.index + 1) as Index
    this.entries = []
    this.snapshot = s
  }

  /** Appends contiguous entries, first truncating anything from ents[0].index on. */
  truncateAndAppend(ents: ReadonlyArray<Entry>): void {
    const after = ents[0]!.index
    if (after === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e)
    } else if (after <= this.offset) {
      this.offset = after
      this.entries = [...ents]
    } else {
      this.entries = [...this.slice(this.offset, after), ...ents]
    }
  }

  /** Entries [lo, hi); throws when outside [offset, offset + entries.length]. */
  slice(lo: Index, hi: Index): Entry[] {
    const upper = this.offset + this.entries.length
    if (lo > hi || lo < this.offset || hi > upper) {
      throw new Error(`unstable.slice[${lo},${hi}) out of bound [${this.offset},${upper}]`)
    }
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}
