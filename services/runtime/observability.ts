/**
 * What every natcd process gets for tracing, metrics and health, as one scoped layer that
 * `launch` (./process.ts) provides next to the NATS connection:
 *
 * - the local trace store (./trace-store.ts) under `<data-dir>/traces/`, and the OTLP exporter
 *   when the environment names a collector (./otlp.ts);
 * - tail sampling: the process listens on `natcd.<cluster>.trace.keep` and exports what it holds
 *   of a trace the gateway found slow (./tracing.ts);
 * - the HTTP listener with /metrics, /livez, /readyz and /health (./health.ts) when
 *   `--metrics-port` is set;
 * - the NATS health endpoint `natcd.<cluster>.<member>.<service>.health` (the same checks, for
 *   the member's gateway, which answers `etcdctl endpoint health` with them);
 * - the liveness check every process shares (its NATS connection is open) and the NATS client
 *   metrics of ./metrics.ts.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { join } from "node:path"
import { health as healthEndpoint, traceKeep } from "../../shared/endpoints.ts"
import { addLivenessCheck, runChecks, startHealthServer } from "./health.ts"
import { counterFrom, gaugeFrom, initMetrics } from "./metrics.ts"
import { otlpLayer } from "./otlp.ts"
import { Nats } from "./process.ts"
import type { CommonFlags } from "./process.ts"
import { serveEndpoint } from "./rpc.ts"
import { TraceFileStore } from "./trace-store.ts"
import { addSpanSink, configureTracing, keepTrace } from "./tracing.ts"

/**
 * The observability layer of process `service` of member `member` (a watch replica passes its
 * replica name). Needs the NATS connection.
 */
export const observabilityLayer = (service: string, member: string, flags: CommonFlags): Layer.Layer<never, never, Nats> =>
  Layer.mergeAll(
    otlpLayer(service, member),
    Layer.effectDiscard(
      Effect.gen(function*() {
        configureTracing({ service, member, sampleRatio: flags.traceSampleRatio, slowMs: flags.traceSlowMs })
        initMetrics(service, member)
        const { nc, rpc, instance } = yield* Nats

        // The local trace store.
        const store = new TraceFileStore(join(flags.dataDir, "traces"), `${service}-${member}`)
        const removeSink = addSpanSink(store.add)
        const onExit = () => store.flushSync()
        process.once("exit", onExit)
        // drain never rejects (the store counts write errors): nothing to fail with.
        yield* Effect.addFinalizer(() =>
          Effect.promise(async () => {
            removeSink()
            await store.drain()
            process.off("exit", onExit)
          })
        )

        // Tail sampling: keep notices from the gateways.
        const keep = serveEndpoint(nc, traceKeep, { cluster: flags.cluster }, (req) => keepTrace(req.body.traceId))

        // Health over NATS, and the liveness check of the connection itself.
        addLivenessCheck("nats", () => (nc.isClosed() ? "NATS connection closed" : undefined))
        const health = serveEndpoint(nc, healthEndpoint, { cluster: flags.cluster, member, role: service }, (req) => {
          runChecks(req.body.ready).then((results) => {
            const failed = results.filter((r) => r.failure !== undefined)
            req.reply({ healthy: failed.length === 0, reasons: failed.map((r) => `${service}/${r.name}: ${r.failure}`), instance })
          })
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => {
          keep.stop()
          health.stop()
        }))

        // NATS client metrics.
        counterFrom("natcd_nats_rpc_retries_total", "NATS requests re-sent after no reply came in time.", () => rpc.counters.retries)
        counterFrom("natcd_nats_rpc_timeouts_total", "NATS requests that got no reply before their deadline.", () => rpc.counters.timeouts)
        counterFrom("natcd_nats_rpc_sent_total", "NATS request frames sent (retries included).", () => rpc.counters.sent)
        let connected = true
        gaugeFrom("natcd_nats_connected", "1 when the process's NATS connection is up, else 0.", () => (nc.isClosed() ? 0 : connected ? 1 : 0))
        void (async () => {
          for await (const s of nc.status()) {
            if (s.type === "disconnect") connected = false
            else if (s.type === "reconnect") connected = true
          }
        })().catch(() => undefined)
        counterFrom("natcd_trace_spans_stored_total", "Spans written to the local trace store by this process.", () => store.counters.spans)

        // The HTTP listener.
        if (flags.metricsPort > 0) {
          const server = yield* Effect.tryPromise(() => startHealthServer(flags.metricsHost, flags.metricsPort)).pipe(
            Effect.tapError((e) => Effect.logError("cannot listen for /metrics and /health").pipe(Effect.annotateLogs({ port: flags.metricsPort, error: String(e) }))),
            Effect.orDie
          )
          // Resolves whatever close reports: nothing to fail with.
          yield* Effect.addFinalizer(() => Effect.promise(() => new Promise<void>((r) => server.close(() => r()))))
          server.closeIdleConnections?.()
          yield* Effect.logInfo("serving /metrics and /health").pipe(Effect.annotateLogs({ address: `${flags.metricsHost}:${flags.metricsPort}` }))
        }
      })
    )
  )
