/**
 * The shared runtime's timeouts and intervals (calls over the bus, the NATS connection, the
 * proposer, the health and trace exporters), all in ms: one table, so each value is named once
 * with what it bounds and why.
 *
 * What it is not: the trace store's flush period (./trace-store.ts `flushMs`), the tracing
 * clock's anchor (./tracing.ts `clockAnchorMs`), and each call's own `timeoutMs`, which its
 * caller's service names in its own table.
 */

/** The first re-send of a call that got no reply, ms, unless the call sets `retryAfterMs`. */
export const rpcRetryAfterDefaultMs = 200

/** Re-sends of an unanswered call double up to this interval, ms (or a larger one set by the call). */
export const rpcRetryMaxMs = 1000

/** A chunked answer counts as on its way for its time at 10 MB/s plus this, ms (retries of its call are not re-served meanwhile). */
export const chunkedAnswerGraceMs = 1000

/** One raft.propose call of the proposer, at most, ms (less when the request's deadline is nearer); an unanswered one is sent again. */
export const proposeCallMaxMs = 1000

/** The least timeout of a raft.status poll, ms (the poll interval when that is longer). */
export const raftStatusPollTimeoutFloorMs = 500

/** The wait between reconnect attempts to NATS, ms. */
export const natsReconnectWaitMs = 250

/** How often the NATS client pings its server to notice a dead connection, ms. */
export const natsPingIntervalMs = 10_000

/** At most one "dropped malformed frame" line per endpoint per this many ms. */
export const malformedLogEveryMs = 1000

/** The OTLP trace export interval when `OTEL_BSP_SCHEDULE_DELAY` is not set, ms (OpenTelemetry's default for it). */
export const otlpExportIntervalDefaultMs = 5000

/** How long the OTLP exporter may take to send its last spans at shutdown, ms. */
export const otlpShutdownTimeoutMs = 3000

/** The health and metrics server's HTTP keep-alive: an idle connection is closed after this, ms (Node's default, set explicitly). */
export const healthKeepAliveTimeoutMs = 5000

/** How long a check may take before it counts as failed, in ms. */
export const healthCheckTimeoutMs = 2000

/** A partial chunked frame that received no piece for this many ms is dropped. */
export const chunkIdleMs = 10_000
