/**
 * `natcd bench` / `make bench`: etcd-style benchmark of natcd side by side with the real etcd,
 * both measured in the same run with the same client code.
 *
 *   node bench/main.ts [workload...] [--members=3] [--clients=64] [--conns=8] [--total=N]
 *     [--duration=seconds] [--serializable] [--watchers=1000] [--watch-streams=10]
 *     [--watch-puts=1000] [--key-space=100000] [--value-size=256] [--endpoints=host:port,...]
 *     [--no-etcd] [--out=bench/results]
 *
 * Without workloads, it runs the default matrix (the targets of the benchmark issue). Without
 * --endpoints it starts natcd (through its supervisor) and, when `etcd` is on PATH, a real etcd
 * cluster with the same member count on other ports; workloads run interleaved: natcd, then
 * etcd, per workload. Per run it prints ops/s, latency p50/p90/p99/max, errors, and server CPU
 * milliseconds per operation summed over every server process (natcd: every service and
 * nats-server; etcd: its members), then a table of natcd/etcd ratios with the targets, and peak
 * RSS per member. One JSON line per run goes to stdout and everything to
 * bench/results/<time>.json with machine info and the git commit.
 *
 * `watch-scale` (natcd only) runs the watch workload on a fresh natcd with 1, 2 and 3 watch
 * replicas (--watch-scale-replicas), measuring its second round (the first, on another prefix,
 * warms the cluster up), and prints, per replica count, events/s, p99 put→event
 * latency and CPU µs per delivered event by tier: gateways, the watch tier (and each replica),
 * everything else; and the watch tier's share of the fan-out CPU (watch ÷ (watch + gateways)).
 */
import { Command, Option } from "commander"
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { setTimeout as sleep } from "node:timers/promises"
import { watchLoadEveryMs } from "../shared/endpoints.ts"
import { benchAuth, ConnectionPool } from "./client.ts"
import type { Cluster } from "./clusters.ts"
import { startEtcd, startNatcd } from "./clusters.ts"
import { cpuMs, memory, processLabel, restMs, waitQuiet, watchReplicaOf } from "./proc.ts"
import type { Measurement, WorkloadOptions } from "./workloads.ts"
import { leaseWorkload, preload, putWorkload, rangePrefixWorkload, rangeWorkload, txnPutWorkload, watchWorkload } from "./workloads.ts"

const root = fileURLToPath(new URL("../", import.meta.url))

const cli = new Command("natcd bench")
  .argument("[workloads...]", "put, put-1, range, range-serializable, range-prefix, txn-put, watch, lease, put-auth, range-auth, watch-scale (default: all)")
  .addOption(new Option("--members <n>", "members per cluster").default("3"))
  .addOption(new Option("--clients <n>", "concurrent clients (per workload default when absent)"))
  .addOption(new Option("--conns <n>", "gRPC connections").default("8"))
  .addOption(new Option("--total <n>", "operations per run (per workload default when absent)"))
  .addOption(new Option("--serializable", "range workload: serializable reads"))
  .addOption(new Option("--watchers <n>", "watch: watchers").default("1000"))
  .addOption(new Option("--watch-streams <n>", "watch: streams the watchers are spread over").default("10"))
  .addOption(new Option("--watch-puts <n>", "watch: puts").default("1000"))
  .addOption(new Option("--watch-scale-replicas <list>", "watch-scale: the watch replica counts to run").default("1,2,3"))
  .addOption(new Option("--key-space <n>", "put: key space").default("100000"))
  .addOption(new Option("--value-size <bytes>", "value size").default("256"))
  .addOption(new Option("--endpoints <list>", "measure this running cluster instead of starting natcd"))
  .addOption(new Option("--no-etcd", "do not start the reference etcd"))
  .addOption(new Option("--out <dir>", "results directory").default(join(root, "bench", "results")))
  .parse(process.argv)

const opts = cli.opts<{
  members: string; clients?: string; conns: string; total?: string; serializable?: boolean; watchers: string; watchStreams: string
  watchPuts: string; watchScaleReplicas: string; keySpace: string; valueSize: string; endpoints?: string; etcd: boolean; out: string
}>()

/** A run of the matrix: name, workload, per-workload defaults. */
interface Plan {
  readonly name: string
  readonly clients: number
  readonly total: number
  readonly target: { readonly throughput?: number; readonly cpu?: number; readonly latency?: { readonly p: "p50" | "p99"; readonly ratio: number } }
}

// Targets as natcd ÷ etcd in the same run (the performance issue's table): throughput at least,
// CPU per operation and the latency percentile at most.
const plans: ReadonlyArray<Plan> = [
  { name: "put", clients: 64, total: 20_000, target: { throughput: 0.6, cpu: 2.5, latency: { p: "p99", ratio: 2 } } },
  { name: "put-1", clients: 1, total: 2_000, target: { throughput: 0.5, cpu: 3, latency: { p: "p50", ratio: 2 } } },
  { name: "range", clients: 64, total: 20_000, target: { throughput: 0.9, cpu: 1.5 } },
  { name: "range-serializable", clients: 64, total: 20_000, target: { throughput: 0.9, cpu: 1.5 } },
  { name: "range-prefix", clients: 16, total: 5_000, target: {} },
  { name: "txn-put", clients: 64, total: 10_000, target: { throughput: 0.6, cpu: 2.5 } },
  { name: "watch", clients: 4, total: 0, target: { throughput: 1.0, cpu: 3, latency: { p: "p99", ratio: 1.5 } } },
  { name: "lease", clients: 16, total: 5_000, target: { throughput: 0.6, cpu: 2.5 } },
  // With authentication on (simple tokens, a non-root user with a read-write role on every key),
  // on both systems: the cost of resolving the token and checking permissions.
  { name: "put-auth", clients: 64, total: 20_000, target: {} },
  { name: "range-auth", clients: 64, total: 20_000, target: {} },
  // The watch workload with 1, 2 and 3 watch replicas (natcd only): how fan-out CPU splits
  // between the gateways and the watch tier.
  { name: "watch-scale", clients: 4, total: 0, target: {} }
]

const chosen = cli.args.length === 0 ? plans : plans.filter((p) => cli.args.includes(p.name))

/** One measured run. */
interface Result {
  readonly workload: string
  readonly system: "natcd" | "etcd"
  readonly clients: number
  readonly ops: number
  readonly errors: number
  readonly firstError?: string
  readonly opsPerSec: number
  readonly latencyMs: { p50: number; p90: number; p99: number; max: number }
  readonly serverCpuMsPerOp: number
  /** The same, per kind of server process (natcd: per service and nats-server, summed over members). */
  readonly serverCpuMsPerOpBy: Record<string, number>
  /** natcd: NATS messages per operation, published by the services and delivered to them (setup and idle traffic included). */
  readonly busMessagesPerOp?: { published: number; delivered: number }
  /** watch-scale: the natcd cluster's watch replicas. */
  readonly watchReplicas?: number
  /** natcd: CPU ms per operation of each watch replica, by replica name. */
  readonly serverCpuMsPerOpByWatchReplica?: Record<string, number>
}

const percentile = (sorted: Float64Array, p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!)
const round = (n: number, digits = 3) => Number(n.toFixed(digits))

const progress = (text: string) => process.stderr.write(`\r\x1b[K${text}`)

/** The watch workload's options from the command line, with `clients` putting clients. */
const watchOptions = (clients: number) => ({
  watchers: Number(opts.watchers),
  streams: Number(opts.watchStreams),
  puts: Number(opts.watchPuts),
  putClients: clients,
  valueBytes: Number(opts.valueSize)
})

/**
 * Waits until the processes of `pids()` are quiet (bench/proc.ts `waitQuiet`), saying so on
 * stderr when they did not get quiet within the limit.
 */
const settle = async (pids: () => ReadonlyArray<number>, before: string): Promise<void> => {
  const { quiet, waitedMs } = await waitQuiet(pids)
  if (!quiet) process.stderr.write(`the servers were not quiet after ${waitedMs} ms; ${before} anyway\n`)
}

/**
 * Runs `plan` on `cluster` and measures it. The measured window starts once every process of
 * `quietBefore()` (default: the cluster's own) is quiet, so that no cluster's after-work from
 * the previous run (natcd's idle memory release, Go's garbage collector) falls inside it.
 */
const runOne = async (cluster: Cluster, plan: Plan, watchReplicas?: number, quietBefore: () => ReadonlyArray<number> = () => cluster.pids()): Promise<Result> => {
  const clients = Number(opts.clients ?? plan.clients)
  const total = Number(opts.total ?? plan.total)
  const o: WorkloadOptions = { clients, total, keySpace: Number(opts.keySpace), keyBytes: 8, valueBytes: Number(opts.valueSize) }
  // The *-auth workloads run with authentication on, turned off again afterwards.
  const withAuth = plan.name.endsWith("-auth")
  const token = withAuth ? await benchAuth(cluster.endpoints[0]!, true) : undefined
  const pool = new ConnectionPool(cluster.endpoints, Math.min(Number(opts.conns), Math.max(1, clients)), token)
  const say = (n: number) => progress(`${plan.name} on ${cluster.name}: ${n} done`)
  try {
    // Setup outside the measured window.
    if (plan.name.startsWith("range") && plan.name !== "range-prefix") await preload(pool, o, 10_000)
    if (plan.name === "range-prefix") await preload(pool, o, 100, "/prefix/")
    // watch-scale measures a fresh cluster: one unmeasured round of the same workload first,
    // so that the measured round sees code that V8 has already optimised, as a long-running
    // cluster does, rather than the first thousand puts' interpreter and JIT compiler work.
    // Then two load reports' time, so that the replicas' reports (every second) no longer count
    // the warm-up's closed streams when the gateways place the measured round's.
    if (plan.name === "watch-scale") {
      await watchWorkload(pool, watchOptions(clients), `/watch-warm-up-${Date.now()}/`)
      await sleep(2 * watchLoadEveryMs + 500)
    }
    await settle(quietBefore, `measuring ${plan.name} on ${cluster.name}`)
    const pids = cluster.pids()
    const cpuBefore = new Map(pids.map((pid) => [pid, cpuMs(pid)]))
    const busBefore = await cluster.busMessages?.()
    let m: Measurement
    switch (plan.name) {
      case "put":
      case "put-1":
      case "put-auth":
        m = await putWorkload(pool, o, say)
        break
      case "range":
      case "range-auth":
        m = await rangeWorkload(pool, o, opts.serializable === true, 10_000, say)
        break
      case "range-serializable":
        m = await rangeWorkload(pool, o, true, 10_000, say)
        break
      case "range-prefix":
        m = await rangePrefixWorkload(pool, o, "/prefix/", say)
        break
      case "txn-put":
        m = await txnPutWorkload(pool, o, say)
        break
      case "watch":
      case "watch-scale":
        m = await watchWorkload(pool, watchOptions(clients), `/watch-${Date.now()}/`, (n) => progress(`watch on ${cluster.name}: ${n} events`))
        break
      default:
        m = await leaseWorkload(pool, o, say)
    }
    // Processes started during the run (a restarted service) count from zero.
    const cpuBy: Record<string, number> = {}
    const cpuByReplica: Record<string, number> = {}
    let cpu = 0
    for (const pid of new Set([...pids, ...cluster.pids()])) {
      const used = cpuMs(pid) - (cpuBefore.get(pid) ?? 0)
      const label = processLabel(pid)
      cpuBy[label] = (cpuBy[label] ?? 0) + used
      const replica = watchReplicaOf(pid)
      if (replica !== undefined) cpuByReplica[replica] = (cpuByReplica[replica] ?? 0) + used
      cpu += used
    }
    const busAfter = await cluster.busMessages?.()
    const sorted = Float64Array.from(m.latenciesMs).sort()
    progress("")
    return {
      workload: plan.name,
      system: cluster.name,
      clients,
      ops: m.ops,
      errors: m.errors,
      ...(m.firstError === undefined ? {} : { firstError: m.firstError }),
      opsPerSec: round(m.ops / (m.elapsedMs / 1000), 1),
      latencyMs: { p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), p99: round(percentile(sorted, 99)), max: round(sorted[sorted.length - 1] ?? 0) },
      serverCpuMsPerOp: round(cpu / Math.max(1, m.ops), 4),
      serverCpuMsPerOpBy: Object.fromEntries(Object.entries(cpuBy).sort(([, a], [, b]) => b - a).map(([k, v]) => [k, round(v / Math.max(1, m.ops), 4)])),
      ...(watchReplicas === undefined ? {} : { watchReplicas }),
      ...(Object.keys(cpuByReplica).length === 0 ? {} : {
        serverCpuMsPerOpByWatchReplica: Object.fromEntries(Object.entries(cpuByReplica).sort().map(([k, v]) => [k, round(v / Math.max(1, m.ops), 4)]))
      }),
      ...(busBefore === undefined || busAfter === undefined ? {} : {
        busMessagesPerOp: {
          published: round((busAfter.published - busBefore.published) / Math.max(1, m.ops), 4),
          delivered: round((busAfter.delivered - busBefore.delivered) / Math.max(1, m.ops), 4)
        }
      })
    }
  } finally {
    pool.close()
    if (withAuth) await benchAuth(cluster.endpoints[0]!, false)
  }
}

/**
 * Memory of each member of `cluster`, summed over its processes (bench/proc.ts `memory`): RSS,
 * peak RSS and PSS, and RSS and PSS by process.
 */
const rssByMember = (cluster: Cluster) =>
  cluster.memberPids().map(({ member, pids }) => {
    const byPid = pids.map((p) => ({ label: processLabel(p), ...memory(p) }))
    return {
      member,
      rssBytes: byPid.reduce((s, m) => s + m.rssBytes, 0),
      peakRssBytes: byPid.reduce((s, m) => s + m.peakRssBytes, 0),
      pssBytes: byPid.reduce((s, m) => s + m.pssBytes, 0),
      rssBytesBy: Object.fromEntries(byPid.map((m) => [m.label, m.rssBytes])),
      pssBytesBy: Object.fromEntries(byPid.map((m) => [m.label, m.pssBytes]))
    }
  })

const main = async () => {
  const members = Number(opts.members)
  const matrix = chosen.filter((p) => p.name !== "watch-scale")
  const scale = chosen.find((p) => p.name === "watch-scale")
  const results: Result[] = []
  let memory: Array<{ system: string; members: ReturnType<typeof rssByMember> }> = []
  let memoryAfterRuns: typeof memory = []
  const clusters: Cluster[] = []
  try {
    if (matrix.length > 0) {
      progress("starting natcd…")
      clusters.push(opts.endpoints !== undefined
        ? { name: "natcd", endpoints: opts.endpoints.split(","), pids: () => [], memberPids: () => [], stop: async () => {} }
        : await startNatcd(members, 10_000))
      let haveEtcd = false
      if (opts.etcd) {
        try {
          execFileSync("etcd", ["--version"], { stdio: "ignore" })
          haveEtcd = true
        } catch {
          process.stderr.write("etcd is not on PATH: measuring natcd alone\n")
        }
      }
      if (haveEtcd) {
        progress("starting etcd…")
        clusters.push(await startEtcd(members))
      }
      progress("")
      for (const plan of matrix) {
        for (const cluster of clusters) {
          const r = await runOne(cluster, plan, undefined, () => clusters.flatMap((c) => c.pids()))
          results.push(r)
          console.log(JSON.stringify(r))
        }
      }
      // Memory right after the last run, and at rest: after the servers were left idle long
      // enough for natcd's idle memory release.
      memoryAfterRuns = clusters.map((c) => ({ system: c.name, members: rssByMember(c) }))
      // Nothing to read for a cluster measured through --endpoints (no pids): no wait.
      if (clusters.some((c) => c.pids().length > 0)) {
        progress(`leaving the servers idle for ${restMs / 1000} s…`)
        await sleep(restMs)
        progress("")
      }
      memory = clusters.map((c) => ({ system: c.name, members: rssByMember(c) }))
    }
  } finally {
    for (const c of clusters) await c.stop()
  }
  // watch-scale: a fresh natcd per replica count, after the matrix's clusters stopped.
  if (scale !== undefined && opts.endpoints !== undefined) process.stderr.write("watch-scale starts its own clusters: skipped with --endpoints\n")
  if (scale !== undefined && opts.endpoints === undefined) {
    for (const replicas of opts.watchScaleReplicas.split(",").map(Number)) {
      progress(`starting natcd with ${replicas} watch replicas…`)
      const cluster = await startNatcd(members, 10_000, { watchReplicas: replicas })
      try {
        const r = await runOne(cluster, scale, replicas)
        results.push(r)
        console.log(JSON.stringify(r))
      } finally {
        await cluster.stop()
      }
    }
  }
  if (matrix.length > 0) printTable(results, [["right after the last run", memoryAfterRuns], [`at rest (after ${restMs / 1000} idle seconds)`, memory]])
  printWatchScale(results.filter((r) => r.workload === "watch-scale"))
  const commit = (() => {
    try {
      return execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" }).trim()
    } catch {
      return "unknown"
    }
  })()
  mkdirSync(opts.out, { recursive: true })
  const file = join(opts.out, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`)
  writeFileSync(file, JSON.stringify({
    commit,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem(), node: process.version },
    options: opts,
    results,
    memoryAfterRuns,
    memory
  }, null, 2))
  console.log(`results saved to ${file}`)
}

/**
 * The watch-scale table: per watch replica count, events/s, p99 put→event latency, CPU µs per
 * delivered event of the gateways, the watch tier (and each replica) and the rest, and the
 * watch tier's share of the fan-out CPU (watch ÷ (watch + gateways)).
 */
const printWatchScale = (runs: ReadonlyArray<Result>) => {
  if (runs.length === 0) return
  const us = (ms: number | undefined) => ((ms ?? 0) * 1000).toFixed(2)
  const rows: string[][] = [["watch replicas", "events/s", "p99 ms", "gateway µs/event", "watch µs/event", "per replica", "rest µs/event", "watch share of fan-out", "errors"]]
  for (const r of runs) {
    const gateway = r.serverCpuMsPerOpBy.gateway ?? 0
    const watch = r.serverCpuMsPerOpBy.watch ?? 0
    const rest = r.serverCpuMsPerOp - gateway - watch
    rows.push([
      String(r.watchReplicas ?? "-"),
      String(r.opsPerSec),
      String(r.latencyMs.p99),
      us(gateway),
      us(watch),
      Object.entries(r.serverCpuMsPerOpByWatchReplica ?? {}).map(([k, v]) => `${k} ${us(v)}`).join(", "),
      us(rest),
      `${((100 * watch) / Math.max(1e-9, watch + gateway)).toFixed(0)} %`,
      String(r.errors)
    ])
  }
  console.log("watch-scale (natcd only):")
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "))
}

/** Target of a member's memory after the benchmark, natcd ÷ etcd (the performance issue's). */
const memoryTargetRatio = 3

type MemoryByCluster = ReadonlyArray<{ system: string; members: ReturnType<typeof rssByMember> }>

/**
 * The ratio table, then each reading of memory in `readings` (label, clusters): per member RSS
 * and PSS, the first member's processes, and the largest member's natcd/etcd ratio in both
 * against {@link memoryTargetRatio}.
 */
const printTable = (results: ReadonlyArray<Result>, readings: ReadonlyArray<readonly [string, MemoryByCluster]>) => {
  const rows: string[][] = [["workload", "natcd ops/s", "etcd ops/s", "ratio", "target", "cpu ms/op n/e", "ratio", "target", "latency n/e (ms)", "ratio", "target", "errors n/e", "natcd msgs/op"]]
  for (const plan of chosen.filter((p) => p.name !== "watch-scale")) {
    const n = results.find((r) => r.workload === plan.name && r.system === "natcd")
    const e = results.find((r) => r.workload === plan.name && r.system === "etcd")
    if (n === undefined) continue
    const ratio = (a: number, b: number | undefined) => (b === undefined || b === 0 ? "-" : (a / b).toFixed(2))
    const p = plan.target.latency?.p ?? "p99"
    const mark = (value: string, target: number | undefined, higherIsBetter: boolean) =>
      target === undefined || value === "-" ? "" : (higherIsBetter ? Number(value) >= target : Number(value) <= target) ? `${higherIsBetter ? "≥" : "≤"}${target} ok` : `${higherIsBetter ? "≥" : "≤"}${target} MISS`
    const tput = ratio(n.opsPerSec, e?.opsPerSec)
    const cpu = ratio(n.serverCpuMsPerOp, e?.serverCpuMsPerOp)
    const lat = ratio(n.latencyMs[p], e?.latencyMs[p])
    rows.push([
      plan.name,
      String(n.opsPerSec),
      String(e?.opsPerSec ?? "-"),
      tput,
      mark(tput, plan.target.throughput, true),
      `${n.serverCpuMsPerOp}/${e?.serverCpuMsPerOp ?? "-"}`,
      cpu,
      mark(cpu, plan.target.cpu, false),
      `${p} ${n.latencyMs[p]}/${e?.latencyMs[p] ?? "-"}`,
      lat,
      mark(lat, plan.target.latency?.ratio, false),
      `${n.errors}/${e?.errors ?? "-"}`,
      n.busMessagesPerOp === undefined ? "-" : `${n.busMessagesPerOp.published} pub, ${n.busMessagesPerOp.delivered} dlv`
    ])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "))
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0)
  for (const [label, memoryByCluster] of readings) {
    if (memoryByCluster.length === 0) continue
    console.log(`memory ${label}:`)
    for (const { system, members } of memoryByCluster) {
      console.log(`${system} RSS per member: ${members.map((m) => `${m.member} ${mib(m.rssBytes)} MiB (peak ${mib(m.peakRssBytes)} MiB)`).join(", ")}`)
      console.log(`${system} PSS per member: ${members.map((m) => `${m.member} ${mib(m.pssBytes)} MiB`).join(", ")}`)
      const first = members[0]
      if (first !== undefined && Object.keys(first.rssBytesBy).length > 1) {
        console.log(`${system} ${first.member} RSS by process: ${Object.entries(first.rssBytesBy).map(([k, v]) => `${k} ${mib(v)}`).join(", ")} MiB`)
        console.log(`${system} ${first.member} PSS by process: ${Object.entries(first.pssBytesBy).map(([k, v]) => `${k} ${mib(v)}`).join(", ")} MiB`)
      }
    }
    // Issue target: a member's processes together within 3× an etcd member, in both measures.
    const largest = (system: string, key: "rssBytes" | "pssBytes") =>
      Math.max(0, ...(memoryByCluster.find((c) => c.system === system)?.members ?? []).map((m) => m[key]))
    for (const key of ["rssBytes", "pssBytes"] as const) {
      const n = largest("natcd", key)
      const e = largest("etcd", key)
      if (n > 0 && e > 0) {
        const r = n / e
        console.log(`memory ${label} (${key === "rssBytes" ? "RSS" : "PSS"}), largest member natcd/etcd: ${mib(n)}/${mib(e)} MiB = ${r.toFixed(2)} ${r <= memoryTargetRatio ? "≤" : ">"}${memoryTargetRatio} ${r <= memoryTargetRatio ? "ok" : "MISS"}`)
      }
    }
  }
}

await main()
