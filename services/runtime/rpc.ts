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
 */
import { headers as natsHeaders } from "@nats-io/transport-node"
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import type { Histogram } from "prom-client"
import { MalformedFrame, RequestTimeout, Stopped, toErrorData } from "../../shared/errors.ts"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { Frame } from "../../shared/frame.ts"
import { FrameKinds } from "../../shared/schema.ts"
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

/** Options of one call. */
export interface CallOptions {
  /** Give up (RequestTimeout) after this many ms in all. */
  readonly timeoutMs: number
  /** First retry after this many ms without a reply; doubles per attempt up to 1000 ms. */
  readonly retryAfterMs?: number
  /** W3C traceparent to carry; "" or absent: the current hop's or request's (tracing.ts currentTraceparent). */
  readonly traceparent?: string
}

interface Pending {
  resolve: (frame: Frame) => void
  reject: (error: unknown) => void
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

  constructor(nc: NatsConnection, inbox: string) {
    this.nc = nc
    this.inbox = inbox
    nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err) return
        const frame = decodeFrame(msg.data)
        if (isFrameDecodeError(frame)) {
          this.counters.malformedReplies++
          return
        }
        const p = this.pending.get(frame.id)
        if (p === undefined) {
          this.counters.strayReplies++
          return
        }
        this.pending.delete(frame.id)
        p.resolve(frame)
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
    const bytes = encodeFrame({ kind, version: FrameKinds[kind], traceparent, id, body })
    const headers = traceHeaders(traceparent)
    return new Promise<Frame>((resolve, reject) => {
      let retryMs = options.retryAfterMs ?? 200
      let timer: ReturnType<typeof setTimeout> | undefined
      const startedAt = performance.now()
      const deadline = startedAt + options.timeoutMs
      const finish = () => {
        if (timer !== undefined) clearTimeout(timer)
        this.pending.delete(id)
      }
      const send = () => {
        this.counters.sent++
        try {
          this.nc.publish(subject, bytes, headers === undefined ? { reply: this.inbox } : { reply: this.inbox, headers })
        } catch (e) {
          finish()
          reject(new Stopped())
          return
        }
        const left = deadline - performance.now()
        if (left <= 0) {
          timer = setTimeout(onTimeout, 0)
          return
        }
        timer = setTimeout(left <= retryMs ? onTimeout : onRetry, Math.min(left, retryMs))
      }
      const onRetry = () => {
        this.counters.retries++
        retryMs = Math.min(retryMs * 2, 1000)
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
        }
      })
      send()
    })
  }

  /** Publishes a frame nobody answers (fire and forget; at-most-once). */
  publish(subject: string, kind: FrameKind, body: unknown, traceparent = ""): void {
    if (this.closed) return
    const headers = traceHeaders(traceparent)
    const bytes = encodeFrame({ kind, version: FrameKinds[kind], traceparent, id: 0, body })
    if (headers === undefined) this.nc.publish(subject, bytes)
    else this.nc.publish(subject, bytes, { headers })
  }

  /** Fails every waiting call with {@link Stopped}; later calls fail at once. */
  close(): void {
    this.closed = true
    for (const p of this.pending.values()) p.reject(new Stopped())
    this.pending.clear()
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
      const frame = decodeFrame(msg.data)
      if (isFrameDecodeError(frame)) return malformed(frame.reason)
      if (frame.kind !== kind) return malformed(`expected kind ${kind}, got ${JSON.stringify(frame.kind)}`)
      if (frame.version !== FrameKinds[kind]) return malformed(`unsupported ${kind} version ${frame.version}`)
      const body = decode(frame.body)
      if (body._tag === "Failure") return malformed(`bad ${kind} body: ${String(body.cause).slice(0, 200)}`)
      counters.handled++
      // The hop span: ends at the reply, or when the handler returns if nobody waits for one.
      const receivedAt = performance.now()
      const span = startSpan(kind, messageTraceparent(frame, msg))
      const traceparent = spanTraceparent(span)
      const waited = msg.reply !== undefined && msg.reply !== ""
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
              replyTo(nc, msg, frame.id, replyKind, replyBody, traceparent)
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
  return { counters, stop: () => sub.unsubscribe() }
}

/**
 * Answers `msg` with an `error` frame carrying MalformedFrame (`reason`) when it named a reply
 * subject; for subscribers that decode frames themselves, as {@link serve} does for its own.
 */
export const replyMalformed = (nc: NatsConnection, msg: Msg, reason: string): void =>
  replyTo(nc, msg, 0, "error", { err: toErrorData(new MalformedFrame({ reason })) }, "")

const replyTo = (nc: NatsConnection, msg: Msg, id: number, kind: FrameKind, body: unknown, traceparent: string) => {
  if (msg.reply === undefined || msg.reply === "") return
  try {
    nc.publish(msg.reply, encodeFrame({ kind, version: FrameKinds[kind], traceparent, id, body }))
  } catch {
    // The connection is closing; the caller's retry or timeout handles the lost reply.
  }
}

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
