/**
 * Snapshot files of the mvcc state, and moving them between members (etcd's snapshot of the
 * backend db plus rafthttp's snapshot sender/receiver, in natcd's terms).
 *
 * - `create`: commits the write buffer and copies the LMDB environment (a consistent copy; the
 *   consistent index inside it is the applied index at the copy) to `<mvcc>/snap/<index>.mdb`,
 *   and reports its size and SHA-256.
 * - `readChunk`: a piece of such a file, for a member fetching it (`mvcc.chunk`).
 * - `fetch`: pulls a file from another member's mvcc service chunk by chunk (a bounded number of
 *   requests in flight: backpressure), verifies size and SHA-256, and leaves it as
 *   `<mvcc>/kv.mdb.install`, synced.
 * - {@link installPending}: at the start of the process, before LMDB is opened, a present
 *   `kv.mdb.install` replaces `kv.mdb` by rename. Installing therefore means: fetch, then exit so
 *   the process restarts on the new state; a crash at any point leaves either the old state or
 *   the new one, never a mix.
 */
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, renameSync, unlinkSync } from "node:fs"
import { open, stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import type { MvccSnapshotInfo } from "../../shared/schema.ts"

/** Bytes per chunk sent between members. */
export const chunkBytes = 1024 * 1024
/** Chunk requests in flight while fetching. */
const chunksInFlight = 4

const FILE = /^[0-9a-f]{16}\.mdb$/

/** Hex SHA-256 of a file, read in chunks. */
const sha256File = async (path: string): Promise<string> => {
  const hash = createHash("sha256")
  const fh = await open(path, "r")
  try {
    const buf = Buffer.alloc(chunkBytes)
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos)
      if (bytesRead === 0) break
      hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
  } finally {
    await fh.close()
  }
  return hash.digest("hex")
}

/**
 * If `<dbPath>.install` exists (a fetched snapshot), makes it the database: removes the old file
 * and its lock, renames the new one into place. Call before opening LMDB. Returns true when it
 * installed one.
 */
export const installPending = (dbPath: string): boolean => {
  const pending = `${dbPath}.install`
  if (!existsSync(pending)) return false
  for (const f of [dbPath, `${dbPath}-lock`]) if (existsSync(f)) unlinkSync(f)
  renameSync(pending, dbPath)
  return true
}

/** A member's mvcc snapshot directory. */
export class SnapshotFiles {
  private readonly dir: string
  private readonly dbPath: string

  /** `mvccDir` is the member's mvcc directory; `dbPath` its LMDB file. */
  constructor(mvccDir: string, dbPath: string) {
    this.dir = join(mvccDir, "snap")
    this.dbPath = dbPath
    mkdirSync(this.dir, { recursive: true })
  }

  /**
   * Copies the state: `flush` commits buffered writes, `backup` copies the environment to a path,
   * `appliedIndex` is read after the flush (the copy's consistent index). Keeps the newest
   * `keep` files.
   */
  async create(flush: () => void, appliedIndex: () => number, backup: (path: string) => Promise<void>, keep: number): Promise<MvccSnapshotInfo> {
    flush()
    const index = appliedIndex()
    const file = `${index.toString(16).padStart(16, "0")}.mdb`
    const path = join(this.dir, file)
    if (!existsSync(path)) {
      const tmp = `${path}.tmp`
      if (existsSync(tmp)) await unlink(tmp)
      await backup(tmp)
      const fh = await open(tmp, "r+")
      await fh.datasync()
      await fh.close()
      renameSync(tmp, path)
    }
    this.purge(keep)
    return { index, file, sizeBytes: (await stat(path)).size, sha256: await sha256File(path) }
  }

  /** `length` bytes of `file` from `offset` (fewer at the end). Throws on a name that is not a snapshot file. */
  async readChunk(file: string, offset: number, length: number): Promise<Uint8Array> {
    if (!FILE.test(file)) throw new Error(`not a snapshot file: ${JSON.stringify(file)}`)
    const fh = await open(join(this.dir, file), "r")
    try {
      const buf = Buffer.alloc(Math.min(length, chunkBytes))
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset)
      return buf.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  }

  /**
   * Fetches `info.file` with `chunk(offset, length)` (another member's mvcc.chunk), verifies its
   * size and SHA-256, and leaves it synced as `<dbPath>.install`. Throws on a short read or a
   * checksum mismatch (the partial file is removed).
   */
  async fetch(info: MvccSnapshotInfo, chunk: (offset: number, length: number) => Promise<Uint8Array>): Promise<void> {
    const partial = `${this.dbPath}.partial`
    const fh = await open(partial, "w")
    const hash = createHash("sha256")
    try {
      const offsets: number[] = []
      for (let o = 0; o < info.sizeBytes; o += chunkBytes) offsets.push(o)
      // Fetch a window of chunks concurrently, write and hash them in order.
      for (let i = 0; i < offsets.length; i += chunksInFlight) {
        const window = offsets.slice(i, i + chunksInFlight)
        const pieces = await Promise.all(window.map((o) => chunk(o, Math.min(chunkBytes, info.sizeBytes - o))))
        for (const [k, piece] of pieces.entries()) {
          const expected = Math.min(chunkBytes, info.sizeBytes - window[k]!)
          if (piece.length !== expected) throw new Error(`short chunk at ${window[k]}: ${piece.length} of ${expected} bytes`)
          await fh.write(piece, 0, piece.length, window[k]!)
          hash.update(piece)
        }
      }
      await fh.datasync()
    } finally {
      await fh.close()
    }
    const sha256 = hash.digest("hex")
    if (sha256 !== info.sha256) {
      await unlink(partial)
      throw new Error(`snapshot ${info.file}: checksum ${sha256} does not match ${info.sha256}`)
    }
    renameSync(partial, `${this.dbPath}.install`)
  }

  private purge(keep: number): void {
    const files = readdirSync(this.dir).filter((f) => FILE.test(f)).sort()
    for (const f of files.slice(0, Math.max(0, files.length - keep))) unlinkSync(join(this.dir, f))
  }
}
