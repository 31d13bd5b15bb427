/**
 * W3C trace context (https://www.w3.org/TR/trace-context/) as natcd frames carry it: the
 * `traceparent` string `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`. Every hop
 * continues the trace its input frame names, so one client request is one trace across the
 * gateway, raft, wal and mvcc processes.
 */

/** A parsed traceparent. */
export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** Parses a traceparent; undefined for "" or anything malformed (or all-zero ids, which W3C forbids). */
export const parseTraceparent = (traceparent: string): TraceContext | undefined => {
  const m = TRACEPARENT.exec(traceparent)
  if (m === null) return undefined
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string]
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 }
}

/** Formats a traceparent for `spanId` of trace `traceId`. */
export const formatTraceparent = (ctx: TraceContext): string =>
  `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? "01" : "00"}`
