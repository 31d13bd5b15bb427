/**
 * The clusters a benchmark run measures: natcd started through its supervisor (every service a
 * process, in its own process group so its processes can be found and measured), and the real
 * etcd with the same member count, started on its own ports with its own data directories.
 * Both listen on loopback only.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { connect } from "./client.ts"
import { cmdline, groupPids } from "./proc.ts"

/** A running cluster under test. */
export interface Cluster {
  readonly name: "natcd" | "etcd"
  readonly endpoints: ReadonlyArray<string>
  /** Every server process of the cluster now (for CPU accounting). */
  pids(): number[]
  /** Server processes per member (for RSS per member). */
  memberPids(): ReadonlyArray<{ readonly member: string; readonly pids: ReadonlyArray<number> }>
  /**
   * NATS messages so far, from nats-server's /varz (natcd only): `published` counts messages
   * the services sent, `delivered` the copies nats-server handed to subscribers.
   */
  busMessages?(): Promise<{ readonly published: number; readonly delivered: number }>
  stop(): Promise<void>
}

/** nats-server's monitoring port of the benchmark's natcd (before the port offset). */
const natsMonitorPort = 8222

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const waitReady = async (endpoints: ReadonlyArray<string>, what: string) => {
  const deadline = Date.now() + 60_000
  for (const endpoint of endpoints) {
    const c = connect(endpoint)
    try {
      for (;;) {
        try {
          await c.put(Buffer.from("bench-ready"), Buffer.from("1"))
          break
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`${what} at ${endpoint} not ready: ${(e as Error).message}`)
          await sleep(200)
        }
      }
    } finally {
      c.close()
    }
  }
}

const stopChild = async (child: ChildProcess, group: boolean) => {
  const kill = (signal: NodeJS.Signals) => {
    try {
      if (group) process.kill(-child.pid!, signal)
      else child.kill(signal)
    } catch {
      // Gone already.
    }
  }
  if (child.exitCode !== null || child.signalCode !== null) return kill("SIGKILL")
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  kill("SIGTERM")
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 15_000)))])
  clearTimeout(timer)
  kill("SIGKILL")
}

/**
 * Starts natcd with `members` members; client ports from 2379 + `portOffset` (etcd's local
 * ports); `watchReplicas` watch replicas (default 1).
 */
export const startNatcd = async (members: number, portOffset: number, options: { readonly watchReplicas?: number } = {}): Promise<Cluster> => {
  const dataDir = mkdtempSync(join(tmpdir(), "natcd-bench-"))
  const supervisor = fileURLToPath(new URL("../services/supervisor/main.ts", import.meta.url))
  const env = { ...process.env }
  delete env.NATS_URL
  // Trace as in production (1% of requests, plus slow ones) unless the caller says otherwise:
  // the development default traces every request, which etcd does not pay for.
  env.NATCD_TRACE_SAMPLE_RATIO ??= "0.01"
  const child = spawn(process.execPath, [supervisor, `--members=${members}`, `--data-dir=${dataDir}`, `--port-offset=${portOffset}`, "--log-level=Warn", `--nats-monitor-port=${natsMonitorPort}`, `--watch-replicas=${options.watchReplicas ?? 1}`], {
    detached: true,
    stdio: ["ignore", "ignore", "inherit"],
    env
  })
  const ports = Array.from({ length: members }, (_, i) => portOffset + (i === 0 ? 2379 : i === 1 ? 22379 : i === 2 ? 32379 : 2379 + 10000 * i))
  const endpoints = ports.map((p) => `127.0.0.1:${p}`)
  const cluster: Cluster = {
    name: "natcd",
    endpoints,
    pids: () => groupPids(child.pid!),
    memberPids: () =>
      Array.from({ length: members }, (_, i) => ({
        member: `m${i + 1}`,
        pids: groupPids(child.pid!).filter((pid) => cmdline(pid).includes(`--member=m${i + 1} `))
      })),
    busMessages: async () => {
      const varz = await (await fetch(`http://127.0.0.1:${natsMonitorPort + portOffset}/varz`)).json() as { in_msgs: number; out_msgs: number }
      return { published: varz.in_msgs, delivered: varz.out_msgs }
    },
    stop: async () => {
      await stopChild(child, true)
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
  try {
    await waitReady(endpoints, "natcd")
  } catch (e) {
    await cluster.stop()
    throw e
  }
  return cluster
}

/**
 * Starts the real etcd with `members` members on client ports 19379 + 100·i (peers 19380 + 100·i),
 * clear of natcd's ports at the benchmark's port offset (clients 12379/32379/42379, nats 14222,
 * metrics 22000–22099). Fails when a member exits during start-up (e.g. a port in use), so a
 * run never measures some other server in etcd's place.
 */
export const startEtcd = async (members: number): Promise<Cluster> => {
  const dataDir = mkdtempSync(join(tmpdir(), "etcd-bench-"))
  const names = Array.from({ length: members }, (_, i) => `e${i + 1}`)
  const client = (i: number) => `http://127.0.0.1:${19379 + 100 * i}`
  const peer = (i: number) => `http://127.0.0.1:${19380 + 100 * i}`
  const initialCluster = names.map((n, i) => `${n}=${peer(i)}`).join(",")
  const children = names.map((name, i) =>
    spawn("etcd", [
      `--name=${name}`,
      `--data-dir=${join(dataDir, name)}`,
      `--listen-client-urls=${client(i)}`,
      `--advertise-client-urls=${client(i)}`,
      `--listen-peer-urls=${peer(i)}`,
      `--initial-advertise-peer-urls=${peer(i)}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      "--initial-cluster-token=etcd-bench",
      "--log-level=error",
      "--logger=zap"
    ], { stdio: "ignore" })
  )
  const endpoints = names.map((_, i) => `127.0.0.1:${19379 + 100 * i}`)
  const cluster: Cluster = {
    name: "etcd",
    endpoints,
    pids: () => children.map((c) => c.pid!).filter((p) => p !== undefined),
    memberPids: () => names.map((member, i) => ({ member, pids: [children[i]!.pid!] })),
    stop: async () => {
      await Promise.all(children.map((c) => stopChild(c, false)))
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
  try {
    await waitReady(endpoints, "etcd")
    const exited = children.findIndex((c) => c.exitCode !== null || c.signalCode !== null)
    if (exited >= 0) throw new Error(`etcd member ${names[exited]} exited during start-up (code ${children[exited]!.exitCode}, ${children[exited]!.signalCode})`)
  } catch (e) {
    await cluster.stop()
    throw e
  }
  return cluster
}
