/**
 * What the wal service keeps of its log in memory (services/wal/log-bounds.ts): the range of
 * indexes under raft's overwrite rule, holes refused, compaction by snapshots, stale hard
 * states; and the paging of `wal.load` (pageOf).
 */
import { describe, expect, it } from "vitest"
import type { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { LogBounds, pageOf } from "../../services/wal/log-bounds.ts"

const e = (index: number, term: number, size = 1): Entry => ({ index: index as Index, term: term as Term, type: "Normal", data: new Uint8Array(size) })
const hs = { term: 1 as Term, vote: 0n as MemberId, commit: 0 as Index }

describe("LogBounds", () => {
  it("appends, overwrites a conflicting suffix, and refuses holes without changing anything", () => {
    const b = new LogBounds(hs, [e(1, 1), e(2, 1), e(3, 1)])
    expect(b.lastIndex()).toBe(3)
    b.save(undefined, [e(2, 2), e(3, 2), e(4, 2)])
    expect(b.lastIndex()).toBe(4)
    b.save(undefined, [e(1, 3)])
    expect(b.lastIndex()).toBe(1)
    const newer = { term: 4 as Term, vote: 1n as MemberId, commit: 1 as Index }
    expect(() => b.save(newer, [e(3, 3)])).toThrow(/hole: last 1, next 3/)
    expect(b.lastIndex()).toBe(1)
    // The refused append did not record its hard state either.
    expect(b.isStale({ ...hs, term: 3 as Term })).toBe(false)
    b.save(undefined, [e(2, 3)])
    expect(b.lastIndex()).toBe(2)
  })

  it("after compactTo(snapshot index) continues from there, and accepts any start once empty", () => {
    const b = new LogBounds(hs, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)])
    b.compactTo(3)
    expect(b.lastIndex()).toBe(4)
    expect(() => b.save(undefined, [e(6, 1)])).toThrow(/hole/)
    b.save(undefined, [e(5, 1)])
    b.compactTo(5)
    expect(b.lastIndex()).toBe(0)
    // A snapshot received from the leader: raft appends after its index.
    b.save(undefined, [e(101, 2)])
    expect(b.lastIndex()).toBe(101)
    // A compaction below the first held index changes nothing.
    b.compactTo(2)
    b.save(undefined, [e(102, 2)])
    expect(b.lastIndex()).toBe(102)
    expect(() => b.save(undefined, [e(104, 2)])).toThrow(/hole/)
  })

  it("knows a hard state older than the one recorded (a late copy that must not replace it)", () => {
    const b = new LogBounds({ term: 3 as Term, vote: 2n as MemberId, commit: 10 as Index }, [])
    const at = (term: number, vote: bigint, commit: number) => ({ term: term as Term, vote: vote as MemberId, commit: commit as Index })
    expect(b.isStale(at(2, 2n, 50))).toBe(true)
    expect(b.isStale(at(3, 2n, 9))).toBe(true)
    expect(b.isStale(at(3, 0n, 10))).toBe(true)
    expect(b.isStale(at(3, 2n, 10))).toBe(false)
    expect(b.isStale(at(3, 2n, 11))).toBe(false)
    expect(b.isStale(at(4, 0n, 0))).toBe(false)
    b.save(at(4, 1n, 12), [])
    expect(b.isStale(at(3, 2n, 11))).toBe(true)
  })
})

describe("pageOf", () => {
  const log = [e(1, 1, 100), e(2, 1, 100), e(3, 1, 100)]
  it("pages by bytes, always making progress", () => {
    const p1 = pageOf(log, 1, 150)
    expect(p1.entries.map((x) => x.index)).toEqual([1])
    expect(p1.more).toBe(true)
    const p2 = pageOf(log, 2, 10)
    expect(p2.entries.map((x) => x.index)).toEqual([2])
    const p3 = pageOf(log, 3, 1 << 20)
    expect(p3.entries.map((x) => x.index)).toEqual([3])
    expect(p3.more).toBe(false)
  })
  it("starts at the first entry for an index before it, and is empty after the last", () => {
    expect(pageOf(log.slice(1), 1, 1 << 20).entries.map((x) => x.index)).toEqual([2, 3])
    expect(pageOf(log, 4, 1 << 20)).toEqual({ entries: [], more: false })
    expect(pageOf([], 1, 1 << 20)).toEqual({ entries: [], more: false })
  })
})
