/**
 * The mvcc service's side of watch: it publishes the committed event stream and serves history.
 *
 * - `mvcc.events` (publish): after each applied batch, the revisions it produced, in revision
 *   order, with `prevKv` filled as the apply saw it; when idle for {@link EventStreamOptions.heartbeatMs},
 *   a heartbeat carrying the store revision, so that a watch replica that lost the last frame
 *   notices (revisions are contiguous: a head beyond what it has is a gap). Every member
 *   publishes its own copy; replicas keep the first copy of each revision. Frames are published
 *   before the batch's LMDB commit, which is safe for the same reason results are (see
 *   ./apply.ts): the entries are committed in raft, and re-applying them yields the same
 *   revisions and events.
 * - `mvcc.history` (request/reply): the events of revisions fromRev..toRev read from the
 *   backend (etcd watchable_store.go syncWatchers/rangeEvents), cut at a revision boundary past
 *   maxBytes; with prevKv, each event that is not a creation carries the version before it,
 *   read at mod_revision - 1 as etcd's v3rpc watch sendLoop does.
 *
 * This module is new and self-contained; ./apply.ts calls {@link EventStream.applied} (one
 * line), ./main.ts wires it (a few lines).
 */
import type { EtcdErrorData } from "../../shared/errors.ts"
import { maxFrameBytes, packValue } from "../../shared/frame.ts"
import type { KeyValue } from "../../shared/kv.ts"
import type { HistoryBody } from "../../shared/schema.ts"
import type { BackendReadTx } from "./core/backend.ts"
import type { KvStore, MvccEvent } from "./core/store.ts"

/** The events of one revision, as they travel (shared/schema.ts RevisionEvents). */
export interface RevisionBatch {
  readonly rev: number
  readonly events: ReadonlyArray<MvccEvent>
}

/** Settings of an {@link EventStream}. */
export interface EventStreamOptions {
  /** Member name, carried in every frame. */
  readonly member: string
  /** A heartbeat goes out when no frame went out for this long, in ms. */
  readonly heartbeatMs: number
  /** Revisions are packed into frames of at most about this many bytes (whole revisions). */
  readonly frameBytes: number
}

/** Default frame budget: well under nats-server's max_payload (8 MiB), leaving room for one big revision. */
export const defaultEventFrameBytes = 1024 * 1024

const kvSize = (kv: KeyValue): number => 48 + kv.key.length + kv.value.length
const eventSize = (e: MvccEvent): number => 8 + kvSize(e.kv) + (e.prevKv === undefined ? 0 : kvSize(e.prevKv))

/** The frame body of `mvcc.events` (shared/schema.ts MvccEventsBody). */
export interface EventsFrame {
  readonly member: string
  readonly term: number
  readonly head: number
  readonly compactRev: number
  readonly fromRev: number
  readonly revs: Uint8Array
}

/**
 * Publishes the committed event stream of one member. Invariant: frames go out in revision
 * order; each frame's fromRev is the previous frame's head + 1, except after a restart, when the
 * store reopens at its last commit and the stream resumes (possibly repeating revisions).
 */
export class EventStream {
  private readonly options: EventStreamOptions
  private readonly publish: (frame: EventsFrame) => void
  private readonly store: KvStore
  private lastSentMs = 0
  private lastCompactRev = -2
  private pendingRevs: RevisionBatch[] = []
  readonly counters = { frames: 0, revisions: 0, heartbeats: 0, oversized: 0 }

  constructor(store: KvStore, publish: (frame: EventsFrame) => void, options: EventStreamOptions) {
    this.store = store
    this.publish = publish
    this.options = options
  }

  /**
   * Called by the applier for every applied write that changed the store: `revision` and its
   * `events` (KvStore.apply's ApplyResult). Buffered until {@link flush}.
   */
  applied(revision: number, events: ReadonlyArray<MvccEvent>): void {
    if (events.length > 0) this.pendingRevs.push({ rev: revision, events })
  }

  /**
   * Publishes the buffered revisions (called once per applied batch, after the store moved).
   * Frames hold whole revisions; a revision bigger than the frame budget goes alone, and one
   * bigger than a NATS message can carry goes out empty (the replicas read it from history).
   */
  flush(term: number, nowMs: number): void {
    const compactRev = this.store.compactRevision()
    if (this.pendingRevs.length === 0) {
      // A compaction changes no revision: tell the replicas at once, so that no watch is served
      // from their memory below the new compact revision.
      if (compactRev !== this.lastCompactRev) this.heartbeat(term, nowMs, true)
      return
    }
    this.lastCompactRev = compactRev
    const revs = this.pendingRevs
    this.pendingRevs = []
    let start = 0
    while (start < revs.length) {
      let end = start
      let bytes = 0
      while (end < revs.length) {
        let b = 16
        for (const e of revs[end]!.events) b += eventSize(e)
        if (end > start && bytes + b > this.options.frameBytes) break
        bytes += b
        end++
      }
      const chunk = revs.slice(start, end)
      const fromRev = chunk[0]!.rev
      const head = chunk[chunk.length - 1]!.rev
      let packed = packValue(chunk)
      if (packed.length > maxFrameBytes - 4096) {
        this.counters.oversized++
        packed = packValue([])
      }
      this.publish({ member: this.options.member, term, head, compactRev, fromRev, revs: packed })
      this.counters.frames++
      this.counters.revisions += chunk.length
      start = end
    }
    this.lastSentMs = nowMs
  }

  /** Sends a heartbeat when nothing went out for heartbeatMs (call it on a timer), or now when `force`. */
  heartbeat(term: number, nowMs: number, force = false): void {
    if (!force && nowMs - this.lastSentMs < this.options.heartbeatMs) return
    const head = this.store.currentRevision()
    this.lastCompactRev = this.store.compactRevision()
    this.publish({ member: this.options.member, term, head, compactRev: this.lastCompactRev, fromRev: head + 1, revs: packValue([]) })
    this.counters.heartbeats++
    this.lastSentMs = nowMs
  }
}

/** The reply of mvcc.history (shared/schema.ts HistoryReply). */
export type HistoryOutcome =
  | { readonly ok: { readonly head: number; readonly compactRev: number; readonly term: number; readonly toRev: number; readonly revs: Uint8Array } }
  | { readonly err: EtcdErrorData }

/**
 * Reads revisions `req.fromRev`..`req.toRev` (capped at the store revision) from the backend
 * as {@link RevisionBatch}es, whole revisions only, stopping once the payload reaches
 * `req.maxBytes`. Error: Compacted when fromRev is below the compact revision (etcd cancels a
 * watcher whose minRev < compactRev). `toRev` in the reply is the last revision covered.
 */
export const readHistory = (
  store: KvStore,
  tx: BackendReadTx,
  req: typeof HistoryBody.Type,
  term: number
): HistoryOutcome => {
  const head = store.currentRevision()
  const compactRev = store.compactRevision()
  if (req.fromRev < compactRev) {
    return { err: { _tag: "Compacted", requestedRevision: req.fromRev, compactRevision: compactRev } }
  }
  const last = Math.min(req.toRev, head)
  const out: RevisionBatch[] = []
  let bytes = 0
  let rev = Math.max(req.fromRev, 1)
  let step = 16
  let covered = req.fromRev - 1
  while (rev <= last && bytes < req.maxBytes) {
    const until = Math.min(last, rev + step - 1)
    const events = store.unsafeReadEvents(tx, rev, until)
    // Group by revision, stopping at a revision boundary once over budget.
    let i = 0
    while (i < events.length && bytes < req.maxBytes) {
      const r = events[i]!.kv.modRevision
      const group: MvccEvent[] = []
      while (i < events.length && events[i]!.kv.modRevision === r) {
        const e = events[i++]!
        const withPrev = req.prevKv ? withPrevKv(store, tx, e) : e
        bytes += eventSize(withPrev)
        group.push(withPrev)
      }
      out.push({ rev: r, events: group })
      covered = r
    }
    if (i < events.length) break
    covered = until
    rev = until + 1
    step = Math.min(step * 2, 1024)
  }
  return { ok: { head, compactRev, term, toRev: covered, revs: packValue(out) } }
}

/** `e` with prevKv read at mod_revision - 1, unless it is a creation (etcd IsCreateEvent). */
const withPrevKv = (store: KvStore, tx: BackendReadTx, e: MvccEvent): MvccEvent => {
  if (e.type === "PUT" && e.kv.createRevision === e.kv.modRevision) return e
  const r = store.range(tx, { key: e.kv.key, revision: e.kv.modRevision - 1 })
  if ("err" in r || r.ok.kvs.length === 0) return e
  return { type: e.type, kv: e.kv, prevKv: r.ok.kvs[0]! }
}
