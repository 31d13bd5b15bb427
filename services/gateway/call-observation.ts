/**
 * The observability of one gRPC call on the client port: its root span (the request's trace,
 * sampled or not by ../runtime/tracing.ts), the trace id sent back as initial metadata, and
 * go-grpc-prometheus's server metrics (grpc_server_started_total, grpc_server_handled_total,
 * grpc_server_handling_seconds) with that library's names and labels, as etcd exports them.
 *
 * What it is not: the call's handling; ./call-handlers.ts wraps each handler in an observation.
 */
import * as grpc from "@grpc/grpc-js"
import { toGrpcError } from "./errors.ts"
import { counter, histogram, latencyBuckets } from "../runtime/metrics.ts"
import { endSpan, requestContext, spanTraceparent, startRootSpan } from "../runtime/tracing.ts"
import type { ActiveSpan } from "../runtime/tracing.ts"

/** The response metadata key carrying a request's trace id (initial metadata, sent first). */
export const traceIdMetadataKey = "natcd-trace-id"

/** Fully qualified gRPC service names, as go-grpc-prometheus labels them. */
const qualifiedService: Record<string, string> = { Lock: "v3lockpb.Lock", Election: "v3electionpb.Election" }
const grpcServiceName = (name: string): string => qualifiedService[name] ?? `etcdserverpb.${name}`

const grpcCodeNames = new Map<number, string>(
  Object.entries(grpc.status).filter(([, v]) => typeof v === "number").map(([k, v]) => [v as number, k])
)

/** go-grpc-prometheus's server metrics, with its names and labels. */
const grpcStarted = () =>
  counter<"grpc_type" | "grpc_service" | "grpc_method">({
    name: "grpc_server_started_total",
    help: "Total number of RPCs started on the server.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"]
  })
const grpcHandled = () =>
  counter<"grpc_type" | "grpc_service" | "grpc_method" | "grpc_code">({
    name: "grpc_server_handled_total",
    help: "Total number of RPCs completed on the server, regardless of success or failure.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"]
  })
const grpcHandling = () =>
  histogram<"grpc_type" | "grpc_service" | "grpc_method">({
    name: "grpc_server_handling_seconds",
    help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"],
    buckets: latencyBuckets
  })

/**
 * The go-grpc-prometheus children of one (type, service, method): looked up once, not per call
 * (a label lookup hashes the label values).
 */
export interface CallMetrics {
  readonly started: ReturnType<ReturnType<typeof grpcStarted>["labels"]>
  readonly handling: ReturnType<ReturnType<typeof grpcHandling>["labels"]>
  readonly handled: Map<string, ReturnType<ReturnType<typeof grpcHandled>["labels"]>>
  readonly grpcService: string
}
const callMetricsCache = new Map<string, CallMetrics>()
export const callMetrics = (type: string, service: string, method: string): CallMetrics => {
  const key = `${type}/${service}/${method}`
  let m = callMetricsCache.get(key)
  if (m === undefined) {
    const grpcService = grpcServiceName(service)
    m = { started: grpcStarted().labels(type, grpcService, method), handling: grpcHandling().labels(type, grpcService, method), handled: new Map(), grpcService }
    callMetricsCache.set(key, m)
  }
  return m
}
export const countHandled = (m: CallMetrics, type: string, method: string, code: string): void => {
  let child = m.handled.get(code)
  if (child === undefined) {
    child = grpcHandled().labels(type, m.grpcService, method, code)
    m.handled.set(code, child)
  }
  child.inc()
}

/**
 * One gRPC call's observability: its root span (the request's trace, sampled or not by
 * ../runtime/tracing.ts), the trace id sent to the client as initial metadata
 * ({@link traceIdMetadataKey}), and the go-grpc-prometheus counters. `run` runs the handler
 * inside the request context, so every frame it sends carries the trace.
 */
export interface CallObservation {
  readonly span: ActiveSpan | undefined
  run<A>(f: () => A): A
  finish(error?: unknown): void
}

export const observeCall = (
  call: { sendMetadata(md: grpc.Metadata): void },
  service: string,
  method: string,
  type: "unary" | "server_stream"
): CallObservation => {
  const metrics = callMetrics(type, service, method)
  metrics.started.inc()
  const startedAt = performance.now()
  const span = startRootSpan(`${service}.${method}`, { "rpc.service": metrics.grpcService, "rpc.method": method })
  if (span !== undefined) {
    const md = new grpc.Metadata()
    md.set(traceIdMetadataKey, span.traceId)
    try {
      call.sendMetadata(md)
    } catch {
      // The call ended already.
    }
  }
  const context = span === undefined ? undefined : { span, traceparent: spanTraceparent(span) }
  let done = false
  return {
    span,
    run: (f) => (context === undefined ? f() : requestContext.run(context, f)),
    finish: (error) => {
      if (done) return
      done = true
      const code = error === undefined ? "OK" : grpcCodeNames.get(toGrpcError(error).code) ?? "Unknown"
      countHandled(metrics, type, method, code)
      metrics.handling.observe((performance.now() - startedAt) / 1000)
      endSpan(span, { "rpc.grpc.status_code": code }, error === undefined ? undefined : toGrpcError(error).details)
    }
  }
}
