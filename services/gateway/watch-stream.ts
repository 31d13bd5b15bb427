/**
 * One client Watch stream on the gateway: its requests, sent to its session's replica in the
 * client's order; its session, opened on a replica and moved to another on failover (every
 * watch re-created from the first revision its client has not seen); and the delivery of the
 * replica's numbered messages to the client's HTTP/2 stream, acknowledged once sent, noting
 * how each watch moved.
 *
 * What it is not: the table of sessions, pings and load reports (./watch-sessions.ts), or the
 * reading of create requests (./watch-create.ts). The service as a whole, with its failover
 * and memory notes, is described in ./watch.ts.
 */
import type * as grpc from "@grpc/grpc-js"
import type { WatchCtlReply } from "../../shared/schema.ts"
import { watchCancel, watchClose, watchCreate, watchOpen, watchPlace, watchProgress } from "../../shared/endpoints.ts"
import { callEndpoint, isUnanswered, okOf, publishEndpoint } from "../runtime/rpc.ts"
import { retryPromise } from "../runtime/retry.ts"
import { headerToWire, wireInt } from "./convert.ts"
import type { Wire } from "./convert.ts"
import { grpcPrefixBytes, RelayKind } from "../../shared/watch-relay.ts"
import type { RelayMark } from "../../shared/watch-relay.ts"
import { watchSender } from "./watch-sender.ts"
import type { WatchSender } from "./watch-sender.ts"
import type { AuthInfo } from "../../shared/auth.ts"
import { currentAuthInfo, invalidTokenAuthInfo, withAuthInfo } from "../runtime/auth-context.ts"
import { createKey, createRangeEnd, duplicateIdReason, emptyRangeReason, isEmptyRange, newWatchState, refusalReason } from "./watch-create.ts"
import type { WatchState } from "./watch-create.ts"
import type { FailoverReason, Session, WatchSessions } from "./watch-sessions.ts"
import type { WatchContext } from "./watch.ts"
import { watchControlTimeoutMs, watchOpenRetryMs } from "./timeouts.ts"
import { describeError } from "../../shared/errors.ts"

const noop = (): void => {}

/**
 * One client stream. Requests to the replica are serialized (`chain`) so that the replica
 * sees them in the client's order.
 */
export class WatchStream {
  private readonly ctx: WatchContext
  private readonly table: WatchSessions
  private readonly call: grpc.ServerDuplexStream<Wire, Wire>
  /** Writes to the gRPC call under the stream when the server recorded it (./watch-sender.ts watchSender). */
  private readonly sender: WatchSender | undefined
  private readonly watches = new Map<number, WatchState>()
  private nextWatchId = 0
  private session: Session | undefined
  private chain: Promise<void> = Promise.resolve()
  private opening: Promise<Session | undefined> | undefined
  private closed = false
  private progressPending = false

  /** Who opened the stream (../runtime/auth-context.ts): its watches are checked against it. */
  private readonly caller: AuthInfo

  /** Serves `call` with `ctx`, its session kept in `table`. */
  constructor(call: grpc.ServerDuplexStream<Wire, Wire>, ctx: WatchContext, table: WatchSessions) {
    this.ctx = ctx
    this.table = table
    this.call = call
    this.sender = watchSender(call)
    this.caller = currentAuthInfo()
    call.on("data", (req: Wire) => this.onRequest(req))
    const end = () => this.close()
    call.on("cancelled", end)
    call.on("error", end)
    call.on("close", end)
    call.on("finish", end)
  }

  private enqueue(op: () => Promise<void>): void {
    this.chain = this.chain.then(op).catch((e) => {
      this.ctx.log("warn", "watch request failed", { error: describeError(e) })
    })
  }

  private async header(revision: number, term: number): Promise<Wire> {
    const id = await this.ctx.identity()
    return headerToWire({ clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: term })
  }

  /**
   * Writes `response` (a wire object, or a WatchResponse's protobuf bytes relayed as they are,
   * see ./watch-sender.ts); `sent` is called once grpc handed it to HTTP/2 (within the client's
   * flow-control window).
   */
  private write(response: Wire | Uint8Array, sent?: () => void): void {
    if (this.closed) return
    if (this.sender !== undefined) this.sender.message(response, sent ?? noop)
    else this.call.write(response as Wire, sent)
  }

  private onRequest(req: Wire): void {
    if (this.closed) return
    if (req.create_request != null) this.onCreate(req.create_request)
    else if (req.cancel_request != null) this.onCancel(wireInt(req.cancel_request.watch_id))
    else if (req.progress_request != null) this.onProgress()
  }

  private rejectCreate(reason: string): void {
    this.enqueue(() => this.writeRejection(reason))
  }

  private async writeRejection(reason: string): Promise<void> {
    this.write({ header: await this.header(0, 0), watch_id: -1, created: true, canceled: true, cancel_reason: reason })
  }

  /**
   * A create request: with auth checks, the check runs in the stream's request order (the
   * chain), and the watch is made only once permitted (etcd checks before creating it).
   */
  private onCreate(c: Wire): void {
    const check = this.ctx.checkRead
    if (check === undefined) return this.create(c)
    const key = createKey(c)
    const rangeEnd: Uint8Array | undefined = c.range_end instanceof Uint8Array && c.range_end.length > 0 ? c.range_end : undefined
    this.enqueue(async () => {
      const denied = this.caller === invalidTokenAuthInfo
        ? { _tag: "AuthError", code: "InvalidAuthToken" }
        : await withAuthInfo(this.caller, () => check([{ key, ...(rangeEnd === undefined ? {} : { rangeEnd }) }])).then(() => undefined, (e: unknown) => e)
      if (denied === undefined) return this.create(c)
      // etcd recvLoop: the auth store's error as a gRPC status text (./watch-create.ts).
      await this.writeRejection(refusalReason(denied))
    })
  }

  private create(c: Wire): void {
    const key = createKey(c)
    // A negative start revision is a watch below any compaction: etcd 3.4 and 3.5 create it and
    // then cancel it as compacted (watchable_store.go chooseAll); so does natcd.
    const start = wireInt(c.start_revision)
    const rangeEnd = createRangeEnd(c)
    if (isEmptyRange(key, rangeEnd)) return this.rejectCreate(emptyRangeReason)
    let id = wireInt(c.watch_id)
    if (id === 0) {
      while (this.watches.has(this.nextWatchId)) this.nextWatchId++
      id = this.nextWatchId++
    } else if (this.watches.has(id)) return this.rejectCreate(duplicateIdReason)
    const w = newWatchState(c, id, key, rangeEnd, start)
    this.watches.set(id, w)
    this.enqueue(() => this.sendCreate(w))
  }

  private async sendCreate(w: WatchState): Promise<void> {
    const s = await this.ensureSession()
    if (s === undefined || this.session !== s) return
    await callEndpoint(this.ctx.rpc, watchCreate, { cluster: this.ctx.cluster, replica: s.replica! }, {
      session: s.id,
      watchId: w.id,
      key: w.key,
      ...(w.rangeEnd === undefined ? {} : { rangeEnd: w.rangeEnd }),
      startRevision: w.announced ? w.nextRev : w.startRevision,
      prevKv: w.prevKv,
      noPut: w.noPut,
      noDelete: w.noDelete,
      progressNotify: w.progressNotify,
      fragment: w.fragment
    }, { timeoutMs: watchControlTimeoutMs }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
  }

  private checkKnown(s: Session, reply: typeof WatchCtlReply.Type): void {
    const known = okOf(reply).known
    if (!known && this.session === s) this.failover(s, "unknown")
  }

  /** Fails over on a call without reply (rpc.ts isUnanswered); an error reply is thrown (logged by the chain), as `{ err }`. */
  private notAnswered(s: Session, e: unknown): void {
    if (!isUnanswered(e)) throw e
    if (s.replica !== undefined) this.table.placement.forget(s.replica)
    this.failover(s, "unanswered")
  }

  private onCancel(id: number): void {
    const w = this.watches.get(id)
    if (w === undefined || w.canceling) return
    w.canceling = true
    this.enqueue(async () => {
      const s = this.session
      if (s === undefined || s.replica === undefined) return
      await callEndpoint(this.ctx.rpc, watchCancel, { cluster: this.ctx.cluster, replica: s.replica }, {
        session: s.id,
        watchId: id
      }, { timeoutMs: watchControlTimeoutMs }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
    })
  }

  private onProgress(): void {
    if (this.progressPending) return
    this.progressPending = true
    this.enqueue(() => this.sendProgress())
  }

  private async sendProgress(): Promise<void> {
    const s = await this.ensureSession()
    if (s === undefined || this.session !== s) return
    await callEndpoint(this.ctx.rpc, watchProgress, { cluster: this.ctx.cluster, replica: s.replica! }, {
      session: s.id
    }, { timeoutMs: watchControlTimeoutMs }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
  }

  /** The current session, opening one (retried while the stream lives; see {@link open}). */
  private ensureSession(): Promise<Session | undefined> {
    if (this.session !== undefined && this.session.replica !== undefined) return Promise.resolve(this.session)
    this.opening ??= this.open().finally(() => {
      this.opening = undefined
    })
    return this.opening
  }

  /**
   * Opens a session: on the least-loaded replica known (watch.place), on the next one at once
   * when that one does not take it, and through the queue group (watch.open) when none is
   * known, retried every {@link watchOpenRetryMs}. Bound: the stream's life; once it is closed a
   * failure ends the retries and this resolves undefined (so does an attempt after the close).
   */
  private open(): Promise<Session | undefined> {
    const refused = new Set<string>()
    let lastTarget: string | undefined
    return retryPromise({
      name: "watch session open",
      backoff: () => (lastTarget === undefined ? watchOpenRetryMs : 0),
      retryable: () => !this.closed,
      atBound: (last) => last
    }, async () => {
      if (this.closed) return undefined
      const s: Session = { id: this.table.nextSessionId(), replica: undefined, expectedSeq: 1, acked: 0, stream: this }
      this.session = s
      this.table.sessions.set(s.id, s)
      const target = (lastTarget = this.table.placement.pick(Date.now(), refused))
      // Counted at once: the streams opening concurrently spread instead of all picking the
      // replica that looked emptiest (a refused or failed open is corrected by the next report).
      if (target !== undefined) this.table.placement.placed(target)
      try {
        const id = await this.ctx.identity()
        const body = {
          session: s.id,
          gateway: this.ctx.responseSubject,
          windowBytes: this.table.sessionWindow(),
          clusterId: id.clusterId,
          memberId: id.memberId,
          maxRequestBytes: this.ctx.maxRequestBytes
        }
        const reply = target === undefined
          ? await callEndpoint(this.ctx.rpc, watchOpen, { cluster: this.ctx.cluster }, body, { timeoutMs: watchControlTimeoutMs })
          : await callEndpoint(this.ctx.rpc, watchPlace, { cluster: this.ctx.cluster, replica: target }, body, { timeoutMs: watchControlTimeoutMs })
        s.replica = okOf(reply).replica
        this.table.stats.sessions++
        if (this.closed) this.closeSession(s)
        return s
      } catch (e) {
        this.table.sessions.delete(s.id)
        this.session = undefined
        if (target !== undefined) refused.add(target)
        throw e
      }
    }).catch(() => undefined)
  }

  private closeSession(s: Session): void {
    this.table.sessions.delete(s.id)
    if (s.replica !== undefined) {
      this.table.placement.closed(s.replica)
      publishEndpoint(this.ctx.rpc, watchClose, { cluster: this.ctx.cluster, replica: s.replica }, { session: s.id })
    }
  }

  /**
   * Moves the stream to a new session: every watch is re-created from the first revision its
   * client has not seen (watches not yet announced from their original start); watches being
   * canceled are answered here; a pending progress request is asked again.
   */
  failover(s: Session, reason: FailoverReason): void {
    if (this.session !== s || this.closed) return
    this.table.stats.failovers++
    this.table.failovers[reason]++
    this.ctx.log("info", "moving watch stream to another session", { session: s.id, replica: s.replica, reason })
    this.closeSession(s)
    this.session = undefined
    for (const w of [...this.watches.values()]) {
      if (w.canceling) {
        this.watches.delete(w.id)
        this.enqueue(async () => {
          this.write({ header: await this.header(0, 0), watch_id: w.id, canceled: true })
        })
      }
    }
    for (const w of this.watches.values()) this.enqueue(() => this.sendCreate(w))
    if (this.progressPending) this.enqueue(() => this.sendProgress())
  }

  /** A numbered message of session `s`: written in order, acknowledged once taken. */
  receive(s: Session, seq: number, marks: ReadonlyArray<RelayMark>, framed: Uint8Array): void {
    if (this.session !== s || this.closed) return
    if (seq < s.expectedSeq) return
    if (seq > s.expectedSeq) {
      this.table.stats.seqGaps++
      return this.failover(s, "lost")
    }
    s.expectedSeq++
    this.deliver(s, seq, marks, framed)
  }

  /**
   * Relays the message's responses and acknowledges it once all of them were sent: each run
   * of consecutive responses for the client is one write to the HTTP/2 stream (./watch-sender.ts
   * watchSender), whose flow control holds it while the client does not read. Until then the
   * message counts against the session's window at the replica, so a stream that does not
   * read holds at most its window here. Responses the client must not get (a repeated
   * created, a watch the stream no longer has) end a run and are skipped.
   */
  private deliver(s: Session, seq: number, marks: ReadonlyArray<RelayMark>, framed: Uint8Array): void {
    if (this.closed) return
    let unsent = 1
    const sent = () => {
      if (--unsent === 0) this.ack(s, seq)
    }
    const relay = this.sender?.framed
    // Runs of consecutive responses for the client go out as they are, one write each
    // (without the relay, one message at a time).
    let runStart = -1
    let runEnd = -1
    const flush = () => {
      if (runStart < 0) return
      unsent++
      relay!(framed.subarray(runStart, runEnd), sent)
      runStart = -1
    }
    for (const m of marks) {
      if (!this.track(m.watchId, m.kind, m.nextRev)) {
        flush()
        continue
      }
      if (relay === undefined) {
        unsent++
        this.write(framed.subarray(m.start + grpcPrefixBytes, m.end), sent)
        continue
      }
      if (runStart >= 0 && runEnd !== m.start) flush()
      if (runStart < 0) runStart = m.start
      runEnd = m.end
    }
    flush()
    sent()
  }

  /**
   * Acknowledges message `seq` of session `s` (cumulative: every message up to it was taken),
   * through the session table, which sends the acknowledgements of one event-loop turn together
   * (./watch-sessions.ts `ack`).
   */
  private ack(s: Session, seq: number): void {
    if (this.session !== s || s.replica === undefined) return
    s.acked = Math.max(s.acked, seq)
    this.table.ack(s)
  }

  /**
   * Tracks what a response does to watch `watchId` (-1: progress of the whole stream), with
   * `nextRev` the first revision its client has not seen after it; false when the response is
   * not for the client: a created response repeated by a new session after failover, or one
   * for a watch the stream no longer has.
   */
  private track(watchId: number, kind: number, nextRev: number): boolean {
    if (watchId === -1) {
      // A progress response for the whole stream: every watch has seen everything up to it.
      this.progressPending = false
      for (const w of this.watches.values()) if (w.announced) w.nextRev = Math.max(w.nextRev, nextRev)
      return true
    }
    const w = this.watches.get(watchId)
    if (w === undefined) return false
    if (kind === RelayKind.created) {
      if (w.announced) return false
      w.announced = true
      w.nextRev = w.startRevision !== 0 ? w.startRevision : nextRev
      return true
    }
    if (kind === RelayKind.canceled) {
      this.watches.delete(w.id)
      return true
    }
    w.nextRev = Math.max(w.nextRev, nextRev)
    return true
  }

  /** The client's stream ended: drop the session. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.session !== undefined) this.closeSession(this.session)
    this.session = undefined
  }
}
