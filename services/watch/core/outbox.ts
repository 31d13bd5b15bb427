/**
 * The responses of each session on their way out: a watcher's events cut into WatchResponses
 * (its filters applied, prev_kv dropped unless asked for, cuts at revision boundaries within the
 * session's window), queued per session, and framed into numbered messages to the session's
 * gateway.
 *
 * What it is not: the decision of what a watcher gets (./hub.ts matches events and moves
 * watchers between groups) or the window's size (./session-table.ts). Follows etcd
 * server/storage/mvcc/watcher.go send (filters) and watchable_store.go notify (one response
 * per watcher per revision batch); the framing into messages is natcd's relay to its gateways.
 *
 * Guarantees: all events of one revision in one response (responses are cut only at revision
 * boundaries). Messages of a session carry consecutive sequence numbers, so the gateway can
 * tell a lost message and move the session elsewhere, resuming each watcher after the last event
 * it delivered.
 */
import type { HubOptions } from "./hub-options.ts"
import type { OutgoingMessage, WatchResponseData } from "./messages.ts"
import type { Session, SessionTable } from "./session-table.ts"
import { eventBytes, responseBytes } from "./sizes.ts"
import type { Watcher, WatchEvent } from "./watcher-group.ts"

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

/** The queued responses of a hub's sessions. */
export class Outbox {
  private readonly sessions: SessionTable
  private readonly options: Pick<HubOptions, "maxResponseBytes" | "maxMessageBytes">
  private readonly counters: { eventsSent: number; responsesSent: number }
  /** Sessions with queued responses. */
  private readonly withOutbox = new Set<Session>()

  constructor(
    sessions: SessionTable,
    options: Pick<HubOptions, "maxResponseBytes" | "maxMessageBytes">,
    counters: { eventsSent: number; responsesSent: number }
  ) {
    this.sessions = sessions
    this.options = options
    this.counters = counters
  }

  /** Drops session `s`'s queued responses from the next {@link take} (it was closed). */
  forget(s: Session): void {
    this.withOutbox.delete(s)
  }

  private queue(s: Session, r: WatchResponseData): void {
    s.outbox.push(r)
    s.outboxBytes += responseBytes(r)
    this.withOutbox.add(s)
  }

  /** Queues a control response (created, canceled, progress): always accepted. */
  control(s: Session, r: WatchResponseData): void {
    this.queue(s, r)
  }

  /**
   * Queues `events` (ordered, already matched and >= w.minRev) for watcher `w` with header
   * revision `revision`, after its filters and without prevKv unless asked for. Cuts at
   * revision boundaries past maxResponseBytes. Returns undefined when all went out, else the
   * revision of the first event that found no room (nothing at or after it went out).
   */
  send(w: Watcher, events: ReadonlyArray<WatchEvent>, revision: number): number | undefined {
    const s = this.sessions.get(w.session)!
    const out: WatchEvent[] = []
    for (const e of events) {
      if (e.type === "PUT" ? w.noPut : w.noDelete) continue
      out.push(w.prevKv ? e : withoutPrevKv(e))
    }
    // etcd watcher.send: all events filtered out, nothing to send.
    let i = 0
    while (i < out.length) {
      if (!this.sessions.room(s)) return out[i]!.kv.modRevision
      // A response fills what is left of the window (never less than one revision), so a
      // session overshoots its window by at most one revision.
      const limit = Math.min(this.options.maxResponseBytes, this.sessions.window(s) - s.unackedBytes - s.outboxBytes)
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

  /**
   * The messages to send now, cut at maxMessageBytes, each with its session's next sequence
   * number and the stream's `term`; they count against the session's window until acknowledged.
   */
  take(term: number): OutgoingMessage[] {
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
        out.push({ session: s.id, gateway: s.gateway, format: s.format, seq, term, responses: batch })
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
}
