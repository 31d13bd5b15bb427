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
 * `wal.lock` holds the pid of the owner. It is created atomically (written under a unique
 * name, then hard-linked to `wal.lock`, which fails if it exists). A lock whose pid is not a
 * live process on this host is stale and is broken. Limits: the pid check assumes every
 * process opening the directory runs on the same host and pid namespace, and breaking a stale
 * lock is not atomic against another process breaking the same stale lock at the same moment.
 * etcd takes `flock` on each segment file instead; Node has no flock.
 */
import { link, mkdir, open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from "node:fs/promises"
import { dirname, join } from "node:path"
import { emptyHardState, isEmptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../shared/raft-types.ts"
import type { Index } from "../../shared/ids.ts"
import { planAppend, planCreate, type EncoderState } from "./core/encoder.ts"
import { recordProblem, type WalRecord } from "./core/payload.ts"
import { WalReplay } from "./core/replay.ts"
import { orderSegments, parseSegmentName, releasableCount, type SegmentId } from "./core/segment.ts"
import { privateDirMode, privateFileMode } from "../runtime/private-files.ts"
import { fsyncDir, prepareSegmentFile, SegmentFilePipeline, writeFully, writeZeros } from "./segment-file.ts"

export { WalCorruptError } from "./core/wal-error.ts"

/** Default segment size, as etcd's `SegmentSizeBytes`: 64 MiB. */
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

/** Name of the lock file inside the WAL directory. */
export const LOCK_FILE = "wal.lock"

/**
 * Options of {@link Wal.open}.
 * - `segmentBytes`: size in bytes at which a new segment is cut (default 64 MiB). A segment
 *   grows beyond it only to hold a single record larger than a segment.
 * - `preallocate`: fill each new segment with `segmentBytes` zeros before use (default true).
 */
export interface WalOptions {
  segmentBytes?: number
  preallocate?: boolean
}

/**
 * What {@link Wal.open} read back.
 * - `metadata`: the bytes given when the WAL was created (a reopen returns the stored ones).
 * - `hardState`: the last hard state saved (emptyHardState if none).
 * - `entries`: the live entries after `snapshot`, consecutive indexes, truncations applied.
 * - `snapshot`: the snapshot marker with the highest index, if any was saved.
 * - `repaired`: present when a torn tail of the last segment was dropped: segment file name,
 *   byte offset where valid records end, and how many bytes (up to the last non-zero one)
 *   were dropped. A copy of the segment before the repair is kept as `<file>.broken`.
 */
export interface WalContents {
  metadata: Uint8Array
  hardState: HardState
  entries: Entry[]
  snapshot?: SnapshotMetadata
  repaired?: { file: string; offset: number; bytesDropped: number }
}

/** Another live process (or this one) holds the WAL directory open. */
export class WalLockedError extends Error {
  override readonly name = "WalLockedError"
  readonly dir: string
  readonly pid: number
  constructor(dir: string, pid: number) {
    super(`wal: ${dir} is locked by process ${pid} (${join(dir, LOCK_FILE)})`)
    this.dir = dir
    this.pid = pid
  }
}

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

const errorCode = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : undefined

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return errorCode(e) === "EPERM"
  }
}

let lockAttempt = 0

/** Takes `<dir>/wal.lock` for this process; see the module comment. */
const acquireLock = async (dir: string): Promise<string> => {
  const lockPath = join(dir, LOCK_FILE)
  const candidate = join(dir, `${LOCK_FILE}.${process.pid}.${lockAttempt++}.new`)
  await writeFile(candidate, `${process.pid}\n`, { mode: privateFileMode })
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(candidate, lockPath)
        return lockPath
      } catch (e) {
        if (errorCode(e) !== "EEXIST") throw e
      }
      let holder: number
      try {
        holder = Number.parseInt(await readFile(lockPath, "utf8"), 10)
      } catch (e) {
        if (errorCode(e) === "ENOENT") continue
        throw e
      }
      if (Number.isSafeInteger(holder) && holder > 0 && (holder === process.pid || isAlive(holder))) {
        throw new WalLockedError(dir, holder)
      }
      // Stale: its process is gone (or the file is unreadable garbage).
      await unlink(lockPath).catch((e: unknown) => {
        if (errorCode(e) !== "ENOENT") throw e
      })
    }
    throw new Error(`wal: could not take ${lockPath}`)
  } finally {
    await unlink(candidate).catch(() => undefined)
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

  private constructor(init: {
    dir: string
    segmentBytes: number
    preallocate: boolean
    lockPath: string
    segments: SegmentId[]
    tail: FileHandle
    encoder: EncoderState
    fsyncs: number
  }) {
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
   * On error the lock is released.
   */
  static async open(dir: string, metadata: Uint8Array, options: WalOptions = {}): Promise<{ wal: Wal; contents: WalContents }> {
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) throw new RangeError(`wal: bad segmentBytes ${segmentBytes}`)
    const preallocate = options.preallocate ?? true
    // Directories 0700, files 0600, as etcd's WAL (fileutil.PrivateDirMode / PrivateFileMode).
    const created = await mkdir(dir, { recursive: true, mode: privateDirMode })
    if (created !== undefined) {
      // Make every directory entry we just created durable, from the WAL directory up.
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(dirname(d))
        if (d === created || dirname(d) === d) break
      }
    }
    const lockPath = await acquireLock(dir)
    let fsyncs = 0
    try {
      const names = await readdir(dir)
      for (const n of names) if (n.endsWith(".tmp")) await unlink(join(dir, n))
      const segments = orderSegments(names)
      const last = segments[segments.length - 1]
      if (last === undefined) {
        const plan = planCreate(metadata)
        const chunk = plan.chunks[0]!
        const tmpPath = join(dir, `${chunk.name}.tmp`)
        const tail = await prepareSegmentFile(tmpPath, segmentBytes, preallocate)
        try {
          await writeFully(tail, chunk.bytes, 0)
          await tail.datasync()
          await rename(tmpPath, join(dir, chunk.name))
          await fsyncDir(dir)
          fsyncs += 2
        } catch (e) {
          await tail.close().catch(() => undefined)
          throw e
        }
        const wal = new Wal({ dir, segmentBytes, preallocate, lockPath, segments: [parseSegmentName(chunk.name)!], tail, encoder: plan.state, fsyncs })
        return { wal, contents: { metadata: plan.state.metadata, hardState: emptyHardState, entries: [] } }
      }

      const replay = new WalReplay()
      let lastBytes = new Uint8Array(0)
      for (const segment of segments) {
        const file = await readFile(join(dir, segment.name))
        const bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength)
        const isLast = segment === last
        replay.add(segment, bytes, isLast)
        if (isLast) lastBytes = bytes
      }
      const result = replay.finish()
      const tail = await open(join(dir, last.name), "r+")
      let repaired: WalContents["repaired"]
      try {
        const repair = result.repair
        if (repair !== undefined) {
          // Keep the evidence, as etcd's Repair does, before dropping anything.
          await writeFile(join(dir, `${last.name}.broken`), lastBytes, { mode: privateFileMode })
          if (preallocate) await writeZeros(tail, repair.offset, repair.dirtyEnd)
          else await tail.truncate(repair.offset)
          await tail.datasync()
          await fsyncDir(dir)
          fsyncs += 2
          repaired = { file: repair.file, offset: repair.offset, bytesDropped: repair.dirtyEnd - repair.offset }
        }
      } catch (e) {
        await tail.close().catch(() => undefined)
        throw e
      }
      const wal = new Wal({ dir, segmentBytes, preallocate, lockPath, segments, tail, encoder: result.encoder, fsyncs })
      const contents: WalContents = { metadata: result.metadata, hardState: result.hardState, entries: result.entries }
      if (result.snapshot !== undefined) contents.snapshot = result.snapshot
      if (repaired !== undefined) contents.repaired = repaired
      return { wal, contents }
    } catch (e) {
      await unlink(lockPath).catch(() => undefined)
      throw e
    }
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
