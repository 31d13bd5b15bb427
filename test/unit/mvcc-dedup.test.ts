/**
 * The dedup window's pruning rule (services/mvcc/core/dedup.ts), as tables over a pure window:
 * the log clock (started by the first proposal, never back, at most 1 s per proposal), the
 * two conditions for dropping a record by time (deadline + retention passed, and enough entries
 * since it), the cap on records (oldest first), the value encoding, and restore order.
 *
 * Picture: records r1..r3 applied at indexes 1..3 with honest deadlines T+1..T+3 ms; then a
 * gateway whose clock is ten days fast proposes at index 4:
 *
 *     clock before: T+3      entry 4 deadline: T + 10 days      clock after: T+3 + 1000
 *
 * nothing expires: the clock moved 1 s, and r1 is 3 entries old (the floor is 100000).
 */
import { describe, expect, it } from "vitest"
import {
  decodeDedupValue,
  dedupClockStepMsMax,
  dedupRecordsMax,
  dedupRetentionEntriesMin,
  dedupRetentionMs,
  DedupWindow,
  encodeDedupValue
} from "../../services/mvcc/core/dedup.ts"

const T = 1_700_000_000_000
const day = 24 * 60 * 60 * 1000

describe("dedup window", () => {
  it("names its bounds with their units", () => {
    expect({ dedupRetentionMs, dedupClockStepMsMax, dedupRetentionEntriesMin, dedupRecordsMax }).toEqual({
      dedupRetentionMs: 60_000,
      dedupClockStepMsMax: 1_000,
      dedupRetentionEntriesMin: 100_000,
      dedupRecordsMax: 1_000_000
    })
  })

  it("the clock starts at the first deadline, never goes back, and moves at most one step per proposal", () => {
    const w = new DedupWindow()
    const table: Array<[deadline: number, clock: number]> = [
      [T, T], // the first proposal starts the clock
      [T - 5000, T], // a slow gateway: never back
      [T + 300, T + 300], // within a step: taken as is
      [T + 10 * day, T + 1300], // a fast gateway: one step
      [T + 10 * day, T + 2300],
      [T + 2000, T + 2300], // behind the clock: no change
      [-1, T + 2300] // a negative deadline counts as 0
    ]
    table.forEach(([deadline, clock], i) => {
      w.advance(deadline, i + 1)
      expect(w.clockMs(), `after deadline ${deadline - T}`).toBe(clock)
    })
  })

  it("a far-future deadline does not prune recent records, not even many of them", () => {
    const w = new DedupWindow()
    for (let i = 1; i <= 3; i++) {
      expect(w.advance(T + i, i)).toEqual([])
      w.add({ id: BigInt(i), deadlineMs: T + i, index: i })
    }
    expect(w.advance(T + 10 * day, 4)).toEqual([])
    expect(w.clockMs()).toBe(T + 3 + dedupClockStepMsMax)
    // 1000 fast proposals push the clock 1000 s ahead, past every record's deadline + 60 s;
    // the records are fewer than 100000 entries old, so they stay.
    for (let i = 5; i < 1005; i++) expect(w.advance(T + 10 * day, i)).toEqual([])
    expect(w.clockMs()).toBeGreaterThan(T + 3 + dedupRetentionMs)
    expect(w.records().map((r) => r.id)).toEqual([1n, 2n, 3n])
    // Once old enough in entries as well, they go, oldest first.
    expect(w.advance(T + 10 * day, 1 + dedupRetentionEntriesMin).map((r) => r.id)).toEqual([1n])
    expect(w.advance(T + 10 * day, 3 + dedupRetentionEntriesMin).map((r) => r.id)).toEqual([2n, 3n])
  })

  it("with honest clocks a record goes once the clock passed its deadline + retention and enough entries followed", () => {
    const w = new DedupWindow(0, { retentionEntriesMin: 10 })
    // One proposal every 100 ms of deadline.
    const expiredAt = new Map<bigint, number>()
    for (let i = 1; i <= 1000; i++) {
      for (const r of w.advance(T + 100 * i, i)) expiredAt.set(r.id, i)
      w.add({ id: BigInt(i), deadlineMs: T + 100 * i, index: i })
    }
    // Record 1 (deadline T+100) goes at the first clock above T+100+60000: entry 602.
    expect(expiredAt.get(1n)).toBe(602)
    expect(expiredAt.get(2n)).toBe(603)
    expect(w.size).toBe(1000 - 399)
  })

  it("holds at most recordsMax records, dropping the oldest first", () => {
    const w = new DedupWindow(0, { recordsMax: 100 })
    const dropped: bigint[] = []
    for (let i = 1; i <= 5000; i++) {
      w.advance(T, i)
      dropped.push(...w.add({ id: BigInt(i), deadlineMs: T, index: i }).map((r) => r.id))
      expect(w.size).toBeLessThanOrEqual(100)
    }
    expect(w.size).toBe(100)
    expect(dropped).toEqual(Array.from({ length: 4900 }, (_, i) => BigInt(i + 1)))
    expect(w.records()[0]!.id).toBe(4901n)
  })

  it("restores in apply order: by index, legacy records (index 0) first by deadline; a lowered cap drops the oldest", () => {
    const records = [
      { id: 9n, deadlineMs: T + 5, index: 7 },
      { id: 3n, deadlineMs: T + 9, index: 0 },
      { id: 4n, deadlineMs: T + 1, index: 0 },
      { id: 1n, deadlineMs: T + 2, index: 6 }
    ]
    const { window, dropped } = DedupWindow.restore(T + 9, records)
    expect(window.records().map((r) => r.id)).toEqual([4n, 3n, 1n, 9n])
    expect(window.clockMs()).toBe(T + 9)
    expect(dropped).toEqual([])
    const capped = DedupWindow.restore(T + 9, records, { recordsMax: 2 })
    expect(capped.window.records().map((r) => r.id)).toEqual([1n, 9n])
    expect(capped.dropped.map((r) => r.id)).toEqual([4n, 3n])
  })

  it("a window restored from its records and clock prunes exactly like one that went on", () => {
    const bounds = { retentionMs: 1000, retentionEntriesMin: 5, recordsMax: 40, clockStepMsMax: 300 }
    const deadline = (i: number) => T + 100 * i + (i % 13 === 0 ? 5 * day : 0) - (i % 7 === 0 ? 4000 : 0)
    const a = new DedupWindow(0, bounds)
    let b = new DedupWindow(0, bounds)
    for (let i = 1; i <= 500; i++) {
      if (i % 37 === 0) b = DedupWindow.restore(b.clockMs(), b.records(), bounds).window
      for (const w of [a, b]) {
        w.advance(deadline(i), i)
        if (i % 5 !== 0) w.add({ id: BigInt(i), deadlineMs: deadline(i), index: i })
      }
      expect(b.records()).toEqual(a.records())
      expect(b.clockMs()).toBe(a.clockMs())
    }
  })

  it("encodes deadline and index in 16 bytes and reads the 8-byte values of earlier versions", () => {
    for (const [deadlineMs, index] of [[0, 0], [T, 1], [2 ** 53 - 1, 2 ** 32]] as const) {
      expect(decodeDedupValue(encodeDedupValue(deadlineMs, index))).toEqual({ deadlineMs, index })
    }
    const legacy = new Uint8Array(8)
    new DataView(legacy.buffer).setBigUint64(0, BigInt(T))
    expect(decodeDedupValue(legacy)).toEqual({ deadlineMs: T, index: 0 })
    expect(() => decodeDedupValue(new Uint8Array(3))).toThrow()
  })
})
