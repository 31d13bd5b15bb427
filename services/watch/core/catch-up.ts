/**
 * Catching unsynced watchers up to the head (etcd syncWatchers and moveVictims,
 * server/storage/mvcc/watchable_store.go): rounds that serve watchers from the ring of recent
 * revisions, and history reads from an mvcc service for watchers the ring no longer covers.
 *
 * What it is not: the live fan-out to synced watchers (./hub.ts) or the live stream's own gap
 * (./committed-stream.ts). Departure from etcd: etcd reads every catch-up from its backend;
 * natcd reads history only below the ring's start, at most one read in flight for at most
 * {@link HubOptions.maxWatchersPerSync} watchers. A watcher whose next revision is below the
 * compact revision is canceled with compact_revision set, as etcd's chooseAll does.
 */
import type { CommittedStream } from "./committed-stream.ts"
import type { HubOptions } from "./hub-options.ts"
import type { FetchRequest, FetchResult } from "./messages.ts"
import type { Outbox } from "./outbox.ts"
import type { SessionTable } from "./session-table.ts"
import { watches } from "./watcher-group.ts"
import type { RevisionEvents, Watcher, WatchEvent } from "./watcher-group.ts"
import type { WatcherStates } from "./watcher-states.ts"
import { toKeyString as keyString } from "../../mvcc/core/key-bytes.ts"

/** The parts of a hub catch-up works with. */
export interface CatchUpParts {
  readonly stream: CommittedStream
  readonly sessions: SessionTable
  readonly outbox: Outbox
  readonly states: WatcherStates
}

export class CatchUp {
  private readonly options: Pick<HubOptions, "maxWatchersPerSync" | "batchMaxRevs" | "historyMaxBytes">
  private readonly parts: CatchUpParts
  private readonly counters: { ringCatchUps: number; historyFetches: number }
  /** The history read in flight, with the watchers it was made for. */
  private syncFetch: { request: FetchRequest; watchers: Set<Watcher> } | undefined

  constructor(
    options: Pick<HubOptions, "maxWatchersPerSync" | "batchMaxRevs" | "historyMaxBytes">,
    parts: CatchUpParts,
    counters: { ringCatchUps: number; historyFetches: number }
  ) {
    this.options = options
    this.parts = parts
    this.counters = counters
  }

  /** Drops `w` from the history read in flight (it was removed). */
  forget(w: Watcher): void {
    if (this.syncFetch !== undefined) this.syncFetch.watchers.delete(w)
  }

  /**
   * Cancels a watcher whose next revision was compacted away (etcd chooseAll): canceled
   * response with compact_revision set and header revision 0, as etcd sends it.
   */
  private cancelCompacted(w: Watcher): void {
    const { sessions, states, outbox, stream } = this.parts
    const s = sessions.get(w.session)!
    states.remove(w)
    this.forget(w)
    s.watchers.delete(w.id)
    outbox.control(s, { watchId: w.id, revision: 0, canceled: true, compactRevision: stream.compactRev, events: [] })
  }

  /**
   * Delivers to unsynced watcher `w` its events among `revs` (ordered, every revision
   * w.minRev..through covered), then: synced when it reached head, a victim when its session
   * ran out of room, else still unsynced with minRev = through + 1.
   */
  private deliver(w: Watcher, revs: ReadonlyArray<RevisionEvents>, through: number): void {
    const { stream, outbox, states } = this.parts
    const events: WatchEvent[] = []
    for (const r of revs) {
      if (r.rev < w.minRev || r.rev > through) continue
      for (const e of r.events) if (watches(w, keyString(e.kv.key))) events.push(e)
    }
    const unsent = outbox.send(w, events, stream.head!)
    if (unsent !== undefined) return states.makeVictim(w, unsent)
    w.minRev = Math.max(w.minRev, through + 1)
    if (w.minRev > stream.head!) states.toSynced(w)
  }

  /**
   * One round (the stream's head must be known): victims of sessions with room become
   * unsynced; unsynced watchers behind the compact revision are canceled; up to
   * maxWatchersPerSync unsynced watchers whose next revision is in the ring catch up from it
   * (at most batchMaxRevs revisions and about historyMaxBytes each). Returns true when more
   * ring work is left for another round.
   */
  round(): boolean {
    const { stream, sessions, states } = this.parts
    const head = stream.head!
    states.resumeVictims()
    let done = 0
    let more = false
    for (const w of [...states.unsynced]) {
      if (w.minRev < stream.compactRev) {
        this.cancelCompacted(w)
        continue
      }
      if (w.minRev < stream.ring.start || this.syncFetch?.watchers.has(w)) continue
      if (!sessions.room(sessions.get(w.session)!)) {
        states.makeVictim(w, w.minRev)
        continue
      }
      if (done >= this.options.maxWatchersPerSync) {
        more = true
        break
      }
      done++
      if (w.minRev > head) {
        states.toSynced(w)
        continue
      }
      const last = Math.min(head, w.minRev + this.options.batchMaxRevs - 1)
      const { revs, through } = stream.ring.read(w.minRev, last, this.options.historyMaxBytes)
      this.counters.ringCatchUps++
      this.deliver(w, revs, through)
      if (w.state === "unsynced") more = true
    }
    return more
  }

  /**
   * The history read to start now for unsynced watchers the ring no longer covers (the stream's
   * head must be known), if none is in flight; `nextId` gives it its id.
   */
  fetchToStart(nextId: () => number): FetchRequest | undefined {
    if (this.syncFetch !== undefined) return undefined
    const { stream, sessions, states } = this.parts
    const chosen = new Set<Watcher>()
    let fromRev = Number.MAX_SAFE_INTEGER
    let prevKv = false
    for (const w of states.unsynced) {
      if (w.minRev >= stream.ring.start || w.minRev < stream.compactRev) continue
      if (!sessions.room(sessions.get(w.session)!)) continue
      chosen.add(w)
      fromRev = Math.min(fromRev, w.minRev)
      prevKv ||= w.prevKv
      if (chosen.size >= this.options.maxWatchersPerSync) break
    }
    if (chosen.size === 0) return undefined
    const request: FetchRequest = {
      id: nextId(), purpose: "sync", fromRev, toRev: Math.min(stream.head!, stream.ring.start - 1), prevKv,
      maxBytes: this.options.historyMaxBytes
    }
    this.syncFetch = { request, watchers: chosen }
    this.counters.historyFetches++
    return request
  }

  /**
   * The result of sync read `request`: the chosen watchers that are still unsynced catch up
   * from it. Returns true when watchers were served (the hub then answers deferred progress
   * requests that became due).
   */
  fetched(request: FetchRequest, result: FetchResult): boolean {
    const { stream } = this.parts
    if (this.syncFetch?.request.id !== request.id) return false
    const { watchers } = this.syncFetch
    this.syncFetch = undefined
    if ("failed" in result) return false
    if ("compacted" in result) {
      stream.learnCompactRev(result.compacted)
      return false
    }
    stream.learnCompactRev(result.compactRev)
    for (const w of watchers) {
      if (w.state !== "unsynced" || w.minRev < request.fromRev || w.minRev > result.toRev) continue
      this.deliver(w, result.revs, result.toRev)
    }
    return true
  }
}
