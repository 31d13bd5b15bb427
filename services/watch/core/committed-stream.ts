/**
 * The committed event stream as a watch hub follows it: where it is (head, compact revision,
 * term), the frames of every member's mvcc service put in revision order, the gap before an
 * early frame turned into a history read, and the ring of recent revisions (./ring.ts).
 *
 * What it is not: the watchers. Each run of new revisions is handed to the hub's
 * {@link StreamListener} as soon as the head moved past it, and the hub fans it out (etcd
 * watchableStore.notify, server/storage/mvcc/watchable_store.go). Revisions are contiguous, so
 * a frame that does not start right after the head means revisions were missed: they are read
 * from a member's mvcc history (a gap fetch), while later frames wait, bounded by
 * {@link HubOptions.pendingFrameBytes}. No IO, no clock.
 *
 * Invariants: `head` is the last revision of the committed stream the hub has fanned out; every
 * revision ring.start..head is in the ring (or had no events); `knownHead` >= `head` once set,
 * and a gap is open while it is greater.
 */
import type { HubOptions } from "./hub-options.ts"
import type { FetchRequest, FetchResult, LiveFrame } from "./messages.ts"
import { RevisionRing } from "./ring.ts"
import { eventBytes } from "./sizes.ts"
import type { RevisionEvents } from "./watcher-group.ts"

/** What the stream tells its hub. Both are called synchronously, inside the call that moved the stream. */
export interface StreamListener {
  /**
   * Revisions up to `through` were appended and the head is now `through`: `fresh` holds those
   * that have events, in order. The hub fans them out to its synced watchers.
   */
  advanced(fresh: ReadonlyArray<RevisionEvents>, through: number): void
  /**
   * The stream's next revision was compacted away before it could be read; `head` is the head
   * before the stream skips ahead. Every synced watcher must catch up from head + 1.
   */
  compactedAway(head: number): void
}

export class CommittedStream {
  private readonly options: Pick<HubOptions, "pendingFrameBytes" | "historyMaxBytes">
  private readonly counters: { droppedFrames: number; gapFetches: number }
  private readonly listener: StreamListener
  private headRev: number | undefined
  private compact = -1
  private latestTerm = 0
  /** Highest head any frame or history reply announced (a gap while > head). */
  private knownHead = 0
  /** Recent revisions, for watchers that catch up. */
  readonly ring: RevisionRing
  private pending: LiveFrame[] = []
  private pendingBytes = 0
  private gapFetch: FetchRequest | undefined

  constructor(
    options: Pick<HubOptions, "ringRevs" | "ringBytes" | "pendingFrameBytes" | "historyMaxBytes">,
    counters: { droppedFrames: number; gapFetches: number },
    listener: StreamListener
  ) {
    this.options = options
    this.counters = counters
    this.listener = listener
    this.ring = new RevisionRing(options.ringRevs, options.ringBytes)
  }

  /** The last revision fanned out; undefined until a frame told where the stream is. */
  get head(): number | undefined {
    return this.headRev
  }

  /** The highest compact revision learned (-1: none). */
  get compactRev(): number {
    return this.compact
  }

  /** The highest raft term any frame or history reply carried. */
  get term(): number {
    return this.latestTerm
  }

  /**
   * Takes a frame of the committed stream (any member's: copies of revisions the hub has are
   * ignored). A frame beyond head + 1 is kept aside (bounded by pendingFrameBytes) and the gap
   * before it becomes a fetch; a heartbeat beyond head makes a gap too.
   */
  live(frame: LiveFrame): void {
    this.latestTerm = Math.max(this.latestTerm, frame.term)
    if (this.headRev === undefined) {
      this.headRev = frame.fromRev - 1
      this.ring.reset(this.headRev + 1)
    }
    this.learnCompactRev(frame.compactRev)
    this.knownHead = Math.max(this.knownHead, frame.head)
    if (frame.head <= this.headRev || frame.revs.length === 0) return
    if (frame.fromRev > this.headRev + 1) {
      let bytes = 0
      for (const r of frame.revs) for (const e of r.events) bytes += eventBytes(e)
      if (this.pendingBytes + bytes > this.options.pendingFrameBytes) {
        this.counters.droppedFrames++
        return
      }
      this.pending.push(frame)
      this.pendingBytes += bytes
      return
    }
    this.advance(frame.revs, frame.head)
    this.drainPending()
  }

  /**
   * A compaction at `rev`: from now on nothing at or below it is served from the ring, so a
   * watch from there reads the compacted backend exactly as etcd's syncWatchers does (deletes
   * at or below the compact revision are gone), or is canceled when it starts below it.
   */
  learnCompactRev(rev: number): void {
    if (rev <= this.compact) return
    this.compact = rev
    this.ring.compact(rev, this.headRev)
  }

  /** Appends revisions head+1..through (those in `revs` above head) and hands them to the listener. */
  private advance(revs: ReadonlyArray<RevisionEvents>, through: number): void {
    const head = this.headRev!
    if (through <= head) return
    const fresh = revs.filter((r) => r.rev > head && r.rev <= through)
    for (const r of fresh) this.ring.push(r, this.compact)
    this.headRev = through
    this.listener.advanced(fresh, through)
  }

  private drainPending(): void {
    if (this.pending.length === 0) return
    this.pending.sort((a, b) => a.fromRev - b.fromRev)
    while (this.pending.length > 0 && this.pending[0]!.fromRev <= this.headRev! + 1) {
      const f = this.pending.shift()!
      for (const r of f.revs) for (const e of r.events) this.pendingBytes -= eventBytes(e)
      this.advance(f.revs, f.head)
    }
    this.pending = this.pending.filter((f) => f.head > this.headRev!)
    if (this.pending.length === 0) this.pendingBytes = 0
  }

  /**
   * The history read of the live stream's gap to start now, if one is open and none is in
   * flight (reported back through {@link gapFetched}); `nextId` gives it its id.
   */
  gapFetchToStart(nextId: () => number): FetchRequest | undefined {
    if (this.headRev === undefined || this.gapFetch !== undefined || this.knownHead <= this.headRev) return undefined
    const until = this.pending.length > 0 ? Math.min(...this.pending.map((f) => f.fromRev)) - 1 : this.knownHead
    if (until <= this.headRev) return undefined
    this.gapFetch = {
      id: nextId(), purpose: "gap", fromRev: this.headRev + 1, toRev: until, prevKv: true,
      maxBytes: this.options.historyMaxBytes
    }
    this.counters.gapFetches++
    return this.gapFetch
  }

  /**
   * The result of gap read `request`: the revisions join the live stream (a compacted gap
   * makes the stream skip ahead, see {@link StreamListener.compactedAway}).
   */
  gapFetched(request: FetchRequest, result: FetchResult): void {
    if (this.gapFetch?.id === request.id) this.gapFetch = undefined
    if ("failed" in result) return
    if ("compacted" in result) return this.liveCompacted(result.compacted)
    this.latestTerm = Math.max(this.latestTerm, result.term)
    this.learnCompactRev(result.compactRev)
    this.knownHead = Math.max(this.knownHead, result.head)
    if (request.fromRev <= this.headRev! + 1 && result.toRev > this.headRev!) this.advance(result.revs, result.toRev)
    this.drainPending()
  }

  /** The live stream's next revision was compacted away before the hub could read it. */
  private liveCompacted(compactRev: number): void {
    this.learnCompactRev(compactRev)
    const head = this.headRev!
    this.listener.compactedAway(head)
    this.headRev = Math.max(head, compactRev - 1)
    this.ring.reset(this.headRev + 1)
  }
}
