/**
 * Export of natcd's spans (./tracing.ts) to an OpenTelemetry collector over OTLP/HTTP (JSON),
 * with Effect's OTLP batch exporter (`effect/observability` OtlpExporter: batching every
 * OTEL_BSP_SCHEDULE_DELAY ms, 5 s by default, retries, a flush at shutdown).
 *
 * Configured by the standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), `OTEL_EXPORTER_OTLP_HEADERS`
 * (`k=v,k2=v2`), `OTEL_SDK_DISABLED=true`. Works with Jaeger, Tempo or any OTLP collector
 * accepting JSON on its HTTP port (4318).
 *
 * The exporter itself (./otlp-exporter.ts, with Effect's HTTP client and OTLP modules) is loaded
 * only when an endpoint is configured, so processes that export nothing do not carry it.
 *
 * Each process is one OTLP resource: `service.name` = `natcd-<service>`,
 * `service.instance.id` = `<member>/<pid>`, plus `natcd.member` and `host.name`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { SpanRecord } from "./tracing.ts"
import { otlpExportIntervalDefaultMs } from "./timeouts.ts"

/** The OTLP traces URL the environment names, or undefined when export is off. */
export const otlpTracesUrl = (env: NodeJS.ProcessEnv = process.env): string | undefined => {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? "")) return undefined
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  if (traces !== undefined && traces !== "") return traces
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT
  if (base === undefined || base === "") return undefined
  return base.replace(/\/+$/, "") + "/v1/traces"
}

const parseHeaders = (text: string | undefined): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const part of (text ?? "").split(",")) {
    const i = part.indexOf("=")
    if (i <= 0) continue
    out[decodeURIComponent(part.slice(0, i).trim())] = decodeURIComponent(part.slice(i + 1).trim())
  }
  return out
}

const attributeValue = (v: string | number | boolean) =>
  typeof v === "string"
    ? { stringValue: v }
    : typeof v === "boolean"
    ? { boolValue: v }
    : Number.isInteger(v)
    ? { intValue: String(v) }
    : { doubleValue: v }

/** OTLP span kinds: root spans are servers (the gRPC call), the rest internal. */
const spanKind = (span: SpanRecord): number => (span.p === "" ? 2 : 1)

/** One span in OTLP/JSON form (opentelemetry-proto trace.proto Span). */
export const toOtlpSpan = (span: SpanRecord) => ({
  traceId: span.t,
  spanId: span.s,
  ...(span.p === "" ? {} : { parentSpanId: span.p }),
  name: span.n,
  kind: spanKind(span),
  startTimeUnixNano: String(BigInt(span.st) * 1000n),
  endTimeUnixNano: String(BigInt(span.st + span.d) * 1000n),
  attributes: Object.entries(span.a).map(([key, value]) => ({ key, value: attributeValue(value) })),
  droppedAttributesCount: 0,
  events: [],
  droppedEventsCount: 0,
  links: [],
  droppedLinksCount: 0,
  status: span.err === undefined ? { code: 1 } : { code: 2, message: span.err }
})

/**
 * A scoped layer that, when the environment names an OTLP endpoint, registers a span sink
 * pushing every exported span to it; without an endpoint it does nothing. Spans still queued
 * are sent when the scope closes (at most 3 s).
 */
export const otlpLayer = (service: string, member: string): Layer.Layer<never> => {
  const url = otlpTracesUrl()
  if (url === undefined) return Layer.empty
  const headers = parseHeaders(process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? process.env.OTEL_EXPORTER_OTLP_HEADERS)
  const delay = Number(process.env.OTEL_BSP_SCHEDULE_DELAY ?? "")
  return Layer.unwrap(
    // Our own module: failing to load it is a defect (a broken install), not an expected failure.
    Effect.promise(() => import("./otlp-exporter.ts")).pipe(
      Effect.map((m) => m.otlpExporterLayer({ service, member, url, headers, exportIntervalMs: delay > 0 ? delay : otlpExportIntervalDefaultMs }))
    )
  )
}
