/**
 * The raft log as the core sees it: the stable part in {@link Storage} followed by the
 * {@link Unstable} tail, with the commit and applied cursors.
 *
 * Follows etcd raft log.go (the version without asynchronous storage writes). Reads that fall
 * outside the log's bounds are broken invariants and throw; a compacted prefix is an expected
 * condition and is returned as "Compacted" so the leader can fall back to a snapshot.
 *
 *     storage          unstable
 *     [1 ... 40]       [41 ... 45]
 *            ^ applied        ^ committed              ^ lastIndex
 *
 * Invariant: applied <= committed <= lastIndex.
 */
import type { Index, Term } from "../../../shared/ids.ts"
import type { Entry } from "../../../shared/raft-types.ts"
import { limitSize } from "./entry-size.ts"
import type { Storage, StorageError } from "./storage.ts"
import { isStorageError } from "./storage.ts"
import type { Snapshot } from "./types.ts"
import { Unstable } from "./unstable.ts"

/** A term, or why it is not known. */
export type TermResult = Term | "Compacted" | "Unavailable"

/** The member's log: stable storage plus the unstable tail (etcd raftLog). */
export class RaftLog {
  readonly storage: Storage
  readonly unstable: Unstable
  /** Highest index known to be stored on a quorum. */
  committed: Index
  /** Highest index the shell has applied (as acknowledged by `advance`). */
  applied: Index
  /** Cap on the bytes of committed entries handed out in one Ready. */
  private readonly maxCommittedSizeBytes: number

  /** Recovers the log to the point where the storage's snapshot was taken. */
  constructor(storage: Storage, maxCommittedSizeBytes: number) {
    this.storage = storage
    this.maxCommittedSizeBytes = maxCommittedSizeBytes
    const firstIndex = storage.firstIndex()
    this.unstable = new Unstable((storage.lastIndex() + 1) as Index)
    this.committed = (firstIndex - 1) as Index
    this.applied = (firstIndex - 1) as Index
  }

  /**
   * Appends `ents` received after the entry (index, logTerm) if that entry matches, truncating
   * a conflicting suffix, and commits up to min(committed, last new index). Returns the last
   * index covered by the message, or undefined when (index, logTerm) does not match. Throws
   * when a committed entry would be overwritten (a safety violation).
   */
  maybeAppend(index: Index, logTerm: Term, committed: Index, ents: ReadonlyArray<Entry>): Index | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNewIndex = (index + ents.length) as Index
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      if (ci <= this.committed) throw new Error(`entry ${ci} conflicts with committed entry [committed(${this.committed})]`)
      this.append(ents.slice(ci - (index + 1)))
    }
    this.commitTo(Math.min(committed, lastNewIndex) as Index)
    return lastNewIndex
  }

  /** Appends contiguous entries to the unstable tail; returns the new last index. */
  append(ents: ReadonlyArray<Entry>): Index {
    if (ents.length === 0) return this.lastIndex()
    const after = ents[0]!.index - 1
    if (after < this.committed) throw new Error(`after(${after}) is out of range [committed(${this.committed})]`)
    this.unstable.truncateAndAppend(ents)
    return this.lastIndex()
  }

  /**
   * The index of the first entry of `ents` that is not in the log with the same term: either
   * a conflict (same index, other term) or the first new entry. 0 when the log already holds
   * all of `ents` (etcd findConflict).
   */
  findConflict(ents: ReadonlyArray<Entry>): Index | 0 {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index
    }
    return 0
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term (etcd
   * findConflictByTerm). Used on both sides of a rejected append to skip a divergent tail one
   * term at a time instead of one entry at a time. Where the term is unknown (compacted, or
   * beyond lastIndex) the index examined is returned with term 0.
   */
  findConflictByTerm(index: Index, term: Term): { index: Index; term: Term } {
    for (let i = index; i > 0; i = (i - 1) as Index) {
      const t = this.term(i)
      // Unknown term (compacted or beyond the end): a match is possible here.
      if (isStorageError(t)) return { index: i, term: 0 as Term }
      if (t <= term) return { index: i, term: t }
    }
    return { index: 0 as Index, term: 0 as Term }
  }

  /** Entries not yet persisted, for Ready.entries. */
  unstableEntries(): Entry[] {
    return [...this.unstable.entries]
  }

  /**
   * Committed entries not yet applied, at most maxCommittedSizeBytes (at least one); none while
   * a snapshot is pending, so the shell never applies entries on top of an old state machine.
   */
  nextCommittedEnts(): Entry[] {
    if (this.hasPendingSnapshot() || this.committed <= this.applied) return []
    const ents = this.slice((this.applied + 1) as Index, (this.committed + 1) as Index, this.maxCommittedSizeBytes)
    if (ents === "Compacted") throw new Error(`unapplied entries (${this.applied}, ${this.committed}] are compacted`)
    return [...ents]
  }

  /** Cheap form of nextCommittedEnts().length > 0. */
  hasNextCommittedEnts(): boolean {
    return !this.hasPendingSnapshot() && this.committed > this.applied
  }

  /** True while a snapshot from the leader waits to be persisted and installed. */
  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined
  }

  /** The pending snapshot, else the storage's. */
  snapshot(): Snapshot | StorageError {
    return this.unstable.snapshot ?? this.storage.snapshot()
  }

  /** The first index still held (after the latest snapshot, pending or stored). */
  firstIndex(): Index {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  /** The index of the last entry (or of the snapshot, when no entry follows it). */
  lastIndex(): Index {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  /** Raises the commit index (never lowers it); throws beyond lastIndex (a lost or corrupt log). */
  commitTo(toCommit: Index): void {
    if (this.committed >= toCommit) return
    if (this.lastIndex() < toCommit) {
      throw new Error(`tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`)
    }
    this.committed = toCommit
  }

  /** Records that the shell applied up to i; throws when i is not in [applied, committed]. */
  appliedTo(i: Index): void {
    if (i === 0) return
    if (this.committed < i || i < this.applied) {
      throw new Error(`applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`)
    }
    this.applied = i
  }

  /** Marks entries up to (i, t) persisted (see Unstable.stableTo). */
  stableTo(i: Index, t: Term): void {
    this.unstable.stableTo(i, t)
  }

  /** Marks the pending snapshot at i persisted. */
  stableSnapTo(i: Index): void {
    this.unstable.stableSnapTo(i)
  }

  /** The term of the last entry; throws if storage cannot tell (a broken invariant). */
  lastTerm(): Term {
    const t = this.term(this.lastIndex())
    if (isStorageError(t)) throw new Error(`unexpected error when getting the last term (${t})`)
    return t
  }

  /**
   * The term of entry i, known for i in [firstIndex - 1, lastIndex]: "Compacted" below that
   * range, "Unavailable" above it (etcd log.go term).
   */
  term(i: Index): TermResult {
    // The unstable tail first: a term found there is in range without asking storage.
    const t = this.unstable.maybeTerm(i)
    if (t !== undefined) return t
    if (i + 1 < this.firstIndex()) return "Compacted"
    if (i > this.lastIndex()) return "Unavailable"
    const st = this.storage.term(i)
    if (st === "Compacted" || st === "Unavailable") return st
    if (isStorageError(st)) throw new Error(`unexpected storage error ${st}`)
    return st
  }

  /** Entries from i to the end, at most maxSizeBytes (at least one); "Compacted" below firstIndex. */
  entries(i: Index, maxSizeBytes: number): ReadonlyArray<Entry> | "Compacted" {
    if (i > this.lastIndex()) return []
    return this.slice(i, (this.lastIndex() + 1) as Index, maxSizeBytes)
  }

  /** The whole log from firstIndex (for tests and debugging). */
  allEntries(): ReadonlyArray<Entry> {
    const ents = this.entries(this.firstIndex(), Number.POSITIVE_INFINITY)
    if (ents === "Compacted") throw new Error("log compacted while reading it")
    return ents
  }

  /**
   * True when a log ending at (lastIndex, term) is at least as up to date as this one
   * (Raft paper §5.4.1): later last term wins, then the longer log.
   */
  isUpToDate(lastIndex: Index, term: Term): boolean {
    const lastTerm = this.lastTerm()
    return term > lastTerm || (term === lastTerm && lastIndex >= this.lastIndex())
  }

  /** True when entry i is known and has `term`. */
  matchTerm(i: Index, term: Term): boolean {
    const t = this.term(i)
    return !isStorageError(t) && t === term
  }

  /**
   * Commits up to maxIndex if that entry has the given term (the leader's current term): the
   * leader never commits entries of earlier terms by counting replicas (Raft paper §5.4.2).
   */
  maybeCommit(maxIndex: Index, term: Term): boolean {
    if (maxIndex > this.committed && this.zeroTermOnOutOfBounds(this.term(maxIndex)) === term) {
      this.commitTo(maxIndex)
      return true
    }
    return false
  }

  /** Replaces the log with a snapshot received from the leader; the snapshot is committed. */
  restore(s: Snapshot): void {
    this.committed = s.metadata.index
    this.unstable.restore(s)
  }

  /** Entries [lo, hi), at most maxSizeBytes (at least one); "Compacted" when lo < firstIndex. */
  slice(lo: Index, hi: Index, maxSizeBytes: number): ReadonlyArray<Entry> | "Compacted" {
    if (lo > hi) throw new Error(`invalid slice ${lo} > ${hi}`)
    const fi = this.firstIndex()
    if (lo < fi) return "Compacted"
    if (hi > this.lastIndex() + 1) throw new Error(`slice[${lo},${hi}) out of bound [${fi},${this.lastIndex()}]`)
    if (lo === hi) return []
    let ents: ReadonlyArray<Entry> = []
    const uoff = this.unstable.offset
    if (lo < uoff) {
      const stableHi = Math.min(hi, uoff) as Index
      const stored = this.storage.entries(lo, stableHi, maxSizeBytes)
      if (stored === "Compacted") return "Compacted"
      if (isStorageError(stored)) throw new Error(`entries[${lo}:${stableHi}) is unavailable from storage (${stored})`)
      if (stored.length < stableHi - lo) return stored
      ents = stored
    }
    if (hi > uoff) {
      const tail = this.unstable.slice(Math.max(lo, uoff) as Index, hi)
      ents = ents.length > 0 ? [...ents, ...tail] : tail
    }
    return limitSize(ents, maxSizeBytes)
  }

  /** The term, or 0 when the index is outside the log (etcd zeroTermOnOutOfBounds). */
  zeroTermOnOutOfBounds(t: TermResult): Term {
    return isStorageError(t) ? (0 as Term) : t
  }
}
