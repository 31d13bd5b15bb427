/**
 * The serving side of request/reply over NATS (./rpc.ts is the calling side): {@link serve}
 * decodes each message's frame envelope and the body's schema and hands the request to a
 * handler inside a span continuing the frame's trace; a malformed frame gets an `error` frame
 * back when it named a reply subject, and is counted either way; a handler that throws is
 * reported as a defect, never thrown into the NATS client. Replies larger than one NATS
 * message go as chunks (./bus-frames.ts); a retry of a request whose large answer is still on
 * its way is not answered again ({@link maxAnswersInTransit}). {@link serveEndpoint} serves an
 * endpoint as declared in shared/endpoints.ts.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { MalformedFrame, toErrorData } from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { wholeFrameBytes } from "../../shared/chunks.ts"
import { encodeFrame, decodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { Frame } from "../../shared/frame.ts"
import { FrameKinds } from "../../shared/schema.ts"
import type { FrameKind } from "../../shared/schema.ts"
import { subjectOf } from "../../shared/endpoints.ts"
import type { Endpoint, TokensOf } from "../../shared/endpoints.ts"
import { endpointLabel, natsHandleDuration, natsMalformed } from "./metrics.ts"
import { endSpan, runInSpan, spanTraceparent, startSpan } from "./tracing.ts"
import { FrameAssembler, messageTraceparent, observe, publishEncoded, publishFrame } from "./bus-frames.ts"
import { chunkedAnswerGraceMs } from "./timeouts.ts"

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
 * Sends a reply (chunked when large). A body whose `err` is a thrown tagged error (an instance
 * of a shared/errors.ts class) goes as that error's plain data, `{ _tag, ...fields }`, the form
 * frames carry (an instance's own `message` would not be encoded). A reply that cannot be
 * encoded fails the call at once with an `error` frame saying why; one lost to a closing
 * connection is left to the caller's retry or timeout.
 */
const replyTo = (nc: NatsConnection, msg: Msg, id: number, kind: FrameKind, body: unknown, traceparent: string): number => {
  if (msg.reply === undefined || msg.reply === "") return 0
  const err = (body as { err?: unknown } | undefined)?.err
  if (err instanceof Error) body = { ...(body as object), err: toErrorData(err as EtcdError) }
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
    this.until.set(key, nowMs + chunkedAnswerGraceMs + bytes / 10_000)
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
  /** Replies with an `error` frame carrying `err` (etcd's error data; an instance goes as its data). */
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
