/**
 * The sessions a watch hub holds (one per gateway watch stream) and their bounds: each
 * session's window of unacknowledged responses, the acknowledgements and pings that free it and
 * keep the session alive, and the expiry of sessions not heard of.
 *
 * What it is not: the responses themselves (./outbox.ts queues and frames them) or the watchers
 * (./hub.ts); a session here only lists its watchers and victims for the hub.
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
 */
import type { HubOptions } from "./hub-options.ts"
import { defaultStreamFormat } from "./messages.ts"
import type { StreamFormat, WatchResponseData } from "./messages.ts"
import type { Watcher } from "./watcher-group.ts"

/** One gateway watch stream as the hub holds it. */
export interface Session {
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

/** The sessions of a hub, by id, with their windows. Times are arguments (ms); no clock. */
export class SessionTable {
  private readonly options: Pick<HubOptions, "windowBytes" | "budgetBytes" | "minWindowBytes">
  private readonly sessions = new Map<string, Session>()

  constructor(options: Pick<HubOptions, "windowBytes" | "budgetBytes" | "minWindowBytes">) {
    this.options = options
  }

  /** Sessions held. */
  get size(): number {
    return this.sessions.size
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id)
  }

  values(): IterableIterator<Session> {
    return this.sessions.values()
  }

  /**
   * Opens session `id` answering to subject `gateway` (idempotent), with the window its gateway
   * asks for (`windowBytes`, bytes; absent: no limit of the gateway's) and its responses'
   * {@link StreamFormat}.
   */
  open(id: string, gateway: string, nowMs: number, windowBytes?: number, format: StreamFormat = defaultStreamFormat): void {
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

  /** Forgets session `s` (the hub removed its watchers first). */
  delete(s: Session): void {
    this.sessions.delete(s.id)
  }

  /** The session's window now, in bytes (see the flow control note at the top). */
  window(s: Session): number {
    const o = this.options
    const share = Math.max(o.minWindowBytes, Math.floor(o.budgetBytes / Math.max(1, this.sessions.size)))
    return Math.min(o.windowBytes, s.gatewayWindowBytes, share)
  }

  /** Whether the session's window has room for another events response. */
  room(s: Session): boolean {
    return s.unackedBytes + s.outboxBytes < this.window(s)
  }

  /** The gateway has taken every message of `s` up to `seq`. */
  ack(s: Session, seq: number, nowMs?: number): void {
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
        this.ack(s, acked, nowMs)
      }
    }
    return unknown
  }

  /** The sessions not heard of (open, ack, ping) for `timeoutMs`, by id. */
  idle(nowMs: number, timeoutMs: number): string[] {
    const gone: string[] = []
    for (const s of this.sessions.values()) if (nowMs - s.lastSeenMs > timeoutMs) gone.push(s.id)
    return gone
  }

  /** Watchers and victims of all sessions, and their responses queued or not yet acknowledged, in bytes. */
  totals(): { readonly watchers: number; readonly victims: number; readonly unackedBytes: number } {
    let victims = 0
    let watchers = 0
    let unackedBytes = 0
    for (const s of this.sessions.values()) {
      victims += s.victims.size
      watchers += s.watchers.size
      unackedBytes += s.unackedBytes + s.outboxBytes
    }
    return { watchers, victims, unackedBytes }
  }
}
