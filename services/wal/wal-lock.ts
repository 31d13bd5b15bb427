/**
 * The lock of a WAL directory: `<dir>/wal.lock` holds the pid of the process that has the WAL
 * open (./files.ts takes it in `Wal.open` and removes it in `Wal.close`).
 *
 * It is created atomically (written under a unique name, then hard-linked to `wal.lock`, which
 * fails if it exists). A lock whose pid is not a live process on this host is stale and is
 * broken. Limits: the pid check assumes every process opening the directory runs on the same
 * host and pid namespace, and breaking a stale lock is not atomic against another process
 * breaking the same stale lock at the same moment. etcd takes `flock` on each segment file
 * instead (server/storage/wal/wal.go, fileutil.LockFile); Node has no flock.
 */
import { link, readFile, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { privateFileMode } from "../runtime/private-files.ts"

/** Name of the lock file inside the WAL directory. */
export const LOCK_FILE = "wal.lock"

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

/**
 * Takes `<dir>/wal.lock` for this process; returns its path. Breaks a stale lock (at most 3
 * attempts in all). Errors: {@link WalLockedError} when a live process holds it; node:fs errors.
 */
export const acquireLock = async (dir: string): Promise<string> => {
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
