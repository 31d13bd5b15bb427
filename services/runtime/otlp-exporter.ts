/**
 * The OTLP span exporter behind ./otlp.ts otlpLayer (loaded on demand): Effect's OTLP batch
 * exporter posting OTLP/JSON to `url` every `exportIntervalMs`, fed by a span sink of
 * ./tracing.ts; flushes what is queued when its scope closes (at most 3 s).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { FetchHttpClient } from "effect/http"
import { OtlpExporter, OtlpResource, OtlpSerialization } from "effect/observability"
import { hostname } from "node:os"
import { toOtlpSpan } from "./otlp.ts"
import { addSpanSink } from "./tracing.ts"
import { otlpShutdownTimeoutMs } from "./timeouts.ts"

/** Where and how to export: the process's service and member, the traces URL and its headers. */
export interface OtlpExporterOptions {
  readonly service: string
  readonly member: string
  readonly url: string
  readonly headers: Record<string, string>
  readonly exportIntervalMs: number
}

/** The exporter layer; see the module comment. */
export const otlpExporterLayer = ({ service, member, url, headers, exportIntervalMs }: OtlpExporterOptions): Layer.Layer<never> =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const serialization = yield* OtlpSerialization.OtlpSerialization
      const resource = OtlpResource.make({
        serviceName: `natcd-${service}`,
        attributes: { "service.instance.id": `${member}/${process.pid}`, "natcd.member": member, "host.name": hostname() }
      })
      const scope = { name: "natcd", version: "0.1.0" }
      const exporter = yield* OtlpExporter.make({
        label: "natcd-traces",
        url,
        headers,
        exportInterval: exportIntervalMs,
        maxBatchSize: 512,
        body: (spans) => [serialization.traces({ resourceSpans: [{ resource, scopeSpans: [{ scope, spans }] }] } as never), Effect.void],
        shutdownTimeout: otlpShutdownTimeoutMs
      })
      const remove = addSpanSink((span) => exporter.push(toOtlpSpan(span)))
      yield* Effect.addFinalizer(() => Effect.sync(remove))
      yield* Effect.logInfo("exporting traces over OTLP").pipe(Effect.annotateLogs({ url }))
    })
  ).pipe(
    Layer.provide(Layer.mergeAll(FetchHttpClient.layer, OtlpSerialization.layerJson, OtlpExporter.layerFlusher))
  )
