/**
 * The write-ahead log on disk: a directory of segment files, opened under a lock, read back
 * (repairing a torn tail), appended to with group commit and fdatasync, and released from the
 * front after a snapshot. This is the node:fs shell around the pure core in `./core/`
 * (framing, CRC chain, cut and repair decisions live there). Follows etcd's
 * server/storage/wal/wal.go (`Create`, `Open`, `ReadAll`, `Save`, `SaveSnapshot`, `cut`,
 * `ReleaseLockTo`) and repair.go.
 *
 * It is not a raft log cache and not an Effect service: the wal service's shell wraps it.
 *
 * ## On disk
 *
 * ```
 * <dir>/
 *   wal.lock                                  pid of the process holding the WAL open
 *   0000000000000000-0000000000000000.wal     segment 0: crc, metadata, entries, states, …
 *   0000000000000001-00000000000004d2.wal     segment 1, first entry index 0x4d2
 *   <n>.tmp                                   next segment, preallocated ahead (deleted on open)
 *   <segment>.broken                          copy of a segment before its torn tail was cut
 * ```
 *
 * Record framing: core/record.ts. Payloads: core/payload.ts. Cut rule and segment header:
 * core/encoder.ts. Replay rules: core/replay.ts. Torn tail versus corruption: core/repair.ts.
 *
 * ## Durability
 *
 * - `save` and `saveSnapshot` resolve only after fdatasync of every segment their records went
 *   to (and the directory fsync when a segment was created).
 * - A segment becomes visible under its final name only after its header records are durable
 *   (written to a temp file, fdatasync, rename, fsync the directory); the segment before it is
 *   truncated to its records and synced first. So every segment but the last is complete.
 * - After a failed write or sync the WAL refuses all further calls (`failure`): after a failed
 *   fsync the page cache may no longer hold what the disk lacks, so retrying could acknowledge
 *   lost data. Reopen to recover from what is on disk.
 *
 * ## Lock
 *
 * `wal.lock` holds the pid of the owner; see ./wal-lock.ts.
 *
 * ## Files
 *
 * This file holds the open WAL: appending with group commit (`save`, `saveSnapshot`), reading
 * the log back while open (`readBack`), releasing old segments (`releaseTo`) and closing.
 * Opening (its read-back included) and torn-tail repair are in ./wal-open.ts, the directory
 * lock in ./wal-lock.ts, segment file writes and the preallocation pipeline in
 * ./segment-file.ts.
 */
import { open, readFile, rename, unlink, type FileHandle } from "node:fs/promises"
import { join } from "node:path"
import { isEmptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../shared/raft-types.ts"
import type { Index } from "../../shared/ids.ts"
import { planAppend, type EncoderState } from "./core/encoder.ts"
import { recordProblem, type WalRecord } from "./core/payload.ts"
import { WalReplay } from "./core/replay.ts"
import { parseSegmentName, releasableCount, type SegmentId } from "./core/segment.ts"
import { fsyncDir, SegmentFilePipeline, writeFully } from "./segment-file.ts"
import { openWalDir, type WalContents, type WalInit, type WalOptions } from "./wal-open.ts"

export { WalCorruptError } from "./core/wal-error.ts"
export { LOCK_FILE, WalLockedError } from "./wal-lock.ts"
export { DEFAULT_SEGMENT_BYTES, type WalContents, type WalOptions } from "./wal-open.ts"

/** A call on a closed WAL. */
export class WalClosedError extends Error {
  override readonly name = "WalClosedError"
  constructor() {
    super("wal: closed")
  }
}

interface Pending {
  readonly records: WalRecord[]
  readonly resolve: () => void
  readonly reject: (e: unknown) => void
}

/**
 * The log as `Wal.readBack` read it from the segment files: the metadata, the latest hard state,
 * the newest snapshot marker and the entries after it (consecutive indexes, truncations applied).
 */
export type WalLog = Pick<WalContents, "metadata" | "hardState" | "entries" | "snapshot">

/** The first `length` bytes of the file at `path` (fewer if the file is shorter). */
const readPrefix = async (path: string, length: number): Promise<Uint8Array> => {
  const fh = await open(path, "r")
  try {
    const out = new Uint8Array(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await fh.read(out, done, length - done, done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return out.subarray(0, done)
  } finally {
    await fh.close()
  }
}

/**
 * An open write-ahead log. Obtain one with {@link Wal.open}; it holds the directory lock until
 * {@link Wal.close}.
 *
 * Invariant: `encoder` describes exactly the durable content of the tail segment `tail`;
 * `segments` lists the segment files on disk in sequence order, the tail last.
 */
export class Wal {
  private readonly dir: string
  private readonly segmentBytes: number
  private readonly lockPath: string
  private readonly pipeline: SegmentFilePipeline
  private readonly segments: SegmentId[]
  private tail: FileHandle
  private encoder: EncoderState
  private readonly queue: Pending[] = []
  private flushing = false
  private flushDone: Promise<void> = Promise.resolve()
  private failure: unknown
  private closed = false
  private fsyncs = 0
  private saves = 0
  private bytes = 0
  /** Time spent in fdatasync/fsync by the group being written, in ms (for onGroup). */
  private groupSyncMs = 0
  /**
   * Told after each group commit, before its calls resolve: how many save calls and records it
   * held, the record bytes written, and the seconds spent syncing (for metrics and traces).
   */
  onGroup: ((group: { saves: number; records: number; bytes: number; syncSeconds: number }) => void) | undefined

  private constructor(init: WalInit) {
    this.dir = init.dir
    this.segmentBytes = init.segmentBytes
    this.lockPath = init.lockPath
    this.segments = init.segments
    this.tail = init.tail
    this.encoder = init.encoder
    this.fsyncs = init.fsyncs
    this.pipeline = new SegmentFilePipeline(init.dir, init.segmentBytes, init.preallocate)
    this.pipeline.warm()
  }

  /**
   * Opens the WAL in `dir`, creating the directory and a first segment holding `metadata` when
   * there is no segment yet, and reads everything back (etcd's `Create` or `Open` + `ReadAll`).
   * On an existing WAL `metadata` is ignored and the stored metadata returned.
   *
   * A torn tail of the last segment is dropped (zeroed, or cut off when not preallocating)
   * and reported in `contents.repaired`; see core/repair.ts for the rule.
   *
   * Errors: {@link WalLockedError} when another open WAL holds the directory;
   * {@link WalCorruptError} (file, byte offset, reason) for corruption that is not a torn tail,
   * a missing segment, conflicting metadata or an entry gap; node:fs errors otherwise.
   * On error the lock is released. The work and its durable order: ./wal-open.ts.
   */
  static async open(dir: string, metadata: Uint8Array, options: WalOptions = {}): Promise<{ wal: Wal; contents: WalContents }> {
    return openWalDir(dir, metadata, options, (init) => new Wal(init))
  }

  /**
   * Appends `entries` (in order) and then `hardState` (if given and not empty), as etcd's
   * `Save`. Resolves only after fdatasync covers them. Calls made while a group is being
   * written are queued and written together as the next group, with one write per segment
   * file and one fdatasync (group commit); calls made in the same synchronous burst join the
   * same group. Calls resolve in call order. A call with nothing to write still resolves in
   * order, after the groups before it.
   *
   * Entry indexes need not follow the last one: an entry at index i replaces the stored
   * entries from i on when the log is read back (raft truncation).
   *
   * Errors: RangeError for an entry or hard state that cannot be encoded (only this call
   * fails); {@link WalClosedError}; the node:fs error of a failed write or sync, after which
   * every call fails with it (see the module comment).
   */
  save(hardState: HardState | undefined, entries: ReadonlyArray<Entry>): Promise<void> {
    const records: WalRecord[] = entries.map((entry) => ({ type: "entry", entry }))
    if (hardState !== undefined && !isEmptyHardState(hardState)) records.push({ type: "state", hardState })
    return this.enqueue(records)
  }

  /**
   * Records a snapshot marker (index, term, configuration) and syncs, as etcd's
   * `SaveSnapshot`. The caller must have saved the snapshot itself durably before, and may
   * release older segments only after this resolves (etcd issue 10219). Ordered and
   * group-committed with `save`. Errors as `save`.
   */
  saveSnapshot(snapshot: SnapshotMetadata): Promise<void> {
    return this.enqueue([{ type: "snapshot", snapshot }])
  }

  private enqueue(records: WalRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new WalClosedError())
    if (this.failure !== undefined) return Promise.reject(this.failure)
    for (const r of records) {
      const problem = recordProblem(r)
      if (problem !== undefined) return Promise.reject(new RangeError(`wal: ${problem}`))
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ records, resolve, reject })
      if (!this.flushing) {
        this.flushing = true
        this.flushDone = this.flushLoop()
      }
    })
  }

  /** Writes queued groups one after another until the queue is empty. */
  private async flushLoop(): Promise<void> {
    try {
      // Let the rest of the current synchronous burst of calls join the first group.
      await Promise.resolve()
      while (this.queue.length > 0) {
        const group = this.queue.splice(0)
        const records = group.flatMap((p) => p.records)
        const bytesBefore = this.bytes
        this.groupSyncMs = 0
        try {
          await this.writeGroup(records)
        } catch (e) {
          this.failure = e
          for (const p of group) p.reject(e)
          for (const p of this.queue.splice(0)) p.reject(e)
          return
        }
        this.saves += group.length
        this.onGroup?.({ saves: group.length, records: records.length, bytes: this.bytes - bytesBefore, syncSeconds: this.groupSyncMs / 1000 })
        for (const p of group) p.resolve()
      }
    } finally {
      this.flushing = false
    }
  }

  /** Performs an append plan (see core/encoder.ts `SegmentChunk` for the order of duties). */
  private async writeGroup(records: WalRecord[]): Promise<void> {
    const plan = planAppend(this.encoder, records, this.segmentBytes)
    const lastChunk = plan.chunks.length - 1
    for (const [i, chunk] of plan.chunks.entries()) {
      const sealed = i < lastChunk
      if (!chunk.fresh) {
        if (chunk.bytes.length > 0) await writeFully(this.tail, chunk.bytes, chunk.offset)
        if (sealed) await this.tail.truncate(chunk.end)
        const syncStart = performance.now()
        await this.tail.datasync()
        this.groupSyncMs += performance.now() - syncStart
        this.fsyncs++
      } else {
        const prepared = await this.pipeline.take()
        try {
          await writeFully(prepared.handle, chunk.bytes, 0)
          if (sealed) await prepared.handle.truncate(chunk.end)
          const syncStart = performance.now()
          await prepared.handle.datasync()
          this.groupSyncMs += performance.now() - syncStart
          await rename(prepared.path, join(this.dir, chunk.name))
          await fsyncDir(this.dir)
          this.fsyncs += 2
        } catch (e) {
          await prepared.handle.close().catch(() => undefined)
          throw e
        }
        const old = this.tail
        this.tail = prepared.handle
        this.segments.push(parseSegmentName(chunk.name)!)
        await old.close()
      }
      this.bytes += chunk.bytes.length
    }
    this.encoder = plan.state
  }

  /**
   * Reads the log back from the segment files as the last completed group commit left it (etcd's
   * `ReadAll`, on a WAL that stays open): the segments up to the tail, and of the tail only the
   * bytes of its synced records. A group being written meanwhile writes after those bytes and is
   * not included, so the result is the log at one instant. The entries' data are views into the
   * bytes read (up to a segment's size each), kept alive by the result.
   *
   * The caller must not run `releaseTo` while this runs (a released segment would be missing).
   * Errors: {@link WalClosedError}; the failure of an earlier write; WalCorruptError; node:fs
   * errors.
   */
  async readBack(): Promise<WalLog> {
    if (this.closed) throw new WalClosedError()
    if (this.failure !== undefined) throw this.failure
    // Taken together, before any await: the tail and its synced length as of the last group.
    const encoder = this.encoder
    const segments = this.segments.filter((s) => s.seq <= encoder.seq)
    const replay = new WalReplay()
    for (const segment of segments) {
      const path = join(this.dir, segment.name)
      const isLast = segment.seq === encoder.seq
      let bytes: Uint8Array
      if (isLast) bytes = await readPrefix(path, encoder.offset)
      else {
        const file = await readFile(path)
        bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength)
      }
      replay.add(segment, bytes, isLast)
    }
    const { metadata, hardState, entries, snapshot } = replay.finish()
    return { metadata, hardState, entries, ...(snapshot === undefined ? {} : { snapshot }) }
  }

  /**
   * Deletes the oldest segments whose live entries are all below `index`, never the segment
   * containing `index` nor the last one (core/segment.ts `releasableCount`), then fsyncs the
   * directory. Returns the deleted file names, oldest first. Call it after the snapshot
   * covering `index` is saved and its marker synced (`saveSnapshot` resolved).
   *
   * Departures from etcd's `ReleaseLockTo`: it only unlocks such files and leaves deletion to
   * a purge loop, natcd deletes at once; and natcd clamps `index` to the latest synced
   * snapshot marker's index + 1, so entries no snapshot covers are never deleted (without a
   * marker nothing is released). Releasing past the snapshot would leave a gap that the next
   * open reports as corruption.
   */
  async releaseTo(index: Index): Promise<string[]> {
    if (this.closed) throw new WalClosedError()
    const covered = this.encoder.snapshot === undefined ? 0 : this.encoder.snapshot.index + 1
    const count = releasableCount(this.segments, Math.min(index, covered))
    if (count === 0) return []
    const doomed = this.segments.splice(0, count)
    for (const s of doomed) await unlink(join(this.dir, s.name))
    await fsyncDir(this.dir)
    this.fsyncs++
    return doomed.map((s) => s.name)
  }

  /**
   * Counters since open (open's own syncs included): `fsyncs` counts fdatasync of segment files
   * and fsync of the directory; `saves` the save/saveSnapshot calls resolved; `bytes` the
   * record bytes written to segment files (zeros of preallocation excluded); `segments` the
   * segment files currently on disk.
   */
  stats(): { fsyncs: number; saves: number; bytes: number; segments: number } {
    return { fsyncs: this.fsyncs, saves: this.saves, bytes: this.bytes, segments: this.segments.length }
  }

  /**
   * Finishes the calls already made (they resolve or fail as usual), closes the files,
   * deletes the segment file prepared ahead and releases the lock. Later calls fail with
   * {@link WalClosedError}; closing twice is harmless.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    while (this.flushing) await this.flushDone
    await this.tail.close()
    await this.pipeline.close()
    await unlink(this.lockPath).catch(() => undefined)
  }
}
