/**
 * The watch hub: the pure core of one watch replica. It follows the cluster's committed event
 * stream and fans events out to the watchers of the sessions (gateway watch streams) it holds.
 *
 * What it is: etcd's watchable store (server/storage/mvcc/watchable_store.go) without a store.
 * Watchers live in three groups, as etcd's:
 * - synced: caught up with the hub's head; every new revision is matched against them at once
 *   (etcd notify);
 * - unsynced: behind the head (a watch from the past, or one resumed after being a victim);
 *   caught up in rounds of at most {@link HubOptions.maxWatchersPerSync} watchers, from the
 *   ring of recent revisions when it still holds their next revision, else from the mvcc
 *   service's history (etcd syncWatchers, which reads the backend);
 * - victims: watchers whose session had no room for a response (etcd victims). Departure from
 *   etcd: a victim keeps no pending batch, only its next revision; once its session has room
 *   again it turns unsynced and re-reads what it missed from the ring or history. That bounds a
 *   stalled client's memory to its session window, whatever it watches.
 *
 * What it is not: IO. The shell feeds it frames, requests and acks, asks it which history
 * reads to make ({@link WatchHub.fetches}), hands back their results, and sends the messages
 * {@link WatchHub.takeOutgoing} returns. No clock: times are arguments.
 *
 * Guarantees (etcd api_guarantees, per watcher): events in revision order, each at most once
 * and none skipped (the `minRev` invariant of ./watcher-group.ts), and all events of one
 * revision in one response (responses are cut only at revision boundaries). Messages of a
 * session carry consecutive sequence numbers, so the gateway can tell a lost message and move
 * the session elsewhere, resuming each watcher after the last event it delivered.
 *
 * Flow control: a session may have its window of responses sent but not yet acknowledged by its
 * gateway (which acknowledges once its client's stream took them). An events response that does
 * not fit makes the watcher a victim. Control responses (created, canceled, progress) are small,
 * bounded by the client's own requests, and always go out. A session's window is the smallest
 * of {@link HubOptions.windowBytes}, the window its gateway asked for (the gateway's own budget
 * shared by its streams), and the replica's fair share {@link HubOptions.budgetBytes} / sessions
 * (never below {@link HubOptions.minWindowBytes}): however many streams stall, the replica and
 * its gateways hold at most about max(budgetBytes, sessions x minWindowBytes) of unacknowledged
 * responses (plus one revision each: a revision goes out whole into a window with room), and a stream
 * that reads keeps a window of its own, so stalled streams cannot starve it.
 *
 * Example (window of two responses, one watcher on "a", client stalled after the first):
 *   rev 5 put a -> response [5] sent             minRev 6, synced
 *   rev 6 put a -> response [6] sent             minRev 7, synced   (window now full)
 *   rev 7 put a -> no room: victim               minRev 7
 *   ack of [5] and [6] -> unsynced; next round delivers [7] from the ring, minRev 8, synced.
 */
import { toKeyString as keyString } from "../../mvcc/core/key-bytes.ts"
import { watches, WatcherGroup } from "./watcher-group.ts"
import type { RevisionEvents, Watcher, WatchEvent } from "./watcher-group.ts"

/** Bounds and batch sizes of a hub. Each field's bound says what happens when reached. */
export interface HubOptions {
  /** Unacknowledged response bytes a session may have; beyond, its watchers become victims. */
  readonly windowBytes: number
  /** Unacknowledged response bytes of all sessions together, shared equally as their windows. */
  readonly budgetBytes: number
  /** The smallest window a fair share gives a session, in bytes (so every stream makes progress). */
  readonly minWindowBytes: number
  /**
   * Largest message (several responses) to a gateway, in bytes (one response may exceed it).
   * 64 KiB: a message the size of a socket read reaches the gateway's NATS client in one piece
   * (a longer one is reassembled in buffers grown by copying): 12 % less gateway CPU per event
   * than 1 MiB in the watch bench (3 interleaved runs each: 5.2–6.9 against 6.4–6.8 µs).
   */
  readonly maxMessageBytes: number
  /** Events of one response are cut at the revision boundary past this many bytes. */
  readonly maxResponseBytes: number
  /** Most revisions one catch-up round reads from the ring for a watcher (etcd watchBatchMaxRevs). */
  readonly batchMaxRevs: number
  /** Most unsynced watchers per catch-up round (etcd maxWatchersPerSync). */
  readonly maxWatchersPerSync: number
  /** Recent revisions kept in memory; the oldest is dropped beyond this count or ringBytes. */
  readonly ringRevs: number
  /** Bytes of recent revisions kept in memory. */
  readonly ringBytes: number
  /** Size asked of one history read (whole revisions; the reply may exceed it by one revision). */
  readonly historyMaxBytes: number
  /** Out-of-order live frames kept while a gap is fetched; beyond, frames are dropped (refetched). */
  readonly pendingFrameBytes: number
}

/** Defaults: etcd's batch sizes; memory bounds sized for a replica of tens of thousands of watchers. */
export const defaultHubOptions: HubOptions = {
  windowBytes: 4 * 1024 * 1024,
  budgetBytes: 256 * 1024 * 1024,
  minWindowBytes: 64 * 1024,
  maxMessageBytes: 64 * 1024,
  maxResponseBytes: 1024 * 1024,
  batchMaxRevs: 1000,
  maxWatchersPerSync: 512,
  ringRevs: 10_000,
  ringBytes: 64 * 1024 * 1024,
  historyMaxBytes: 4 * 1024 * 1024,
  pendingFrameBytes: 16 * 1024 * 1024
}

/**
 * A batch of committed revisions `fromRev`..`head` (none: a heartbeat, fromRev = head + 1).
 * Revisions without events may be absent from `revs` (compacted deletes); the frame covers
 * every revision in the range regardless.
 */
export interface LiveFrame {
  readonly fromRev: number
  readonly head: number
  readonly compactRev: number
  readonly term: number
  readonly revs: ReadonlyArray<RevisionEvents>
}

/** A watch response as the hub emits it (etcd WatchResponse; the gateway adds the header ids). */
export interface WatchResponseData {
  readonly watchId: number
  /** The header revision. */
  readonly revision: number
  readonly created?: boolean
  readonly canceled?: boolean
  readonly compactRevision?: number
  readonly cancelReason?: string
  readonly events: ReadonlyArray<WatchEvent>
  /** On events responses of a watch created with `fragment`: the stream may cut it (etcd sendFragments). */
  readonly fragment?: boolean
}

/**
 * What a session's responses carry besides events, as its gateway declared at open: the
 * header's cluster and member ids (its member's), and the size past which a response of a watch
 * created with `fragment` is cut (etcd --max-request-bytes, bytes).
 */
export interface StreamFormat {
  readonly clusterId: bigint
  readonly memberId: bigint
  readonly maxRequestBytes: number
}

/** The format of a session opened without one: zero ids, etcd's default max request size (1.5 MiB). */
export const defaultStreamFormat: StreamFormat = { clusterId: 0n, memberId: 0n, maxRequestBytes: 1.5 * 1024 * 1024 }

/** One message to a session's gateway: consecutive `seq` per session, from 1. */
export interface OutgoingMessage {
  readonly session: string
  readonly gateway: string
  readonly format: StreamFormat
  readonly seq: number
  readonly term: number
  readonly responses: ReadonlyArray<WatchResponseData>
}

/** A history read the shell must make: revisions fromRev..toRev from an mvcc service. */
export interface FetchRequest {
  readonly id: number
  /** gap: revisions the live stream missed; sync: catch-up of unsynced watchers. */
  readonly purpose: "gap" | "sync"
  readonly fromRev: number
  readonly toRev: number
  readonly prevKv: boolean
  readonly maxBytes: number
}

/** What a history read returned: revisions through `toRev`, the compact revision, or failure. */
export type FetchResult =
  | { readonly revs: ReadonlyArray<RevisionEvents>; readonly toRev: number; readonly head: number; readonly compactRev: number; readonly term: number }
  | { readonly compacted: number }
  | { readonly failed: true }

/** A watch to create, as the gateway validated it (see shared/schema.ts WatchCreateBody). */
export interface CreateRequest {
  readonly watchId: number
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
  readonly startRevision: number
  readonly prevKv: boolean
  readonly noPut: boolean
  readonly noDelete: boolean
  readonly progressNotify: boolean
  /** Responses may be cut into fragments (etcd WatchCreateRequest.fragment). */
  readonly fragment?: boolean
}

/** Counters and sizes, for logs, metrics and tests. */
export interface HubStats {
  head: number
  sessions: number
  watchers: number
  synced: number
  unsynced: number
  victims: number
  ringRevs: number
  /** Responses queued or sent and not yet acknowledged, all sessions, in bytes. */
  unackedBytes: number
  eventsSent: number
  responsesSent: number
  victimMoves: number
  gapFetches: number
  historyFetches: number
  ringCatchUps: number
  droppedFrames: number
}

interface Session {
  readonly id: string
  readonly gateway: string
  format: StreamFormat
  lastSeenMs: number
  readonly watchers: Map<number, Watcher>
  readonly victims: Set<Watcher>
  /** Sent, not yet acknowledged messages, oldest first. */
  readonly inflight: Array<{ seq: number; bytes: number }>
  unackedBytes: number
  /** The window the session's gateway asked for, in bytes (Infinity: none asked). */
  gatewayWindowBytes: number
  outbox: WatchResponseData[]
  outboxBytes: number
  lastSeq: number
  deferredProgress: boolean
}

const kvBytes = (kv: { key: Uint8Array; value: Uint8Array }): number => 40 + kv.key.length + kv.value.length

/** Approximate encoded size of an event, in bytes. */
export const eventBytes = (e: WatchEvent): number => 8 + kvBytes(e.kv) + (e.prevKv === undefined ? 0 : kvBytes(e.prevKv))

/**
 * `e` without its previous key-value, one object per event (so that an encoding made per event
 * object, ../encode.ts, is shared by every watcher without prev_kv); lives as long as `e`.
 */
const withoutPrevKv = (e: WatchEvent): WatchEvent => {
  if (e.prevKv === undefined) return e
  let bare = bareEvents.get(e)
  if (bare === undefined) bareEvents.set(e, (bare = { type: e.type, kv: e.kv }))
  return bare
}
const bareEvents = new WeakMap<WatchEvent, WatchEvent>()

const responseBytes = (r: WatchResponseData): number => {
  let n = 48
  for (const e of r.events) n += eventBytes(e)
  return n
}

/**
 * A replica's watchers and recent revisions.
 *
 * Invariants: `head` is the last revision of the committed stream the hub has fanned out; every
 * revision ringStart..head is in the ring (or had no events); every synced watcher has been
 * given every matching event up to head; a watcher is in exactly one of synced, unsynced,
 * victims (its session's set), matching its `state`.
 */
export class WatchHub {
  private readonly options: HubOptions
  private head: number | undefined
  private compactRev = -1
  private term = 0
  /** Highest head any frame or history reply announced (a gap while > head). */
  private knownHead = 0
  private readonly sessions = new Map<string, Session>()
  private readonly synced = new WatcherGroup()
  private readonly unsynced = new Set<Watcher>()
  private readonly ring: RevisionEvents[] = []
  private ringStart = 0
  private ringBytes = 0
  private readonly ringSizes: number[] = []
  private pending: LiveFrame[] = []
  private pendingBytes = 0
  private nextFetchId = 1
  private gapFetch: FetchRequest | undefined
  private syncFetch: { request: FetchRequest; watchers: Set<Watcher> } | undefined
  private readonly withOutbox = new Set<Session>()
  private readonly deferred = new Set<Session>()
  private readonly counters = {
    eventsSent: 0, responsesSent: 0, victimMoves: 0, gapFetches: 0, historyFetches: 0, ringCatchUps: 0, droppedFrames: 0
  }

  constructor(options: Partial<HubOptions> = {}) {
    this.options = { ...defaultHubOptions, ...options }
  }

  /** True once a frame told the hub where the stream is; sessions are served only then. */
  initialized(): boolean {
    return this.head !== undefined
  }

  /** The last revision fanned out (0 before initialization). */
  headRevision(): number {
    return this.head ?? 0
  }

  /** Whether a frame ending at `head` brings anything new (the shell skips decoding otherwise). */
  wants(head: number): boolean {
    return this.head === undefined || head > this.head
  }

  // -------------------------------------------------------------------------------------------
  // The committed stream.

  /**
   * Takes a frame of the committed stream (any member's: copies of revisions the hub has are
   * ignored). A frame beyond head + 1 is kept aside (bounded by pendingFrameBytes) and the gap
   * before it becomes a fetch; a heartbeat beyond head makes a gap too.
   */
  live(frame: LiveFrame): void {
    this.term = Math.max(this.term, frame.term)
    if (this.head === undefined) {
      this.head = frame.fromRev - 1
      this.ringStart = this.head + 1
    }
    this.learnCompactRev(frame.compactRev)
    this.knownHead = Math.max(this.knownHead, frame.head)
    if (frame.head <= this.head || frame.revs.length === 0) return
    if (frame.fromRev > this.head + 1) {
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
  private learnCompactRev(rev: number): void {
    if (rev <= this.compactRev) return
    this.compactRev = rev
    while (this.ring.length > 0 && this.ring[0]!.rev <= rev) {
      this.ring.shift()
      this.ringBytes -= this.ringSizes.shift()!
    }
    if (this.head !== undefined) this.ringStart = Math.max(this.ringStart, Math.min(rev + 1, this.head + 1))
  }

  /** Fans out revisions head+1..through (those in `revs` above head) to the synced watchers. */
  private advance(revs: ReadonlyArray<RevisionEvents>, through: number): void {
    const head = this.head!
    if (through <= head) return
    const fresh = revs.filter((r) => r.rev > head && r.rev <= through)
    for (const r of fresh) this.pushRing(r)
    this.head = through
    // etcd notify: match each event against the synced watchers.
    const batches = new Map<Watcher, WatchEvent[]>()
    for (const r of fresh) {
      for (const ev of r.events) {
        this.synced.forEachMatching(keyString(ev.kv.key), (w) => {
          if (r.rev < w.minRev) return
          let b = batches.get(w)
          if (b === undefined) batches.set(w, (b = []))
          b.push(ev)
        })
      }
    }
    for (const [w, events] of batches) {
      const unsent = this.send(w, events, through)
      if (unsent === undefined) w.minRev = Math.max(w.minRev, through + 1)
      else this.makeVictim(w, unsent)
    }
    this.checkDeferred()
  }

  private drainPending(): void {
    if (this.pending.length === 0) return
    this.pending.sort((a, b) => a.fromRev - b.fromRev)
    while (this.pending.length > 0 && this.pending[0]!.fromRev <= this.head! + 1) {
      const f = this.pending.shift()!
      for (const r of f.revs) for (const e of r.events) this.pendingBytes -= eventBytes(e)
      this.advance(f.revs, f.head)
    }
    this.pending = this.pending.filter((f) => f.head > this.head!)
    if (this.pending.length === 0) this.pendingBytes = 0
  }

  private pushRing(r: RevisionEvents): void {
    if (r.rev <= this.compactRev) return
    let bytes = 16
    for (const e of r.events) bytes += eventBytes(e)
    this.ring.push(r)
    this.ringSizes.push(bytes)
    this.ringBytes += bytes
    while (this.ring.length > this.options.ringRevs || (this.ringBytes > this.options.ringBytes && this.ring.length > 1)) {
      const dropped = this.ring.shift()!
      this.ringBytes -= this.ringSizes.shift()!
      this.ringStart = dropped.rev + 1
    }
  }

  /** Index of the first ring revision >= rev (ring.length when none). */
  private ringIndex(rev: number): number {
    let lo = 0
    let hi = this.ring.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.ring[mid]!.rev < rev) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  // -------------------------------------------------------------------------------------------
  // Sessions and watchers.

  /**
   * Opens session `id` answering to subject `gateway` (idempotent), with the window its gateway
   * asks for (`windowBytes`, bytes; absent: no limit of the gateway's) and its responses'
   * {@link StreamFormat}.
   */
  openSession(id: string, gateway: string, nowMs: number, windowBytes?: number, format: StreamFormat = defaultStreamFormat): void {
    const s = this.sessions.get(id)
    if (s !== undefined) {
      s.lastSeenMs = nowMs
      if (windowBytes !== undefined) s.gatewayWindowBytes = windowBytes
      s.format = format
      return
    }
    this.sessions.set(id, {
      id, gateway, format, lastSeenMs: nowMs, watchers: new Map(), victims: new Set(), inflight: [], unackedBytes: 0,
      gatewayWindowBytes: windowBytes ?? Infinity, outbox: [], outboxBytes: 0, lastSeq: 0, deferredProgress: false
    })
  }

  /** Drops session `id` and its watchers (its stream ended or its gateway is gone). */
  closeSession(id: string): void {
    const s = this.sessions.get(id)
    if (s === undefined) return
    for (const w of s.watchers.values()) this.removeWatcher(w)
    this.sessions.delete(id)
    this.withOutbox.delete(s)
    this.deferred.delete(s)
  }

  /**
   * Creates a watcher and emits its created response (header revision = head). A start
   * revision of 0, or one beyond head, makes it synced (minRev = max(head + 1, start));
   * otherwise it starts unsynced (etcd watchableStore.watch). Returns false when the session is
   * unknown; a watch id the session already has is a retried request and changes nothing.
   */
  create(session: string, req: CreateRequest): boolean {
    const s = this.sessions.get(session)
    if (s === undefined || this.head === undefined) return false
    if (s.watchers.has(req.watchId)) return true
    const head = this.head
    const synced = req.startRevision === 0 || req.startRevision > head
    const w: Watcher = {
      session,
      id: req.watchId,
      key: keyString(req.key),
      end: req.rangeEnd === undefined ? undefined : keyString(req.rangeEnd),
      startRev: req.startRevision,
      minRev: synced ? Math.max(head + 1, req.startRevision) : req.startRevision,
      prevKv: req.prevKv,
      noPut: req.noPut,
      noDelete: req.noDelete,
      progressNotify: req.progressNotify,
      fragment: req.fragment === true,
      progressDue: true,
      state: synced ? "synced" : "unsynced"
    }
    s.watchers.set(w.id, w)
    this.control(s, { watchId: w.id, revision: head, created: true, events: [] })
    if (synced) this.synced.add(w)
    else this.unsynced.add(w)
    return true
  }

  /** Cancels a watcher and emits its canceled response; false when the session is unknown. */
  cancel(session: string, watchId: number): boolean {
    const s = this.sessions.get(session)
    if (s === undefined) return false
    const w = s.watchers.get(watchId)
    if (w === undefined) return true
    this.removeWatcher(w)
    s.watchers.delete(watchId)
    this.control(s, { watchId, revision: this.head ?? 0, canceled: true, events: [] })
    this.checkDeferred()
    return true
  }

  /**
   * A progress request (etcd RequestProgressAll): answered with watch id -1 and the head
   * revision once every watcher of the session is synced and past its start revision; until
   * then deferred (etcd 3.5 watchableStore.progressIfSync and the stream's deferred progress).
   * False when the session is unknown.
   */
  progress(session: string): boolean {
    const s = this.sessions.get(session)
    if (s === undefined) return false
    if (this.allSynced(s)) this.control(s, { watchId: -1, revision: this.head ?? 0, events: [] })
    else {
      s.deferredProgress = true
      this.deferred.add(s)
    }
    return true
  }

  /**
   * The periodic progress tick (etcd sendLoop's progressTicker): every synced watcher with
   * progress_notify that got no events since the previous tick gets a progress response with
   * its own watch id and the head revision.
   */
  progressTick(): void {
    if (this.head === undefined) return
    for (const s of this.sessions.values()) {
      for (const w of s.watchers.values()) {
        if (!w.progressNotify) continue
        if (w.progressDue && w.state === "synced" && this.head >= w.startRev) {
          this.control(s, { watchId: w.id, revision: this.head, events: [] })
        }
        w.progressDue = true
      }
    }
  }

  /** The gateway has taken every message of `session` up to `seq`. */
  ack(session: string, seq: number, nowMs?: number): void {
    const s = this.sessions.get(session)
    if (s === undefined) return
    if (nowMs !== undefined) s.lastSeenMs = nowMs
    while (s.inflight.length > 0 && s.inflight[0]!.seq <= seq) s.unackedBytes -= s.inflight.shift()!.bytes
  }

  /**
   * A gateway's liveness ping listing its sessions here with their acked seqs and the window
   * (bytes) it now asks for each. Returns the listed sessions this hub does not hold (the
   * gateway moves them to another replica).
   */
  ping(
    sessions: ReadonlyArray<{ readonly session: string; readonly acked: number; readonly windowBytes?: number | undefined }>,
    nowMs: number
  ): string[] {
    const unknown: string[] = []
    for (const { session, acked, windowBytes } of sessions) {
      const s = this.sessions.get(session)
      if (s === undefined) unknown.push(session)
      else {
        if (windowBytes !== undefined) s.gatewayWindowBytes = windowBytes
        this.ack(session, acked, nowMs)
      }
    }
    return unknown
  }

  /** Closes the sessions not heard of (open, ack, ping) for `timeoutMs`; returns their ids. */
  expire(nowMs: number, timeoutMs: number): string[] {
    const gone: string[] = []
    for (const s of this.sessions.values()) if (nowMs - s.lastSeenMs > timeoutMs) gone.push(s.id)
    for (const id of gone) this.closeSession(id)
    return gone
  }

  private removeWatcher(w: Watcher): void {
    if (w.state === "synced") this.synced.delete(w)
    else if (w.state === "unsynced") this.unsynced.delete(w)
    else this.sessions.get(w.session)?.victims.delete(w)
    if (this.syncFetch !== undefined) this.syncFetch.watchers.delete(w)
  }

  private allSynced(s: Session): boolean {
    for (const w of s.watchers.values()) {
      if (w.state !== "synced" || (this.head ?? 0) < w.startRev) return false
    }
    return true
  }

  private checkDeferred(): void {
    for (const s of this.deferred) {
      if (!this.allSynced(s)) continue
      s.deferredProgress = false
      this.deferred.delete(s)
      this.control(s, { watchId: -1, revision: this.head ?? 0, events: [] })
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sending.

  /** The session's window now, in bytes (see the flow control note at the top). */
  private window(s: Session): number {
    const o = this.options
    const share = Math.max(o.minWindowBytes, Math.floor(o.budgetBytes / Math.max(1, this.sessions.size)))
    return Math.min(o.windowBytes, s.gatewayWindowBytes, share)
  }

  private room(s: Session): boolean {
    return s.unackedBytes + s.outboxBytes < this.window(s)
  }

  private queue(s: Session, r: WatchResponseData): void {
    s.outbox.push(r)
    s.outboxBytes += responseBytes(r)
    this.withOutbox.add(s)
  }

  /** Queues a control response (created, canceled, progress): always accepted. */
  private control(s: Session, r: WatchResponseData): void {
    this.queue(s, r)
  }

  /**
   * Queues `events` (ordered, already matched and >= w.minRev) for watcher `w` with header
   * revision `revision`, after its filters and without prevKv unless asked for. Cuts at
   * revision boundaries past maxResponseBytes. Returns undefined when all went out, else the
   * revision of the first event that found no room (nothing at or after it went out).
   */
  private send(w: Watcher, events: ReadonlyArray<WatchEvent>, revision: number): number | undefined {
    const s = this.sessions.get(w.session)!
    const out: WatchEvent[] = []
    for (const e of events) {
      if (e.type === "PUT" ? w.noPut : w.noDelete) continue
      out.push(w.prevKv ? e : withoutPrevKv(e))
    }
    // etcd watcher.send: all events filtered out, nothing to send.
    let i = 0
    while (i < out.length) {
      if (!this.room(s)) return out[i]!.kv.modRevision
      // A response fills what is left of the window (never less than one revision), so a
      // session overshoots its window by at most one revision.
      const limit = Math.min(this.options.maxResponseBytes, this.window(s) - s.unackedBytes - s.outboxBytes)
      let j = i
      let bytes = 0
      while (j < out.length) {
        const rev = out[j]!.kv.modRevision
        let k = j
        let revBytes = 0
        while (k < out.length && out[k]!.kv.modRevision === rev) revBytes += eventBytes(out[k++]!)
        if (j > i && bytes + revBytes > limit) break
        bytes += revBytes
        j = k
      }
      this.queue(s, w.fragment ? { watchId: w.id, revision, events: out.slice(i, j), fragment: true } : { watchId: w.id, revision, events: out.slice(i, j) })
      this.counters.eventsSent += j - i
      w.progressDue = false
      i = j
    }
    return undefined
  }

  private makeVictim(w: Watcher, minRev: number): void {
    if (w.state === "synced") this.synced.delete(w)
    else if (w.state === "unsynced") this.unsynced.delete(w)
    w.minRev = minRev
    w.state = "victim"
    this.sessions.get(w.session)!.victims.add(w)
    this.counters.victimMoves++
  }

  private toSynced(w: Watcher): void {
    this.unsynced.delete(w)
    w.state = "synced"
    this.synced.add(w)
  }

  /**
   * Cancels a watcher whose next revision was compacted away (etcd chooseAll): canceled
   * response with compact_revision set and header revision 0, as etcd sends it.
   */
  private cancelCompacted(w: Watcher): void {
    const s = this.sessions.get(w.session)!
    this.removeWatcher(w)
    s.watchers.delete(w.id)
    this.control(s, { watchId: w.id, revision: 0, canceled: true, compactRevision: this.compactRev, events: [] })
  }

  /**
   * Delivers to unsynced watcher `w` its events among `revs` (ordered, every revision
   * w.minRev..through covered), then: synced when it reached head, a victim when its session
   * ran out of room, else still unsynced with minRev = through + 1.
   */
  private catchUp(w: Watcher, revs: ReadonlyArray<RevisionEvents>, through: number): void {
    const events: WatchEvent[] = []
    for (const r of revs) {
      if (r.rev < w.minRev || r.rev > through) continue
      for (const e of r.events) if (watches(w, keyString(e.kv.key))) events.push(e)
    }
    const unsent = this.send(w, events, this.head!)
    if (unsent !== undefined) return this.makeVictim(w, unsent)
    w.minRev = Math.max(w.minRev, through + 1)
    if (w.minRev > this.head!) this.toSynced(w)
  }

  /**
   * One round of catching up (etcd syncWatchers and moveVictims): victims of sessions with
   * room become unsynced; unsynced watchers behind the compact revision are canceled; up to
   * maxWatchersPerSync unsynced watchers whose next revision is in the ring catch up from it
   * (at most batchMaxRevs revisions and about historyMaxBytes each). Returns true when more
   * ring work is left for another round.
   */
  sync(): boolean {
    if (this.head === undefined) return false
    const head = this.head
    for (const s of this.sessions.values()) {
      if (s.victims.size === 0 || !this.room(s)) continue
      for (const w of s.victims) {
        w.state = "unsynced"
        this.unsynced.add(w)
      }
      s.victims.clear()
    }
    let done = 0
    let more = false
    for (const w of [...this.unsynced]) {
      if (w.minRev < this.compactRev) {
        this.cancelCompacted(w)
        continue
      }
      if (w.minRev < this.ringStart || this.syncFetch?.watchers.has(w)) continue
      if (!this.room(this.sessions.get(w.session)!)) {
        this.makeVictim(w, w.minRev)
        continue
      }
      if (done >= this.options.maxWatchersPerSync) {
        more = true
        break
      }
      done++
      if (w.minRev > head) {
        this.toSynced(w)
        continue
      }
      const from = this.ringIndex(w.minRev)
      const last = Math.min(head, w.minRev + this.options.batchMaxRevs - 1)
      let through = last
      let bytes = 0
      const revs: RevisionEvents[] = []
      for (let i = from; i < this.ring.length && this.ring[i]!.rev <= last; i++) {
        const r = this.ring[i]!
        revs.push(r)
        bytes += this.ringSizes[i]!
        if (bytes >= this.options.historyMaxBytes) {
          through = r.rev
          break
        }
      }
      this.counters.ringCatchUps++
      this.catchUp(w, revs, through)
      if (w.state === "unsynced") more = true
    }
    this.checkDeferred()
    return more
  }

  // -------------------------------------------------------------------------------------------
  // History reads.

  /**
   * The history reads to start now (each is reported back through {@link fetched}): the gap
   * of the live stream, and the catch-up of unsynced watchers the ring no longer covers. At
   * most one of each kind is in flight.
   */
  fetches(): FetchRequest[] {
    const out: FetchRequest[] = []
    if (this.head === undefined) return out
    if (this.gapFetch === undefined && this.knownHead > this.head) {
      const until = this.pending.length > 0 ? Math.min(...this.pending.map((f) => f.fromRev)) - 1 : this.knownHead
      if (until > this.head) {
        this.gapFetch = {
          id: this.nextFetchId++, purpose: "gap", fromRev: this.head + 1, toRev: until, prevKv: true,
          maxBytes: this.options.historyMaxBytes
        }
        this.counters.gapFetches++
        out.push(this.gapFetch)
      }
    }
    if (this.syncFetch === undefined) {
      const chosen = new Set<Watcher>()
      let fromRev = Number.MAX_SAFE_INTEGER
      let prevKv = false
      for (const w of this.unsynced) {
        if (w.minRev >= this.ringStart || w.minRev < this.compactRev) continue
        if (!this.room(this.sessions.get(w.session)!)) continue
        chosen.add(w)
        fromRev = Math.min(fromRev, w.minRev)
        prevKv ||= w.prevKv
        if (chosen.size >= this.options.maxWatchersPerSync) break
      }
      if (chosen.size > 0) {
        const request: FetchRequest = {
          id: this.nextFetchId++, purpose: "sync", fromRev, toRev: Math.min(this.head, this.ringStart - 1), prevKv,
          maxBytes: this.options.historyMaxBytes
        }
        this.syncFetch = { request, watchers: chosen }
        this.counters.historyFetches++
        out.push(request)
      }
    }
    return out
  }

  /**
   * The result of history read `request`. Gap: the revisions join the live stream (a compacted
   * gap moves every synced watcher to unsynced, where those behind the compact revision are
   * canceled, as etcd cancels watchers it can no longer serve). Sync: the chosen watchers that
   * are still unsynced catch up from it.
   */
  fetched(request: FetchRequest, result: FetchResult): void {
    if (request.purpose === "gap") {
      if (this.gapFetch?.id === request.id) this.gapFetch = undefined
      if ("failed" in result) return
      if ("compacted" in result) return this.liveCompacted(result.compacted)
      this.term = Math.max(this.term, result.term)
      this.learnCompactRev(result.compactRev)
      this.knownHead = Math.max(this.knownHead, result.head)
      if (request.fromRev <= this.head! + 1 && result.toRev > this.head!) this.advance(result.revs, result.toRev)
      this.drainPending()
      return
    }
    if (this.syncFetch?.request.id !== request.id) return
    const { watchers } = this.syncFetch
    this.syncFetch = undefined
    if ("failed" in result) return
    if ("compacted" in result) {
      this.learnCompactRev(result.compacted)
      return
    }
    this.learnCompactRev(result.compactRev)
    for (const w of watchers) {
      if (w.state !== "unsynced" || w.minRev < request.fromRev || w.minRev > result.toRev) continue
      this.catchUp(w, result.revs, result.toRev)
    }
    this.checkDeferred()
  }

  /** The live stream's next revision was compacted away before the hub could read it. */
  private liveCompacted(compactRev: number): void {
    this.learnCompactRev(compactRev)
    const head = this.head!
    for (const w of [...this.synced.watchers()]) {
      this.synced.delete(w)
      w.minRev = Math.max(w.minRev, head + 1)
      w.state = "unsynced"
      this.unsynced.add(w)
    }
    this.head = Math.max(head, compactRev - 1)
    this.ring.length = 0
    this.ringSizes.length = 0
    this.ringBytes = 0
    this.ringStart = this.head + 1
  }

  // -------------------------------------------------------------------------------------------
  // Output.

  /**
   * The messages to send now, cut at maxMessageBytes, each with its session's next sequence
   * number; they count against the session's window until acknowledged.
   */
  takeOutgoing(): OutgoingMessage[] {
    const out: OutgoingMessage[] = []
    for (const s of this.withOutbox) {
      let batch: WatchResponseData[] = []
      let bytes = 0
      const flush = () => {
        if (batch.length === 0) return
        const seq = ++s.lastSeq
        s.inflight.push({ seq, bytes })
        s.unackedBytes += bytes
        this.counters.responsesSent += batch.length
        out.push({ session: s.id, gateway: s.gateway, format: s.format, seq, term: this.term, responses: batch })
        batch = []
        bytes = 0
      }
      for (const r of s.outbox) {
        const b = responseBytes(r)
        if (batch.length > 0 && bytes + b > this.options.maxMessageBytes) flush()
        batch.push(r)
        bytes += b
      }
      flush()
      s.outbox = []
      s.outboxBytes = 0
    }
    this.withOutbox.clear()
    return out
  }

  /** Counters and sizes. */
  stats(): HubStats {
    let victims = 0
    let watchers = 0
    let unackedBytes = 0
    for (const s of this.sessions.values()) {
      victims += s.victims.size
      watchers += s.watchers.size
      unackedBytes += s.unackedBytes + s.outboxBytes
    }
    return {
      head: this.head ?? 0,
      sessions: this.sessions.size,
      watchers,
      synced: this.synced.size,
      unsynced: this.unsynced.size,
      victims,
      ringRevs: this.ring.length,
      unackedBytes,
      ...this.counters
    }
  }
}
