/**
 * The ring of recent revisions a watch hub keeps in memory, so that a watcher a little behind
 * the head (a watch from the recent past, a victim whose client read again) catches up without
 * a history read.
 *
 * What it is: the committed revisions `start`..head in revision order, bounded by a count and a
 * byte size (the oldest is dropped beyond either), and trimmed by compaction (nothing at or below
 * the compact revision is served from here). What it is not: the head; the committed stream
 * (./committed-stream.ts) decides what is pushed and when the ring starts over. etcd has no
 * such ring: its syncWatchers reads the backend (server/storage/mvcc/watchable_store.go); natcd
 * reads mvcc history only for what the ring no longer covers.
 *
 * Invariant: every revision start..head is in the ring or had no events; the ring holds no
 * revision at or below the compact revision.
 */
import { eventBytes } from "./sizes.ts"
import type { RevisionEvents } from "./watcher-group.ts"

export class RevisionRing {
  private readonly maxRevs: number
  private readonly maxBytes: number
  private readonly revs: RevisionEvents[] = []
  /** Approximate size of each revision of `revs`, in bytes. */
  private readonly sizes: number[] = []
  private bytes = 0
  /** The first revision the ring covers. */
  private first = 0

  /** A ring of at most `maxRevs` revisions and about `maxBytes` bytes (never less than one revision). */
  constructor(maxRevs: number, maxBytes: number) {
    this.maxRevs = maxRevs
    this.maxBytes = maxBytes
  }

  /** The first revision the ring covers: a watcher whose next revision is below it reads history. */
  get start(): number {
    return this.first
  }

  /** Revisions held. */
  get length(): number {
    return this.revs.length
  }

  /** Empties the ring; it covers revisions from `start` on. */
  reset(start: number): void {
    this.revs.length = 0
    this.sizes.length = 0
    this.bytes = 0
    this.first = start
  }

  /**
   * Appends revision `r` (the one after the last held), dropping the oldest beyond the count or
   * byte bound; `compactRev`: a revision at or below it is not kept.
   */
  push(r: RevisionEvents, compactRev: number): void {
    if (r.rev <= compactRev) return
    let bytes = 16
    for (const e of r.events) bytes += eventBytes(e)
    this.revs.push(r)
    this.sizes.push(bytes)
    this.bytes += bytes
    while (this.revs.length > this.maxRevs || (this.bytes > this.maxBytes && this.revs.length > 1)) {
      const dropped = this.revs.shift()!
      this.bytes -= this.sizes.shift()!
      this.first = dropped.rev + 1
    }
  }

  /**
   * A compaction at `rev`: drops the revisions at or below it; the ring then starts after it
   * (never past `head` + 1; `head` undefined: the start is left as it is).
   */
  compact(rev: number, head: number | undefined): void {
    while (this.revs.length > 0 && this.revs[0]!.rev <= rev) {
      this.revs.shift()
      this.bytes -= this.sizes.shift()!
    }
    if (head !== undefined) this.first = Math.max(this.first, Math.min(rev + 1, head + 1))
  }

  /**
   * The revisions `fromRev`..`last` the ring holds, stopping after the one that brings their
   * size to `maxBytes`; `through` is the last revision covered (`last`, or that one's).
   */
  read(fromRev: number, last: number, maxBytes: number): { readonly revs: RevisionEvents[]; readonly through: number } {
    let through = last
    let bytes = 0
    const revs: RevisionEvents[] = []
    for (let i = this.index(fromRev); i < this.revs.length && this.revs[i]!.rev <= last; i++) {
      const r = this.revs[i]!
      revs.push(r)
      bytes += this.sizes[i]!
      if (bytes >= maxBytes) {
        through = r.rev
        break
      }
    }
    return { revs, through }
  }

  /** Index of the first ring revision >= rev (the ring's length when none). */
  private index(rev: number): number {
    let lo = 0
    let hi = this.revs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.revs[mid]!.rev < rev) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
