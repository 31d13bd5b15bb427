/**
 * Prometheus metrics of one natcd process (prom-client), served on `/metrics` by ./health.ts.
 *
 * Names follow etcd's where the concept is the same (etcd server/etcdserver/metrics.go,
 * server/storage/wal/metrics.go, server/storage/backend/metrics.go, server/storage/mvcc/
 * metrics.go, go-grpc-prometheus), so etcd dashboards and alerts work; natcd's own metrics are
 * prefixed `natcd_`. Every series carries the constant labels `natcd_service` and
 * `natcd_member` (the member, or the watch replica), since one member is several processes.
 *
 * Metrics are created on first use by name ({@link counter}, {@link gauge}, {@link histogram}),
 * so a module can declare what it needs where it needs it without a central list, and a second
 * declaration of the same name returns the first.
 *
 * Common to every process (see ./rpc.ts): `natcd_nats_request_duration_seconds{endpoint}`
 * (client side, per NATS endpoint), `natcd_nats_handle_duration_seconds{endpoint}` (server
 * side, receipt to reply), `natcd_nats_malformed_frames_total{endpoint}`,
 * `natcd_nats_rpc_retries_total`, `natcd_nats_rpc_timeouts_total`, `natcd_nats_connected`, and
 * prom-client's process metrics (CPU, memory, event loop lag, GC).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client"
import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration } from "prom-client"

/** The process's registry. */
export const registry = new Registry()

let defaultsCollected = false

/**
 * Labels every series with the process's service and member and starts prom-client's default
 * process metrics. Called once by `launch` (./process.ts); idempotent.
 */
export const initMetrics = (service: string, member: string): void => {
  registry.setDefaultLabels({ natcd_service: service, natcd_member: member })
  if (!defaultsCollected) {
    defaultsCollected = true
    collectDefaultMetrics({ register: registry })
  }
}

const made = new Map<string, Counter<string> | Gauge<string> | Histogram<string>>()

/** The metric `name` from `made`, or `create()` registered and remembered under that name. */
const once = <M>(name: string, create: () => M): M => {
  const old = made.get(name)
  if (old !== undefined) return old as unknown as M
  const m = create()
  made.set(name, m as unknown as Counter<string>)
  return m
}

/** The counter `name` (created with `config` on first use). */
export const counter = <L extends string = string>(config: Omit<CounterConfiguration<L>, "registers">): Counter<L> =>
  once(config.name, () => new Counter<L>({ ...config, registers: [registry] }))

/** The gauge `name` (created with `config` on first use; `collect` may set it at scrape time). */
export const gauge = <L extends string = string>(config: Omit<GaugeConfiguration<L>, "registers">): Gauge<L> =>
  once(config.name, () => new Gauge<L>({ ...config, registers: [registry] }))

/** The histogram `name` (created with `config` on first use). */
export const histogram = <L extends string = string>(config: Omit<HistogramConfiguration<L>, "registers">): Histogram<L> =>
  once(config.name, () => new Histogram<L>({ ...config, registers: [registry] }))

/**
 * A counter whose value is read from `read()` at scrape time (for totals another module keeps
 * as plain numbers, e.g. a service's `counters` object). `read` returns the running total.
 */
export const counterFrom = (name: string, help: string, read: () => number): Counter<string> =>
  counter({
    name,
    help,
    collect(this: Counter<string>) {
      this.reset()
      const v = read()
      if (v > 0) this.inc(v)
    }
  })

/** A gauge whose value is read from `read()` at scrape time. */
export const gaugeFrom = (name: string, help: string, read: () => number): Gauge<string> =>
  gauge({
    name,
    help,
    collect(this: Gauge<string>) {
      this.set(read())
    }
  })

/** etcd's WAL fsync and backend commit buckets: 1 ms doubling, 14 buckets (to ~8 s). */
export const diskBuckets = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i)

/** Latency buckets for NATS requests and gRPC calls, in seconds (0.25 ms to ~8 s). */
export const latencyBuckets = Array.from({ length: 16 }, (_, i) => 0.00025 * 2 ** i)

/**
 * The endpoint label of a NATS subject: `<service>.<endpoint>` with cluster, member and
 * per-process instance tokens dropped, e.g. `natcd.c.m1.raft.propose` → `raft.propose`,
 * `natcd.c.m2.gateway.result.ab12` → `gateway.result`, `natcd.c.watch.w1.create` →
 * `watch.create`. Cached per subject (bounded).
 */
export const endpointLabel = (subject: string): string => {
  let label = labels.get(subject)
  if (label !== undefined) return label
  const t = subject.split(".")
  label = t[2] === "watch" ? `watch.${t[t.length - 1]}` : t.length >= 5 ? `${t[3]}.${t[4]}` : subject
  if (labels.size < 4096) labels.set(subject, label)
  return label
}
const labels = new Map<string, string>()

/** Client-side NATS request latency (one observation per RpcClient.call that got a reply). */
export const natsRequestDuration = () =>
  histogram<"endpoint">({
    name: "natcd_nats_request_duration_seconds",
    help: "Time from sending a NATS request to its reply, per endpoint (retries included).",
    labelNames: ["endpoint"],
    buckets: latencyBuckets
  })

/** Server-side NATS handling latency (receipt to reply). */
export const natsHandleDuration = () =>
  histogram<"endpoint">({
    name: "natcd_nats_handle_duration_seconds",
    help: "Time from receiving a NATS request to replying, per served endpoint.",
    labelNames: ["endpoint"],
    buckets: latencyBuckets
  })

/** Malformed frames received, per served endpoint. */
export const natsMalformed = () =>
  counter<"endpoint">({
    name: "natcd_nats_malformed_frames_total",
    help: "Frames that did not decode, per served endpoint.",
    labelNames: ["endpoint"]
  })
