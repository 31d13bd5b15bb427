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
 * This file owns the watchers' life and the live fan-out; its parts, one job each:
 * - ./committed-stream.ts: the stream's head, its gaps and out-of-order frames; ./ring.ts: the
 *   recent revisions;
 * - ./watcher-states.ts: the three groups and the moves between them; ./watcher-group.ts: which
 *   synced watchers want a key; ./catch-up.ts: catch-up rounds and history reads;
 * - ./session-table.ts: sessions, their windows (the flow control note), acks, expiry;
 *   ./outbox.ts: responses cut, queued and framed into numbered messages;
 * - ./hub-options.ts: the bounds; ./messages.ts: what goes in and out; ./sizes.ts: byte estimates.
 *
 * What it is not: IO. The shell feeds it frames, requests and acks, asks it which history
 * reads to make ({@link WatchHub.fetches}), hands back their results, and sends the messages
 * {@link WatchHub.takeOutgoing} returns. No clock: times are arguments.
 *
 * Guarantees (etcd api_guarantees, per watcher): events in revision order, each at most once
 * and none skipped (the `minRev` invariant of ./watcher-group.ts), and all events of one
 * revision in one response (./outbox.ts).
 *
 * Example (window of two responses, one watcher on "a", client stalled after the first):
 *   rev 5 put a -> response [5] sent             minRev 6, synced
 *   rev 6 put a -> response [6] sent             minRev 7, synced   (window now full)
 *   rev 7 put a -> no room: victim               minRev 7
 *   ack of [5] and [6] -> unsynced; next round delivers [7] from the ring, minRev 8, synced.
 */
import { toKeyString as keyString } from "../../mvcc/core/key-bytes.ts"
import { CatchUp } from "./catch-up.ts"
import { CommittedStream } from "./committed-stream.ts"
import { defaultHubOptions } from "./hub-options.ts"
import type { HubOptions } from "./hub-options.ts"
import { defaultStreamFormat } from "./messages.ts"
import type { CreateRequest, FetchRequest, FetchResult, HubStats, LiveFrame, OutgoingMessage, StreamFormat, WatchResponseData } from "./messages.ts"
import { Outbox } from "./outbox.ts"
import { SessionTable } from "./session-table.ts"
import type { Session } from "./session-table.ts"
import type { RevisionEvents, Watcher, WatchEvent } from "./watcher-group.ts"
import { WatcherStates } from "./watcher-states.ts"

/**
 * A replica's watchers and recent revisions.
 *
 * Invariant: every synced watcher has been given every matching event up to head. (The group
 * invariant is ./watcher-states.ts's; the head and ring invariants are ./committed-stream.ts's.)
 */
export class WatchHub {
  private readonly options: HubOptions
  private readonly stream: CommittedStream
  private readonly sessions: SessionTable
  private readonly outbox: Outbox
  private readonly states: WatcherStates
  private readonly catchUp: CatchUp
  private nextFetchId = 1
  private readonly deferred = new Set<Session>()
  private readonly counters = {
    eventsSent: 0, responsesSent: 0, victimMoves: 0, gapFetches: 0, historyFetches: 0, ringCatchUps: 0, droppedFrames: 0
  }

  constructor(options: Partial<HubOptions> = {}) {
    this.options = { ...defaultHubOptions, ...options }
    this.sessions = new SessionTable(this.options)
    this.outbox = new Outbox(this.sessions, this.options, this.counters)
    this.states = new WatcherStates(this.sessions, this.counters)
    this.stream = new CommittedStream(this.options, this.counters, {
      advanced: (fresh, through) => this.advanced(fresh, through),
      compactedAway: (head) => this.states.unsyncAll(head)
    })
    this.catchUp = new CatchUp(this.options, { stream: this.stream, sessions: this.sessions, outbox: this.outbox, states: this.states }, this.counters)
  }

  /** True once a frame told the hub where the stream is; sessions are served only then. */
  initialized(): boolean {
    return this.stream.head !== undefined
  }

  /** The last revision fanned out (0 before initialization). */
  headRevision(): number {
    return this.stream.head ?? 0
  }

  /** Whether a frame ending at `head` brings anything new (the shell skips decoding otherwise). */
  wants(head: number): boolean {
    return this.stream.head === undefined || head > this.stream.head
  }

  // -------------------------------------------------------------------------------------------
  // The committed stream.

  /**
   * Takes a frame of the committed stream (any member's: copies of revisions the hub has are
   * ignored). A frame beyond head + 1 is kept aside (bounded by pendingFrameBytes) and the gap
   * before it becomes a fetch; a heartbeat beyond head makes a gap too.
   */
  live(frame: LiveFrame): void {
    this.stream.live(frame)
  }

  /** Fans out revisions up to `through` (`fresh`: those with events) to the synced watchers. */
  private advanced(fresh: ReadonlyArray<RevisionEvents>, through: number): void {
    // etcd notify: match each event against the synced watchers.
    const batches = new Map<Watcher, WatchEvent[]>()
    for (const r of fresh) {
      for (const ev of r.events) {
        this.states.synced.forEachMatching(keyString(ev.kv.key), (w) => {
          if (r.rev < w.minRev) return
          let b = batches.get(w)
          if (b === undefined) batches.set(w, (b = []))
          b.push(ev)
        })
      }
    }
    for (const [w, events] of batches) {
      const unsent = this.outbox.send(w, events, through)
      if (unsent === undefined) w.minRev = Math.max(w.minRev, through + 1)
      else this.states.makeVictim(w, unsent)
    }
    this.checkDeferred()
  }

  // -------------------------------------------------------------------------------------------
  // Sessions and watchers.

  /**
   * Opens session `id` answering to subject `gateway` (idempotent), with the window its gateway
   * asks for (`windowBytes`, bytes; absent: no limit of the gateway's) and its responses'
   * {@link StreamFormat}.
   */
  openSession(id: string, gateway: string, nowMs: number, windowBytes?: number, format: StreamFormat = defaultStreamFormat): void {
    this.sessions.open(id, gateway, nowMs, windowBytes, format)
  }

  /** Drops session `id` and its watchers (its stream ended or its gateway is gone). */
  closeSession(id: string): void {
    const s = this.sessions.get(id)
    if (s === undefined) return
    for (const w of s.watchers.values()) this.removeWatcher(w)
    this.sessions.delete(s)
    this.outbox.forget(s)
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
    if (s === undefined || this.stream.head === undefined) return false
    if (s.watchers.has(req.watchId)) return true
    const head = this.stream.head
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
    this.states.add(w)
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
    this.control(s, { watchId, revision: this.stream.head ?? 0, canceled: true, events: [] })
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
    if (this.allSynced(s)) this.control(s, { watchId: -1, revision: this.stream.head ?? 0, events: [] })
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
    const head = this.stream.head
    if (head === undefined) return
    for (const s of this.sessions.values()) {
      for (const w of s.watchers.values()) {
        if (!w.progressNotify) continue
        if (w.progressDue && w.state === "synced" && head >= w.startRev) {
          this.control(s, { watchId: w.id, revision: head, events: [] })
        }
        w.progressDue = true
      }
    }
  }

  /** The gateway has taken every message of `session` up to `seq`. */
  ack(session: string, seq: number, nowMs?: number): void {
    const s = this.sessions.get(session)
    if (s === undefined) return
    this.sessions.ack(s, seq, nowMs)
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
    return this.sessions.ping(sessions, nowMs)
  }

  /** Closes the sessions not heard of (open, ack, ping) for `timeoutMs`; returns their ids. */
  expire(nowMs: number, timeoutMs: number): string[] {
    const gone = this.sessions.idle(nowMs, timeoutMs)
    for (const id of gone) this.closeSession(id)
    return gone
  }

  private removeWatcher(w: Watcher): void {
    this.states.remove(w)
    this.catchUp.forget(w)
  }

  private allSynced(s: Session): boolean {
    for (const w of s.watchers.values()) {
      if (w.state !== "synced" || (this.stream.head ?? 0) < w.startRev) return false
    }
    return true
  }

  private checkDeferred(): void {
    for (const s of this.deferred) {
      if (!this.allSynced(s)) continue
      s.deferredProgress = false
      this.deferred.delete(s)
      this.control(s, { watchId: -1, revision: this.stream.head ?? 0, events: [] })
    }
  }

  /** Queues a control response (created, canceled, progress): always accepted. */
  private control(s: Session, r: WatchResponseData): void {
    this.outbox.control(s, r)
  }

  // -------------------------------------------------------------------------------------------
  // Catching up, and history reads.

  /**
   * One round of catching up (etcd syncWatchers and moveVictims): victims of sessions with
   * room become unsynced; unsynced watchers behind the compact revision are canceled; up to
   * maxWatchersPerSync unsynced watchers whose next revision is in the ring catch up from it
   * (at most batchMaxRevs revisions and about historyMaxBytes each). Returns true when more
   * ring work is left for another round.
   */
  sync(): boolean {
    if (this.stream.head === undefined) return false
    const more = this.catchUp.round()
    this.checkDeferred()
    return more
  }

  /**
   * The history reads to start now (each is reported back through {@link fetched}): the gap
   * of the live stream, and the catch-up of unsynced watchers the ring no longer covers. At
   * most one of each kind is in flight.
   */
  fetches(): FetchRequest[] {
    const out: FetchRequest[] = []
    if (this.stream.head === undefined) return out
    const nextId = () => this.nextFetchId++
    const gap = this.stream.gapFetchToStart(nextId)
    if (gap !== undefined) out.push(gap)
    const sync = this.catchUp.fetchToStart(nextId)
    if (sync !== undefined) out.push(sync)
    return out
  }

  /**
   * The result of history read `request`. Gap: the revisions join the live stream (a compacted
   * gap moves every synced watcher to unsynced, where those behind the compact revision are
   * canceled, as etcd cancels watchers it can no longer serve). Sync: the chosen watchers that
   * are still unsynced catch up from it.
   */
  fetched(request: FetchRequest, result: FetchResult): void {
    if (request.purpose === "gap") return this.stream.gapFetched(request, result)
    if (this.catchUp.fetched(request, result)) this.checkDeferred()
  }

  // -------------------------------------------------------------------------------------------
  // Output.

  /**
   * The messages to send now, cut at maxMessageBytes, each with its session's next sequence
   * number; they count against the session's window until acknowledged.
   */
  takeOutgoing(): OutgoingMessage[] {
    return this.outbox.take(this.stream.term)
  }

  /** Counters and sizes. */
  stats(): HubStats {
    const { watchers, victims, unackedBytes } = this.sessions.totals()
    return {
      head: this.stream.head ?? 0,
      sessions: this.sessions.size,
      watchers,
      synced: this.states.synced.size,
      unsynced: this.states.unsynced.size,
      victims,
      ringRevs: this.stream.ring.length,
      unackedBytes,
      ...this.counters
    }
  }
}
