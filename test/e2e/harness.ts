/**
 * Process-level test harness: starts natcd through its real supervisor (nats-server and every
 * service as separate OS processes, in their own process group so a test can kill -9 all of
 * them at once), starts the reference etcd, and runs etcdctl against either.
 */
import { execFile, execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createConnection } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { connect } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import { RaftStatus } from "../../shared/schema.ts"
import { credsFileName, inboxPrefix, raftStatus as raftStatusEndpoint, subjectOf } from "../../shared/endpoints.ts"
import type { Identity } from "../../shared/endpoints.ts"
import type { NatsConnection } from "@nats-io/transport-node"
import { natsSecurityOptions } from "../../services/runtime/nats-auth.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))

/** A fresh temporary directory, removed by the returned cleanup. */
export const tempDir = (prefix: string): { dir: string; remove: () => void } => {
  const dir = mkdtempSync(join(tmpdir(), `natcd-${prefix}-`))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`, or rejects after `timeoutMs`. */
export const waitForPort = async (port: number, timeoutMs = 20_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: "127.0.0.1", port }, () => {
        s.end()
        resolve(true)
      })
      s.on("error", () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`)
    await sleep(100)
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** The result of one etcdctl run. */
export interface CtlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs etcdctl (v3 API) against `endpoint` with `args`; never rejects. */
export const etcdctl = (endpoint: string, args: ReadonlyArray<string>, input?: string): Promise<CtlResult> =>
  new Promise((resolve) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoint}`, "--command-timeout=10s", ...args],
      // Large outputs (a prefix get of thousands of keys as JSON) exceed execFile's 1 MiB default.
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 30_000, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1
        resolve({ code, stdout: String(stdout), stderr: String(stderr) })
      }
    )
    if (input !== undefined) child.stdin?.end(input)
  })

/** A running natcd cluster started by the supervisor. */
export interface Natcd {
  readonly endpoints: ReadonlyArray<string>
  readonly dataDir: string
  readonly portOffset: number
  readonly supervisor: ChildProcess
  /** SIGTERM to the supervisor; resolves when it exited. */
  stop(): Promise<void>
  /** SIGKILL to every process of the cluster (supervisor, services, nats-server). */
  kill9(): Promise<void>
  /** Output the processes wrote (JSON log lines), for failure messages. */
  output(): string
}

/** The environment without NATS_URL, so the supervisor starts its own nats-server. */
const withoutNatsUrl = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  delete env.NATS_URL
  return env
}

/** Ports of a natcd cluster started with `portOffset`. */
export const natcdPorts = (portOffset: number, members = 1) => ({
  nats: 4222 + portOffset,
  clients: Array.from({ length: members }, (_, i) => portOffset + (i === 0 ? 2379 : i === 1 ? 22379 : i === 2 ? 32379 : 2379 + 10000 * i))
})

/** Slots of a member's services in its block of metrics ports (services/supervisor/main.ts). */
const metricsSlots = { gateway: 0, raft: 1, wal: 2, mvcc: 3, lease: 4 } as const

/**
 * The /metrics and /health port the supervisor gives member `memberIndex`'s `service` (0-based),
 * its gateway `k` (1-based) for "gateway", or watch replica `k` (1-based) for "watch", in a
 * cluster started with `portOffset` (default --metrics-base 12000).
 */
export const metricsPort = (portOffset: number, memberIndex: number, service: keyof typeof metricsSlots | "watch", k = 1): number =>
  12000 + portOffset + (service === "watch" ? 90 + k : 10 * memberIndex + (service === "gateway" && k > 1 ? 3 + k : metricsSlots[service]))

/**
 * The sum of every sample of `name` whose labels include each of `labels` (`key="value"`), in a
 * Prometheus text exposition `text`; 0 when there is none.
 */
export const metricSum = (text: string, name: string, labels: ReadonlyArray<string> = []): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const space = line.lastIndexOf(" ")
    const head = line.slice(0, space)
    if (labels.every((l) => head.includes(l))) sum += Number(line.slice(space + 1))
  }
  return sum
}

/** GET http://127.0.0.1:`port``path`: status and body (status 0 when nothing answered). */
export const httpGet = async (port: number, path: string): Promise<{ status: number; body: string }> => {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) })
    return { status: r.status, body: await r.text() }
  } catch {
    return { status: 0, body: "" }
  }
}

/**
 * Starts `node services/supervisor/main.ts` with the given data dir and port offset, and waits
 * until every member answers a linearizable `etcdctl get`.
 */
export const startNatcd = async (options: {
  dataDir: string
  portOffset: number
  members?: number
  /** Added to the supervisor's environment; a variable set to `undefined` is left out. */
  env?: NodeJS.ProcessEnv
  extraArgs?: ReadonlyArray<string>
  /** The client URLs' scheme (https with `--client-tls`); endpoints are then URLs. */
  scheme?: "http" | "https"
  /** etcdctl flags the readiness probe needs (e.g. --cacert, --cert, --key). */
  ctlArgs?: ReadonlyArray<string>
}): Promise<Natcd> => {
  const members = options.members ?? 1
  const ports = natcdPorts(options.portOffset, members)
  let output = ""
  const supervisor = spawn(process.execPath, [
    join(root, "services/supervisor/main.ts"),
    `--members=${members}`,
    `--data-dir=${options.dataDir}`,
    `--port-offset=${options.portOffset}`,
    "--log-level=Warn",
    ...(options.extraArgs ?? [])
  ], { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...withoutNatsUrl(), ...options.env } })
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-200_000)
  }
  supervisor.stdout!.on("data", keep)
  supervisor.stderr!.on("data", keep)
  const exited = new Promise<void>((r) => supervisor.once("exit", () => r()))
  const endpoints = ports.clients.map((p) => `${options.scheme === "https" ? "https://" : ""}127.0.0.1:${p}`)
  const natcd: Natcd = {
    endpoints,
    dataDir: options.dataDir,
    portOffset: options.portOffset,
    supervisor,
    stop: async () => {
      if (supervisor.exitCode === null && supervisor.signalCode === null) supervisor.kill("SIGTERM")
      await Promise.race([exited, sleep(15_000)])
      try {
        process.kill(-supervisor.pid!, "SIGKILL")
      } catch {
        // The group is gone already.
      }
    },
    kill9: async () => {
      try {
        process.kill(-supervisor.pid!, "SIGKILL")
      } catch {
        // The group is gone already.
      }
      await exited
      await sleep(200)
    },
    output: () => output
  }
  const deadline = Date.now() + 60_000
  for (const endpoint of endpoints) {
    for (;;) {
      const r = await etcdctl(endpoint, [...(options.ctlArgs ?? []), "get", "natcd-startup-probe"])
      // With auth enabled an anonymous read is refused by the mvcc service once it served the
      // ReadIndex: the whole read path answered.
      if (r.code === 0 || r.stderr.includes("Error: etcdserver: user name is empty")) break
      if (Date.now() > deadline) {
        await natcd.stop()
        throw new Error(`natcd did not become ready at ${endpoint}: ${r.stderr}\n${output.slice(-5000)}`)
      }
      await sleep(200)
    }
  }
  return natcd
}

/** A running reference etcd (single member). */
export interface Etcd {
  readonly endpoint: string
  stop(): Promise<void>
}

/** Starts the reference etcd on loopback with a fresh data dir under `dataDir`; `extraArgs` are further etcd flags. */
export const startEtcd = async (options: {
  dataDir: string
  clientPort: number
  peerPort: number
  extraArgs?: ReadonlyArray<string>
  /** The client URL's scheme (https with etcd's TLS flags in `extraArgs`); the endpoint is then a URL. */
  scheme?: "http" | "https"
  /** etcdctl flags the readiness probe needs (e.g. --cacert, --cert, --key). */
  ctlArgs?: ReadonlyArray<string>
}): Promise<Etcd> => {
  const client = `${options.scheme ?? "http"}://127.0.0.1:${options.clientPort}`
  const peer = `http://127.0.0.1:${options.peerPort}`
  const child = spawn("etcd", [
    "--name=etcd-ref",
    `--data-dir=${options.dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=etcd-ref=${peer}`,
    "--log-level=error",
    "--logger=zap",
    ...(options.extraArgs ?? [])
  ], { stdio: "ignore" })
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  const endpoint = `${options.scheme === "https" ? "https://" : ""}127.0.0.1:${options.clientPort}`
  const deadline = Date.now() + 30_000
  for (;;) {
    const r = await etcdctl(endpoint, [...(options.ctlArgs ?? []), "get", "probe"])
    if (r.code === 0) break
    if (Date.now() > deadline) throw new Error(`etcd did not start: ${r.stderr}`)
    await sleep(200)
  }
  return {
    endpoint,
    stop: async () => {
      child.kill("SIGTERM")
      await Promise.race([exited, sleep(10_000)])
      child.kill("SIGKILL")
    }
  }
}

/** Pids of member `member`'s service processes in the cluster started by `natcd`. */
export const memberPids = (natcd: Natcd, member: string): number[] => {
  const out = execFileSync("ps", ["-eo", "pid=,pgid=,args="], { encoding: "utf8" })
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length > 2 && Number(cols[1]) === natcd.supervisor.pid && cols.slice(2).includes(`--member=${member}`))
    .map((cols) => Number(cols[0]))
}

/** Sends `signal` to member `member`'s processes whose command line includes `service` (all of them by default). */
export const signalMember = (natcd: Natcd, member: string, signal: NodeJS.Signals, service = "/services/"): number[] => {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" })
  const pids = new Set(memberPids(natcd, member))
  const hit: number[] = []
  for (const line of out.split("\n")) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line)
    if (m === null || !pids.has(Number(m[1])) || !m[2]!.includes(service)) continue
    process.kill(Number(m[1]), signal)
    hit.push(Number(m[1]))
  }
  return hit
}

/** One member's Maintenance.Status as etcdctl prints it (-w json). */
export interface EndpointStatus {
  readonly endpoint: string
  readonly memberId: string
  readonly leader: string
  readonly raftTerm: number
  readonly raftIndex: number
  readonly raftAppliedIndex: number
}

/** Status of `endpoint`, or undefined when it does not answer within `timeoutMs`. */
export const endpointStatus = async (endpoint: string, timeoutMs = 2000): Promise<EndpointStatus | undefined> => {
  const r = await etcdctl(endpoint, ["endpoint", "status", "-w", "json", `--command-timeout=${timeoutMs}ms`])
  if (r.code !== 0) return undefined
  const [s] = JSON.parse(r.stdout) as Array<{ Status: { header: { member_id: number | string }; leader: number | string; raftTerm: number; raftIndex: number; raftAppliedIndex: number } }>
  if (s === undefined) return undefined
  // JSON numbers beyond 2^53 lose precision; compare ids as printed.
  return {
    endpoint,
    memberId: String(s.Status.header.member_id),
    leader: String(s.Status.leader),
    raftTerm: s.Status.raftTerm,
    raftIndex: s.Status.raftIndex,
    raftAppliedIndex: s.Status.raftAppliedIndex
  }
}

/** The index (into natcd.endpoints) of the member that leads, as its own status says. */
export const findLeader = async (natcd: Natcd, timeoutMs = 15_000, exclude: ReadonlyArray<number> = []): Promise<number> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    for (const [i, endpoint] of natcd.endpoints.entries()) {
      if (exclude.includes(i)) continue
      const s = await endpointStatus(endpoint, 500)
      if (s !== undefined && s.leader === s.memberId && s.leader !== "0") return i
    }
    if (Date.now() > deadline) throw new Error("no leader found")
    await sleep(50)
  }
}

/**
 * A NATS connection to `natcd`'s nats-server as `identity`, with the NKey the supervisor created
 * for it under `<data-dir>/creds/` and that identity's inbox prefix (its permission allows no
 * other). Anonymous when `identity` is undefined (natcd's nats-server refuses it).
 */
export const natsConnectAs = (natcd: Pick<Natcd, "dataDir" | "portOffset">, identity: Identity | undefined, options: { readonly reconnect?: boolean } = {}): Promise<NatsConnection> =>
  connect({
    servers: `127.0.0.1:${natcdPorts(natcd.portOffset).nats}`,
    reconnect: options.reconnect ?? false,
    ...(identity === undefined
      ? {}
      : { ...natsSecurityOptions({ natsCreds: join(natcd.dataDir, "creds", credsFileName(identity)) }), inboxPrefix: inboxPrefix("natcd", identity) })
  })

/**
 * Raft status of `member` read straight from its raft service over NATS (counters etcd's API
 * does not expose), as the operator's `cli` identity.
 */
export const raftStatus = async (natcd: Pick<Natcd, "dataDir" | "portOffset">, member: string) => {
  const nc = await natsConnectAs(natcd, { role: "cli", name: "" })
  try {
    const msg = await nc.request(
      subjectOf(raftStatusEndpoint, { cluster: "natcd", member }),
      encodeFrame({ kind: "raft.status", version: 1, traceparent: "", id: 1, body: {} }),
      { timeout: 5000 }
    )
    const f = decodeFrame(msg.data)
    if (isFrameDecodeError(f)) throw new Error(f.reason)
    return Schema.decodeUnknownSync(RaftStatus)(f.body)
  } finally {
    await nc.close()
  }
}

/** Replaces the ids that legitimately differ between two clusters in etcdctl output. */
export const normaliseIds = (text: string): string =>
  text
    .replace(/"cluster_id":\d+/g, '"cluster_id":"<id>"')
    .replace(/"member_id":\d+/g, '"member_id":"<id>"')
    .replace(/memberID:\d+/g, "memberID:<id>")

/**
 * etcdctl's stderr as a user reads it: the client library's JSON warning lines carry a timestamp
 * and a random client id, so only their message and gRPC error are kept; other lines pass
 * through `line` (identity by default).
 */
export const normaliseStderr = (text: string, line: (l: string) => string = (l) => l): string =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      if (!l.startsWith("{")) return line(l)
      const parsed = JSON.parse(l) as { msg?: string; error?: string }
      return `${parsed.msg ?? ""}: ${parsed.error ?? ""}`
    })
    .join("\n")

/**
 * A one-member natcd and a one-member etcd started side by side for the tests of a differential
 * test file (vitest beforeAll, 90 s), stopped and their data removed afterwards (afterAll).
 * `name` prefixes the temporary data directories; read `natcd` and `etcd` inside the tests.
 * `natcdEnv` is added to natcd's environment.
 */
export const natcdBesideEtcd = (
  name: string,
  ports: { readonly portOffset: number; readonly clientPort: number; readonly peerPort: number },
  natcdEnv?: Record<string, string>
): { natcd: Natcd; etcd: Etcd } => {
  const natcdDir = tempDir(`${name}-natcd`)
  const etcdDir = tempDir(`${name}-etcd`)
  const pair = {} as { natcd: Natcd; etcd: Etcd }
  beforeAll(async () => {
    ;[pair.natcd, pair.etcd] = await Promise.all([
      startNatcd({ dataDir: natcdDir.dir, portOffset: ports.portOffset, ...(natcdEnv === undefined ? {} : { env: natcdEnv }) }),
      startEtcd({ dataDir: etcdDir.dir, clientPort: ports.clientPort, peerPort: ports.peerPort })
    ])
  }, 90_000)
  afterAll(async () => {
    await Promise.all([pair.natcd?.stop(), pair.etcd?.stop()])
    natcdDir.remove()
    etcdDir.remove()
  })
  return pair
}
