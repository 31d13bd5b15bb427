/**
 * Opening a WAL directory (for `Wal.open` in ./files.ts): take its lock, then either create the
 * first segment holding the metadata (etcd's `Create`), or read every segment back (etcd's
 * `Open` + `ReadAll`) and drop a torn tail of the last one (etcd's repair.go). What to replay
 * and what counts as a torn tail is decided by the pure core (core/replay.ts, core/repair.ts);
 * this file does the node:fs work in the durable order:
 *
 * - a new first segment is written to `<name>.tmp`, fdatasync'ed, renamed, and the directory
 *   fsync'ed, after every directory created on the way was fsync'ed in its parent;
 * - before a torn tail is dropped, the segment is copied to `<segment>.broken` (the evidence,
 *   as etcd's Repair keeps), then the tail is zeroed (or cut off when not preallocating),
 *   fdatasync'ed, and the directory fsync'ed;
 * - `.tmp` files left by a crash (segments prepared ahead) are deleted.
 *
 * Appending and releasing are not here (./files.ts).
 */
import { mkdir, open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from "node:fs/promises"
import { dirname, join } from "node:path"
import { emptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../shared/raft-types.ts"
import { planCreate, type EncoderState } from "./core/encoder.ts"
import { WalReplay } from "./core/replay.ts"
import { orderSegments, parseSegmentName, type SegmentId } from "./core/segment.ts"
import { privateDirMode, privateFileMode } from "../runtime/private-files.ts"
import { fsyncDir, prepareSegmentFile, writeFully, writeZeros } from "./segment-file.ts"
import { acquireLock } from "./wal-lock.ts"

/** Default segment size, as etcd's `SegmentSizeBytes`: 64 MiB. */
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

/**
 * Options of `Wal.open`.
 * - `segmentBytes`: size in bytes at which a new segment is cut (default 64 MiB). A segment
 *   grows beyond it only to hold a single record larger than a segment.
 * - `preallocate`: fill each new segment with `segmentBytes` zeros before use (default true).
 */
export interface WalOptions {
  segmentBytes?: number
  preallocate?: boolean
}

/**
 * What `Wal.open` read back.
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

/**
 * The state an open WAL starts from: the directory and its lock, the segment files in sequence
 * order with the last one (`tail`) open for writing, and the encoder state describing exactly
 * the durable content of `tail`; `fsyncs` counts the syncs made while opening.
 */
export interface WalInit {
  readonly dir: string
  readonly segmentBytes: number
  readonly preallocate: boolean
  readonly lockPath: string
  readonly segments: SegmentId[]
  readonly tail: FileHandle
  readonly encoder: EncoderState
  readonly fsyncs: number
}

/**
 * Opens the WAL in `dir` as `Wal.open` documents it, and builds the open WAL with `make` (still
 * under the lock's release-on-error). Errors: RangeError for a bad `segmentBytes`;
 * WalLockedError; WalCorruptError; node:fs errors. On error the lock is released.
 */
export const openWalDir = async <W>(
  dir: string,
  metadata: Uint8Array,
  options: WalOptions,
  make: (init: WalInit) => W
): Promise<{ wal: W; contents: WalContents }> => {
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
      const wal = make({ dir, segmentBytes, preallocate, lockPath, segments: [parseSegmentName(chunk.name)!], tail, encoder: plan.state, fsyncs })
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
    const wal = make({ dir, segmentBytes, preallocate, lockPath, segments, tail, encoder: result.encoder, fsyncs })
    const contents: WalContents = { metadata: result.metadata, hardState: result.hardState, entries: result.entries }
    if (result.snapshot !== undefined) contents.snapshot = result.snapshot
    if (repaired !== undefined) contents.repaired = repaired
    return { wal, contents }
  } catch (e) {
    await unlink(lockPath).catch(() => undefined)
    throw e
  }
}
