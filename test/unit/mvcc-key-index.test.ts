/**
 * Table tests of the key index (services/mvcc/core/key-index.ts), after etcd's
 * server/storage/mvcc/key_index_test.go: each table opens with the generations it works on.
 * Revisions are written main.sub; (t) marks a tombstone.
 */
import { describe, expect, it } from "vitest"
import { KeyIndex } from "../../services/mvcc/core/key-index.ts"
import { revId } from "../../services/mvcc/core/revision.ts"
import { TreeIndex } from "../../services/mvcc/core/tree-index.ts"

/**
 * etcd's newTestKeyIndex:
 *
 *     key: "foo", modified: 16.0
 *     generations:
 *         {empty}
 *         {14.0, 15.1, 16.0(t)}
 *         {8.0, 10.0, 12.0(t)}
 *         {2.0, 4.0, 6.0(t)}
 */
const newTestKeyIndex = (): KeyIndex => {
  const ki = new KeyIndex("foo")
  ki.put(2, 0)
  ki.put(4, 0)
  ki.tombstone(6, 0)
  ki.put(8, 0)
  ki.put(10, 0)
  ki.tombstone(12, 0)
  ki.put(14, 0)
  ki.put(15, 1)
  ki.tombstone(16, 0)
  return ki
}

const fmt = (g: ReturnType<KeyIndex["get"]>): string =>
  g === undefined ? "not found" : `mod ${g.modified.main}.${g.modified.sub} created ${g.created.main} ver ${g.version}`

describe("KeyIndex worked example (module comment)", () => {
  // put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)
  const build = () => {
    const ki = new KeyIndex("foo")
    ki.put(1, 0)
    ki.put(2, 0)
    expect(ki.tombstone(3, 0)).toBe(true)
    ki.put(4, 0)
    expect(ki.tombstone(5, 0)).toBe(true)
    return ki
  }

  it("draws the generations", () => {
    const ki = build()
    expect(ki.toString()).toBe("{1.0 2.0 3.0(t)} {4.0 5.0(t)} {}")
    expect(ki.modified).toEqual({ main: 5, sub: 0 })
  })

  it("compacts step by step", () => {
    const ki = build()
    const steps: Array<[number, string, string[]]> = [
      // compact at, generations after, revisions kept in the backend
      [2, "{2.0 3.0(t)} {4.0 5.0(t)} {}", ["2_0"]],
      [4, "{4.0 5.0(t)} {}", ["4_0"]],
      [5, "{}", []]
    ]
    for (const [at, drawn, kept] of steps) {
      const available = new Set<string>()
      ki.compact(at, available)
      expect(ki.toString(), `compact(${at})`).toBe(drawn)
      expect([...available], `compact(${at})`).toEqual(kept)
    }
    expect(ki.isEmpty()).toBe(true)
  })
})

describe("KeyIndex.get (etcd TestKeyIndexGet)", () => {
  // After compact(4):
  //     {empty}
  //     {14.0[1], 15.1[2], 16.0(t)[3]}
  //     {8.0[1], 10.0[2], 12.0(t)[3]}
  //     {4.0[2], 6.0(t)[3]}
  const ki = newTestKeyIndex()
  ki.compact(4, new Set())
  const table: Array<[number, string]> = [
    [17, "not found"],
    [16, "not found"],
    [15, "mod 15.1 created 14 ver 2"],
    [14, "mod 14.0 created 14 ver 1"],
    [13, "not found"],
    [12, "not found"],
    [11, "mod 10.0 created 8 ver 2"],
    [10, "mod 10.0 created 8 ver 2"],
    [9, "mod 8.0 created 8 ver 1"],
    [8, "mod 8.0 created 8 ver 1"],
    [7, "not found"],
    [6, "not found"],
    [5, "mod 4.0 created 2 ver 2"],
    [4, "mod 4.0 created 2 ver 2"],
    [3, "not found"],
    [2, "not found"],
    [1, "not found"],
    [0, "not found"]
  ]
  it.each(table)("get(%i) -> %s", (rev, want) => {
    expect(fmt(ki.get(rev))).toBe(want)
  })
})

describe("KeyIndex.since (etcd TestKeyIndexSince)", () => {
  // After compact(4): revisions 4, 6, 8, 10, 12, 14, 15.1, 16 remain.
  const ki = newTestKeyIndex()
  ki.compact(4, new Set())
  const all = ["4.0", "6.0", "8.0", "10.0", "12.0", "14.0", "15.1", "16.0"]
  const table: Array<[number, string[]]> = [
    [17, []],
    [16, all.slice(7)],
    [15, all.slice(6)],
    [14, all.slice(5)],
    [13, all.slice(5)],
    [12, all.slice(4)],
    [8, all.slice(2)],
    [5, all.slice(1)],
    [4, all],
    [1, all],
    [0, all]
  ]
  it.each(table)("since(%i)", (rev, want) => {
    expect(ki.since(rev).map((r) => `${r.main}.${r.sub}`)).toEqual(want)
  })

  it("keeps only the largest sub revision of a main revision", () => {
    const k = new KeyIndex("k")
    k.put(3, 0)
    k.put(3, 2)
    k.put(4, 0)
    expect(k.since(0).map((r) => `${r.main}.${r.sub}`)).toEqual(["3.2", "4.0"])
  })
})

describe("KeyIndex.compact and keep (etcd 3.5 TestKeyIndexCompactAndKeep)", () => {
  // A tombstone at the compact revision goes with its generation (etcd 3.4/3.5).
  // Starting each time from newTestKeyIndex:
  //     {2.0, 4.0, 6.0(t)} {8.0, 10.0, 12.0(t)} {14.0, 15.1, 16.0(t)} {}
  const table: Array<[number, string, string[]]> = [
    [1, "{2.0 4.0 6.0(t)} {8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", []],
    [2, "{2.0 4.0 6.0(t)} {8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["2.0"]],
    [3, "{2.0 4.0 6.0(t)} {8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["2.0"]],
    [4, "{4.0 6.0(t)} {8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["4.0"]],
    [5, "{4.0 6.0(t)} {8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["4.0"]],
    [6, "{8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", []],
    [7, "{8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", []],
    [8, "{8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["8.0"]],
    [9, "{8.0 10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["8.0"]],
    [10, "{10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["10.0"]],
    [11, "{10.0 12.0(t)} {14.0 15.1 16.0(t)} {}", ["10.0"]],
    [12, "{14.0 15.1 16.0(t)} {}", []],
    [13, "{14.0 15.1 16.0(t)} {}", []],
    [14, "{14.0 15.1 16.0(t)} {}", ["14.0"]],
    [15, "{15.1 16.0(t)} {}", ["15.1"]],
    [16, "{}", []],
    [17, "{}", []]
  ]
  const ids = (xs: string[]) => new Set(xs.map((x) => x.replace(".", "_")))

  it.each(table)("compact(%i) from scratch", (at, drawn, kept) => {
    const ki = newTestKeyIndex()
    const available = new Set<string>()
    ki.compact(at, available)
    expect(ki.toString()).toBe(drawn)
    expect(available).toEqual(ids(kept))
  })

  it.each(table)("keep(%i) keeps the same revisions without compacting", (at, _drawn, kept) => {
    const ki = newTestKeyIndex()
    const before = ki.toString()
    const available = new Set<string>()
    ki.keep(at, available)
    expect(ki.toString()).toBe(before)
    expect(available).toEqual(ids(kept))
  })

  it("a key deleted and put again in one txn keeps its live record (3.6's rule would lose 3.1)", () => {
    //     {2.0 3.0(t)} {3.1}
    const ki = new KeyIndex("e")
    ki.put(2, 0)
    ki.tombstone(3, 0)
    ki.put(3, 1)
    const available = new Set<string>()
    ki.compact(3, available)
    expect(ki.toString()).toBe("{3.1}")
    expect(available).toEqual(new Set(["3_1"]))
  })

  it("compacting incrementally equals compacting once (etcd TestKeyIndexCompactOnFurtherRev)", () => {
    const inc = newTestKeyIndex()
    for (let at = 1; at <= 17 && !inc.isEmpty(); at++) {
      inc.compact(at, new Set())
      const once = newTestKeyIndex()
      once.compact(at, new Set())
      expect(inc.toString(), `at ${at}`).toBe(once.toString())
    }
  })
})

describe("KeyIndex put, tombstone, restore", () => {
  it("put rejects a revision not above the last one", () => {
    const ki = new KeyIndex("k")
    ki.put(5, 0)
    expect(() => ki.put(5, 0)).toThrow()
    expect(() => ki.put(4, 9)).toThrow()
    ki.put(5, 1)
    expect(ki.toString()).toBe("{5.0 5.1}")
  })

  it("tombstone of a deleted key changes nothing; of an empty index is a defect", () => {
    const ki = new KeyIndex("k")
    expect(() => ki.tombstone(1, 0)).toThrow()
    ki.put(2, 0)
    expect(ki.tombstone(3, 0)).toBe(true)
    expect(ki.tombstone(4, 0)).toBe(false)
    expect(ki.toString()).toBe("{2.0 3.0(t)} {}")
    // A put after a tombstone starts a new generation at version 1.
    ki.put(5, 0)
    expect(fmt(ki.get(5))).toBe("mod 5.0 created 5 ver 1")
  })

  it("restore seeds a generation from a record whose history is compacted", () => {
    //     {7.0[3]}   (created at 2, version 3 at 7.0)
    const ki = new KeyIndex("k")
    ki.restore({ main: 2, sub: 0 }, { main: 7, sub: 0 }, 3)
    ki.put(9, 0)
    expect(fmt(ki.get(8))).toBe("mod 7.0 created 2 ver 3")
    expect(fmt(ki.get(9))).toBe("mod 9.0 created 2 ver 4")
    expect(fmt(ki.get(6))).toBe("not found")
  })

  it("restoreTombstone (etcd TestRestoreTombstone)", () => {
    //     {16.0(t)} {empty}
    const ki = new KeyIndex("foo")
    ki.restoreTombstone(16, 0)
    for (let at = 16; at <= 20; at++) expect(ki.get(at)).toBeUndefined()
    const available = new Set<string>()
    ki.keep(16, available)
    expect(available).toEqual(new Set())
    ki.put(17, 0)
    ki.put(18, 0)
    expect(ki.since(16).map((r) => r.main)).toEqual([16, 17, 18])
    ki.compact(17, new Set())
    expect(ki.toString()).toBe("{17.0 18.0}")
  })

  it("isEmpty and findGeneration", () => {
    const ki = newTestKeyIndex()
    expect(ki.isEmpty()).toBe(false)
    // (rev, index of the generation alive, or -1)
    const table: Array<[number, number]> = [[0, -1], [1, -1], [2, 0], [3, 0], [4, 0], [5, 0], [6, -1], [7, -1], [8, 1],
      [9, 1], [10, 1], [11, 1], [12, -1], [13, -1], [14, 2], [15, 2], [16, -1], [17, -1]]
    for (const [at, gi] of table) {
      const g = ki.findGeneration(at)
      expect(g === undefined ? -1 : ki.generations.indexOf(g), `rev ${at}`).toBe(gi)
    }
    expect(new KeyIndex("x").isEmpty()).toBe(true)
  })

  it("clone is independent", () => {
    const ki = newTestKeyIndex()
    const c = ki.clone()
    c.put(20, 0)
    expect(ki.toString()).not.toBe(c.toString())
    expect(ki.modified.main).toBe(16)
  })
})

describe("TreeIndex (etcd index_test.go)", () => {
  const build = () => {
    //     a: {2.0 5.0(t)} {7.0}
    //     b: {3.0}
    //     c: {4.0 6.1}
    //     d: {6.0(t)}-less: put 6.0 then nothing else
    const ti = new TreeIndex()
    ti.put("a", { main: 2, sub: 0 })
    ti.put("b", { main: 3, sub: 0 })
    ti.put("c", { main: 4, sub: 0 })
    expect(ti.tombstone("a", { main: 5, sub: 0 })).toBe(true)
    ti.put("d", { main: 6, sub: 0 })
    ti.put("c", { main: 6, sub: 1 })
    ti.put("a", { main: 7, sub: 0 })
    return ti
  }

  it("range, revisions and count at each revision", () => {
    const ti = build()
    const table: Array<[string, string | undefined, number, number, string, number]> = [
      // key, end, atRev, limit, keys@mod, total
      ["a", undefined, 2, 0, "a@2", 1],
      ["a", undefined, 5, 0, "", 0],
      ["a", undefined, 7, 0, "a@7", 1],
      ["a", "", 4, 0, "a@2 b@3 c@4", 3],
      ["a", "", 5, 0, "b@3 c@4", 2],
      ["a", "", 7, 2, "a@7 b@3", 4],
      ["b", "d", 7, 0, "b@3 c@6", 2],
      ["d", "b", 7, 0, "", 0],
      ["a", "z", 1, 0, "", 0]
    ]
    for (const [key, end, at, limit, want, total] of table) {
      const r = ti.range(key, end, at, limit)
      const got = r.keys.map((k, i) => `${k}@${r.gets[i]!.modified.main}`).join(" ")
      expect(got, `${key}..${end} @${at}`).toBe(want)
      expect(r.total).toBe(total)
      expect(ti.revisions(key, end, at, limit).revs.length).toBe(r.keys.length)
      expect(ti.countRevisions(key, end, at)).toBe(total)
    }
  })

  it("rangeSince sorts by revision", () => {
    const ti = build()
    expect(ti.rangeSince("a", "", 4).map((r) => `${r.main}.${r.sub}`)).toEqual(["4.0", "5.0", "6.0", "6.1", "7.0"])
    expect(ti.rangeSince("c", undefined, 0).map((r) => `${r.main}.${r.sub}`)).toEqual(["4.0", "6.1"])
  })

  it("tombstone of a missing or deleted key is refused", () => {
    const ti = build()
    expect(ti.tombstone("zz", { main: 8, sub: 0 })).toBe(false)
    ti.tombstone("b", { main: 8, sub: 0 })
    expect(ti.tombstone("b", { main: 9, sub: 0 })).toBe(false)
  })

  it("compact removes emptied keys and returns what to keep; keep does not change the tree", () => {
    const ti = build()
    const kept = ti.keep(5)
    expect(ti.size).toBe(4)
    const available = ti.compact(5)
    // a's first generation ends with its tombstone at 5: nothing of it stays.
    expect(available).toEqual(new Set(["3_0", "4_0"]))
    expect(kept).toEqual(available)
    expect(ti.keyIndex("a")!.toString()).toBe("{7.0}")
    expect(ti.get("x", 5)).toBeUndefined()
    expect(revId({ main: 6, sub: 1 })).toBe("6_1")
    const available2 = ti.compact(7)
    expect(available2).toEqual(new Set(["7_0", "3_0", "6_1", "6_0"]))
    ti.tombstone("d", { main: 8, sub: 0 })
    ti.compact(9)
    expect([...ti.keyIndexes()].map((k) => k.key)).toEqual(["a", "b", "c"])
  })
})
