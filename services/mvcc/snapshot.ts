/**
 * Snapshot files of the mvcc state, and moving them between members (etcd's snapshot of the
 * backend db plus rafthttp's snapshot sender/receiver, in natcd's terms).
 *
 * - `create`: commits the write buffer and copies the LMDB environment (a consistent copy; the
 *   consistent index inside it is the applied index at the copy) to `<mvcc>/snap/<index>.mdb`,
 *   and reports its size and SHA-256.
 * - `readChunk`: a piece of such a file, for a member fetching it (`mvcc.chunk`).
 * - {@link installRefusal}: whether an install request may proceed at all: the snapshot must come
 *   from a current member (the member's own raft membership), lie above the applied index, and
 *   be named as mvcc names the snapshot of that index, with a well-formed size and SHA-256 (the
 *   raft snapshot's data carries this description, made by the source's `create`).
 * - `fetch`: pulls a file from another member's mvcc service chunk by chunk (a bounded number of
 *   requests in flight: backpressure) into a temporary file, verifies size and SHA-256, opens it
 *   as LMDB and checks that its consistent index is the snapshot's index, and only then renames
 *   it to `<mvcc>/kv.mdb.install`, synced. Any failure removes the temporary file; the current
 *   database is never touched.
 * - {@link installPending}: at the start of the process, before LMDB is opened, a present
 *   `kv.mdb.install` is opened once more and, if it opens, replaces `kv.mdb` by one atomic
 *   rename (the old file stays until then; a pending file that does not open is removed and the
 *   old database kept). Installing therefore means: fetch, then exit so the process restarts on
 *   the new state; a crash at any point leaves either the old state or the new one, never a mix.
 *
 * Files are created with mode 0600 and directories 0700, as etcd's fileutil.PrivateFileMode and
 * PrivateDirMode.
 */
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, renameSync, unlinkSync } from "node:fs"
import { chmod, open, stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { memberIdFor } from "../../shared/membership.ts"
import type { MvccSnapshotInfo } from "../../shared/schema.ts"
import { privateDirMode, privateFileMode } from "../runtime/private-files.ts"
import { lmdbProbeTimeoutMs } from "./timeouts.ts"

/** Bytes per chunk sent between members. */
export const chunkBytes = 1024 * 1024
/** Chunk requests in flight while fetching. */
const chunksInFlight = 4

const FILE = /^[0-9a-f]{16}\.mdb$/
const SHA256 = /^[0-9a-f]{64}$/

const fileMode = privateFileMode
const dirMode = privateDirMode

/** The name `create` gives the snapshot of applied index `index`: 16 hex digits and `.mdb`. */
export const snapshotFileName = (index: number): string => `${index.toString(16).padStart(16, "0")}.mdb`

/**
 * What an install is checked against: the member's raft membership (`raft.members`: the
 * members, the leader it follows, 0n for none) and the mvcc service's applied index.
 */
export interface InstallContext {
  readonly cluster: string
  readonly members: ReadonlyArray<{ readonly id: bigint }>
  readonly leader: bigint
  readonly appliedIndex: number
}

/**
 * Why an install of `snapshot` from member `fromMember` must be refused, or undefined when it
 * may proceed. Refused: a source that is not a current member (by id, as names of members not
 * yet started are empty; a member that knows no membership yet, i.e. a new member being caught
 * up, accepts only the leader it follows), a snapshot not above the applied index (it would
 * move the state back), a file name that is not the one mvcc gives the snapshot of that index,
 * or a size or SHA-256 that is not well formed (they are checked against the fetched bytes).
 */
export const installRefusal = (fromMember: string, snapshot: MvccSnapshotInfo, ctx: InstallContext): string | undefined => {
  const fromId = memberIdFor(ctx.cluster, fromMember)
  const known = ctx.members.length === 0 ? ctx.leader !== 0n && ctx.leader === fromId : ctx.members.some((m) => m.id === fromId)
  if (!known) return `${JSON.stringify(fromMember)} is not a current member`
  if (!(snapshot.index > ctx.appliedIndex)) return `snapshot index ${snapshot.index} is not above the applied index ${ctx.appliedIndex}`
  if (snapshot.file !== snapshotFileName(snapshot.index)) return `snapshot file ${JSON.stringify(snapshot.file)} is not the one of index ${snapshot.index}`
  if (!Number.isSafeInteger(snapshot.sizeBytes) || snapshot.sizeBytes <= 0) return `bad snapshot size ${snapshot.sizeBytes}`
  if (!SHA256.test(snapshot.sha256)) return "bad snapshot SHA-256"
  return undefined
}

/**
 * Opens the LMDB file at `path` in a separate process (./lmdb-probe.ts: a file that is not a
 * sound LMDB environment can crash the process opening it) and returns the consistent index
 * stored in it; removes the lock file the open created. Throws when the file does not open.
 */
export const consistentIndexOf = async (path: string): Promise<number> => {
  const probe = fileURLToPath(new URL("./lmdb-probe.ts", import.meta.url))
  try {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [probe, path], { timeout: lmdbProbeTimeoutMs }, (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`${path} does not open as LMDB (${error.signal ?? `exit ${String(error.code)}`}): ${stderr.trim().split("\n").pop() ?? ""}`))
        else resolve(stdout)
      })
    })
    const index = (JSON.parse(out) as { consistentIndex?: unknown }).consistentIndex
    if (typeof index !== "number" || !Number.isSafeInteger(index)) throw new Error(`${path}: probe answered ${JSON.stringify(out)}`)
    return index
  } finally {
    await unlink(`${path}-lock`).catch(() => undefined)
  }
}

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
 * If `<dbPath>.install` exists (a fetched snapshot, or a defragmented copy), makes it the
 * database: checks that it opens as LMDB, then renames it over the old file (atomic) and removes
 * the old lock file. Call before opening LMDB. Returns "installed", "none" when there was nothing
 * to install, or `{ rejected }` when the pending file did not open (it is removed, the old
 * database kept).
 */
export const installPending = async (dbPath: string): Promise<"none" | "installed" | { readonly rejected: string }> => {
  const pending = `${dbPath}.install`
  if (!existsSync(pending)) return "none"
  try {
    await consistentIndexOf(pending)
  } catch (e) {
    // It does not open: keep the current database, drop the pending file.
    unlinkSync(pending)
    return { rejected: String(e) }
  }
  // One atomic rename replaces the old file; its lock file belongs to the old environment.
  renameSync(pending, dbPath)
  if (existsSync(`${dbPath}-lock`)) unlinkSync(`${dbPath}-lock`)
  return "installed"
}

/** A member's mvcc snapshot directory. */
export class SnapshotFiles {
  private readonly dir: string
  private readonly dbPath: string

  /** `mvccDir` is the member's mvcc directory; `dbPath` its LMDB file. */
  constructor(mvccDir: string, dbPath: string) {
    this.dir = join(mvccDir, "snap")
    this.dbPath = dbPath
    mkdirSync(this.dir, { recursive: true, mode: dirMode })
  }

  /** The copy being made, which a request arriving meanwhile (a retry) shares. */
  private creating: Promise<MvccSnapshotInfo> | undefined

  /**
   * Copies the state: `flush` commits buffered writes, `backup` copies the environment to a path,
   * `appliedIndex` is read after the flush (the copy's consistent index). Keeps the newest
   * `keep` files. While a copy is being made, another call (a retried mvcc.snapshot request)
   * gets that copy rather than starting a second one over the same temporary file.
   */
  create(flush: () => void, appliedIndex: () => number, backup: (path: string) => Promise<void>, keep: number): Promise<MvccSnapshotInfo> {
    this.creating ??= this.copy(flush, appliedIndex, backup, keep).finally(() => {
      this.creating = undefined
    })
    return this.creating
  }

  private async copy(flush: () => void, appliedIndex: () => number, backup: (path: string) => Promise<void>, keep: number): Promise<MvccSnapshotInfo> {
    flush()
    const index = appliedIndex()
    const file = snapshotFileName(index)
    const path = join(this.dir, file)
    if (!existsSync(path)) {
      const tmp = `${path}.tmp`
      if (existsSync(tmp)) await unlink(tmp)
      await backup(tmp)
      // LMDB's copy is made with its own mode; snapshot files are private as every data file.
      await chmod(tmp, fileMode)
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
   * Fetches `info.file` with `chunk(offset, length)` (another member's mvcc.chunk) into a
   * temporary file, verifies its size and SHA-256, opens it as LMDB and checks that its
   * consistent index equals `info.index`, and only then renames it, synced, to
   * `<dbPath>.install`. Throws on a short read, a checksum mismatch, a file that does not open
   * or a wrong consistent index; the temporary file is removed and the database left as it was.
   */
  async fetch(info: MvccSnapshotInfo, chunk: (offset: number, length: number) => Promise<Uint8Array>): Promise<void> {
    const partial = `${this.dbPath}.partial`
    try {
      await this.fetchUnverified(info, chunk, partial)
      const index = await consistentIndexOf(partial)
      if (index !== info.index) throw new Error(`snapshot ${info.file}: consistent index ${index} is not the snapshot's index ${info.index}`)
    } catch (e) {
      await unlink(partial).catch(() => undefined)
      await unlink(`${partial}-lock`).catch(() => undefined)
      throw e
    }
    renameSync(partial, `${this.dbPath}.install`)
  }

  private async fetchUnverified(info: MvccSnapshotInfo, chunk: (offset: number, length: number) => Promise<Uint8Array>, partial: string): Promise<void> {
    const fh = await open(partial, "w", fileMode)
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
    if (sha256 !== info.sha256) throw new Error(`snapshot ${info.file}: checksum ${sha256} does not match ${info.sha256}`)
  }

  private purge(keep: number): void {
    const files = readdirSync(this.dir).filter((f) => FILE.test(f)).sort()
    for (const f of files.slice(0, Math.max(0, files.length - keep))) unlinkSync(join(this.dir, f))
  }
}
