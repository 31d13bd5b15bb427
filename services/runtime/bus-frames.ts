/**
 * Frames on the bus, below request/reply: publishing a frame as one NATS message or, when its
 * encoding exceeds one, as `chunk` frames (shared/chunks.ts), and putting chunked frames back
 * together on the receiving side ({@link FrameAssembler}) before anything else looks at them.
 * Memory for frames being put together is bounded per process by {@link busReassemblyBudget}.
 * Also the trace-context header of sampled frames and the per-subject histogram cache that
 * both sides of ./rpc.ts use.
 */
import { headers as natsHeaders } from "@nats-io/transport-node"
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import type { Histogram } from "prom-client"
import { Reassembler, splitFrame, wholeFrameBytes } from "../../shared/chunks.ts"
import type { ReassemblyBudget } from "../../shared/chunks.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { Frame, FrameDecodeError } from "../../shared/frame.ts"
import { ChunkBody, FrameKinds } from "../../shared/schema.ts"
import { endpointLabel } from "./metrics.ts"
import { chunkIdleMs } from "./timeouts.ts"

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
export const messageTraceparent = (frame: Frame, msg: Msg): string =>
  frame.traceparent !== "" ? frame.traceparent : msg.headers?.get("traceparent") ?? ""

/**
 * Observes `seconds` on `metric`'s child for `subject` (label lookups are slow on the hot path:
 * children are cached by `key`, at most 4096).
 */
const childCache = new Map<string, ReturnType<Histogram<"endpoint">["labels"]>>()
export const observe = (metric: () => Histogram<"endpoint">, key: string, subject: string, seconds: number): void => {
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
export const publishEncoded = (
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
