/**
 * Request/reply between natcd services over NATS core, with one shared reply inbox per process.
 *
 * `nc.request()` creates a reply subscription per call and tops out near 20k calls/s here;
 * publishing every request with the same reply subject (`<inbox>.<process>`) and matching replies
 * by the frame `id` reaches 46-68k/s. NATS core is at-most-once, so a request may get no reply:
 * {@link RpcClient.call} retries with exponential backoff until its deadline, re-sending the same
 * frame (same id), which the receiving endpoint must treat idempotently (raft indexes and request
 * ids make every natcd endpoint so). A late reply to an earlier attempt is as good as any.
 *
 * The server side ({@link serve}) decodes the frame envelope and the body's schema; a malformed
 * frame gets an `error` frame back when it named a reply subject, and is counted either way. It
 * never throws into the NATS client.
 *
 * Frames of any size: a frame (request, reply or publish) whose encoding exceeds one NATS
 * message travels as `chunk` frames (shared/chunks.ts) and is put back together by the receiver
 * ({@link FrameAssembler}) before anything else looks at it. Memory for frames being put
 * together is bounded per process by {@link busReassemblyBudget}; a reply larger than that fails
 * its call at once with ReplyTooLarge (as a gRPC client's max receive size does).
 */
import { headers as natsHeaders } from "@nats-io/transport-node"
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import type { Histogram } from "prom-client"
import { MalformedFrame, ReplyTooLarge, RequestTimeout, Stopped, toErrorData } from "../../shared/errors.ts"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { Reassembler, splitFrame, wholeFrameBytes } from "../../shared/chunks.ts"
import type { ReassemblyBudget } from "../../shared/chunks.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { Frame, FrameDecodeError } from "../../shared/frame.ts"
import { ChunkBody, FrameKinds } from "../../shared/schema.ts"
import type { FrameKind } from "../../shared/schema.ts"
import { replyWindowSeconds, subjectOf } from "../../shared/endpoints.ts"
import type { Endpoint, TokensOf } from "../../shared/endpoints.ts"
import { endpointLabel, natsHandleDuration, natsMalformed, natsRequestDuration } from "./metrics.ts"
import { currentTraceparent, endSpan, runInSpan, spanTraceparent, startSpan } from "./tracing.ts"

export { withHopSpan } from "./tracing.ts"

/**
 * NATS message headers carrying `traceparent` (W3C trace context, as nats-server's own message
 * tracing and OpenTelemetry's NATS instrumentations read it) for a sampled frame; undefined
 * otherwise. The frame carries the same value for every traced frame; the header is added only
 * when the trace is sampled, so unsampled requests pay nothing for it.
 */
export const traceHeaders = (traceparent: string): MsgHdrs | undefined => {
  if (traceparent.length !== 55 || traceparent.charCodeAt(54) !== 49 /* "1" */) return undefined
  const h = natsHeaders()
  h.set("traceparent", traceparent)
  return h
}

/** The traceparent a message names: its frame's, else its `traceparent` header, else "". */
const messageTraceparent = (frame: Frame, msg: Msg): string =>
  frame.traceparent !== "" ? frame.traceparent : msg.headers?.get("traceparent") ?? ""

/** Histogram children per subject (label lookups are slow on the hot path). */
const childCache = new Map<string, ReturnType<Histogram<"endpoint">["labels"]>>()
const observe = (metric: () => Histogram<"endpoint">, key: string, subject: string, seconds: number): void => {
  let child = childCache.get(key)
  if (child === undefined) {
    child = metric().labels(endpointLabel(subject))
    if (childCache.size < 4096) childCache.set(key, child)
  }
  child.observe(seconds)
}

/**
 * Bytes of chunked frames being put together in this process, across every subscription
 * (shared/chunks.ts ReassemblyBudget): `NATCD_BUS_REASSEMBLY_BYTES`, default 1 GiB. A single
 * frame larger than this cannot be received: a reply fails its call with ReplyTooLarge.
 */
export const busReassemblyBudget: ReassemblyBudget = {
  maxBytes: Number(process.env.NATCD_BUS_REASSEMBLY_BYTES ?? "") > 0 ? Number(process.env.NATCD_BUS_REASSEMBLY_BYTES) : 1024 * 1024 * 1024,
  used: 0
}

/** A partial chunked frame that received no piece for this many ms is dropped. */
export const chunkIdleMs = 10_000

/** Partial chunked frames one subscription holds at most. */
export const maxPartialFramesPerSubscription = 64

/**
 * Publishes `frame` to `subject`: as one message when it fits, else as chunk frames (same id
 * and traceparent; shared/chunks.ts), in order, synchronously. Throws what `nc.publish` throws
 * (a closed connection).
 */
export const publishFrame = (
  nc: NatsConnection,
  subject: string,
  frame: Frame,
  options: { readonly reply?: string; readonly headers?: MsgHdrs } = {}
): void => publishEncoded(nc, subject, encodeFrame(frame), frame.traceparent, frame.id, options)

/** {@link publishFrame} of a frame already encoded; chunks carry `traceparent` and `id`. */
const publishEncoded = (
  nc: NatsConnection,
  subject: string,
  encoded: Uint8Array,
  traceparent: string,
  id: number,
  options: { readonly reply?: string; readonly headers?: MsgHdrs }
): void => {
  if (encoded.length <= wholeFrameBytes) {
    nc.publish(subject, encoded, options.reply === undefined && options.headers === undefined ? undefined : options)
    return
  }
  const stream = (Math.random() * 0x1_0000_0000) >>> 0
  for (const chunk of splitFrame(encoded, stream)) {
    nc.publish(subject, encodeFrame({ kind: "chunk", version: FrameKinds.chunk, traceparent, id, body: chunk }), options)
  }
}

const decodeChunk = Schema.decodeUnknownExit(ChunkBody)

/** What {@link FrameAssembler.accept} made of a frame. */
export type Assembled =
  | { readonly _tag: "Frame"; readonly frame: Frame }
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Malformed"; readonly reason: string }
  | { readonly _tag: "TooLarge"; readonly reason: string; readonly sizeBytes: number }

/**
 * One subscription's receiving side of chunked frames: frames that are not chunks pass through;
 * chunks are collected per (frame id, stream) until the whole frame is there, within
 * {@link busReassemblyBudget}, {@link maxPartialFramesPerSubscription} and {@link chunkIdleMs}.
 */
export class FrameAssembler {
  private readonly reassembler = new Reassembler({ budget: busReassemblyBudget, idleMs: chunkIdleMs, maxPartials: maxPartialFramesPerSubscription })

  /** The counters of the underlying reassembler (completed, refused, evicted, duplicates). */
  get counters() {
    return this.reassembler.counters
  }

  /** Passes `frame` through, or takes it as a chunk and returns the whole frame once complete. */
  accept(frame: Frame): Assembled {
    if (frame.kind !== "chunk") return { _tag: "Frame", frame }
    if (frame.version !== FrameKinds.chunk) return { _tag: "Malformed", reason: `unsupported chunk version ${frame.version}` }
    const body = decodeChunk(frame.body)
    if (body._tag === "Failure") return { _tag: "Malformed", reason: "bad chunk body" }
    const outcome = this.reassembler.add(String(frame.id), body.value, performance.now())
    if (outcome._tag === "Pending") return outcome
    if (outcome._tag === "Refused") {
      return outcome.tooLarge ? { _tag: "TooLarge", reason: outcome.reason, sizeBytes: body.value.size } : { _tag: "Malformed", reason: outcome.reason }
    }
    const whole: Frame | FrameDecodeError = decodeFrame(outcome.encoded)
    if (isFrameDecodeError(whole)) return { _tag: "Malformed", reason: `reassembled frame: ${whole.reason}` }
    if (whole.kind === "chunk") return { _tag: "Malformed", reason: "a chunk inside a chunked frame" }
    return { _tag: "Frame", frame: whole }
  }

  /** Drops the partial frames of id `id` (a call that finished). */
  forget(id: number): void {
    this.reassembler.forget(String(id))
  }

  /** Drops every partial frame. */
  clear(): void {
    this.reassembler.clear()
  }
}

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
            return p.reject(toErrorData(new ReplyTooLarge({ sizeBytes: assembled.sizeBytes, maxBytes: busReassemblyBudget.maxBytes })))
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
   * {@link Stopped} when the client is closed meanwhile. The reply's kind is not checked here.
   */
  call(subject: string, kind: FrameKind, body: unknown, options: CallOptions): Promise<Frame> {
    if (this.closed) return Promise.reject(new Stopped())
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
      let retryMs = Math.max(options.retryAfterMs ?? 200, sizeFloorMs)
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
          reject(new Stopped())
          return
        }
        arm()
      }
      const onRetry = () => {
        this.counters.retries++
        retryMs = Math.max(Math.min(retryMs * 2, 1000), sizeFloorMs)
        send()
      }
      const onTimeout = () => {
        this.counters.timeouts++
        finish()
        reject(new RequestTimeout())
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

  /** Fails every waiting call with {@link Stopped}; later calls fail at once. */
  close(): void {
    this.closed = true
    for (const p of this.pending.values()) p.reject(new Stopped())
    this.pending.clear()
    this.assembler.clear()
  }
}

const decodeErrorFrame = (frame: Frame): EtcdErrorData => {
  const body = frame.body as { err?: unknown }
  const err = body?.err as { _tag?: unknown } | undefined
  if (err !== undefined && typeof err._tag === "string") return err as EtcdErrorData
  return { _tag: "MalformedFrame", reason: "error frame without an error" }
}

/** What a served endpoint counts. */
export interface EndpointCounters {
  handled: number
  malformed: number
}

/** A request as a handler sees it: the decoded body and how to answer it. */
export interface Request<B> {
  readonly body: B
  readonly frame: Frame
  /** The subject the message arrived on. */
  readonly subject: string
  /**
   * The traceparent of this hop's span (a child of the frame's), to put in frames this
   * handler sends on behalf of the request; "" when the frame carried no trace context.
   */
  readonly traceparent: string
  /** Replies with a frame of `kind`; a no-op when the request named no reply subject. */
  reply(kind: FrameKind, body: unknown): void
}

/** Options of {@link serve}. */
export interface ServeOptions {
  /** Join this NATS queue group (one member of the group receives each message). */
  readonly queue?: string
  /** Told of a handler that threw (a defect in natcd). */
  readonly onDefect?: (e: unknown) => void
  /** Told of each malformed message, with the running count. */
  readonly onMalformed?: (reason: string, count: number) => void
}

/**
 * Serves `subject`: every message is decoded (envelope, expected `kind` and version, body
 * schema) and handed to `handler` inside a span named after the kind that continues the frame's
 * trace. Malformed messages are counted, reported through `onMalformed`, and answered with an
 * `error` frame carrying MalformedFrame when they name a reply subject. A handler that throws is
 * a defect in natcd: it is reported through `onDefect` and the endpoint keeps serving.
 */
export const serve = <B>(
  nc: NatsConnection,
  subject: string,
  kind: FrameKind,
  schema: Schema.Codec<B, any>,
  handler: (request: Request<B>) => void,
  options: ServeOptions = {}
): { readonly counters: EndpointCounters; readonly stop: () => void } => {
  const counters: EndpointCounters = { handled: 0, malformed: 0 }
  const decode = Schema.decodeUnknownExit(schema)
  const assembler = new FrameAssembler()
  const inTransit = new AnswersInTransit()
  const sub = nc.subscribe(subject, {
    ...(options.queue === undefined ? {} : { queue: options.queue }),
    callback: (err, msg) => {
      if (err) return
      const malformed = (reason: string) => {
        counters.malformed++
        natsMalformed().labels(endpointLabel(subject)).inc()
        options.onMalformed?.(reason, counters.malformed)
        replyTo(nc, msg, 0, "error", { err: toErrorData(new MalformedFrame({ reason })) }, "")
      }
      const decoded = decodeFrame(msg.data)
      if (isFrameDecodeError(decoded)) return malformed(decoded.reason)
      const assembled = assembler.accept(decoded)
      if (assembled._tag === "Pending") return
      if (assembled._tag !== "Frame") return malformed(assembled.reason)
      const frame = assembled.frame
      if (frame.kind !== kind) return malformed(`expected kind ${kind}, got ${JSON.stringify(frame.kind)}`)
      if (frame.version !== FrameKinds[kind]) return malformed(`unsupported ${kind} version ${frame.version}`)
      const body = decode(frame.body)
      if (body._tag === "Failure") return malformed(`bad ${kind} body: ${String(body.cause).slice(0, 200)}`)
      const waited = msg.reply !== undefined && msg.reply !== ""
      // Looked up only while some chunked answer is in transit (rare); no key built otherwise.
      if (waited && inTransit.size > 0 && inTransit.inTransit(`${msg.reply} ${frame.id}`, performance.now())) return
      counters.handled++
      // The hop span: ends at the reply, or when the handler returns if nobody waits for one.
      const receivedAt = performance.now()
      const span = startSpan(kind, messageTraceparent(frame, msg))
      const traceparent = spanTraceparent(span)
      let replied = false
      try {
        runInSpan(span, () =>
          handler({
            body: body.value,
            frame,
            // Decoded from the message's bytes only when a handler asks (raft.msg does).
            get subject() {
              return msg.subject
            },
            traceparent,
            reply: (replyKind, replyBody) => {
              const bytes = replyTo(nc, msg, frame.id, replyKind, replyBody, traceparent)
              if (bytes > wholeFrameBytes) inTransit.answered(`${msg.reply} ${frame.id}`, bytes, performance.now())
              if (replied) return
              replied = true
              observe(natsHandleDuration, `<${subject}`, subject, (performance.now() - receivedAt) / 1000)
              const err = (replyBody as { err?: { _tag?: unknown } } | undefined)?.err?._tag
              endSpan(span, undefined, typeof err === "string" ? err : replyKind === "error" ? "error" : undefined)
            }
          })
        )
      } catch (e) {
        endSpan(span, undefined, String(e))
        options.onDefect?.(e)
      }
      if (!waited) endSpan(span)
    }
  })
  return {
    counters,
    stop: () => {
      sub.unsubscribe()
      assembler.clear()
    }
  }
}

/**
 * Answers `msg` with an `error` frame carrying MalformedFrame (`reason`) when it named a reply
 * subject; for subscribers that decode frames themselves, as {@link serve} does for its own.
 */
export const replyMalformed = (nc: NatsConnection, msg: Msg, reason: string): void => {
  replyTo(nc, msg, 0, "error", { err: toErrorData(new MalformedFrame({ reason })) }, "")
}

/**
 * Sends a reply (chunked when large). A reply that cannot be encoded fails the call at once
 * with an `error` frame saying why; one lost to a closing connection is left to the caller's
 * retry or timeout.
 */
const replyTo = (nc: NatsConnection, msg: Msg, id: number, kind: FrameKind, body: unknown, traceparent: string): number => {
  if (msg.reply === undefined || msg.reply === "") return 0
  try {
    const encoded = encodeFrame({ kind, version: FrameKinds[kind], traceparent, id, body })
    publishEncoded(nc, msg.reply, encoded, traceparent, id, {})
    return encoded.length
  } catch (e) {
    if (nc.isClosed() || kind === "error") return 0
    try {
      const reason = `reply ${kind} could not be sent: ${(e as Error)?.message ?? String(e)}`
      publishFrame(nc, msg.reply, { kind: "error", version: FrameKinds.error, traceparent, id, body: { err: toErrorData(new MalformedFrame({ reason })) } })
    } catch {
      // The connection is closing.
    }
    return 0
  }
}

/**
 * Requests answered with a chunked reply that may still be on its way, by reply subject and
 * frame id, with the time (ms) until which a retry of the same request is not served again:
 * the caller's retry timer can fire while a large answer is being computed or travelling, and
 * answering it again would only send the same hundreds of MiB once more. Bounded: at most
 * {@link maxAnswersInTransit} entries, the oldest dropped first.
 */
class AnswersInTransit {
  private readonly until = new Map<string, number>()

  /** Answers remembered now. */
  get size(): number {
    return this.until.size
  }

  /** Records that `key` was answered with a chunked reply of `bytes` at `nowMs`. */
  answered(key: string, bytes: number, nowMs: number): void {
    this.until.delete(key)
    if (this.until.size >= maxAnswersInTransit) this.until.delete(this.until.keys().next().value!)
    // Time to arrive at 10 MB/s, plus a second.
    this.until.set(key, nowMs + 1000 + bytes / 10_000)
  }

  /** True when `key` was answered with a chunked reply that is still on its way at `nowMs`. */
  inTransit(key: string, nowMs: number): boolean {
    const t = this.until.get(key)
    if (t === undefined) return false
    if (t >= nowMs) return true
    this.until.delete(key)
    return false
  }
}

/** Entries an endpoint keeps of chunked replies in transit (see AnswersInTransit). */
export const maxAnswersInTransit = 256

// ---------------------------------------------------------------------------------------------
// Endpoints as declared in shared/endpoints.ts: typed serve, call and publish.

/** A request to a declared endpoint, as its handler sees it. */
export interface EndpointRequest<Req, Rep> {
  readonly body: Req
  readonly frame: Frame
  /** The subject the request arrived on (its tokens: shared/endpoints.ts tokensOf). */
  readonly subject: string
  /** As {@link Request.traceparent}. */
  readonly traceparent: string
  /** Replies with the endpoint's reply kind; a no-op when the request named no reply subject. */
  reply(body: Rep): void
  /** Replies with an `error` frame carrying `err` (etcd's error data). */
  replyError(err: EtcdErrorData): void
}

/**
 * Serves `endpoint` at the subject its template gives for `tokens` (wildcards `*` allowed for
 * tokens the server does not bind, e.g. raft.msg's `{from}`): as {@link serve}, with the
 * request decoded by the declared schema and replies of the declared kind. The endpoint's
 * queue group, if any, is joined.
 */
export const serveEndpoint = <T extends string, Req, Rep>(
  nc: NatsConnection,
  endpoint: Endpoint<T, Req, Rep>,
  tokens: { readonly [K in TokensOf<T>]: string },
  handler: (request: EndpointRequest<Req, Rep>) => void,
  options: ServeOptions = {}
): { readonly counters: EndpointCounters; readonly stop: () => void } => {
  const subject = subjectOf(endpoint, tokens, { wildcards: true })
  const replyKind = endpoint.reply?.kind
  return serve(nc, subject, endpoint.kind, endpoint.request, (req) =>
    handler({
      body: req.body,
      frame: req.frame,
      get subject() {
        return req.subject
      },
      traceparent: req.traceparent,
      reply: (body) => {
        if (replyKind !== undefined) req.reply(replyKind, body)
      },
      replyError: (err) => req.reply("error", { err })
    }), endpoint.queue === undefined || options.queue !== undefined ? options : { ...options, queue: endpoint.queue })
}

/**
 * Calls `endpoint` at `tokens` with `body` and resolves with the reply decoded by the declared
 * reply schema. Rejects with {@link RequestTimeout} / {@link Stopped} as {@link RpcClient.call},
 * with the error data of an `error` frame, and with MalformedFrame data when the reply is not
 * of the declared kind and schema.
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

/** Decodes `frame` as `endpoint`'s reply (see {@link callEndpoint}); throws error data. */
export const decodeReply = <Rep>(endpoint: Endpoint<string, any, Rep>, frame: Frame): Rep => {
  const reply = endpoint.reply!
  if (frame.kind === "error") throw decodeErrorFrame(frame)
  if (frame.kind !== reply.kind) {
    throw { _tag: "MalformedFrame", reason: `${endpoint.name}: expected ${reply.kind}, got ${String(frame.kind)}` } satisfies EtcdErrorData
  }
  let decode = replyDecoders.get(reply.schema)
  if (decode === undefined) {
    decode = Schema.decodeUnknownExit(reply.schema as Schema.Codec<Rep, any>)
    replyDecoders.set(reply.schema, decode)
  }
  const decoded = decode(frame.body)
  if (decoded._tag === "Failure") throw { _tag: "MalformedFrame", reason: `bad ${reply.kind} body` } satisfies EtcdErrorData
  return decoded.value as Rep
}

/** The `ok` of an `{ ok } | { err }` reply; throws the error data of `{ err }`. */
export const okOf = <A>(reply: { readonly ok: A } | { readonly err: EtcdErrorData }): A => {
  if ("err" in reply) throw reply.err
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
