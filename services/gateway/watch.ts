/**
 * etcd's Watch service on the gateway: one bidirectional gRPC stream per client stream, each
 * relayed to a watch session on some replica of the watch service (services/watch).
 *
 * The gateway does what etcd's v3rpc watch server does at the stream's edge
 * (server/etcdserver/api/v3rpc/watch.go recvLoop): it validates create requests (empty key,
 * empty range, duplicate watch id), assigns watch ids (client-chosen, or the stream's next free
 * id from 0) and turns filters into flags. Everything about events is the replica's, down to
 * the bytes: the replica sends each response protobuf-encoded as the client receives it, with
 * the header of this gateway's member and etcd's fragments (sendLoop, sendFragments;
 * services/watch/encode.ts) and already in gRPC's message framing, and the gateway writes a
 * message's responses to the client's HTTP/2 stream as they are, one write per run of them
 * (./server.ts watchSender), reading only the marks that say how each watch moved
 * (shared/watch-relay.ts).
 *
 * Sessions and failover. A stream opens its session on the least-loaded replica the gateway
 * knows of (`watch.place`, ./watch-placement.ts, from the replicas' `watch.load` reports), or,
 * knowing none, through the queue group `watch.open`, which NATS hands to one replica. The
 * replica's responses come back in messages numbered 1, 2, ...;
 * the gateway writes them to the client in order and acknowledges each message once all its
 * responses were sent on the client's HTTP/2 stream (within the client's flow-control
 * window), which is the replica's flow control. For every watch the gateway remembers the next
 * revision its client has not seen (after the last event, or after a progress notification's
 * revision). When the
 * session breaks — the replica stops answering pings, does not know the session, or a message
 * number is skipped (a lost NATS message) — the gateway opens a new session, placed as a new
 * one is (a replica that did not answer is left out until it reports again), and re-creates
 * each watch from that revision with the same id;
 * the client sees nothing but a pause: no event lost, none repeated. A replica that is stopping
 * (SIGTERM) says it is draining, in its load report and in ping replies: the gateway moves its
 * sessions the same way at once, so a drained replica hands its streams over without a loss or
 * a duplicate, and without waiting for pings to time out.
 *
 * Memory. Each session asks its replica for a window (the unacknowledged bytes it may have in
 * flight): the gateway's budget {@link WatchContext.unackedBudgetBytes} shared equally by its
 * sessions, never below {@link minSessionWindowBytes}; the window is sent at open and with every
 * ping, so it shrinks as streams are added. What a gateway holds for clients that do not read
 * is thus about max(budget, sessions x 64 KiB), plus one revision per stream.
 */
import type * as grpc from "@grpc/grpc-js"
import type { NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { endSpan, startSpan } from "../runtime/tracing.ts"
import { decodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { WatchCtlReply } from "../../shared/schema.ts"
import { gatewayWatch, tokensOf, watchAck, watchCancel, watchClose, watchCreate, watchLoad, watchOpen, watchPing, watchPlace, watchProgress } from "../../shared/endpoints.ts"
import { RequestTimeout, Stopped } from "../../shared/errors.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, FrameAssembler, okOf, publishEndpoint, replyMalformed, serveEndpoint } from "../runtime/rpc.ts"
import type { Assembled } from "../runtime/rpc.ts"
import { FrameKinds } from "../../shared/schema.ts"
import { headerToWire, wireInt } from "./convert.ts"
import { grpcPrefixBytes, RelayKind, unpackRelay } from "../../shared/watch-relay.ts"
import type { RelayMark } from "../../shared/watch-relay.ts"
import { toGrpcError } from "./errors.ts"
import { ReplicaPlacement } from "./watch-placement.ts"
import { watchSender } from "./server.ts"
import type { WatchSender } from "./server.ts"
import type { AuthInfo } from "../../shared/auth.ts"
import { currentAuthInfo, invalidTokenAuthInfo, withAuthInfo } from "../runtime/auth-context.ts"

/** Go's names of the gRPC codes a refused watch's cancel reason can carry (etcd: status.Error's text). */
const goCodeNames: Readonly<Record<number, string>> = { 3: "InvalidArgument", 7: "PermissionDenied", 16: "Unauthenticated" }
const grpcCodeName = (code: number): string => goCodeNames[code] ?? `Code(${code})`
import type { Wire } from "./convert.ts"

/** etcd mvcc.ErrEmptyWatcherRange. */
export const emptyRangeReason = "mvcc: watcher range is empty"
/** etcd mvcc.ErrWatcherDuplicateID. */
export const duplicateIdReason = "mvcc: duplicate watch ID provided on the WatchStream"

/** Why a stream moved to a new session (the label of natcd_gateway_watch_failovers_total). */
export type FailoverReason = "draining" | "unanswered" | "unknown" | "lost"

/** The smallest window a session asks of its replica, in bytes (so every stream makes progress). */
export const minSessionWindowBytes = 64 * 1024

/** Default {@link WatchContext.unackedBudgetBytes}: 128 MiB. */
export const defaultUnackedBudgetBytes = 128 * 1024 * 1024

/** What the Watch handler needs from the gateway. */
export interface WatchContext {
  readonly nc: NatsConnection
  readonly rpc: RpcClient
  readonly cluster: string
  /** This gateway process's subject for watch responses (gateway.watch.<instance>). */
  readonly responseSubject: string
  /** A session id prefix unique to this gateway process. */
  readonly instance: string
  /** Largest request etcd accepts; also the fragment size (etcd sws.maxRequestBytes). */
  readonly maxRequestBytes: number
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
  /**
   * etcd isWatchPermitted: rejects with the auth store's error unless the stream's caller (the
   * current auth info when the stream opened) may read the range; the watch is then refused
   * with etcd's cancel reason. Absent: every watch is permitted (tests without auth).
   */
  readonly checkRead?: (ranges: ReadonlyArray<{ readonly key: Uint8Array; readonly rangeEnd?: Uint8Array }>) => Promise<void>
  readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void
  /** Ping period, in ms (default 1000); a replica silent for 3 periods is presumed dead. */
  readonly pingMs?: number
  /**
   * Watch response bytes this gateway lets replicas have in flight to it, over all its streams
   * (default {@link defaultUnackedBudgetBytes}); shared equally as the sessions' windows.
   */
  readonly unackedBudgetBytes?: number
}

/** One watch of a stream, as the gateway tracks it for resumption. */
interface WatchState {
  readonly id: number
  readonly key: Uint8Array
  readonly rangeEnd: Uint8Array | undefined
  readonly startRevision: number
  readonly prevKv: boolean
  readonly noPut: boolean
  readonly noDelete: boolean
  readonly progressNotify: boolean
  readonly fragment: boolean
  /** True once the client got the created response. */
  announced: boolean
  /** The first revision the client has not seen for this watch (valid once announced). */
  nextRev: number
  canceling: boolean
}

interface Session {
  readonly id: string
  replica: string | undefined
  /** Next message number expected from the replica. */
  expectedSeq: number
  acked: number
  /** An acknowledgement of `acked` is due at the end of this event-loop turn. */
  ackDue: boolean
  readonly stream: {
    receive(s: Session, seq: number, marks: ReadonlyArray<RelayMark>, framed: Uint8Array): void
    failover(s: Session, reason: FailoverReason): void
    close(): void
  }
}

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

// The gateway.watch subscription below decodes frames itself, by the declaration's kind,
// version and schema (no span per frame); malformed ones are counted in stats and answered with
// MalformedFrame when they name a reply subject.
const decodeResponses = Schema.decodeUnknownExit(gatewayWatch.request)

const noop = (): void => {}

/** A call that got no reply (timeout, stopping), as opposed to a reply carrying an error. */
const unanswered = (e: unknown): boolean => e instanceof RequestTimeout || e instanceof Stopped

/**
 * Makes the Watch service handler. `Watch` serves one gRPC stream; `close` stops pings and
 * closes every session (at gateway shutdown); `stats` counts for tests and logs.
 */
export const makeWatchHandler = (ctx: WatchContext) => {
  const sessions = new Map<string, Session>()
  let nextSession = 1
  const stats = { streams: 0, sessions: 0, failovers: 0, seqGaps: 0, malformed: 0 }
  /** Failovers by reason. */
  const failovers: Record<FailoverReason, number> = { draining: 0, unanswered: 0, unknown: 0, lost: 0 }
  const placement = new ReplicaPlacement()
  /** Moves every session on `replica` to another replica (it is draining). */
  const drain = (replica: string) => {
    for (const s of [...sessions.values()]) if (s.replica === replica) s.stream.failover(s, "draining")
  }
  // Replicas' load reports. The subject's replica token is the publisher's own (its permission
  // binds it); a body that names another replica is dropped.
  const loads = serveEndpoint(ctx.nc, watchLoad, { cluster: ctx.cluster, replica: "*" }, (req) => {
    const b = req.body
    if (tokensOf(watchLoad, req.subject)?.replica !== b.replica) {
      stats.malformed++
      return
    }
    if (placement.report(b.replica, b, Date.now())) drain(b.replica)
  })
  const budgetBytes = ctx.unackedBudgetBytes ?? defaultUnackedBudgetBytes
  /** The window each session asks for now, in bytes. */
  const sessionWindow = (): number => Math.max(minSessionWindowBytes, Math.floor(budgetBytes / Math.max(1, sessions.size)))

  // Responses bigger than one NATS message (one revision's events can be any size) come in chunks.
  const assembler = new FrameAssembler()
  const sub = ctx.nc.subscribe(ctx.responseSubject, {
    callback: (err, msg) => {
      if (err) return
      const decoded = decodeFrame(msg.data)
      const assembled: Assembled = isFrameDecodeError(decoded) ? { _tag: "Malformed", reason: decoded.reason } : assembler.accept(decoded)
      if (assembled._tag === "Pending") return
      if (assembled._tag !== "Frame") {
        stats.malformed++
        return replyMalformed(ctx.nc, msg, assembled.reason)
      }
      const frame = assembled.frame
      if (frame.kind !== gatewayWatch.kind || frame.version !== FrameKinds[gatewayWatch.kind]) {
        stats.malformed++
        return replyMalformed(ctx.nc, msg, `expected ${gatewayWatch.kind} v${FrameKinds[gatewayWatch.kind]}`)
      }
      const body = decodeResponses(frame.body)
      const responses = body._tag === "Success" ? unpackRelay(body.value.marks, body.value.responses) : "bad body"
      if (body._tag === "Failure" || typeof responses === "string") {
        stats.malformed++
        return replyMalformed(ctx.nc, msg, `bad ${gatewayWatch.kind} body: ${typeof responses === "string" ? responses : ""}`)
      }
      const s = sessions.get(body.value.session)
      if (s === undefined) return
      // Delivery to the client's stream, in the trace of the write whose events these are.
      const span = frame.traceparent === "" ? undefined : startSpan("watch.deliver", frame.traceparent, { responses: responses.length })
      s.stream.receive(s, body.value.seq, responses, body.value.responses)
      endSpan(span)
    }
  })

  const pingMs = ctx.pingMs ?? 1000
  const pinging = new Set<string>()
  const pingTimer = setInterval(() => {
    const byReplica = new Map<string, Session[]>()
    for (const s of sessions.values()) {
      if (s.replica === undefined) continue
      let list = byReplica.get(s.replica)
      if (list === undefined) byReplica.set(s.replica, (list = []))
      list.push(s)
    }
    for (const [replica, list] of byReplica) {
      if (pinging.has(replica)) continue
      pinging.add(replica)
      const windowBytes = sessionWindow()
      callEndpoint(ctx.rpc, watchPing, { cluster: ctx.cluster, replica }, {
        gateway: ctx.responseSubject,
        sessions: list.map((s) => ({ session: s.id, acked: s.acked, windowBytes }))
      }, { timeoutMs: 3 * pingMs, retryAfterMs: pingMs }).then(
        (reply) => {
          pinging.delete(replica)
          if (reply.draining === true) {
            // Its load report saying so was lost, or has not arrived yet.
            placement.report(replica, { sessions: 0, unackedBytes: 0, draining: true }, Date.now())
            return drain(replica)
          }
          const unknown = new Set(reply.unknown)
          for (const s of list) if (unknown.has(s.id) && sessions.get(s.id) === s) s.stream.failover(s, "unknown")
        },
        () => {
          pinging.delete(replica)
          placement.forget(replica)
          for (const s of list) if (sessions.get(s.id) === s) s.stream.failover(s, "unanswered")
        }
      )
    }
  }, pingMs)

  /**
   * One client stream. Requests to the replica are serialized (`chain`) so that the replica
   * sees them in the client's order.
   */
  class WatchStream {
    private readonly call: grpc.ServerDuplexStream<Wire, Wire>
    /** Writes to the gRPC call under the stream when the server recorded it (./server.ts watchSender). */
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

    constructor(call: grpc.ServerDuplexStream<Wire, Wire>) {
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
        ctx.log("warn", "watch request failed", { error: String((e as { _tag?: string })._tag ?? e) })
      })
    }

    private async header(revision: number, term: number): Promise<Wire> {
      const id = await ctx.identity()
      return headerToWire({ clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: term })
    }

    /**
     * Writes `response` (a wire object, or a WatchResponse's protobuf bytes relayed as they are,
     * see ./server.ts); `sent` is called once grpc handed it to HTTP/2 (within the client's
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
      const check = ctx.checkRead
      if (check === undefined) return this.create(c)
      const key: Uint8Array = c.key instanceof Uint8Array && c.key.length > 0 ? c.key : new Uint8Array([0])
      const rangeEnd: Uint8Array | undefined = c.range_end instanceof Uint8Array && c.range_end.length > 0 ? c.range_end : undefined
      this.enqueue(async () => {
        const denied = this.caller === invalidTokenAuthInfo
          ? { _tag: "AuthError", code: "InvalidAuthToken" }
          : await withAuthInfo(this.caller, () => check([{ key, ...(rangeEnd === undefined ? {} : { rangeEnd }) }])).then(() => undefined, (e: unknown) => e)
        if (denied === undefined) return this.create(c)
        // etcd recvLoop: the auth store's error as a gRPC status text (other failures read as permission denied).
        const tag = (denied as { _tag?: string; code?: string })
        const e = toGrpcError(tag._tag === "AuthError" && ["InvalidAuthToken", "AuthOldRevision", "UserEmpty"].includes(tag.code ?? "") ? denied : { _tag: "AuthError", code: "PermissionDenied" })
        await this.writeRejection(`rpc error: code = ${grpcCodeName(e.code)} desc = ${e.details}`)
      })
    }

    private create(c: Wire): void {
      const key: Uint8Array = c.key instanceof Uint8Array && c.key.length > 0 ? c.key : new Uint8Array([0])
      // A negative start revision is a watch below any compaction: etcd 3.4 and 3.5 create it and
      // then cancel it as compacted (watchable_store.go chooseAll); so does natcd.
      const start = wireInt(c.start_revision)
      const endRaw: Uint8Array = c.range_end instanceof Uint8Array ? c.range_end : new Uint8Array()
      // etcd: empty range_end is the single key; "\0" is every key >= key.
      const rangeEnd = endRaw.length === 0 ? undefined : endRaw.length === 1 && endRaw[0] === 0 ? new Uint8Array() : endRaw
      if (rangeEnd !== undefined && rangeEnd.length > 0 && compareBytes(key, rangeEnd) >= 0) return this.rejectCreate(emptyRangeReason)
      let id = wireInt(c.watch_id)
      if (id === 0) {
        while (this.watches.has(this.nextWatchId)) this.nextWatchId++
        id = this.nextWatchId++
      } else if (this.watches.has(id)) return this.rejectCreate(duplicateIdReason)
      const filters: string[] = Array.isArray(c.filters) ? c.filters : []
      const w: WatchState = {
        id,
        key,
        rangeEnd,
        startRevision: start,
        prevKv: c.prev_kv === true,
        noPut: filters.includes("NOPUT"),
        noDelete: filters.includes("NODELETE"),
        progressNotify: c.progress_notify === true,
        fragment: c.fragment === true,
        announced: false,
        nextRev: start,
        canceling: false
      }
      this.watches.set(id, w)
      this.enqueue(() => this.sendCreate(w))
    }

    private async sendCreate(w: WatchState): Promise<void> {
      const s = await this.ensureSession()
      if (s === undefined || this.session !== s) return
      await callEndpoint(ctx.rpc, watchCreate, { cluster: ctx.cluster, replica: s.replica! }, {
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
      }, { timeoutMs: 3000 }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
    }

    private checkKnown(s: Session, reply: typeof WatchCtlReply.Type): void {
      const known = okOf(reply).known
      if (!known && this.session === s) this.failover(s, "unknown")
    }

    /** Fails over on a call without reply; an error reply is thrown (logged by the chain), as `{ err }`. */
    private notAnswered(s: Session, e: unknown): void {
      if (!unanswered(e)) throw e
      if (s.replica !== undefined) placement.forget(s.replica)
      this.failover(s, "unanswered")
    }

    private onCancel(id: number): void {
      const w = this.watches.get(id)
      if (w === undefined || w.canceling) return
      w.canceling = true
      this.enqueue(async () => {
        const s = this.session
        if (s === undefined || s.replica === undefined) return
        await callEndpoint(ctx.rpc, watchCancel, { cluster: ctx.cluster, replica: s.replica }, {
          session: s.id,
          watchId: id
        }, { timeoutMs: 3000 }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
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
      await callEndpoint(ctx.rpc, watchProgress, { cluster: ctx.cluster, replica: s.replica! }, {
        session: s.id
      }, { timeoutMs: 3000 }).then((r) => this.checkKnown(s, r), (e) => this.notAnswered(s, e))
    }

    /** The current session, opening one (retrying every second while the stream lives). */
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
     * known; retried every second while the stream lives.
     */
    private async open(): Promise<Session | undefined> {
      const refused = new Set<string>()
      while (!this.closed) {
        const s: Session = { id: `${ctx.instance}-${nextSession++}`, replica: undefined, expectedSeq: 1, acked: 0, ackDue: false, stream: this }
        this.session = s
        sessions.set(s.id, s)
        const target = placement.pick(Date.now(), refused)
        // Counted at once: the streams opening concurrently spread instead of all picking the
        // replica that looked emptiest (a refused or failed open is corrected by the next report).
        if (target !== undefined) placement.placed(target)
        try {
          const id = await ctx.identity()
          const body = {
            session: s.id,
            gateway: ctx.responseSubject,
            windowBytes: sessionWindow(),
            clusterId: id.clusterId,
            memberId: id.memberId,
            maxRequestBytes: ctx.maxRequestBytes
          }
          const reply = target === undefined
            ? await callEndpoint(ctx.rpc, watchOpen, { cluster: ctx.cluster }, body, { timeoutMs: 3000 })
            : await callEndpoint(ctx.rpc, watchPlace, { cluster: ctx.cluster, replica: target }, body, { timeoutMs: 3000 })
          s.replica = okOf(reply).replica
          stats.sessions++
          if (this.closed) this.closeSession(s)
          return s
        } catch {
          sessions.delete(s.id)
          this.session = undefined
          if (target !== undefined) {
            refused.add(target)
            continue
          }
          await new Promise((r) => setTimeout(r, 1000))
        }
      }
      return undefined
    }

    private closeSession(s: Session): void {
      sessions.delete(s.id)
      if (s.replica !== undefined) {
        publishEndpoint(ctx.rpc, watchClose, { cluster: ctx.cluster, replica: s.replica }, { session: s.id })
      }
    }

    /**
     * Moves the stream to a new session: every watch is re-created from the first revision its
     * client has not seen (watches not yet announced from their original start); watches being
     * canceled are answered here; a pending progress request is asked again.
     */
    failover(s: Session, reason: FailoverReason): void {
      if (this.session !== s || this.closed) return
      stats.failovers++
      failovers[reason]++
      ctx.log("info", "moving watch stream to another session", { session: s.id, replica: s.replica, reason })
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
        stats.seqGaps++
        return this.failover(s, "lost")
      }
      s.expectedSeq++
      this.deliver(s, seq, marks, framed)
    }

    /**
     * Relays the message's responses and acknowledges it once all of them were sent: each run
     * of consecutive responses for the client is one write to the HTTP/2 stream (./server.ts
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
     * Acknowledges message `seq` of session `s` (cumulative: every message up to it was taken).
     * The messages taken in one event-loop turn are acknowledged once, after it (one `watch.ack`
     * for the highest), so a burst of small messages costs one ack, not one each.
     */
    private ack(s: Session, seq: number): void {
      if (this.session !== s || s.replica === undefined) return
      s.acked = Math.max(s.acked, seq)
      if (s.ackDue) return
      s.ackDue = true
      setImmediate(() => {
        s.ackDue = false
        if (this.session !== s || s.replica === undefined) return
        publishEndpoint(ctx.rpc, watchAck, { cluster: ctx.cluster, replica: s.replica }, { session: s.id, seq: s.acked })
      })
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

  return {
    /** Serves one Watch stream (grpc bidi handler). */
    Watch: (call: grpc.ServerDuplexStream<Wire, Wire>): void => {
      stats.streams++
      new WatchStream(call)
    },
    /** Stops pinging and closes every session. */
    close: (): void => {
      clearInterval(pingTimer)
      loads.stop()
      for (const s of [...sessions.values()]) s.stream.close()
      sub.unsubscribe()
    },
    stats,
    /** Failovers by reason, for natcd_gateway_watch_failovers_total. */
    failovers: failovers as Readonly<Record<FailoverReason, number>>,
    /** Replicas this gateway tracks for placement. */
    trackedReplicas: () => placement.size
  }
}
