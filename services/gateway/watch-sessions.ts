/**
 * The gateway's watch sessions: the table of this process's sessions (one per client Watch
 * stream, on some replica of the watch service), and what keeps them placed and alive: the
 * replicas' load reports (`watch.load`, for ./watch-placement.ts), the subscription that routes
 * each replica message to its session's stream, the pings that tell a silent, forgetful or
 * draining replica (then the stream moves, ./watch-stream.ts failover), and each session's
 * window.
 *
 * What it is not: a client stream's requests and delivery (./watch-stream.ts) or the service's
 * composition (./watch.ts).
 *
 * Memory. Each session asks its replica for a window (the unacknowledged bytes it may have in
 * flight): the gateway's budget (WatchContext.unackedBudgetBytes, ./watch.ts) shared equally by
 * its sessions, never below {@link minSessionWindowBytes}; the window is sent at open and with
 * every ping, so it shrinks as streams are added.
 */
import * as Schema from "effect/Schema"
import { endSpan, startSpan } from "../runtime/tracing.ts"
import { decodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import { gatewayWatch, tokensOf, watchAck, watchLoad, watchPing } from "../../shared/endpoints.ts"
import { callEndpoint, FrameAssembler, publishEndpoint, replyMalformed, serveEndpoint } from "../runtime/rpc.ts"
import type { Assembled } from "../runtime/rpc.ts"
import { FrameKinds } from "../../shared/schema.ts"
import { unpackRelay } from "../../shared/watch-relay.ts"
import type { RelayMark } from "../../shared/watch-relay.ts"
import { ReplicaPlacement } from "./watch-placement.ts"
import type { WatchContext } from "./watch.ts"
import { watchPingDefaultMs } from "./timeouts.ts"

/** Why a stream moved to a new session (the label of natcd_gateway_watch_failovers_total). */
export type FailoverReason = "draining" | "unanswered" | "unknown" | "lost"

/** The smallest window a session asks of its replica, in bytes (so every stream makes progress). */
export const minSessionWindowBytes = 64 * 1024

/** Default {@link WatchContext.unackedBudgetBytes}: 128 MiB. */
export const defaultUnackedBudgetBytes = 128 * 1024 * 1024

/** One session: a client stream's link to a replica. */
export interface Session {
  readonly id: string
  replica: string | undefined
  /** Next message number expected from the replica. */
  expectedSeq: number
  /** The highest message number taken by the client's stream (acknowledged at the end of the turn). */
  acked: number
  readonly stream: {
    receive(s: Session, seq: number, marks: ReadonlyArray<RelayMark>, framed: Uint8Array): void
    failover(s: Session, reason: FailoverReason): void
    close(): void
  }
}

/** The counters of a gateway's Watch service, for tests and logs. */
export interface WatchStats {
  streams: number
  sessions: number
  failovers: number
  seqGaps: number
  malformed: number
}

/** A gateway's watch sessions and what its streams share. */
export interface WatchSessions {
  /** The sessions by id. */
  readonly sessions: Map<string, Session>
  /** A new session id, unique to this gateway process. */
  nextSessionId(): string
  readonly stats: WatchStats
  /** Failovers by reason. */
  readonly failovers: Record<FailoverReason, number>
  /** The replicas' loads, for placing new sessions. */
  readonly placement: ReplicaPlacement
  /** The window each session asks for now, in bytes. */
  sessionWindow(): number
  /**
   * Acknowledges session `s`'s `acked` to its replica at the end of this event-loop turn: one
   * `watch.ack` per replica per turn for all of its sessions that took messages (a turn that
   * relays one revision to many streams costs each replica one acknowledgement, not one per
   * stream). A session closed or moved by then is left out.
   */
  ack(s: Session): void
  /** Stops pinging, closes every session's stream and stops listening. */
  close(): void
}

// The gateway.watch subscription below decodes frames itself, by the declaration's kind,
// version and schema (no span per frame); malformed ones are counted in stats and answered with
// MalformedFrame when they name a reply subject.
const decodeResponses = Schema.decodeUnknownExit(gatewayWatch.request)

/**
 * Starts a gateway's session table: serves the replicas' load reports, subscribes to
 * `ctx.responseSubject` for the replicas' messages, and pings every `ctx.pingMs` (default
 * 1000 ms) each replica that holds sessions of this gateway.
 */
export const makeWatchSessions = (ctx: WatchContext): WatchSessions => {
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
      if (body._tag === "Failure") {
        stats.malformed++
        return replyMalformed(ctx.nc, msg, `bad ${gatewayWatch.kind} body`)
      }
      // Every message's marks are checked before any is relayed: a malformed frame is refused whole.
      const messages = body.value.messages
      const unpacked: RelayMark[][] = []
      let responses = 0
      for (const m of messages) {
        const marks = unpackRelay(m.marks, m.responses)
        if (typeof marks === "string") {
          stats.malformed++
          return replyMalformed(ctx.nc, msg, `bad ${gatewayWatch.kind} body: ${marks}`)
        }
        unpacked.push(marks)
        responses += marks.length
      }
      // Delivery to the clients' streams, in the trace of the write whose events these are.
      const span = frame.traceparent === "" ? undefined : startSpan("watch.deliver", frame.traceparent, { responses, messages: messages.length })
      messages.forEach((m, i) => {
        const s = sessions.get(m.session)
        if (s !== undefined) s.stream.receive(s, m.seq, unpacked[i]!, m.responses)
      })
      endSpan(span)
    }
  })

  // Acknowledgements due at the end of this turn: at most one entry per session of the table.
  const acksDue = new Set<Session>()
  let acksScheduled = false
  const sendAcks = () => {
    acksScheduled = false
    const byReplica = new Map<string, Array<{ session: string; seq: number }>>()
    for (const s of acksDue) {
      if (s.replica === undefined || sessions.get(s.id) !== s) continue
      let acks = byReplica.get(s.replica)
      if (acks === undefined) byReplica.set(s.replica, (acks = []))
      acks.push({ session: s.id, seq: s.acked })
    }
    acksDue.clear()
    for (const [replica, acks] of byReplica) publishEndpoint(ctx.rpc, watchAck, { cluster: ctx.cluster, replica }, { acks })
  }

  const pingMs = ctx.pingMs ?? watchPingDefaultMs
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

  return {
    sessions,
    nextSessionId: () => `${ctx.instance}-${nextSession++}`,
    stats,
    failovers,
    placement,
    sessionWindow,
    ack: (s: Session): void => {
      acksDue.add(s)
      if (acksScheduled) return
      acksScheduled = true
      setImmediate(sendAcks)
    },
    close: (): void => {
      clearInterval(pingTimer)
      loads.stop()
      for (const s of [...sessions.values()]) s.stream.close()
      sub.unsubscribe()
    }
  }
}
