/**
 * Tests of the WAL on a real directory (services/wal/files.ts): round trips across segment
 * cuts, raft truncation, reading back while open, torn tails at every byte offset, corruption
 * in the middle, zeroed preallocated space, releaseTo, group commit and the directory lock.
 * Segments are kept tiny so that cuts happen every few records.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Wal, WalClosedError, WalCorruptError, WalLockedError, LOCK_FILE, type WalOptions } from "../../services/wal/files.ts"
import { decodeSegment } from "../../services/wal/core/decoder.ts"
import { emptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../shared/raft-types.ts"
import { Index, MemberId, Term } from "../../shared/ids.ts"

const META = new TextEncoder().encode("member=1 cluster=abc")
const entry = (index: number, term: number, data = `value-${index}-${term}`): Entry => ({
  index: Index(index),
  term: Term(term),
  type: index % 7 === 0 ? "ConfChange" : "Normal",
  data: new TextEncoder().encode(data)
})
const range = (from: number, to: number, term: number): Entry[] => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term))
const hs = (term: number, commit: number, vote = 0x8e9e05c52164694dn): HardState => ({ term: Term(term), vote: MemberId(vote), commit: Index(commit) })
const snap = (index: number, term: number): SnapshotMetadata => ({
  index: Index(index),
  term: Term(term),
  confState: { voters: [MemberId(1n), MemberId(2n), MemberId(3n)], learners: [] }
})
/** Tests that do not care about cuts still use small segments: preallocating 64 MiB is slow. */
const SMALL: WalOptions = { segmentBytes: 1 << 16 }
const ids = (es: ReadonlyArray<Entry>) => es.map((e) => `${e.index}@${e.term}`)

let dir: string
beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), "natcd-wal-")), "wal")
})
afterEach(async () => {
  await rm(join(dir, ".."), { recursive: true, force: true })
})

const segmentFiles = async (d = dir) => (await readdir(d)).filter((n) => n.endsWith(".wal")).sort()

const reopenWith = async (r: { wal: Wal }) => {
  await r.wal.close()
  return reopen()
}
const reopen = async (options?: WalOptions) => {
  const r = await Wal.open(dir, new Uint8Array(0), options ?? SMALL)
  await r.wal.close()
  return r.contents
}

describe.each([
  ["preallocated", { segmentBytes: 512, preallocate: true }],
  ["not preallocated", { segmentBytes: 512, preallocate: false }]
] as const)("round trip (%s)", (_name, options) => {
  it("creates an empty log with the given metadata", async () => {
    const { wal, contents } = await Wal.open(dir, META, options)
    expect(contents).toEqual({ metadata: META, hardState: emptyHardState, entries: [] })
    await wal.close()
    expect(await segmentFiles()).toEqual(["0000000000000000-0000000000000000.wal"])
    expect(await reopen(options)).toEqual({ metadata: META, hardState: emptyHardState, entries: [] })
  })

  it("reads back hard state and entries across several segment cuts", async () => {
    const { wal } = await Wal.open(dir, META, options)
    for (let i = 1; i <= 60; i += 3) await wal.save(hs(1, i - 1), range(i, i + 2, 1))
    expect(wal.stats().segments).toBeGreaterThan(4)
    await wal.close()
    const files = await segmentFiles()
    expect(files.length).toBeGreaterThan(4)
    // Sealed segments are cut to their records and stay within segmentBytes.
    for (const f of files.slice(0, -1)) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(512)
    // Each segment is named after its first entry.
    for (const f of files.slice(1)) {
      const first = decodeSegment(f, new Uint8Array(await readFile(join(dir, f))), undefined).records.find((r) => r.record.type === "entry")
      if (first?.record.type === "entry") expect(parseInt(f.slice(17, 33), 16)).toBe(first.record.entry.index)
    }
    const back = await reopen(options)
    expect(back.metadata).toEqual(META)
    expect(back.hardState).toEqual(hs(1, 57))
    expect(back.entries).toEqual(range(1, 60, 1))
    expect(back.repaired).toBeUndefined()
  })

  it("replaces an overwritten suffix (raft truncation), also across segments", async () => {
    const { wal } = await Wal.open(dir, META, options)
    await wal.save(hs(1, 5), range(1, 30, 1))
    await wal.save(hs(2, 5), range(10, 12, 2))
    await wal.save(undefined, range(13, 14, 2))
    await wal.save(hs(3, 11), [entry(12, 3)])
    await wal.close()
    const back = await reopen(options)
    expect(ids(back.entries)).toEqual([...ids(range(1, 9, 1)), "10@2", "11@2", "12@3"])
    expect(back.hardState).toEqual(hs(3, 11))
  })

  it("starts from the latest snapshot marker", async () => {
    const { wal } = await Wal.open(dir, META, options)
    await wal.save(hs(1, 8), range(1, 10, 1))
    await wal.saveSnapshot(snap(8, 1))
    await wal.save(hs(2, 12), range(11, 12, 2))
    await wal.close()
    const back = await reopen(options)
    expect(back.snapshot).toEqual(snap(8, 1))
    expect(ids(back.entries)).toEqual(["9@1", "10@1", "11@2", "12@2"])
  })
})

describe.each([
  ["preallocated", { segmentBytes: 512, preallocate: true }],
  ["not preallocated", { segmentBytes: 512, preallocate: false }]
] as const)("readBack on an open WAL (%s)", (_name, options) => {
  it("reads what a reopen would, across cuts, truncations, snapshot markers and releases", async () => {
    const { wal } = await Wal.open(dir, META, options)
    const back = async () => {
      const log = await wal.readBack()
      return { ...log, entries: ids(log.entries) }
    }
    expect(await wal.readBack()).toEqual({ metadata: META, hardState: emptyHardState, entries: [] })
    for (let i = 1; i <= 60; i += 3) await wal.save(hs(1, i - 1), range(i, i + 2, 1))
    expect(wal.stats().segments).toBeGreaterThan(4)
    expect(await back()).toEqual({ metadata: META, hardState: hs(1, 57), entries: ids(range(1, 60, 1)) })
    await wal.save(hs(2, 40), range(45, 46, 2))
    expect(await back()).toEqual({ metadata: META, hardState: hs(2, 40), entries: [...ids(range(1, 44, 1)), "45@2", "46@2"] })
    await wal.saveSnapshot(snap(40, 1))
    expect(await wal.releaseTo(Index(40))).not.toEqual([])
    const afterRelease = await back()
    expect(afterRelease).toEqual({ metadata: META, hardState: hs(2, 40), snapshot: snap(40, 1), entries: ["41@1", "42@1", "43@1", "44@1", "45@2", "46@2"] })
    await wal.close()
    const reopened = await reopen(options)
    expect({ ...reopened, entries: ids(reopened.entries) }).toEqual(afterRelease)
  })

  it("reads the log as the last completed group left it, not a group being written", async () => {
    const { wal } = await Wal.open(dir, META, options)
    await wal.save(hs(1, 3), range(1, 5, 1))
    // Queued, written after this synchronous step: readBack takes the tail's synced length first.
    const pending = wal.save(hs(1, 200), range(6, 200, 1))
    const during = await wal.readBack()
    expect(ids(during.entries)).toEqual(ids(range(1, 5, 1)))
    expect(during.hardState).toEqual(hs(1, 3))
    await pending
    expect(ids((await wal.readBack()).entries)).toEqual(ids(range(1, 200, 1)))
    await wal.close()
    await expect(wal.readBack()).rejects.toBeInstanceOf(WalClosedError)
  })
})

describe("torn tail", () => {
  /**
   * Builds a log whose last record is a single entry frame, and returns the last segment's
   * bytes with the offsets of that record.
   */
  const build = async (options: WalOptions) => {
    const { wal } = await Wal.open(dir, META, options)
    await wal.save(hs(1, 3), range(1, 5, 1))
    await wal.save(undefined, [entry(6, 1, "the-last-record")])
    await wal.close()
    const files = await segmentFiles()
    const name = files[files.length - 1]!
    const bytes = new Uint8Array(await readFile(join(dir, name)))
    const records = decodeSegment(name, bytes, undefined).records
    const last = records[records.length - 1]!
    return { name, bytes, start: last.offset, end: last.end }
  }

  it.each([
    ["rest zeroed (preallocated)", { segmentBytes: 4096, preallocate: true }],
    ["file cut short (not preallocated)", { segmentBytes: 4096, preallocate: false }]
  ] as const)("is repaired at every byte offset of the last record: %s", async (_name, options) => {
    const { name, bytes, start, end } = await build(options)
    expect(end - start).toBeGreaterThan(40)
    const path = join(dir, name)
    for (let k = 1; k < end - start; k++) {
      const torn = options.preallocate ? bytes.slice() : bytes.slice(0, start + k)
      if (options.preallocate) torn.fill(0, start + k)
      await writeFile(path, torn)
      const { wal, contents } = await Wal.open(dir, META, options)
      expect(ids(contents.entries), `k=${k}`).toEqual(ids(range(1, 5, 1)))
      expect(contents.hardState).toEqual(hs(1, 3))
      expect(contents.repaired?.file).toBe(name)
      expect(contents.repaired?.offset).toBe(start)
      expect(contents.repaired?.bytesDropped).toBeGreaterThan(0)
      expect(contents.repaired?.bytesDropped).toBeLessThanOrEqual(k)
      // Appendable afterwards, and clean on the next open.
      await wal.save(hs(2, 6), [entry(6, 2)])
      await wal.close()
      const again = await reopen(options)
      expect(again.repaired).toBeUndefined()
      expect(ids(again.entries)).toEqual([...ids(range(1, 5, 1)), "6@2"])
    }
    expect((await readdir(dir)).filter((n) => n.endsWith(".broken"))).toEqual([`${name}.broken`])
  })

  it("repairs a group write that lost a sector in its middle, dropping the valid records after it", async () => {
    const { wal } = await Wal.open(dir, META, SMALL)
    await wal.save(hs(1, 3), range(1, 3, 1))
    await wal.save(hs(1, 40), range(4, 43, 1).map((e) => entry(e.index, 1, "p".repeat(60))))
    await wal.close()
    const [name] = await segmentFiles()
    const bytes = new Uint8Array(await readFile(join(dir, name!)))
    const records = decodeSegment(name!, bytes, undefined).records
    const groupStart = records.find((r) => r.record.type === "entry" && r.record.entry.index === 4)!.offset
    const lost = Math.ceil((groupStart + 700) / 512) * 512
    bytes.fill(0, lost, lost + 512)
    await writeFile(join(dir, name!), bytes)
    const firstHit = records.find((r) => r.end > lost)!
    const back = await reopen()
    expect(back.repaired?.offset).toBe(firstHit.offset)
    const kept = records.filter((r) => r.end <= lost && r.record.type === "entry").length
    expect(back.entries).toHaveLength(kept)
    expect(kept).toBeGreaterThan(3)
  })

  it("refuses a last segment whose header records are damaged", async () => {
    const { wal } = await Wal.open(dir, META, SMALL)
    await wal.save(hs(1, 3), range(1, 3, 1))
    await wal.close()
    const [name] = await segmentFiles()
    await truncate(join(dir, name!), 20)
    await expect(Wal.open(dir, META, SMALL)).rejects.toThrow(/does not begin with crc and metadata records/)
  })

  it("drops garbage written after the last record", async () => {
    const { name, bytes, end } = await build({ segmentBytes: 4096 })
    const torn = bytes.slice()
    torn.fill(0x5a, end, end + 100)
    await writeFile(join(dir, name), torn)
    const back = await reopen()
    expect(back.repaired).toEqual({ file: name, offset: end, bytesDropped: 100 })
    expect(ids(back.entries)).toEqual(ids(range(1, 6, 1)))
  })

  it("treats a bit flip in the final record as a torn tail", async () => {
    const { name, bytes, start } = await build({ segmentBytes: 4096 })
    bytes[start + 30]! ^= 0x10
    await writeFile(join(dir, name), bytes)
    const back = await reopen()
    expect(back.repaired?.offset).toBe(start)
    expect(ids(back.entries)).toEqual(ids(range(1, 5, 1)))
  })
})

describe("corruption in the middle", () => {
  it("refuses a flipped bit in an earlier record of the last segment, naming file and offset", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 1 << 16 })
    for (let i = 1; i <= 10; i++) await wal.save(hs(1, i), [entry(i, 1)])
    await wal.close()
    const [name] = await segmentFiles()
    const bytes = new Uint8Array(await readFile(join(dir, name!)))
    const victim = decodeSegment(name!, bytes, undefined).records.find((r) => r.record.type === "entry" && r.record.entry.index === 4)!
    bytes[victim.offset + 20]! ^= 0x01
    await writeFile(join(dir, name!), bytes)
    const err = await Wal.open(dir, META, SMALL).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WalCorruptError)
    expect(err).toMatchObject({ file: name, offset: victim.offset })
    expect(String(err)).toContain(`${name} at byte offset ${victim.offset}`)
    // The lock was released: the failure is repeatable, not a lock error.
    await expect(Wal.open(dir, META, SMALL)).rejects.toBeInstanceOf(WalCorruptError)
  })

  it("refuses a flipped bit in a segment that is not the last, even in its final record", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 400 })
    for (let i = 1; i <= 30; i++) await wal.save(hs(1, i), [entry(i, 1)])
    await wal.close()
    const files = await segmentFiles()
    expect(files.length).toBeGreaterThan(3)
    for (const which of ["first", "last"] as const) {
      const name = files[1]!
      const path = join(dir, name)
      const original = new Uint8Array(await readFile(path))
      const records = decodeSegment(name, original, undefined).records
      const victim = which === "first" ? records[2]! : records[records.length - 1]!
      const bytes = original.slice()
      bytes[victim.offset + 18]! ^= 0x80
      await writeFile(path, bytes)
      await expect(Wal.open(dir, META, SMALL)).rejects.toMatchObject({ name: "WalCorruptError", file: name, offset: victim.offset })
      await writeFile(path, original)
    }
    expect((await reopen()).entries).toHaveLength(30)
  })

  it("refuses a missing segment and a broken chain between segments", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 400 })
    for (let i = 1; i <= 30; i++) await wal.save(hs(1, i), [entry(i, 1)])
    await wal.close()
    const files = await segmentFiles()
    const middle = join(dir, files[2]!)
    const saved = await readFile(middle)
    // Chain: the segment after the middle one no longer continues it.
    await writeFile(middle, saved.subarray(0, decodeSegment(files[2]!, new Uint8Array(saved), undefined).records.at(-2)!.end))
    await expect(Wal.open(dir, META, SMALL)).rejects.toMatchObject({ file: files[3], offset: 0 })
    await rm(middle)
    await expect(Wal.open(dir, META, SMALL)).rejects.toThrow(/a segment is missing/)
    await writeFile(middle, saved)
    expect((await reopen()).entries).toHaveLength(30)
  })
})

describe("preallocated space", () => {
  it("reads zeros after the last record as end of log", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 8192, preallocate: true })
    await wal.save(hs(1, 2), range(1, 3, 1))
    await wal.close()
    const [name] = await segmentFiles()
    expect((await stat(join(dir, name!))).size).toBe(8192)
    const back = await reopen()
    expect(back.repaired).toBeUndefined()
    expect(ids(back.entries)).toEqual(["1@1", "2@1", "3@1"])
  })

  it("reads a zero-extended file that was not preallocated as end of log", async () => {
    const { wal } = await Wal.open(dir, META, { ...SMALL, preallocate: false })
    await wal.save(hs(1, 2), range(1, 3, 1))
    await wal.close()
    const [name] = await segmentFiles()
    const size = (await stat(join(dir, name!))).size
    await truncate(join(dir, name!), size + 5000)
    const back = await reopen()
    expect(back.repaired).toBeUndefined()
    expect(back.entries).toHaveLength(3)
  })
})

describe("segment cut and releaseTo", () => {
  it("deletes the segments wholly before the index and keeps the one containing it", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 400 })
    for (let i = 1; i <= 40; i++) await wal.save(hs(1, i), [entry(i, 1)])
    await wal.saveSnapshot(snap(25, 1))
    const before = await segmentFiles()
    const firsts = before.map((f) => parseInt(f.slice(17, 33), 16))
    expect(before.length).toBeGreaterThan(5)
    expect(await wal.releaseTo(Index(firsts[1]! - 1))).toEqual([])
    const released = await wal.releaseTo(Index(25))
    const keptFrom = firsts.findLastIndex((i) => i <= 25)
    expect(released).toEqual(before.slice(0, keptFrom))
    expect(await segmentFiles()).toEqual(before.slice(keptFrom))
    expect(wal.stats().segments).toBe(before.length - keptFrom)
    await wal.save(hs(1, 41), [entry(41, 1)])
    await wal.close()
    const back = await reopen()
    expect(back.snapshot).toEqual(snap(25, 1))
    expect(back.hardState).toEqual(hs(1, 41))
    expect(ids(back.entries)).toEqual(ids(range(26, 41, 1)))
    // Releasing is clamped to the latest snapshot: entries 26..41 stay.
    const again = await Wal.open(dir, META, { segmentBytes: 400 })
    const expected = (await segmentFiles()).filter((_f, i, all) => i < all.length - 1 && parseInt(all[i + 1]!.slice(17, 33), 16) <= 26)
    expect(await again.wal.releaseTo(Index(1000))).toEqual(expected)
    expect(ids((await reopenWith(again)).entries)).toEqual(ids(range(26, 41, 1)))
    // After a snapshot at the end, everything but the last segment goes; it repeats snapshot
    // and hard state in its header.
    const third = await Wal.open(dir, META, { segmentBytes: 400 })
    await third.wal.saveSnapshot(snap(41, 1))
    const all = await segmentFiles()
    expect(await third.wal.releaseTo(Index(1000))).toEqual(all.slice(0, -1))
    expect(await segmentFiles()).toEqual(all.slice(-1))
    await third.wal.close()
    const last = await reopen()
    expect(last.snapshot).toEqual(snap(41, 1))
    expect(last.hardState).toEqual(hs(1, 41))
    expect(last.entries).toEqual([])
  })

  it("releases nothing without a snapshot marker", async () => {
    const { wal } = await Wal.open(dir, META, { segmentBytes: 400 })
    for (let i = 1; i <= 20; i++) await wal.save(hs(1, i), [entry(i, 1)])
    expect(await wal.releaseTo(Index(15))).toEqual([])
    await wal.close()
  })
})

describe("group commit", () => {
  it("writes concurrent saves together, resolves each after a covering sync, in call order", async () => {
    const { wal } = await Wal.open(dir, META, SMALL)
    // Observe every fdatasync of the WAL's files by wrapping FileHandle.prototype.datasync.
    const probe = await open(join(dir, "probe"), "w")
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }
    await probe.close()
    const original = proto.datasync
    const events: string[] = []
    proto.datasync = async function (this: unknown) {
      events.push("sync-start")
      await original.call(this)
      events.push("sync-end")
    }
    try {
      const before = wal.stats()
      const n = 50
      const calls: Promise<void>[] = []
      for (let i = 0; i < n; i++) {
        events.push(`call ${i}`)
        calls.push(wal.save(hs(1, i), [entry(i + 1, 1)]).then(() => void events.push(`resolve ${i}`)))
        // Spread the calls over a few turns of the event loop so that some arrive mid-sync.
        if (i % 10 === 9) await new Promise((r) => setImmediate(r))
      }
      await Promise.all(calls)
      const after = wal.stats()
      expect(after.saves - before.saves).toBe(n)
      expect(after.fsyncs - before.fsyncs).toBeLessThan(n)
      expect(after.fsyncs - before.fsyncs).toBeGreaterThan(0)
      const resolves = events.filter((e) => e.startsWith("resolve")).map((e) => Number(e.split(" ")[1]))
      expect(resolves).toEqual([...Array(n).keys()])
      for (let i = 0; i < n; i++) {
        const called = events.indexOf(`call ${i}`)
        const resolved = events.indexOf(`resolve ${i}`)
        const between = events.slice(called, resolved)
        const start = between.indexOf("sync-start")
        expect(start, `save ${i} has a sync after its call`).toBeGreaterThanOrEqual(0)
        expect(between.indexOf("sync-end", start), `save ${i} resolves after that sync ends`).toBeGreaterThan(start)
      }
    } finally {
      proto.datasync = original
    }
    await wal.close()
    expect((await reopen()).entries).toEqual(range(1, 50, 1).map((e, i) => ({ ...e, data: entry(i + 1, 1).data })))
  })

  it("shares one sync among saves made in one synchronous burst", async () => {
    const { wal } = await Wal.open(dir, META, SMALL)
    const before = wal.stats().fsyncs
    await Promise.all(Array.from({ length: 50 }, (_, i) => wal.save(undefined, [entry(i + 1, 1)])))
    expect(wal.stats().fsyncs - before).toBe(1)
    await wal.close()
  })

  it("refuses an unencodable call alone, and every call after close", async () => {
    const { wal } = await Wal.open(dir, META, SMALL)
    const good = wal.save(undefined, [entry(1, 1)])
    const bad = wal.save(undefined, [entry(2 ** 53, 1)])
    await expect(bad).rejects.toBeInstanceOf(RangeError)
    await good
    const pending = wal.save(hs(1, 1), [entry(2, 1)])
    await wal.close()
    await pending
    await expect(wal.save(undefined, [entry(3, 1)])).rejects.toBeInstanceOf(WalClosedError)
    expect(ids((await reopen()).entries)).toEqual(["1@1", "2@1"])
  })
})

describe("directory lock", () => {
  it("refuses a second open while the first is open", async () => {
    const first = await Wal.open(dir, META, SMALL)
    const err = await Wal.open(dir, META, SMALL).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WalLockedError)
    expect(err).toMatchObject({ pid: process.pid })
    expect(String(err)).toMatch(/locked by process \d+/)
    await first.wal.close()
    const second = await Wal.open(dir, META, SMALL)
    await second.wal.close()
  })

  it("breaks the lock of a process that no longer exists", async () => {
    const first = await Wal.open(dir, META, SMALL)
    await first.wal.save(undefined, [entry(1, 1)])
    await first.wal.close()
    // pid_max on Linux is at most 2^22: this pid cannot be running.
    await writeFile(join(dir, LOCK_FILE), `${2 ** 22 + 17}\n`)
    const second = await Wal.open(dir, META, SMALL)
    expect(second.contents.entries).toHaveLength(1)
    await second.wal.close()
  })
})
