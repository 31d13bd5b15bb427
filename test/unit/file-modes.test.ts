/**
 * Files at rest are private as etcd keeps them (fileutil.PrivateFileMode 0600, PrivateDirMode
 * 0700) even when the process umask is lax: the WAL (segments, lock, preallocated temp file, the
 * `.broken` copy of a repaired segment), raft snapshot files, trace files, and an existing member
 * directory with a lax mode, which is set to 0700 at open. The umask is set to 0o022 around each
 * test, so every mode checked here comes from the explicit modes in the code, not the umask.
 */
import { appendFile, chmod, mkdtemp, readdir, rm, stat } from "node:fs/promises"
import { mkdirSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { touchPrivateDir } from "../../services/runtime/private-files.ts"
import { TraceFileStore } from "../../services/runtime/trace-store.ts"
import { Wal } from "../../services/wal/files.ts"
import { saveSnap } from "../../services/wal/snap-files.ts"

const entry = (index: number): Entry => ({ index: Index(index), term: Term(1), type: "Normal", data: new TextEncoder().encode(`value-${index}`) })

/** Every path under `root` (itself excluded) with its permission bits and kind. */
const walk = async (root: string): Promise<Array<{ path: string; mode: number; dir: boolean }>> => {
  const out: Array<{ path: string; mode: number; dir: boolean }> = []
  for (const name of await readdir(root)) {
    const path = join(root, name)
    const s = await stat(path)
    out.push({ path, mode: s.mode & 0o777, dir: s.isDirectory() })
    if (s.isDirectory()) out.push(...(await walk(path)))
  }
  return out
}

const expectPrivate = (entries: ReadonlyArray<{ path: string; mode: number; dir: boolean }>) => {
  const wrong = entries.filter((e) => e.mode !== (e.dir ? 0o700 : 0o600)).map((e) => `${e.path} ${e.mode.toString(8)}`)
  expect(wrong).toEqual([])
}

let root: string
let savedUmask: number
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "natcd-modes-"))
  savedUmask = process.umask(0o022)
})
afterEach(async () => {
  process.umask(savedUmask)
  await rm(root, { recursive: true, force: true })
})

describe("files at rest under umask 0022", () => {
  it("creates WAL directories 0700 and segment, lock, temp and .broken files 0600", async () => {
    const member = join(root, "m1")
    const walDir = join(member, "wal")
    const { wal } = await Wal.open(walDir, new Uint8Array([1]), { segmentBytes: 512, preallocate: false })
    for (let i = 1; i <= 40; i += 2) await wal.save({ term: Term(1), vote: MemberId(0n), commit: Index(i) }, [entry(i), entry(i + 1)])
    expect(wal.stats().segments).toBeGreaterThan(2)
    // While open: the lock file and the segment prepared ahead exist too.
    const open = await walk(member)
    expect(open.some((e) => e.path.endsWith("wal.lock"))).toBe(true)
    expect(open.some((e) => e.path.endsWith(".tmp"))).toBe(true)
    expectPrivate(open)
    await wal.close()

    // A torn tail is repaired on open, keeping a `.broken` copy of the segment.
    const last = (await readdir(walDir)).filter((n) => n.endsWith(".wal")).sort().pop()!
    await appendFile(join(walDir, last), new Uint8Array([0x01, 0x02, 0x03, 0x04, 0x05]))
    const reopened = await Wal.open(walDir, new Uint8Array([1]), { segmentBytes: 512, preallocate: false })
    expect(reopened.contents.repaired).toBeDefined()
    await reopened.wal.close()
    const after = await walk(member)
    expect(after.some((e) => e.path.endsWith(".broken"))).toBe(true)
    expect(after.filter((e) => e.path.endsWith(".wal")).length).toBeGreaterThan(2)
    expectPrivate(after)
  })

  it("creates raft snapshot files 0600 and trace files and directories 0600/0700", async () => {
    const snapDir = join(root, "m1", "snap")
    touchPrivateDir(snapDir)
    await saveSnap(snapDir, { metadata: { index: Index(5), term: Term(1), confState: { voters: [MemberId(1n)], learners: [] } }, data: new Uint8Array([1, 2, 3]) })
    const traces = new TraceFileStore(join(root, "traces"), "wal-m1")
    traces.add({ traceId: "t", spanId: "s", name: "x" } as never)
    await traces.drain()
    traces.flushSync()
    const all = await walk(root)
    expect(all.some((e) => e.path.endsWith(".snap"))).toBe(true)
    expect(all.some((e) => e.path.endsWith("wal-m1.jsonl"))).toBe(true)
    expectPrivate(all)
  })

  it("sets an existing member directory with a lax mode to 0700 and reports the old mode", async () => {
    const member = join(root, "m1")
    mkdirSync(member)
    await chmod(member, 0o755)
    expect(touchPrivateDir(member)).toEqual({ previousMode: 0o755 })
    expect(statSync(member).mode & 0o777).toBe(0o700)
    // Already private: nothing to report.
    expect(touchPrivateDir(member)).toEqual({})
    // Missing: made with its parents, each 0700.
    const nested = join(root, "a", "b")
    expect(touchPrivateDir(nested)).toEqual({})
    expect(statSync(join(root, "a")).mode & 0o777).toBe(0o700)
    expect(statSync(nested).mode & 0o777).toBe(0o700)
  })
})
