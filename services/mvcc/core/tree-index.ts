/**
 * The ordered in-memory index: user key -> {@link KeyIndex}, in bytewise key order.
 *
 * It answers "which revision of which key is visible at revision r" for single keys and key
 * ranges; the values live in the backend under those revisions. Keys are binary strings
 * (key-bytes.ts), so the B+ tree's default string order is etcd's bytes.Compare order.
 *
 * Range arguments follow etcd's index: `end === undefined` means the single key `key`;
 * `end === ""` means every key >= `key`; otherwise the half-open range [key, end), empty when
 * end <= key. (Callers map a request's empty range_end to undefined and etcd's "\0" range_end
 * to "", as etcd's mkGteRange does.)
 *
 * Follows etcd server/storage/mvcc/index.go (treeIndex), with RangeSince from etcd 3.4.
 * Single-threaded: etcd's locks have no counterpart.
 */
import { BTree } from "./btree.ts"
import { KeyIndex, type KeyIndexGet } from "./key-index.ts"
import { compareRev, type Rev } from "./revision.ts"

/** The result of {@link TreeIndex.range}: parallel arrays, in key order. */
export interface IndexRange {
  readonly keys: ReadonlyArray<string>
  readonly gets: ReadonlyArray<KeyIndexGet>
  /** Keys visible at the revision in the whole range, not capped by the limit. */
  readonly total: number
}

/**
 * Invariant: no KeyIndex in the tree is empty after a compaction; a KeyIndex is keyed by its
 * own `key`.
 */
export class TreeIndex {
  private readonly tree = new BTree<string, KeyIndex>()

  /** Number of keys in the tree (including keys whose last generation is a tombstone). */
  get size(): number {
    return this.tree.size
  }

  /** Records that `key` was put at `rev`. Throws if `rev` is not above the key's last revision. */
  put(key: string, rev: Rev): void {
    let ki = this.tree.get(key)
    if (ki === undefined) {
      ki = new KeyIndex(key)
      this.tree.set(key, ki)
    }
    ki.put(rev.main, rev.sub)
  }

  /** The version of `key` visible at main revision `atRev`, or undefined when none. */
  get(key: string, atRev: number): KeyIndexGet | undefined {
    const ki = this.tree.get(key)
    return ki === undefined ? undefined : ki.get(atRev)
  }

  /** The KeyIndex of `key`, if any (the live object, not a copy). */
  keyIndex(key: string): KeyIndex | undefined {
    return this.tree.get(key)
  }

  /** Inserts or replaces a whole KeyIndex (restore, and undoing a failed txn). */
  insert(ki: KeyIndex): void {
    this.tree.set(ki.key, ki, true)
  }

  /** Removes the KeyIndex of `key` (undoing a failed txn that created it). */
  remove(key: string): void {
    this.tree.delete(key)
  }

  private visit(key: string, end: string, f: (ki: KeyIndex) => boolean): void {
    for (const [k, ki] of this.tree.entries(key)) {
      if (end.length > 0 && k >= end) return
      if (!f(ki)) return
    }
  }

  /**
   * The keys visible at `atRev` in the range, with their versions, in key order. At most
   * `limit` entries when limit > 0; `total` counts them all (etcd Range with withTotalCount).
   */
  range(key: string, end: string | undefined, atRev: number, limit = 0): IndexRange {
    if (end === undefined) {
      const g = this.get(key, atRev)
      return g === undefined ? { keys: [], gets: [], total: 0 } : { keys: [key], gets: [g], total: 1 }
    }
    const keys: string[] = []
    const gets: KeyIndexGet[] = []
    let total = 0
    this.visit(key, end, (ki) => {
      const g = ki.get(atRev)
      if (g !== undefined) {
        if (limit <= 0 || keys.length < limit) {
          keys.push(ki.key)
          gets.push(g)
        }
        total++
      }
      return true
    })
    return { keys, gets, total }
  }

  /**
   * The revisions visible at `atRev` in the range, in key order: at most `limit` when
   * limit > 0, with `total` not capped (etcd Revisions).
   */
  revisions(key: string, end: string | undefined, atRev: number, limit = 0): { revs: Rev[]; total: number } {
    const r = this.range(key, end, atRev, limit)
    return { revs: r.gets.map((g) => g.modified), total: r.total }
  }

  /** How many keys of the range are visible at `atRev` (etcd CountRevisions). */
  countRevisions(key: string, end: string | undefined, atRev: number): number {
    if (end === undefined) return this.get(key, atRev) === undefined ? 0 : 1
    let total = 0
    this.visit(key, end, (ki) => {
      if (ki.get(atRev) !== undefined) total++
      return true
    })
    return total
  }

  /**
   * Every revision with main >= `rev` of the keys in the range (one per main revision and
   * key), sorted by revision: what a watcher starting at `rev` must replay (etcd 3.4
   * RangeSince).
   */
  rangeSince(key: string, end: string | undefined, rev: number): Rev[] {
    if (end === undefined) {
      const ki = this.tree.get(key)
      return ki === undefined || ki.isEmpty() ? [] : ki.since(rev)
    }
    const revs: Rev[] = []
    this.visit(key, end, (ki) => {
      if (!ki.isEmpty()) for (const r of ki.since(rev)) revs.push(r)
      return true
    })
    return revs.sort(compareRev)
  }

  /**
   * Records a tombstone of `key` at `rev`. Returns false, changing nothing, when the key does
   * not exist now (etcd ErrRevisionNotFound).
   */
  tombstone(key: string, rev: Rev): boolean {
    const ki = this.tree.get(key)
    if (ki === undefined) return false
    return ki.tombstone(rev.main, rev.sub)
  }

  /**
   * Compacts every key at main revision `rev` and removes keys left empty. Returns the set of
   * revisions (as revId strings) that must stay in the backend; every other record with
   * main <= rev may be deleted.
   */
  compact(rev: number): Set<string> {
    const available = new Set<string>()
    const emptied: string[] = []
    for (const [k, ki] of this.tree.entries()) {
      ki.compact(rev, available)
      if (ki.isEmpty()) emptied.push(k)
    }
    for (const k of emptied) this.tree.delete(k)
    return available
  }

  /**
   * True when the index holds revision `rev` of `key`, i.e. the backend record under that
   * revision belongs to the key space. After a compaction, the records at or below the compact
   * revision that the index does not hold are the ones the background deletion removes
   * (./compaction.ts).
   */
  holds(key: string, rev: Rev): boolean {
    return this.tree.get(key)?.holds(rev) ?? false
  }

  /** The revisions a compaction at `rev` would keep, without compacting (etcd Keep). */
  keep(rev: number): Set<string> {
    const available = new Set<string>()
    for (const [, ki] of this.tree.entries()) ki.keep(rev, available)
    return available
  }

  /** Every KeyIndex in key order (tests and debugging). */
  *keyIndexes(): IterableIterator<KeyIndex> {
    for (const [, ki] of this.tree.entries()) yield ki
  }
}
