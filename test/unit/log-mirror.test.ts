/**
 * The wal service's view of its log: raft's overwrite rule, paging for `wal.load`, and its memory
 * bound (only entries after the last snapshot, each owning its data).
 */
import { describe, expect, it } from "vitest"
import type { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { LogMirror } from "../../services/wal/log-mirror.ts"

const e = (index: number, term: number, size = 1): Entry => ({ index: index as Index, term: term as Term, type: "Normal", data: new Uint8Array(size) })
const hs = { term: 1 as Term, vote: 0n as MemberId, commit: 0 as Index }

describe("LogMirror", () => {
  it("appends, overwrites a conflicting suffix, and refuses holes", () => {
    const m = new LogMirror(hs, [e(1, 1), e(2, 1), e(3, 1)], new Uint8Array())
    m.save(undefined, [e(2, 2), e(3, 2), e(4, 2)])
    expect(m.page(1, 1 << 20).entries.map((x) => [x.index, x.term])).toEqual([[1, 1], [2, 2], [3, 2], [4, 2]])
    m.save(undefined, [e(1, 3)])
    expect(m.page(1, 1 << 20).entries.map((x) => [x.index, x.term])).toEqual([[1, 3]])
    expect(() => m.save(undefined, [e(5, 3)])).toThrow(/hole/)
  })

  it("pages by bytes, always making progress", () => {
    const m = new LogMirror(hs, [e(1, 1, 100), e(2, 1, 100), e(3, 1, 100)], new Uint8Array())
    const p1 = m.page(1, 150)
    expect(p1.entries.map((x) => x.index)).toEqual([1])
    expect(p1.more).toBe(true)
    const p2 = m.page(2, 10)
    expect(p2.entries.map((x) => x.index)).toEqual([2])
    const p3 = m.page(3, 1 << 20)
    expect(p3.entries.map((x) => x.index)).toEqual([3])
    expect(p3.more).toBe(false)
  })
  it("after compactTo(snapshot index) holds only the entries after it, and appends continue", () => {
    const m = new LogMirror(hs, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], new Uint8Array())
    m.compactTo(3)
    expect(m.page(1, 1 << 20).entries.map((x) => x.index)).toEqual([4])
    m.save(undefined, [e(5, 1)])
    m.compactTo(5)
    expect(m.page(1, 1 << 20)).toMatchObject({ entries: [], more: false })
    expect(m.lastIndex()).toBe(0)
    m.save(undefined, [e(6, 2)])
    expect(m.page(1, 1 << 20).entries.map((x) => x.index)).toEqual([6])
    m.compactTo(2)
    expect(m.lastIndex()).toBe(6)
  })

  it("keeps copies of entry data that are views into a larger (frame) buffer", () => {
    const frame = new Uint8Array(64 * 1024)
    frame.set([7, 8], 10)
    const view: Entry = { index: 1 as Index, term: 1 as Term, type: "Normal", data: frame.subarray(10, 12) }
    const own = e(2, 1, 3)
    const m = new LogMirror(hs, [], new Uint8Array())
    m.save(undefined, [view, own])
    const [a, b] = m.page(1, 1 << 20).entries
    expect([...a!.data]).toEqual([7, 8])
    expect(a!.data.buffer.byteLength).toBe(2)
    expect(b).toBe(own)
    // Overwriting and appending after existing entries copy too.
    m.save(undefined, [{ ...view, index: 2 as Index }, { ...view, index: 3 as Index }])
    expect(m.page(2, 1 << 20).entries.map((x) => x.data.buffer.byteLength)).toEqual([2, 2])
    m.save(undefined, [{ ...view, index: 1 as Index, term: 2 as Term }])
    expect(m.page(1, 1 << 20).entries.map((x) => x.data.buffer.byteLength)).toEqual([2])
  })

  it("knows a hard state older than the one recorded (a late copy that must not replace it)", () => {
    const m = new LogMirror({ term: 3 as Term, vote: 2n as MemberId, commit: 10 as Index }, [], new Uint8Array())
    const at = (term: number, vote: bigint, commit: number) => ({ term: term as Term, vote: vote as MemberId, commit: commit as Index })
    expect(m.isStale(at(2, 2n, 50))).toBe(true)
    expect(m.isStale(at(3, 2n, 9))).toBe(true)
    expect(m.isStale(at(3, 0n, 10))).toBe(true)
    expect(m.isStale(at(3, 2n, 10))).toBe(false)
    expect(m.isStale(at(3, 2n, 11))).toBe(false)
    expect(m.isStale(at(4, 0n, 0))).toBe(false)
  })
})
