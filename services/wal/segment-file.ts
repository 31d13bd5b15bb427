/**
 * node:fs helpers for segment files: full writes, directory fsync, zero-filled preallocation,
 * and the pipeline that prepares the next segment file in the background. Follows etcd's
 * server/storage/wal/file_pipeline.go (temp files `0.tmp`, `1.tmp`, … preallocated ahead of
 * the cut) and `fileutil.Preallocate` / `fileutil.Fsync`.
 *
 * Preallocation writes real zeros (Node has no fallocate). Zeros read back as "end of log"
 * (record.ts), so a preallocated file needs no bookkeeping of its used length, and fdatasync
 * after an append does not have to persist a file size change.
 */
import { open, unlink, type FileHandle } from "node:fs/promises"
import { join } from "node:path"
import { privateFileMode } from "../runtime/private-files.ts"

const ZERO_CHUNK_BYTES = 1 << 20
let zeroChunk: Uint8Array | undefined

/** Writes all of `bytes` at file position `position`, looping over short writes. */
export const writeFully = async (fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> => {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done)
    if (bytesWritten <= 0) throw new Error(`wal: write made no progress at position ${position + done}`)
    done += bytesWritten
  }
}

/** Writes zeros over `[from, to)` of the file (used for preallocation and tail repair). */
export const writeZeros = async (fh: FileHandle, from: number, to: number): Promise<void> => {
  zeroChunk ??= new Uint8Array(ZERO_CHUNK_BYTES)
  for (let p = from; p < to; p += ZERO_CHUNK_BYTES) {
    await writeFully(fh, zeroChunk.subarray(0, Math.min(ZERO_CHUNK_BYTES, to - p)), p)
  }
}

/**
 * fsyncs a directory so that file creations, renames and deletions in it are durable
 * (etcd's `fileutil.Fsync` on the directory). Linux and macOS allow opening a directory
 * read-only and fsyncing it.
 */
export const fsyncDir = async (dir: string): Promise<void> => {
  const fh = await open(dir, "r")
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Creates (or truncates) `path` for writing and, when `preallocate`, fills it with
 * `segmentBytes` zeros. Returns the open handle; the caller owns it.
 */
export const prepareSegmentFile = async (path: string, segmentBytes: number, preallocate: boolean): Promise<FileHandle> => {
  const fh = await open(path, "w+", privateFileMode)
  try {
    if (preallocate) await writeZeros(fh, 0, segmentBytes)
    return fh
  } catch (e) {
    await fh.close().catch(() => undefined)
    throw e
  }
}

/** A prepared temp segment file: rename `path` to the final name once its header is durable. */
export interface PreparedSegment {
  readonly path: string
  readonly handle: FileHandle
}

/**
 * Keeps one preallocated temp file ready so a cut does not wait for 64 MiB of zeros
 * (etcd's filePipeline). Temp files are named `<n>.tmp` in the WAL directory; a crash leaves
 * them behind and `Wal.open` deletes them.
 *
 * Bound: at most one file is prepared ahead.
 */
export class SegmentFilePipeline {
  private readonly dir: string
  private readonly segmentBytes: number
  private readonly preallocate: boolean
  private counter = 0
  private next: Promise<PreparedSegment> | undefined

  constructor(dir: string, segmentBytes: number, preallocate: boolean) {
    this.dir = dir
    this.segmentBytes = segmentBytes
    this.preallocate = preallocate
  }

  private prepare(): Promise<PreparedSegment> {
    const path = join(this.dir, `${this.counter++}.tmp`)
    const p = prepareSegmentFile(path, this.segmentBytes, this.preallocate).then((handle) => ({ path, handle }))
    // A failure surfaces from take(); keep it from being reported as unhandled meanwhile.
    p.catch(() => undefined)
    return p
  }

  /** Starts preparing a file if none is under way. */
  warm(): void {
    this.next ??= this.prepare()
  }

  /** Hands over a prepared temp file and starts preparing the next one. */
  async take(): Promise<PreparedSegment> {
    const current = this.next ?? this.prepare()
    this.next = undefined
    const prepared = await current
    this.warm()
    return prepared
  }

  /** Closes and deletes the file prepared ahead, if any. */
  async close(): Promise<void> {
    const pending = this.next
    this.next = undefined
    if (pending === undefined) return
    const prepared = await pending.catch(() => undefined)
    if (prepared === undefined) return
    await prepared.handle.close().catch(() => undefined)
    await unlink(prepared.path).catch(() => undefined)
  }
}
