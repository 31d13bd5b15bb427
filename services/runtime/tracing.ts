/**
 * natcd's request tracing: the spans every process records for the hops of a client request,
 * the sampling decision, and where finished spans go.
 *
 * One client request is one trace. The gateway opens the root span (one per gRPC call) and
 * decides whether the trace is sampled; the W3C traceparent of the current span travels in
 * every frame (shared/frame.ts) and in the NATS message headers of sampled frames, and each
 * process that handles the request opens a child span ({@link withHopSpan}, {@link startSpan}).
 *
 * What this is not: a general OpenTelemetry SDK. Spans are small plain records made on the hot
 * path without an Effect runtime call; a span that nobody will look at is never built (see
 * Sampling). Effect's own spans (`Effect.withSpan`) are not collected here.
 *
 * ## Sampling
 *
 * - `--trace-sample-ratio` (NATCD_TRACE_SAMPLE_RATIO, default 1: every request, as in
 *   development; set e.g. 0.01 in production): the share of requests traced from the start
 *   (traceparent flag 01). Their spans are exported as soon as they end.
 * - `--trace-slow-ms` (NATCD_TRACE_SLOW_MS, default 1000; 0 turns it off): a request that was
 *   not sampled still carries a traceparent with flag 00, and every process keeps its spans in
 *   a small in-memory ring ({@link ringCapacity} spans). When the gateway's root span ends after
 *   this many ms, the gateway publishes the trace id on `natcd.<cluster>.trace.keep` and every
 *   process exports what its ring holds of that trace (and spans of it that end later). This
 *   is tail sampling without a collector: slow requests are always kept.
 * - With the ratio at 0 and slow capture off, the gateway sends no traceparent at all and no
 *   process records anything.
 *
 * ## Where spans go
 *
 * Every exported span goes to each registered sink ({@link addSpanSink}): the local trace store
 * (./trace-store.ts, JSON lines under `<data-dir>/traces/`, read by `natcd trace`) and, when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, the OTLP
 * exporter (./otlp.ts).
 *
 * Span names follow `<service>.<step>`: `KV.Put` (gateway root), `raft.propose`,
 * `raft.forward`, `raft.append`, `raft.commit`, `wal.append`, `wal.fsync`, `mvcc.apply.queue`,
 * `mvcc.apply`, `mvcc.backend.commit`, `watch.events`, ... ; hop spans made by
 * `services/runtime/rpc-server.ts` `serve` are named after the frame kind.
 */
import { AsyncLocalStorage } from "node:async_hooks"
import { randomFillSync } from "node:crypto"
import { hostname } from "node:os"
import { formatTraceparent, parseTraceparent } from "../../shared/trace.ts"
import type { TraceContext } from "../../shared/trace.ts"
import { describeError } from "../../shared/errors.ts"

/**
 * A finished span as natcd stores it (one JSON line in the trace store).
 * - `t`, `s`, `p`: trace id (32 hex), span id (16 hex), parent span id ("" for a root);
 * - `n`: span name; `svc`, `m`: service and member (or watch replica) of the process;
 *   `pid`, `h`: its process id and host name;
 * - `st`: start, microseconds since the Unix epoch; `d`: duration in microseconds;
 * - `a`: attributes (strings, numbers, booleans); `err`: error text when the step failed;
 * - `smp`: true when the trace was sampled at its start (false: kept because it was slow).
 */
export interface SpanRecord {
  readonly t: string
  readonly s: string
  readonly p: string
  readonly n: string
  readonly svc: string
  readonly m: string
  readonly pid: number
  readonly h: string
  readonly st: number
  readonly d: number
  readonly a: Record<string, string | number | boolean>
  readonly err?: string
  readonly smp: boolean
}

/** A span that has started and not ended. Attributes may be added until it ends. */
export interface ActiveSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly name: string
  readonly startUs: number
  readonly sampled: boolean
  readonly attributes: Record<string, string | number | boolean>
  ended: boolean
}

/** Receives every exported span (the trace store, the OTLP exporter). Must not throw. */
export type SpanSink = (span: SpanRecord) => void

/** Spans of unsampled traces kept in memory for tail sampling. */
export const ringCapacity = 8192

/** Trace ids marked to keep, remembered so that spans ending later are kept too. */
const keptCapacity = 1024

interface TracingState {
  service: string
  member: string
  sampleRatio: number
  slowMs: number
  /** Told when a root span of an unsampled trace ended slow (the gateway publishes it). */
  onSlowRoot: ((traceId: string) => void) | undefined
}

const state: TracingState = { service: "natcd", member: "", sampleRatio: 1, slowMs: 1000, onSlowRoot: undefined }
const sinks: SpanSink[] = []
const ring: Array<SpanRecord | undefined> = new Array(ringCapacity)
let ringNext = 0
const kept = new Set<string>()
const pid = process.pid
const host = hostname()

/**
 * Sets the process's identity and sampling: `sampleRatio` in [0, 1] (share of root spans
 * sampled), `slowMs` (root spans slower than this are kept; 0: off). Called by
 * `services/runtime/process.ts` `launch`.
 */
export const configureTracing = (options: { service: string; member: string; sampleRatio?: number; slowMs?: number }): void => {
  state.service = options.service
  state.member = options.member
  if (options.sampleRatio !== undefined) state.sampleRatio = Math.min(1, Math.max(0, options.sampleRatio))
  if (options.slowMs !== undefined) state.slowMs = Math.max(0, options.slowMs)
}

/** Registers a sink for exported spans; returns its removal. */
export const addSpanSink = (sink: SpanSink): (() => void) => {
  sinks.push(sink)
  return () => {
    const i = sinks.indexOf(sink)
    if (i >= 0) sinks.splice(i, 1)
  }
}

/** Sets who learns of slow unsampled root spans (the gateway's publisher of keep notices). */
export const onSlowRoot = (f: ((traceId: string) => void) | undefined): void => {
  state.onSlowRoot = f
}

/**
 * The wall clock (ms since the epoch) at performance.now() = 0, re-read from Date.now() every
 * {@link clockAnchorMs}: performance.timeOrigin is fixed at process start and the monotonic
 * clock drifts from the wall clock, so processes started at different times would otherwise
 * disagree by milliseconds, and a span could seem to start before its parent in another process.
 */
let wallAtZeroMs = Date.now() - performance.now()
/** How often the anchor is re-read, in ms. */
const clockAnchorMs = 1000
setInterval(() => {
  wallAtZeroMs = Date.now() - performance.now()
}, clockAnchorMs).unref()

/**
 * Microseconds since the Unix epoch: the wall clock (1 ms resolution) at the last anchor plus
 * the monotonic time since, so sub-millisecond within a process and within about 1 ms of the
 * wall clock across processes of one host. A re-anchor may move it back by under 1 ms (the
 * wall clock's resolution): a span across one may look shorter by that much.
 */
export const nowUs = (): number => Math.round((wallAtZeroMs + performance.now()) * 1000)

// Random ids from a pooled buffer: one randomFillSync per 256 ids instead of one per id.
const pool = Buffer.alloc(4096)
let poolAt = pool.length
const randomHex = (bytes: number): string => {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  const s = pool.toString("hex", poolAt, poolAt + bytes)
  poolAt += bytes
  return s
}

/** A new trace id (32 hex digits). */
export const newTraceId = (): string => randomHex(16)

/** A new span id (16 hex digits). */
export const newSpanId = (): string => randomHex(8)

/**
 * Starts a root span (the gateway's, one per client request), deciding sampling. Returns
 * undefined when the request is not traced at all (ratio not hit and slow capture off).
 */
export const startRootSpan = (name: string, attributes: Record<string, string | number | boolean> = {}): ActiveSpan | undefined => {
  const sampled = state.sampleRatio >= 1 || (state.sampleRatio > 0 && Math.random() < state.sampleRatio)
  if (!sampled && state.slowMs <= 0) return undefined
  return { traceId: newTraceId(), spanId: newSpanId(), parentSpanId: "", name, startUs: nowUs(), sampled, attributes, ended: false }
}

/**
 * Starts a child span of `parent` (a traceparent string or parsed context). Returns undefined
 * when `parent` names no trace, so untraced work costs one parse.
 */
export const startSpan = (
  name: string,
  parent: string | TraceContext | undefined,
  attributes: Record<string, string | number | boolean> = {},
  startUs: number = nowUs()
): ActiveSpan | undefined => {
  const ctx = typeof parent === "string" ? parseTraceparent(parent) : parent
  if (ctx === undefined) return undefined
  return { traceId: ctx.traceId, spanId: newSpanId(), parentSpanId: ctx.spanId, name, startUs, sampled: ctx.sampled, attributes, ended: false }
}

/** The traceparent naming `span` as the parent of the next hop; "" for no span. */
export const spanTraceparent = (span: ActiveSpan | undefined): string =>
  span === undefined ? "" : formatTraceparent({ traceId: span.traceId, spanId: span.spanId, sampled: span.sampled })

/**
 * Ends `span` (at `endUs`, default now), adding `attributes` and `error` (the failure's text or
 * tag), and hands it to the sinks (sampled or kept trace) or the ring (otherwise). Ending twice
 * is a no-op. A root span of an unsampled trace that took longer than the slow threshold is
 * kept and reported through {@link onSlowRoot}.
 */
export const endSpan = (
  span: ActiveSpan | undefined,
  attributes?: Record<string, string | number | boolean>,
  error?: string,
  endUs: number = nowUs()
): void => {
  if (span === undefined || span.ended) return
  span.ended = true
  if (attributes !== undefined) Object.assign(span.attributes, attributes)
  const record: SpanRecord = {
    t: span.traceId,
    s: span.spanId,
    p: span.parentSpanId,
    n: span.name,
    svc: state.service,
    m: state.member,
    pid,
    h: host,
    st: span.startUs,
    d: Math.max(0, endUs - span.startUs),
    a: span.attributes,
    ...(error === undefined ? {} : { err: error }),
    smp: span.sampled
  }
  if (span.sampled || kept.has(span.traceId)) return exportRecord(record)
  ring[ringNext] = record
  ringNext = (ringNext + 1) % ringCapacity
  if (span.parentSpanId === "" && state.slowMs > 0 && record.d >= state.slowMs * 1000) {
    keepTrace(span.traceId)
    state.onSlowRoot?.(span.traceId)
  }
}

/** Records a span whose start and end are known already (e.g. a queue wait). */
export const recordSpan = (
  name: string,
  parent: string | TraceContext | undefined,
  startUs: number,
  endUs: number,
  attributes: Record<string, string | number | boolean> = {}
): ActiveSpan | undefined => {
  const span = startSpan(name, parent, attributes, startUs)
  endSpan(span, undefined, undefined, endUs)
  return span
}

/**
 * Exports every span of `traceId` held in the ring and remembers the id, so spans of it that
 * end later are exported too (a keep notice from the gateway, or a local slow root).
 */
export const keepTrace = (traceId: string): void => {
  if (kept.has(traceId)) return
  kept.add(traceId)
  if (kept.size > keptCapacity) kept.delete(kept.values().next().value!)
  for (let i = 0; i < ringCapacity; i++) {
    const r = ring[i]
    if (r !== undefined && r.t === traceId) {
      ring[i] = undefined
      exportRecord(r)
    }
  }
}

const exportRecord = (record: SpanRecord): void => {
  for (const sink of sinks) {
    try {
      sink(record)
    } catch {
      // A sink must not break the traced code; a failing sink loses the span.
    }
  }
}

/**
 * The span whose synchronous code is running now (set by {@link withHopSpan} while its body
 * runs), so that code deep inside (a log line, an event published during an apply) can name the
 * trace without having it passed down.
 */
let currentHop: ActiveSpan | undefined

/** The traceparent of the hop span running now, or of the request context (gateway); "" if none. */
export const currentTraceparent = (): string => {
  if (currentHop !== undefined) return spanTraceparent(currentHop)
  return requestContext.getStore()?.traceparent ?? ""
}

/** The trace id of the hop or request running now; undefined if none (for log annotations). */
export const currentTraceId = (): string | undefined => currentHop?.traceId ?? requestContext.getStore()?.span?.traceId

/**
 * Runs `f` with `span` as the current hop (see {@link currentTraceparent}); does not end it.
 * `f` runs plainly when `span` is undefined.
 */
export const runInSpan = <A>(span: ActiveSpan | undefined, f: () => A): A => {
  if (span === undefined) return f()
  const outer = currentHop
  currentHop = span
  try {
    return f()
  } finally {
    currentHop = outer
  }
}

/**
 * Runs `f` inside a span named `name`, a child of `traceparent`, passing `f` the span's own
 * traceparent for the frames it sends; the span ends when `f` returns (or throws). When
 * `traceparent` names no trace, `f("")` runs with no span.
 */
export const withHopSpan = <A>(name: string, traceparent: string, f: (traceparent: string) => A, attributes?: Record<string, string | number | boolean>): A => {
  const span = traceparent === "" ? undefined : startSpan(name, traceparent, attributes)
  if (span === undefined) return f("")
  const outer = currentHop
  currentHop = span
  try {
    return f(spanTraceparent(span))
  } catch (e) {
    endSpan(span, undefined, describeError(e))
    throw e
  } finally {
    currentHop = outer
    endSpan(span)
  }
}

/**
 * The request a gateway handler serves: its root span, and the traceparent its hops carry.
 * Set with {@link requestContext}.run around a gRPC handler, read by the RPC client and the
 * proposer when they are given no traceparent, so every request-driven frame joins the trace.
 */
export interface RequestContext {
  readonly span: ActiveSpan | undefined
  readonly traceparent: string
}

/** The gateway's per-request context (AsyncLocalStorage follows it across awaits). */
export const requestContext = new AsyncLocalStorage<RequestContext>()

/**
 * Proposals carry their trace in the `traceparent` field of the msgpack map the gateway's
 * proposer packs (services/runtime/proposer.ts), which precedes the request body. Raft does not
 * decode proposals; it finds the field with a bounded byte search for the key, then reads the
 * 55-character string after it (msgpack str8 header 0xd9 0x37). Returns "" when absent or empty.
 */
export const proposalTraceparent = (data: Uint8Array): string => {
  if (data.length < 80) return ""
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const at = buf.indexOf(traceparentKey, 0)
  if (at < 0 || at > 256) return ""
  const v = at + traceparentKey.length
  if (buf[v] !== 0xd9 || buf[v + 1] !== 55 || v + 2 + 55 > buf.length) return ""
  return buf.toString("latin1", v + 2, v + 2 + 55)
}

// msgpack fixstr header (0xa0 | 11) followed by "traceparent".
const traceparentKey = Buffer.concat([Buffer.from([0xa0 | 11]), Buffer.from("traceparent", "latin1")])
