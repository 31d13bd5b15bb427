/**
 * What raft keeps of its log in memory after a snapshot: the compaction index that leaves at
 * most --snapshot-catchup-entries entries and --snapshot-catchup-bytes bytes of entry data
 * before the snapshot (services/raft/core/catch-up.ts), and stored entries that own their data,
 * so that compacting frees it (services/raft/core/storage.ts ownedEntry).
 */
import { describe, expect, it } from "vitest"
import { Index, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { catchUpCompactIndex } from "../../services/raft/core/catch-up.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"
import { ownedEntry } from "../../shared/raft-types.ts"

/** The log [first, first + sizes.length - 1], entry i holding sizes[i - first] bytes of data. */
const log = (first: number, sizes: ReadonlyArray<number>): Entry[] =>
  sizes.map((size, k) => ({ term: Term(1), index: Index(first + k), type: "Normal", data: new Uint8Array(size) }))

describe("catchUpCompactIndex", () => {
  /*
   * The log in memory when a snapshot is taken at 10 (the last entry of each log below), with
   * each entry's data size in bytes:
   *
   *     index   4   5   6   7   8   9   10
   *     bytes   1   1   1   5   2   2   3
   *
   * Entries (c, 10] are kept for slow followers; the answer is c (undefined: drop nothing).
   */
  const drawn = [1, 1, 1, 5, 2, 2, 3]
  const table: Array<{ name: string; first: number; sizes: ReadonlyArray<number>; entries: number; bytes: number; want: number | undefined }> = [
    { name: "the count alone (etcd): keep 6..10", first: 4, sizes: drawn, entries: 5, bytes: Infinity, want: 5 },
    { name: "the bytes stop first: 3+2+2 fits in 8, +5 does not; keep 8..10", first: 4, sizes: drawn, entries: 5, bytes: 8, want: 7 },
    { name: "the bytes fit exactly: 3+2+2+5 = 12; keep 7..10", first: 4, sizes: drawn, entries: 5, bytes: 12, want: 6 },
    { name: "the count stops first: 4 entries hold 12 <= 100 bytes; keep 7..10", first: 4, sizes: drawn, entries: 4, bytes: 100, want: 6 },
    { name: "the snapshot's own entry exceeds the bytes: keep nothing before it", first: 4, sizes: drawn, entries: 5, bytes: 2, want: 10 },
    { name: "no bytes at all: keep nothing", first: 4, sizes: drawn, entries: 5, bytes: 0, want: 10 },
    { name: "empty entries (no-ops, conf changes of 0 bytes) count for the count only", first: 1, sizes: [0, 0, 0, 0, 0], entries: 2, bytes: 0, want: 3 },
    { name: "everything fits and the log starts above snapshot - count: drop nothing", first: 4, sizes: drawn, entries: 50, bytes: 100, want: undefined },
    { name: "the log starts exactly at the first entry to drop: drop that one", first: 5, sizes: drawn.slice(1), entries: 5, bytes: Infinity, want: 5 },
    { name: "the log starts just above it: drop nothing", first: 6, sizes: drawn.slice(2), entries: 5, bytes: Infinity, want: undefined },
    { name: "a log of the snapshot entry only, too big: drop it", first: 10, sizes: [3], entries: 5, bytes: 2, want: 10 },
    { name: "an empty log: drop nothing", first: 11, sizes: [], entries: 5, bytes: 2, want: undefined }
  ]
  for (const t of table) {
    it(`${t.name}: ${t.want}`, () => {
      expect(catchUpCompactIndex(log(t.first, t.sizes), { entries: t.entries, bytes: t.bytes })).toBe(t.want)
    })
  }

  it("1 MiB entries: 100 entries, 16 MiB kept at most, 5000 entries allowed", () => {
    const mib = 1024 * 1024
    const c = catchUpCompactIndex(log(1, Array.from({ length: 100 }, () => mib)), { entries: 5000, bytes: 16 * mib })
    expect(c).toBe(84)
  })

  it("agrees with a brute-force search on random logs", () => {
    let seed = 7
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    for (let run = 0; run < 2000; run++) {
      const first = 1 + next(20)
      const sizes = Array.from({ length: next(12) }, () => next(6))
      const limits = { entries: next(14), bytes: next(30) }
      const ents = log(first, sizes)
      const snapshotIndex = first + sizes.length - 1
      // The smallest c in [first - 1, snapshotIndex] whose kept entries (c, snapshotIndex] fit both bounds.
      let want = snapshotIndex
      for (let c = snapshotIndex; c >= first - 1; c--) {
        const kept = ents.filter((e) => e.index > c)
        if (kept.length > limits.entries || kept.reduce((n, e) => n + e.data.byteLength, 0) > limits.bytes) break
        want = c
      }
      expect(catchUpCompactIndex(ents, limits), JSON.stringify({ first, sizes, limits })).toBe(want >= first ? want : undefined)
    }
  })
})

describe("MemoryStorage keeps entries that own their data", () => {
  it("copies data that is a view into a larger buffer, keeps data that owns its buffer", () => {
    // A received frame: several entries' data are views into one buffer.
    const frame = new Uint8Array(64 * 1024)
    frame.set([1, 2, 3], 100)
    const view: Entry = { term: Term(1), index: Index(1), type: "Normal", data: frame.subarray(100, 103) }
    const own: Entry = { term: Term(1), index: Index(2), type: "Normal", data: new Uint8Array([4, 5]) }
    const s = new MemoryStorage()
    s.append([view, own])
    const stored = s.entries(Index(1), Index(3), Infinity)
    if (typeof stored === "string") throw new Error(stored)
    expect(stored.map((e) => [...e.data])).toEqual([[1, 2, 3], [4, 5]])
    expect(stored[0]!.data.buffer.byteLength).toBe(3)
    expect(stored[0]!.data.buffer).not.toBe(frame.buffer)
    expect(stored[0]).toMatchObject({ term: 1, index: 1, type: "Normal" })
    expect(stored[1]).toBe(own)
  })

  it("ownedEntry copies a Node Buffer view too (Buffer.slice would not copy)", () => {
    const frame = Buffer.alloc(1024, 9)
    const e = ownedEntry({ term: Term(1), index: Index(1), type: "Normal", data: frame.subarray(10, 14) })
    expect(e.data.buffer.byteLength).toBe(4)
    expect([...e.data]).toEqual([9, 9, 9, 9])
  })

  it("ownedEntry copies an empty view too (it would still pin its buffer)", () => {
    const e = ownedEntry({ term: Term(1), index: Index(1), type: "ConfChange", data: new Uint8Array(10).subarray(5, 5) })
    expect(e.data.buffer.byteLength).toBe(0)
    expect(e.type).toBe("ConfChange")
  })

  it("compacting at the catch-up index leaves the snapshot's catch-up entries and everything after it", () => {
    const s = new MemoryStorage()
    s.append(log(1, [1, 1, 1, 5, 2, 2, 3, 9, 9]))
    const upToSnapshot = s.entries(Index(1), Index(8), Infinity)
    if (typeof upToSnapshot === "string") throw new Error(upToSnapshot)
    const c = catchUpCompactIndex(upToSnapshot, { entries: 5, bytes: 8 })
    expect(c).toBe(4)
    s.compact(Index(c!))
    expect([s.firstIndex(), s.lastIndex()]).toEqual([5, 9])
    expect(s.term(Index(4))).toBe(1)
  })
})
