/**
 * Table tests for the raft log and its parts: MemoryStorage (etcd storage_test.go), RaftLog
 * (log_test.go: findConflict, findConflictByTerm, maybeAppend, term bounds), Inflights
 * (tracker/inflights_test.go) and Progress (tracker/progress_test.go).
 */
import { describe, expect, it } from "vitest"
import { Index, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Inflights } from "../../services/raft/core/inflights.ts"
import { RaftLog } from "../../services/raft/core/log.ts"
import { Progress } from "../../services/raft/core/progress.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"

const ent = (term: number, index: number): Entry => ({ term: Term(term), index: Index(index), type: "Normal", data: new Uint8Array(0) })
const ids = (ents: ReadonlyArray<Entry> | string): string[] | string =>
  typeof ents === "string" ? ents : ents.map((e) => `${e.term}/${e.index}`)

/*
 * The storage used below, after compact(3):
 *
 *     index   3(dummy)  4   5
 *     term    3         4   5
 */
const compacted = (): MemoryStorage => {
  const s = new MemoryStorage()
  s.append([ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 5)])
  s.compact(Index(3))
  return s
}

describe("MemoryStorage", () => {
  it("answers term, first and last index around the dummy entry", () => {
    const s = compacted()
    expect([s.firstIndex(), s.lastIndex()]).toEqual([4, 5])
    expect([2, 3, 4, 5, 6].map((i) => s.term(Index(i)))).toEqual(["Compacted", 3, 4, 5, "Unavailable"])
  })

  const entriesTable: Array<[number, number, number, string[] | string]> = [
    [2, 6, Infinity, "Compacted"],
    [3, 4, Infinity, "Compacted"],
    [4, 5, Infinity, ["4/4"]],
    [4, 6, Infinity, ["4/4", "5/5"]],
    [4, 6, 0, ["4/4"]] // at least one entry, whatever the size limit
  ]
  for (const [lo, hi, max, want] of entriesTable) {
    it(`entries(${lo}, ${hi}, ${max}) = ${JSON.stringify(want)}`, () => {
      expect(ids(compacted().entries(Index(lo), Index(hi), max))).toEqual(want)
    })
  }

  it("append overwrites a conflicting suffix and ignores compacted entries", () => {
    const s = compacted()
    s.append([ent(3, 3), ent(6, 4)])
    expect(ids(s.entries(Index(4), Index(5), Infinity))).toEqual(["6/4"])
    expect(s.lastIndex()).toBe(4)
    expect(() => s.append([ent(6, 9)])).toThrow(/missing log entry/)
  })

  it("snapshots: create, out of date, apply", () => {
    const s = compacted()
    const cs = { voters: [], learners: [] }
    const snap = s.createSnapshot(Index(5), cs, new Uint8Array([1]))
    expect(typeof snap === "string" ? snap : snap.metadata).toEqual({ index: 5, term: 5, confState: cs })
    expect(s.createSnapshot(Index(4), cs, new Uint8Array(0))).toBe("SnapshotOutOfDate")
    expect(s.compact(Index(2))).toBe("Compacted")
    const other = new MemoryStorage()
    expect(other.applySnapshot({ metadata: { index: Index(7), term: Term(2), confState: cs }, data: new Uint8Array(0) })).toBeUndefined()
    expect([other.firstIndex(), other.lastIndex(), other.term(Index(7))]).toEqual([8, 7, 2])
  })
})

/*
 * The log used for the conflict searches (etcd TestFindConflictByTerm):
 *
 *     index   1 2 3 4 5 6 7
 *     term    1 2 2 3 3 3 5
 */
const sampleLog = (): RaftLog => {
  const s = new MemoryStorage()
  s.append([ent(1, 1), ent(2, 2), ent(2, 3), ent(3, 4), ent(3, 5), ent(3, 6), ent(5, 7)])
  return new RaftLog(s, Infinity)
}

describe("RaftLog", () => {
  const byTerm: Array<[number, number, [number, number]]> = [
    [7, 5, [7, 5]],
    [7, 4, [6, 3]],
    [7, 3, [6, 3]],
    [6, 2, [3, 2]],
    [5, 1, [1, 1]],
    [5, 0, [0, 0]],
    [8, 9, [8, 0]] // beyond the end: unknown term, possible match
  ]
  for (const [index, term, want] of byTerm) {
    it(`findConflictByTerm(${index}, ${term}) = ${want}`, () => {
      const got = sampleLog().findConflictByTerm(Index(index), Term(term))
      expect([got.index, got.term]).toEqual(want)
    })
  }

  it("findConflictByTerm stops at the compaction point with an unknown term", () => {
    const s = compacted()
    s.append([ent(5, 6), ent(5, 7)])
    const got = new RaftLog(s, Infinity).findConflictByTerm(Index(7), Term(1))
    expect([got.index, got.term]).toEqual([2, 0])
  })

  const conflicts: Array<[Entry[], number]> = [
    [[], 0],
    [[ent(1, 1), ent(2, 2)], 0],
    [[ent(3, 5), ent(3, 6), ent(5, 7)], 0],
    [[ent(5, 7), ent(6, 8)], 8],
    [[ent(2, 3), ent(4, 4)], 4],
    [[ent(4, 1)], 1]
  ]
  for (const [ents, want] of conflicts) {
    it(`findConflict(${ids(ents)}) = ${want}`, () => {
      expect(sampleLog().findConflict(ents)).toBe(want)
    })
  }

  it("term is known in [firstIndex - 1, lastIndex] only", () => {
    const log = new RaftLog(compacted(), Infinity)
    expect([2, 3, 5, 6].map((i) => log.term(Index(i)))).toEqual(["Compacted", 3, 5, "Unavailable"])
  })

  it("maybeAppend: mismatch, append, truncate, and refuse to touch committed entries", () => {
    const log = sampleLog()
    log.commitTo(Index(3))
    expect(log.maybeAppend(Index(7), Term(4), Index(7), [ent(5, 8)])).toBeUndefined()
    expect(log.maybeAppend(Index(4), Term(3), Index(9), [ent(6, 5)])).toBe(5)
    expect(ids(log.allEntries())).toEqual(["1/1", "2/2", "2/3", "3/4", "6/5"])
    expect(log.committed).toBe(5) // min(leader commit, last new index)
    expect(log.maybeAppend(Index(5), Term(6), Index(9), [ent(6, 6)])).toBe(6)
    expect(log.committed).toBe(6)
    expect(() => log.maybeAppend(Index(1), Term(1), Index(1), [ent(9, 2)])).toThrow(/conflicts with committed/)
  })

  it("isUpToDate compares last term, then last index (§5.4.1)", () => {
    const log = sampleLog()
    expect(log.isUpToDate(Index(1), Term(6))).toBe(true)
    expect(log.isUpToDate(Index(7), Term(5))).toBe(true)
    expect(log.isUpToDate(Index(6), Term(5))).toBe(false)
    expect(log.isUpToDate(Index(99), Term(4))).toBe(false)
  })
})

describe("Inflights", () => {
  it("fills, frees up to an index, and wraps around", () => {
    const inf = new Inflights(3)
    for (const i of [3, 5, 9]) inf.add(Index(i))
    expect(inf.full()).toBe(true)
    expect(() => inf.add(Index(10))).toThrow()
    inf.freeLE(Index(5))
    expect([inf.size(), inf.full()]).toEqual([1, false])
    inf.add(Index(11))
    inf.add(Index(12))
    inf.freeLE(Index(11))
    expect(inf.size()).toBe(1)
    inf.freeLE(Index(100))
    expect(inf.size()).toBe(0)
  })
})

describe("Progress", () => {
  const pr = (state: "StateProbe" | "StateReplicate", match: number, next: number): Progress => {
    const p = new Progress({ match: Index(match), next: Index(next), maxInflight: 4, isLearner: false })
    if (state === "StateReplicate") {
      p.becomeReplicate()
      p.next = Index(next)
    }
    return p
  }

  // etcd TestProgressMaybeDecr.
  const decr: Array<["StateProbe" | "StateReplicate", number, number, number, number, boolean, number]> = [
    ["StateReplicate", 5, 10, 5, 5, false, 10], // stale rejection
    ["StateReplicate", 5, 10, 4, 4, false, 10],
    ["StateReplicate", 5, 10, 9, 9, true, 6], // back to match + 1
    ["StateProbe", 0, 0, 0, 0, false, 0], // next - 1 != rejected: stale
    ["StateProbe", 0, 10, 5, 5, false, 10],
    ["StateProbe", 0, 10, 9, 9, true, 9],
    ["StateProbe", 0, 2, 1, 1, true, 1],
    ["StateProbe", 0, 10, 9, 2, true, 3], // jump to the hint
    ["StateProbe", 0, 10, 9, 0, true, 1]
  ]
  for (const [state, match, next, rejected, hint, ok, wantNext] of decr) {
    it(`${state} match=${match} next=${next}: maybeDecrTo(${rejected}, ${hint}) -> ${ok}, next=${wantNext}`, () => {
      const p = pr(state, match, next)
      expect(p.maybeDecrTo(Index(rejected), Index(hint))).toBe(ok)
      expect(p.next).toBe(wantNext)
    })
  }

  it("probes pause after one append; snapshots pause until resolved", () => {
    const p = pr("StateProbe", 0, 1)
    expect(p.isPaused()).toBe(false)
    p.sentEntries(1)
    expect(p.isPaused()).toBe(true)
    p.maybeUpdate(Index(1))
    expect(p.isPaused()).toBe(false)
    p.becomeSnapshot(Index(10))
    expect([p.isPaused(), p.next]).toEqual([true, 11])
    p.becomeProbe()
    expect([p.state, p.next]).toEqual(["StateProbe", 11])
  })
})
