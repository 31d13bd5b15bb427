/**
 * Reading a whole log back: segment after segment, records in order, into the hard state,
 * entries and snapshot marker a member restarts from, plus the writer's position. Follows
 * etcd's `WAL.ReadAll` (server/storage/wal/wal.go). Pure and incremental: the caller feeds one
 * segment file at a time, so only one file's bytes need to be in memory.
 *
 * ## Replay rules
 *
 * - Every segment begins with a crc record then a metadata record; all metadata must be equal
 *   (etcd's ErrMetadataConflict). A crc record continues the chain of the segment before.
 * - Entries: an entry at index i replaces every entry at or after i (raft truncation: a new
 *   leader overwrote an uncommitted suffix), as etcd's `ents = append(ents[:i-start-1], e)`.
 * - Snapshot markers: the start is the marker with the highest index (the latest written on
 *   ties). Entries at or below it are dropped, wherever they appear. etcd's ReadAll is given
 *   the start snapshot by the caller; natcd's WAL records it and picks it itself (see
 *   encoder.ts: every segment repeats the latest marker).
 * - No gaps: the live entries must run from the start snapshot's index + 1 (from 1 without a
 *   marker) without a hole (etcd's ErrSliceOutOfRange). An entry may jump ahead of the last
 *   one only when a later marker covers the jump: a follower that installs a snapshot
 *   records the marker after entries of its old log, and `releaseTo` may have deleted the
 *   entries before the jump. So gaps are judged once all records are read, and reported at
 *   the entry after the gap.
 * - Hard state: the last state record wins.
 *
 * Worked example (one segment, records in write order):
 *
 * ```
 * e1 e2 e3 e4 | state{commit 2} | e3' e4' e5' | snapshot{index 3} | e6'
 * entries after each step:
 *   e1..e4 → [1,2,3,4]; e3' → [1,2,3'] ; e4' e5' → [1,2,3',4',5']
 *   snapshot 3 → [4',5']; e6' → [4',5',6']
 * result: snapshot 3, hardState commit 2, entries 4' 5' 6'
 * ```
 */
import { emptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../../shared/raft-types.ts"
import { decodeSegment } from "./decoder.ts"
import type { EncoderState } from "./encoder.ts"
import { classifyTail, type TailDecision } from "./repair.ts"
import type { SegmentId } from "./segment.ts"
import { WalCorruptError } from "./wal-error.ts"

/** The torn tail found in the last segment: `[offset, dirtyEnd)` must be dropped. */
export interface TailRepair {
  readonly file: string
  readonly offset: number
  readonly dirtyEnd: number
  readonly reason: string
}

/** The whole log, read back. */
export interface ReplayResult {
  readonly metadata: Uint8Array
  readonly hardState: HardState
  /** Live entries after the snapshot, consecutive indexes. */
  readonly entries: Entry[]
  readonly snapshot: SnapshotMetadata | undefined
  /** Where and how the writer continues (the tail is the last segment fed). */
  readonly encoder: EncoderState
  /** Present when the last segment had a torn tail that must be dropped before appending. */
  readonly repair: TailRepair | undefined
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Incremental ReadAll. Feed every segment in sequence order with {@link WalReplay.add} (the last
 * one with `isLast`), then call {@link WalReplay.finish}. Throws {@link WalCorruptError} on
 * corruption (see repair.ts for torn-tail versus middle corruption), metadata conflicts,
 * entry gaps and missing segment headers.
 */
export class WalReplay {
  private metadata: Uint8Array | undefined
  private crc: number | undefined
  private hardState: HardState = emptyHardState
  private snapshot: SnapshotMetadata | undefined
  private entries: Entry[] = []
  private tail: { seq: number; name: string; offset: number; headerEnd: number } | undefined
  private repair: TailRepair | undefined
  /** Where the current run of consecutive entries began, for error messages. */
  private runStart = { file: "", offset: 0 }
  private lastSeq: number | undefined
  private done = false

  /**
   * Reads one segment. `segment` is its parsed name, `bytes` the whole file. Segments must
   * come in sequence order with no gap (segment.ts `orderSegments` checks names).
   */
  add(segment: SegmentId, bytes: Uint8Array, isLast: boolean): void {
    if (this.done) throw new Error("wal: WalReplay.add after the last segment")
    if (this.lastSeq !== undefined && segment.seq !== this.lastSeq + 1) {
      throw new WalCorruptError(segment.name, 0, `expected segment sequence ${this.lastSeq + 1}`)
    }
    this.lastSeq = segment.seq
    this.done = isLast
    const file = segment.name
    const decoded = decodeSegment(file, bytes, this.crc)
    const decision: TailDecision = classifyTail(bytes, decoded.stop, isLast)
    if (decision.kind === "corrupt") throw new WalCorruptError(file, decision.offset, decision.reason)
    const records = decoded.records
    const first = records[0]
    const second = records[1]
    if (first?.record.type !== "crc" || second?.record.type !== "metadata") {
      const at = first?.record.type === "crc" ? first.end : 0
      const why = decoded.stop.offset === at ? decoded.stop.reason : "unexpected record type"
      throw new WalCorruptError(file, at, `segment does not begin with crc and metadata records (${why})`)
    }
    // The header of a cut segment is crc, metadata, then at most one snapshot marker and one
    // hard state, in that order (encoder.ts).
    let headerEnd = second.end
    let h = 2
    if (records[h]?.record.type === "snapshot") headerEnd = records[h++]!.end
    if (records[h]?.record.type === "state") headerEnd = records[h]!.end
    for (const { record, offset } of records) {
      switch (record.type) {
        case "crc":
          if (offset !== 0) throw new WalCorruptError(file, offset, "crc record in the middle of a segment")
          break
        case "metadata":
          if (this.metadata === undefined) this.metadata = record.data
          else if (!bytesEqual(this.metadata, record.data)) throw new WalCorruptError(file, offset, "metadata conflicts with the earlier segments")
          break
        case "state":
          this.hardState = record.hardState
          break
        case "snapshot":
          this.applySnapshot(record.snapshot)
          break
        case "entry":
          this.applyEntry(record.entry, file, offset)
          break
      }
    }
    this.crc = decoded.crc
    const offset = decoded.stop.offset
    this.tail = { seq: segment.seq, name: file, offset, headerEnd }
    if (decision.kind === "truncate") {
      this.repair = { file, offset: decision.offset, dirtyEnd: decision.dirtyEnd, reason: decision.reason }
    }
  }

  private applySnapshot(snapshot: SnapshotMetadata): void {
    if (this.snapshot !== undefined && snapshot.index < this.snapshot.index) return
    this.snapshot = snapshot
    const drop = this.entries.findIndex((e) => e.index > snapshot.index)
    if (drop === -1) this.entries = []
    else if (drop > 0) this.entries.splice(0, drop)
  }

  private applyEntry(entry: Entry, file: string, offset: number): void {
    if (this.snapshot !== undefined && entry.index <= this.snapshot.index) return
    const first = this.entries[0]?.index
    const last = this.entries[this.entries.length - 1]?.index
    if (first === undefined || last === undefined || entry.index < first || entry.index > last + 1) {
      // A new run: the first entry, a truncation below the whole run, or a jump ahead. Only a
      // later snapshot marker can make a jump legal; finish() checks that.
      this.entries = [entry]
      this.runStart = { file, offset }
    } else {
      this.entries.length = entry.index - first
      this.entries.push(entry)
    }
  }

  /** The result; call once, after the last segment. */
  finish(): ReplayResult {
    const tail = this.tail
    if (!this.done || tail === undefined || this.metadata === undefined || this.crc === undefined) {
      throw new Error("wal: WalReplay.finish before the last segment")
    }
    const floor = this.snapshot?.index ?? 0
    const firstEntry = this.entries[0]
    if (firstEntry !== undefined && firstEntry.index > floor + 1) {
      const cover = this.snapshot === undefined ? "there is no snapshot marker" : `the latest snapshot marker is at ${floor}`
      throw new WalCorruptError(
        this.runStart.file,
        this.runStart.offset,
        `entries resume at index ${firstEntry.index} after a gap, but ${cover}: entries ${floor + 1}..${firstEntry.index - 1} are missing`
      )
    }
    const lastEntry = this.entries[this.entries.length - 1]
    const lastIndex = Math.max(lastEntry?.index ?? 0, this.snapshot?.index ?? 0)
    const encoder: EncoderState = {
      seq: tail.seq,
      name: tail.name,
      offset: tail.offset,
      headerEnd: tail.headerEnd,
      crc: this.crc,
      lastIndex,
      hardState: this.hardState,
      snapshot: this.snapshot,
      metadata: this.metadata
    }
    return {
      metadata: this.metadata,
      hardState: this.hardState,
      entries: this.entries,
      snapshot: this.snapshot,
      encoder,
      repair: this.repair
    }
  }
}
