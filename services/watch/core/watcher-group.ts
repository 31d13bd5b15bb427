/**
 * Watchers and the groups that hold them: which watchers want an event on a given key.
 *
 * A group indexes its watchers by what they watch: single-key watchers in a map by key, range
 * watchers (`[key, end)`, or every key >= key) in a list sorted by start key. Keys are compared
 * as byte strings; they are held as latin1 strings (one char per byte), whose `<` is bytewise.
 *
 * Follows etcd server/storage/mvcc/watcher_group.go (watcherGroup, watcherSetByKey, choose,
 * chooseAll). Departure: etcd keeps range watchers in an interval tree; natcd binary-searches a
 * start-sorted list and scans the watchers starting at or before the key, which is the same for
 * prefix-disjoint ranges and linear in the range watchers in the worst case.
 * TODO(watch): an interval tree once range watchers number in the thousands per replica.
 */

/** A key-value pair as events carry it (etcd mvccpb.KeyValue); revisions are safe integers. */
export interface EventKeyValue {
  readonly key: Uint8Array
  readonly createRevision: number
  readonly modRevision: number
  readonly version: number
  readonly value: Uint8Array
  readonly lease: bigint
}

/**
 * One key change (etcd mvccpb.Event). DELETE: `kv` holds the key and the delete's mod
 * revision, all else zero. `prevKv`: the version replaced or deleted, when the producer filled it.
 */
export interface WatchEvent {
  readonly type: "PUT" | "DELETE"
  readonly kv: EventKeyValue
  readonly prevKv?: EventKeyValue
}

/** The events of one main revision, in sub-revision order (never empty). */
export interface RevisionEvents {
  readonly rev: number
  readonly events: ReadonlyArray<WatchEvent>
}

/** Which group a watcher is in. */
export type WatcherState = "synced" | "unsynced" | "victim"

/**
 * A watcher: one watch of one session (etcd mvcc watcher).
 *
 * Invariant: every event with mod revision < `minRev` that matches the watcher has been put in
 * a response of its session (or filtered out); nothing at or above `minRev` has. A synced
 * watcher has minRev = head + 1 (or its start revision, when that is further ahead); an
 * unsynced or victim watcher has minRev <= head + 1 and catches up from the ring or history.
 */
export interface Watcher {
  readonly session: string
  readonly id: number
  /** The watched key as a latin1 string. */
  readonly key: string
  /** undefined: the single key; "": every key >= key; else the exclusive end. */
  readonly end: string | undefined
  readonly startRev: number
  minRev: number
  readonly prevKv: boolean
  readonly noPut: boolean
  readonly noDelete: boolean
  readonly progressNotify: boolean
  /** Events responses may be cut into fragments by the stream (etcd WatchCreateRequest.fragment). */
  readonly fragment: boolean
  /** True until an events response went out since the last periodic progress tick (etcd sws.progress). */
  progressDue: boolean
  state: WatcherState
}

/** Whether watcher `w` watches `key` (a latin1 string). */
export const watches = (w: Watcher, key: string): boolean => {
  if (w.end === undefined) return key === w.key
  if (key < w.key) return false
  return w.end === "" || key < w.end
}

/**
 * A set of watchers indexed by key. Invariant: `all` holds exactly the watchers of `single` and
 * `ranges`; `ranges` is sorted by start key.
 */
export class WatcherGroup {
  private readonly single = new Map<string, Set<Watcher>>()
  private readonly ranges: Watcher[] = []
  private readonly all = new Set<Watcher>()

  /** Number of watchers. */
  get size(): number {
    return this.all.size
  }

  /** Whether `w` is in the group. */
  has(w: Watcher): boolean {
    return this.all.has(w)
  }

  /** Every watcher, in insertion order. */
  watchers(): IterableIterator<Watcher> {
    return this.all.values()
  }

  /** Adds `w`; throws when it is already in (a defect, as etcd's "add watcher twice!"). */
  add(w: Watcher): void {
    if (this.all.has(w)) throw new Error(`watcher ${w.session}/${w.id} added twice`)
    this.all.add(w)
    if (w.end === undefined) {
      let set = this.single.get(w.key)
      if (set === undefined) this.single.set(w.key, (set = new Set()))
      set.add(w)
      return
    }
    let lo = 0
    let hi = this.ranges.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.ranges[mid]!.key <= w.key) lo = mid + 1
      else hi = mid
    }
    this.ranges.splice(lo, 0, w)
  }

  /** Removes `w`; false when it was not in the group. */
  delete(w: Watcher): boolean {
    if (!this.all.delete(w)) return false
    if (w.end === undefined) {
      const set = this.single.get(w.key)!
      set.delete(w)
      if (set.size === 0) this.single.delete(w.key)
    } else {
      this.ranges.splice(this.ranges.indexOf(w), 1)
    }
    return true
  }

  /** Calls `f` for every watcher that watches `key` (etcd watcherSetByKey). */
  forEachMatching(key: string, f: (w: Watcher) => void): void {
    const set = this.single.get(key)
    if (set !== undefined) for (const w of set) f(w)
    for (const w of this.ranges) {
      if (w.key > key) break
      if (w.end === "" || key < w.end!) f(w)
    }
  }
}
