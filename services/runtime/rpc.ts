/**
 * Request/reply between natcd services over NATS core, with one shared reply inbox per process:
 * the calling side ({@link RpcClient}, {@link callEndpoint}, {@link publishEndpoint}); the
 * serving side is ./rpc-server.ts and frames of any size are ./bus-frames.ts, both re-exported
 * here so that a service imports the bus from one module.
 *
 * `nc.request()` creates a reply subscription per call and tops out near 20k calls/s here;
 * publishing every request with the same reply subject (`<inbox>.<process>`) and matching replies
 * by the frame `id` reaches 46-68k/s. NATS core is at-most-once, so a request may get no reply:
 * {@link RpcClient.call} retries with exponential backoff until its deadline, re-sending the same
 * frame (same id), which the receiving endpoint must treat idempotently (raft indexes and request
 * ids make every natcd endpoint so). A late reply to an earlier attempt is as good as any.
 *
 * A reply larger than one NATS message arrives in chunks and is put back together within
 * busReassemblyBudget (./bus-frames.ts); a reply larger than that fails its call at once with
 * ReplyTooLarge (as a gRPC client's max receive size does).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { MalformedFrame, ReplyTooLarge, RequestTimeout, Stopped, toEtcdError } from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import { wholeFrameBytes } from "../../shared/chunks.ts"
import type { Frame } from "../../shared/frame.ts"
import { FrameKinds } from "../../shared/schema.ts"
import type { FrameKind } from "../../shared/schema.ts"
import { replyWindowSeconds, subjectOf } from "../../shared/endpoints.ts"
import type { Endpoint, TokensOf } from "../../shared/endpoints.ts"
import { natsRequestDuration } from "./metrics.ts"
import { currentTraceparent } from "./tracing.ts"
import { busReassemblyBudget, FrameAssembler, observe, publishEncoded, traceHeaders } from "./bus-frames.ts"
import { chunkIdleMs, rpcRetryAfterDefaultMs, rpcRetryMaxMs } from "./timeouts.ts"

export { withHopSpan } from "./tracing.ts"
export * from "./bus-frames.ts"
export * from "./rpc-server.ts"

/** Options of one call. */
export interface CallOptions {
  /**
   * Give up (RequestTimeout) after this many ms without an answer. While the pieces of a
   * chunked answer keep arriving, the call waits up to {@link chunkIdleMs} after each one.
   */
  readonly timeoutMs: number
  /**
   * First retry after this many ms without a reply; doubles per attempt up to 1000 ms. A request
   * larger than 2 MB waits longer: 1 ms per 10 kB (time to arrive at 10 MB/s).
   */
  readonly retryAfterMs?: number
  /** W3C traceparent to carry; "" or absent: the current hop's or request's (tracing.ts currentTraceparent). */
  readonly traceparent?: string
}

/**
 * The RequestTimeout and Stopped instances an RpcClient failed a call with because no answer
 * came (see {@link isUnanswered}). Identity only: the errors themselves, their tags, fields and
 * what a client is sent for them are those of any other RequestTimeout or Stopped.
 */
const noAnswer = new WeakSet<object>()

/** `error`, recorded as one of this module's own no-answer outcomes. */
const unanswered = <E extends RequestTimeout | Stopped>(error: E): E => {
  noAnswer.add(error)
  return error
}

/**
 * True when `e` is an RpcClient's own outcome without an answer: RequestTimeout (no reply
 * before the call's deadline, after its retries) or Stopped (the client closed, or the request
 * could not be published). False for everything an answer carried, including an answer that
 * was RequestTimeout or Stopped, and for any error made elsewhere.
 */
export const isUnanswered = (e: unknown): boolean => typeof e === "object" && e !== null && noAnswer.has(e)

interface Pending {
  resolve: (frame: Frame) => void
  reject: (error: unknown) => void
  /** A piece of a chunked reply arrived: the answer is on its way, so the retry waits. */
  progress: () => void
}

/** Counters for /metrics and tests. */
export interface RpcCounters {
  sent: number
  retries: number
  timeouts: number
  malformedReplies: number
  strayReplies: number
}

/**
 * A process's RPC client: one reply subscription, many concurrent calls.
 * Invariant: every id in `pending` has exactly one live call waiting for it.
 */
export class RpcClient {
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closed = false
  readonly counters: RpcCounters = { sent: 0, retries: 0, timeouts: 0, malformedReplies: 0, strayReplies: 0 }
  private readonly nc: NatsConnection
  private readonly inbox: string
  private readonly assembler = new FrameAssembler()

  constructor(nc: NatsConnection, inbox: string) {
    this.nc = nc
    this.inbox = inbox
    nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err) return
        const decoded = decodeFrame(msg.data)
        if (isFrameDecodeError(decoded)) {
          this.counters.malformedReplies++
          return
        }
        const p = this.pending.get(decoded.id)
        if (p === undefined) {
          this.counters.strayReplies++
          return
        }
        const assembled = this.assembler.accept(decoded)
        switch (assembled._tag) {
          case "Pending":
            return p.progress()
          case "Malformed":
            this.counters.malformedReplies++
            return
          case "TooLarge":
            this.pending.delete(decoded.id)
            this.assembler.forget(decoded.id)
            return p.reject(new ReplyTooLarge({ sizeBytes: assembled.sizeBytes, maxBytes: busReassemblyBudget.maxBytes }))
          case "Frame":
            this.pending.delete(decoded.id)
            p.resolve(assembled.frame)
        }
      }
    })
  }

  /**
   * Sends `body` as a frame of `kind` to `subject` and resolves with the reply frame. Rejects
   * with {@link RequestTimeout} when no reply came within `timeoutMs` (after retries) and with
   * {@link Stopped} when the client is closed meanwhile or the request cannot be published
   * (both {@link isUnanswered}), and with {@link ReplyTooLarge} when the reply exceeds
   * busReassemblyBudget. The reply's kind is not checked here.
   */
  call(subject: string, kind: FrameKind, body: unknown, options: CallOptions): Promise<Frame> {
    if (this.closed) return Promise.reject(unanswered(new Stopped()))
    if ((options.retryAfterMs ?? 0) > replyWindowSeconds * 1000) {
      // nats-server would refuse the answer to a request older than the reply window.
      return Promise.reject(new Error(`retryAfterMs ${options.retryAfterMs} exceeds the bus's reply window of ${replyWindowSeconds} s`))
    }
    const id = this.nextId++
    const traceparent = options.traceparent || currentTraceparent()
    const encoded = encodeFrame({ kind, version: FrameKinds[kind], traceparent, id, body })
    const headers = traceHeaders(traceparent)
    return new Promise<Frame>((resolve, reject) => {
      // A large request is not re-sent before it could have arrived (at 10 MB/s).
      const sizeFloorMs = encoded.length / 10_000
      let retryMs = Math.max(options.retryAfterMs ?? rpcRetryAfterDefaultMs, sizeFloorMs)
      let timer: ReturnType<typeof setTimeout> | undefined
      const startedAt = performance.now()
      let deadline = startedAt + options.timeoutMs
      const finish = () => {
        if (timer !== undefined) clearTimeout(timer)
        this.pending.delete(id)
        this.assembler.forget(id)
      }
      const arm = () => {
        const left = deadline - performance.now()
        if (left <= 0) {
          timer = setTimeout(onTimeout, 0)
          return
        }
        timer = setTimeout(left <= retryMs ? onTimeout : onRetry, Math.min(left, retryMs))
      }
      const send = () => {
        this.counters.sent++
        try {
          publishEncoded(this.nc, subject, encoded, traceparent, id, headers === undefined ? { reply: this.inbox } : { reply: this.inbox, headers })
        } catch (e) {
          finish()
          reject(unanswered(new Stopped()))
          return
        }
        arm()
      }
      const onRetry = () => {
        this.counters.retries++
        retryMs = Math.max(Math.min(retryMs * 2, rpcRetryMaxMs), sizeFloorMs)
        send()
      }
      const onTimeout = () => {
        this.counters.timeouts++
        finish()
        reject(unanswered(new RequestTimeout()))
      }
      this.pending.set(id, {
        resolve: (frame) => {
          finish()
          observe(natsRequestDuration, subject, subject, (performance.now() - startedAt) / 1000)
          resolve(frame)
        },
        reject: (e) => {
          finish()
          reject(e)
        },
        progress: () => {
          // The timeout bounds the wait for an answer to start; a large one keeps arriving.
          deadline = Math.max(deadline, performance.now() + chunkIdleMs)
          if (timer !== undefined) clearTimeout(timer)
          arm()
        }
      })
      send()
    })
  }

  /**
   * Publishes a frame nobody answers (fire and forget; at-most-once). A frame too large for one
   * message goes as chunks under a fresh id (the receiver's key for putting it together).
   */
  publish(subject: string, kind: FrameKind, body: unknown, traceparent = ""): void {
    if (this.closed) return
    const headers = traceHeaders(traceparent)
    const encoded = encodeFrame({ kind, version: FrameKinds[kind], traceparent, id: 0, body })
    publishEncoded(this.nc, subject, encoded, traceparent, encoded.length > wholeFrameBytes ? this.nextId++ : 0, headers === undefined ? {} : { headers })
  }

  /** Fails every waiting call with {@link Stopped} ({@link isUnanswered}); later calls fail at once. */
  close(): void {
    this.closed = true
    for (const p of this.pending.values()) p.reject(unanswered(new Stopped()))
    this.pending.clear()
    this.assembler.clear()
  }
}

/** The error an `error` frame carries, as an instance (shared/errors.ts toEtcdError). */
const decodeErrorFrame = (frame: Frame): EtcdError => {
  const body = frame.body as { err?: unknown }
  const err = body?.err as { _tag?: unknown } | undefined
  if (err !== undefined && typeof err._tag === "string") return toEtcdError(err as EtcdErrorData)
  return new MalformedFrame({ reason: "error frame without an error" })
}

/**
 * Calls `endpoint` at `tokens` with `body` and resolves with the reply decoded by the declared
 * reply schema. Rejects with {@link RequestTimeout} / {@link Stopped} as {@link RpcClient.call}
 * (no answer: {@link isUnanswered}), with the error of an `error` frame as a shared/errors.ts
 * instance, and with a MalformedFrame when the reply is not of the declared kind and schema.
 */
export const callEndpoint = async <T extends string, Req, Rep>(
  rpc: RpcClient,
  endpoint: Endpoint<T, Req, Rep>,
  tokens: { readonly [K in TokensOf<T>]: string } | string,
  body: Req,
  options: CallOptions
): Promise<Rep> => {
  const reply = endpoint.reply
  if (reply === undefined) throw new Error(`${endpoint.name} is publish-only`)
  const frame = await rpc.call(typeof tokens === "string" ? tokens : subjectOf(endpoint, tokens), endpoint.kind, body, options)
  return decodeReply(endpoint, frame)
}

const replyDecoders = new WeakMap<object, (u: unknown) => any>()

/**
 * Decodes `frame` as `endpoint`'s reply (see {@link callEndpoint}): throws the error of an
 * `error` frame as a shared/errors.ts instance (toEtcdError: an unknown tag or bad fields give
 * MalformedFrame), and a {@link MalformedFrame} when the reply is not of the declared kind and
 * schema.
 */
export const decodeReply = <Rep>(endpoint: Endpoint<string, any, Rep>, frame: Frame): Rep => {
  const reply = endpoint.reply!
  if (frame.kind === "error") throw decodeErrorFrame(frame)
  if (frame.kind !== reply.kind) {
    throw new MalformedFrame({ reason: `${endpoint.name}: expected ${reply.kind}, got ${String(frame.kind)}` })
  }
  let decode = replyDecoders.get(reply.schema)
  if (decode === undefined) {
    decode = Schema.decodeUnknownExit(reply.schema as Schema.Codec<Rep, any>)
    replyDecoders.set(reply.schema, decode)
  }
  const decoded = decode(frame.body)
  if (decoded._tag === "Failure") throw new MalformedFrame({ reason: `bad ${reply.kind} body` })
  return decoded.value as Rep
}

/**
 * The `ok` of an `{ ok } | { err }` reply; throws the error of `{ err }` as a shared/errors.ts
 * instance (toEtcdError). An answered RequestTimeout or Stopped is not {@link isUnanswered}.
 */
export const okOf = <A>(reply: { readonly ok: A } | { readonly err: EtcdErrorData }): A => {
  if ("err" in reply) throw toEtcdError(reply.err)
  return reply.ok
}

/**
 * Publishes `body` to publish-only `endpoint` at `tokens` (or at a subject already built for
 * it): fire and forget, at-most-once.
 */
export const publishEndpoint = <T extends string, Req>(
  rpc: RpcClient,
  endpoint: Endpoint<T, Req, never>,
  tokens: { readonly [K in TokensOf<T>]: string } | string,
  body: Req,
  traceparent = ""
): void => rpc.publish(typeof tokens === "string" ? tokens : subjectOf(endpoint, tokens), endpoint.kind, body, traceparent)
