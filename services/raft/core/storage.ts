/**
 * The raft core's read view of the persisted log ({@link Storage}) and an in-memory
 * implementation ({@link MemoryStorage}) that the shell keeps in step with what it has made
 * durable. The core only reads storage; the shell writes it after persisting a Ready.
 *
 * Follows etcd raft storage.go. Expected failures are returned as {@link StorageError} values,
 * not thrown; a request outside the log's bounds is a broken invariant and throws.
 *
 * MemoryStorage keeps a dummy entry in front of the log that holds the index and term of the
 * last snapshot (or 0/0), so `term(snapshotIndex)` answers without the snapshot itself:
 *
 *     ents:   [dummy 5/2] [6/2] [7/3] [8/3]     firstIndex = 6, lastIndex = 8
 *     term(5) = 2, term(4) = "Compacted", term(9) = "Unavailable"
 *
 * Stored entries own their data (shared/raft-types.ts {@link ownedEntry}), so that compacting
 * the log frees the memory of what it drops.
 */
import type { Index, Term } from "../../../shared/ids.ts"
import type { ConfState, Entry, HardState } from "../../../shared/raft-types.ts"
import { emptyHardState, ownedEntry } from "../../../shared/raft-types.ts"
import { limitSize } from "./entry-size.ts"
import type { Snapshot } from "./types.ts"

/**
 * - "Compacted": the requested index precedes the first available entry (etcd ErrCompacted).
 * - "Unavailable": the requested index is not (yet) in storage (etcd ErrUnavailable).
 * - "SnapshotOutOfDate": a snapshot at or below the current snapshot's index (etcd ErrSnapOutOfDate).
 * - "SnapshotTemporarilyUnavailable": the snapshot is being built; the leader retries later.
 */
export type StorageError = "Compacted" | "Unavailable" | "SnapshotOutOfDate" | "SnapshotTemporarilyUnavailable"

/** True when `v` is a {@link StorageError} rather than a value. */
export const isStorageError = (v: unknown): v is StorageError => typeof v === "string"

/** The persisted state a member restarts from (etcd Storage.InitialState). */
export interface InitialState {
  readonly hardState: HardState
  readonly confState: ConfState
}

/**
 * Read access to the stable log (etcd raft Storage). Indexes are raft log indexes; the log
 * holds entries [firstIndex, lastIndex], preceded by a snapshot at firstIndex - 1.
 */
export interface Storage {
  /** The saved hard state and the configuration as of the latest snapshot. */
  initialState(): InitialState
  /**
   * Entries in [lo, hi), at most `maxSizeBytes` in total but at least one if any exist.
   * "Compacted" when lo <= snapshot index; "Unavailable" when the log is empty.
   */
  entries(lo: Index, hi: Index, maxSizeBytes: number): ReadonlyArray<Entry> | StorageError
  /** Term of entry i, for i in [firstIndex - 1, lastIndex]; "Compacted" below, "Unavailable" above. */
  term(i: Index): Term | StorageError
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): Index
  /** Index of the last entry in the log (snapshot index when empty). */
  lastIndex(): Index
  /** The most recent snapshot, or "SnapshotTemporarilyUnavailable" while it is being built. */
  snapshot(): Snapshot | StorageError
}

const emptyConfState: ConfState = { voters: [], learners: [] }

/**
 * An in-memory {@link Storage} (etcd MemoryStorage). The shell appends entries, saves the hard
 * state and applies snapshots here after making them durable, and compacts it after taking a
 * state machine snapshot.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = emptyHardState
  private snap: Snapshot = {
    metadata: { index: 0 as Index, term: 0 as Term, confState: emptyConfState },
    data: new Uint8Array(0)
  }
  /** ents[0] is the dummy entry at the snapshot position. Invariant: ents.length >= 1. */
  private ents: Entry[] = [{ term: 0 as Term, index: 0 as Index, type: "Normal", data: new Uint8Array(0) }]

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.snap.metadata.confState }
  }

  /** Records the hard state the shell has persisted. */
  setHardState(hs: HardState): void {
    this.hardState = hs
  }

  entries(lo: Index, hi: Index, maxSizeBytes: number): ReadonlyArray<Entry> | StorageError {
    const offset = this.offset()
    if (lo <= offset) return "Compacted"
    if (hi > this.lastIndex() + 1) throw new Error(`entries' hi(${hi}) is out of bound lastindex(${this.lastIndex()})`)
    if (this.ents.length === 1) return "Unavailable"
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes)
  }

  term(i: Index): Term | StorageError {
    const offset = this.offset()
    if (i < offset) return "Compacted"
    const e = this.ents[i - offset]
    return e === undefined ? "Unavailable" : e.term
  }

  firstIndex(): Index {
    return (this.offset() + 1) as Index
  }

  lastIndex(): Index {
    return (this.offset() + this.ents.length - 1) as Index
  }

  snapshot(): Snapshot | StorageError {
    return this.snap
  }

  /**
   * Replaces the whole log with a snapshot received from the leader (after the shell persisted
   * it). "SnapshotOutOfDate" when the snapshot is not newer than the current one.
   */
  applySnapshot(snap: Snapshot): StorageError | undefined {
    if (this.snap.metadata.index >= snap.metadata.index) return "SnapshotOutOfDate"
    this.snap = snap
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: "Normal", data: new Uint8Array(0) }]
    return undefined
  }

  /**
   * Records a state machine snapshot taken at applied index `i` (<= lastIndex) with the
   * configuration `confState` in force there, for sending to slow followers. Does not
   * compact; call {@link compact} afterwards to drop entries. "SnapshotOutOfDate" when i is
   * not above the current snapshot's index.
   */
  createSnapshot(i: Index, confState: ConfState, data: Uint8Array): Snapshot | StorageError {
    if (i <= this.snap.metadata.index) return "SnapshotOutOfDate"
    if (i > this.lastIndex()) throw new Error(`snapshot ${i} is out of bound lastindex(${this.lastIndex()})`)
    const term = this.ents[i - this.offset()]!.term
    this.snap = { metadata: { index: i, term, confState }, data }
    return this.snap
  }

  /**
   * Discards entries up to and including `compactIndex` (which must not exceed lastIndex); the
   * entry at compactIndex becomes the dummy. "Compacted" when already compacted that far.
   * The caller must not compact past its applied index.
   */
  compact(compactIndex: Index): StorageError | undefined {
    const offset = this.offset()
    if (compactIndex <= offset) return "Compacted"
    if (compactIndex > this.lastIndex()) {
      throw new Error(`compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`)
    }
    const i = compactIndex - offset
    const dummy = this.ents[i]!
    this.ents = [{ term: dummy.term, index: dummy.index, type: "Normal", data: new Uint8Array(0) }, ...this.ents.slice(i + 1)]
    return undefined
  }

  /**
   * Appends entries the shell has persisted. Entries must be contiguous; any stored suffix from
   * entries[0].index on is replaced, and entries below firstIndex are ignored. Throws when the
   * entries would leave a gap after lastIndex (a broken invariant of the caller). Data that is a
   * view into a larger buffer is copied ({@link ownedEntry}).
   */
  append(entries: ReadonlyArray<Entry>): void {
    if (entries.length === 0) return
    const first = this.firstIndex()
    const head = entries[0]!
    const last = head.index + entries.length - 1
    if (last < first) return
    const kept = first > head.index ? entries.slice(first - head.index) : entries
    const offset = kept[0]!.index - this.offset()
    if (offset > this.ents.length) {
      throw new Error(`missing log entry [last: ${this.lastIndex()}, append at: ${kept[0]!.index}]`)
    }
    this.ents.length = offset
    for (const e of kept) this.ents.push(ownedEntry(e))
  }

  private offset(): number {
    return this.ents[0]!.index
  }
}
