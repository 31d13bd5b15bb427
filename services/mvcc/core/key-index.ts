/**
 * The revision history of one key, in generations.
 *
 * A keyIndex stores the revisions of a key that are still in the backend. Each keyIndex has at
 * least one generation; each generation holds the revisions of one life of the key, from the
 * put that created it to the tombstone that deleted it. A tombstone appends its revision to the
 * current generation and opens a new, empty one. Each revision points at one backend record.
 *
 * For example: put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0) on key "foo"
 * builds:
 *
 *     key:      "foo"
 *     modified: 5.0
 *     generations:
 *         {empty}
 *         {4.0, 5.0(t)}
 *         {1.0, 2.0, 3.0(t)}
 *
 * Compacting a keyIndex at rev removes the revisions <= rev except the largest of them, and
 * every generation whose tombstone is <= rev (a tombstone at exactly rev goes too: the key
 * does not exist at rev, so nothing readable needs it). When every generation is gone the
 * keyIndex is empty and the tree index removes it.
 *
 *     compact(2):  {empty}  {4.0, 5.0(t)}  {2.0, 3.0(t)}
 *     compact(4):  {empty}  {4.0, 5.0(t)}
 *     compact(5):  {empty}                 -> the key is removed from the tree
 *
 * This is etcd 3.4/3.5 behaviour. etcd 3.6 (commit bbdc94181, "keep tombstone if revision ==
 * compactAtRev") keeps a tombstone at exactly rev so that a watcher starting at the compact
 * revision still sees that delete; natcd does not follow it yet. Besides, with 3.6's rule a
 * key deleted and put again in one txn (a delete with range_end "\0" next to a put passes
 * etcd's duplicate check) loses its live record when compacted at that revision: the walk
 * stops in the generation of the tombstone and never marks the put (sub revision > 0) as
 * available. The model test found this; 3.4's rule has no such case.
 *
 * Follows etcd server/storage/mvcc/key_index.go. Broken invariants (a put not above the last
 * revision, an operation on an empty keyIndex) throw, where etcd panics.
 */
import { type Rev, revGreaterThan, revId, zeroRev } from "./revision.ts"

/**
 * One life of a key.
 *
 * Invariant: `revs` is strictly increasing; when non-empty, `created` is the creating put's
 * revision (or {0,0} when restored from a lone tombstone), and `ver` is the key's version at
 * the last revision in `revs` (a tombstone counts as one).
 */
export class Generation {
  ver: number
  created: Rev
  revs: Rev[]

  constructor(ver = 0, created: Rev = zeroRev, revs: Rev[] = []) {
    this.ver = ver
    this.created = created
    this.revs = revs
  }

  /** True when the generation holds no revision. */
  isEmpty(): boolean {
    return this.revs.length === 0
  }

  /**
   * Walks the revisions newest first while `f` returns true. Returns the position where `f`
   * returned false, or -1 when it never did (etcd generation.walk).
   */
  walk(f: (r: Rev) => boolean): number {
    for (let i = this.revs.length - 1; i >= 0; i--) if (!f(this.revs[i]!)) return i
    return -1
  }

  /** A copy that shares the (immutable) revision objects. */
  clone(): Generation {
    return new Generation(this.ver, this.created, this.revs.slice())
  }
}

/** What {@link KeyIndex.get} finds: the revision of the version visible at atRev. */
export interface KeyIndexGet {
  /** The revision of the visible version (its mod revision). */
  readonly modified: Rev
  /** The revision that created the visible generation. */
  readonly created: Rev
  /** The key's version at `modified` (1 for the creating put). */
  readonly version: number
}

/**
 * The generations of one key. `key` is a binary string (see key-bytes.ts).
 *
 * Invariants: `generations` is never empty once a revision was put; only the last generation
 * may be empty (every earlier one ends with a tombstone); `modified` is the largest revision
 * ever put, so revisions only grow.
 */
export class KeyIndex {
  readonly key: string
  modified: Rev = zeroRev
  generations: Generation[] = []

  constructor(key: string) {
    this.key = key
  }

  /** Appends revision {main, sub} to the current generation, creating the key if it is empty. */
  put(main: number, sub: number): void {
    const r: Rev = { main, sub }
    if (!revGreaterThan(r, this.modified)) {
      throw new Error(`keyIndex.put: revision ${main}.${sub} not above ${this.modified.main}.${this.modified.sub}`)
    }
    if (this.generations.length === 0) this.generations.push(new Generation())
    const g = this.generations[this.generations.length - 1]!
    if (g.isEmpty()) g.created = r
    g.revs.push(r)
    g.ver++
    this.modified = r
  }

  /**
   * Seeds an empty keyIndex from a record read at restore: the key was created at `created`,
   * its version at `modified` is `ver`. Earlier revisions may already be compacted away.
   */
  restore(created: Rev, modified: Rev, ver: number): void {
    if (this.generations.length !== 0) throw new Error("keyIndex.restore: generations not empty")
    this.modified = modified
    this.generations.push(new Generation(ver, created, [modified]))
  }

  /**
   * Seeds an empty keyIndex from a tombstone that is the first record seen for the key at
   * restore (its creation is compacted away, so `created` is unknown and set to {0,0}).
   */
  restoreTombstone(main: number, sub: number): void {
    this.restore(zeroRev, { main, sub }, 1)
    this.generations.push(new Generation())
  }

  /**
   * Appends a tombstone revision and opens a new empty generation. Returns false, changing
   * nothing, when the current generation is empty (the key is already deleted: etcd's
   * ErrRevisionNotFound). Throws on an empty keyIndex.
   */
  tombstone(main: number, sub: number): boolean {
    if (this.isEmpty()) throw new Error(`keyIndex.tombstone: empty keyIndex ${JSON.stringify(this.key)}`)
    if (this.generations[this.generations.length - 1]!.isEmpty()) return false
    this.put(main, sub)
    this.generations.push(new Generation())
    return true
  }

  /**
   * The version visible at main revision `atRev`: the newest revision <= atRev in the
   * generation alive at atRev. Undefined when the key does not exist at atRev (before its
   * creation, in a gap after a tombstone, or at the tombstone itself). Throws on an empty
   * keyIndex.
   */
  get(atRev: number): KeyIndexGet | undefined {
    if (this.isEmpty()) throw new Error(`keyIndex.get: empty keyIndex ${JSON.stringify(this.key)}`)
    const g = this.findGeneration(atRev)
    if (g === undefined || g.isEmpty()) return undefined
    const n = g.walk((r) => r.main > atRev)
    if (n === -1) return undefined
    return { modified: g.revs[n]!, created: g.created, version: g.ver - (g.revs.length - n - 1) }
  }

  /**
   * The revisions with main >= `rev`, oldest first, keeping only the largest sub revision
   * of each main revision (the others are invisible outside their txn). Used by watchers
   * catching up. Throws on an empty keyIndex.
   */
  since(rev: number): Rev[] {
    if (this.isEmpty()) throw new Error(`keyIndex.since: empty keyIndex ${JSON.stringify(this.key)}`)
    const since: Rev = { main: rev, sub: 0 }
    let gi = this.generations.length - 1
    // Find the generation to start from: the newest one created before `since`.
    for (; gi > 0; gi--) {
      const g = this.generations[gi]!
      if (g.isEmpty()) continue
      if (revGreaterThan(since, g.created)) break
    }
    const revs: Rev[] = []
    let last = 0
    for (; gi < this.generations.length; gi++) {
      for (const r of this.generations[gi]!.revs) {
        if (revGreaterThan(since, r)) continue
        if (r.main === last) {
          revs[revs.length - 1] = r
          continue
        }
        revs.push(r)
        last = r.main
      }
    }
    return revs
  }

  /**
   * Removes the revisions <= atRev except the largest one, and the generations that end
   * before atRev. Adds every revision that must stay in the backend for this compaction to
   * `available` (as {@link revId} strings). Throws on an empty keyIndex.
   */
  compact(atRev: number, available: Set<string>): void {
    if (this.isEmpty()) throw new Error(`keyIndex.compact: empty keyIndex ${JSON.stringify(this.key)}`)
    const [genIdx, revIndex] = this.doCompact(atRev, available)
    const g = this.generations[genIdx]!
    if (!g.isEmpty() && revIndex !== -1) g.revs = g.revs.slice(revIndex)
    this.generations = this.generations.slice(genIdx)
  }

  /**
   * Adds to `available` the revisions a compaction at atRev would keep, without changing the
   * keyIndex, leaving out a tombstone that would be the generation's only survivor (etcd
   * keep(), used for hashing the key space at a revision).
   */
  keep(atRev: number, available: Set<string>): void {
    if (this.isEmpty()) return
    const [genIdx, revIndex] = this.doCompact(atRev, available)
    const g = this.generations[genIdx]!
    if (!g.isEmpty() && revIndex === g.revs.length - 1 && genIdx !== this.generations.length - 1) {
      available.delete(revId(g.revs[revIndex]!))
    }
  }

  private doCompact(atRev: number, available: Set<string>): [genIdx: number, revIndex: number] {
    let genIdx = 0
    let g = this.generations[0]!
    // Find the first generation still alive at atRev or created after it: one whose
    // tombstone is above atRev, or the last one.
    while (genIdx < this.generations.length - 1) {
      const tomb = g.revs[g.revs.length - 1]!.main
      if (tomb > atRev) break
      genIdx++
      g = this.generations[genIdx]!
    }
    const revIndex = g.walk((r) => {
      if (r.main <= atRev) {
        available.add(revId(r))
        return false
      }
      return true
    })
    return [genIdx, revIndex]
  }

  /**
   * True when revision `r` is one of the revisions this keyIndex holds (a record the backend
   * must keep). Revisions are walked oldest first and the walk stops at the first one above
   * `r`, so asking about a revision at or below the last compaction costs O(1): compaction
   * leaves at most one such revision per key, the first of the first generation.
   */
  holds(r: Rev): boolean {
    for (const g of this.generations) {
      for (const x of g.revs) {
        if (x.main === r.main && x.sub === r.sub) return true
        if (revGreaterThan(x, r)) return false
      }
    }
    return false
  }

  /** True when the keyIndex holds no revision at all (one empty generation, or none). */
  isEmpty(): boolean {
    return this.generations.length === 0 ||
      (this.generations.length === 1 && this.generations[0]!.isEmpty())
  }

  /**
   * The generation alive at main revision `rev`, or undefined when the key does not exist
   * at `rev` (etcd findGeneration).
   */
  findGeneration(rev: number): Generation | undefined {
    const lastg = this.generations.length - 1
    for (let cg = lastg; cg >= 0; cg--) {
      const g = this.generations[cg]!
      if (g.revs.length === 0) continue
      if (cg !== lastg) {
        const tomb = g.revs[g.revs.length - 1]!.main
        if (tomb <= rev) return undefined
      }
      if (g.revs[0]!.main <= rev) return g
    }
    return undefined
  }

  /** A deep copy (for undoing a failed txn). */
  clone(): KeyIndex {
    const c = new KeyIndex(this.key)
    c.modified = this.modified
    c.generations = this.generations.map((g) => g.clone())
    return c
  }

  /** Renders the generations as in the drawing above, newest last: `{1.0 2.0 3.0(t)} {}`. */
  toString(): string {
    return this.generations
      .map((g, gi) =>
        "{" + g.revs.map((r, i) =>
          `${r.main}.${r.sub}` + (gi < this.generations.length - 1 && i === g.revs.length - 1 ? "(t)" : "")
        ).join(" ") + "}"
      )
      .join(" ")
  }
}
