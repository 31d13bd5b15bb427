/**
 * `natcd run`: a local natcd cluster in the foreground.
 *
 * Starts its own nats-server (unless --nats/NATS_URL names one) and, per member, the wal, raft,
 * mvcc, lease and gateway services as separate OS processes, each with `--member=<name>` on its
 * command line. A service that exits is restarted with backoff (100 ms doubling to 5 s, reset
 * after 30 s of uptime); one stopped by SIGTERM (a planned restart) after 100 ms.
 * SIGINT/SIGTERM stops every service (SIGTERM, SIGKILL after 5 s) and then nats-server. Data
 * lives under --data-dir (DATA_DIR, default ./data): nats-server's config and one folder per
 * member. --watch-replicas (NATCD_WATCH_REPLICAS) watch service replicas run
 * for the whole cluster, on the command line as `services/watch/main.ts --replica=w<i>`.
 *
 *   node services/supervisor/main.ts [--members=1] [--data-dir=./data] [--nats=URL]
 *     [--nats-port=4222] [--port-offset=0] [--cluster=natcd] [--watch-replicas=1] [--gateways=1]
 *
 * --gateways (NATCD_GATEWAYS, 1 to 6) gateway processes per member share the member's client
 * address: each binds it with --socket-reuse-port and the kernel spreads new connections over
 * them; they are named gateway/<member> and gateway/<member>/g<k> for k = 2, 3, ...
 *
 * --port-offset shifts every port (nats-server's and the members' client ports) so that several
 * clusters can run side by side, e.g. next to a real etcd on 2379.
 *
 * Metrics and health: every process gets its own `--metrics-port` ({@link metricsPort}:
 * --metrics-base (12000) + port offset + 10 x member index + service slot, watch replica j at
 * + 90 + j, a member's gateway k >= 2 at slot 3 + k), serving /metrics, /livez, /readyz and /health. The supervisor polls each
 * process's /livez every 5 s, counting failures once it answered (or had 60 s to start), and
 * kills (then restarts) one that failed --liveness-failures times in a row (NATCD_LIVENESS_FAILURES, default 4,
 * i.e. 20 s, about Kubernetes' default of 3 x 10 s; 0: never): a hung process is restarted like
 * a crashed one.
 *
 * --nats-cluster=N (NATS_CLUSTER) starts N nats-servers joined by routes into one NATS cluster
 * instead of one server: server j listens on nats-port + offset + 10000 x j (routes on 6222 +
 * offset + 10000 x j), member i's services connect to server i mod N only (so a member
 * drops out with its server and rejoins when it returns), and watch replicas to all of them.
 * With --nats naming N URLs of a NATS cluster started elsewhere and --nats-cluster=N, no server
 * is started and member i's services use URL i mod N alike.
 *
 * Security (./nats-security.ts): at first start the supervisor creates one NKey per process
 * identity under `<data-dir>/creds/` and writes nats-server's config with each identity's
 * permissions (derived from shared/endpoints.ts); every service gets `--nats-creds=<its file>`
 * and anonymous connections are refused. The users and permissions are in
 * `<data-dir>/nats-authorization.conf`, which the config it writes includes (and which the
 * operator of an external NATS, --nats, includes in that server's config).
 * --nats-tls (NATS_TLS=1) adds TLS to NATS with a CA and certificates it creates under
 * `creds/tls/`. The process runs with umask 077: every file it creates is 0600, every
 * directory 0700 (as etcd's private modes).
 *
 * Files: this one holds the command line, the ports and command lines of the processes, and
 * starts them in order; ./supervise.ts runs and restarts one process; ./nats-servers.ts writes
 * nats-server's config; ./credentials.ts creates the keys and certificates.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Command, InvalidArgumentError, Option } from "commander"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { loggingLayer, positiveInt } from "../runtime/process.ts"
import { setUpCredentials } from "./credentials.ts"
import { NatsServers } from "./nats-servers.ts"
import { privateDir } from "./nats-security.ts"
import { supervise, waitForPort } from "./supervise.ts"
import type { ProcessSpec } from "./supervise.ts"

// Data, keys and configs are private to the user running natcd (etcd: 0700 dirs, 0600 files).
process.umask(0o077)

/** The most gateways per member: a member's block of metrics ports has 10 slots, 5 taken. */
const maxGateways = 6
const gatewayCount = (v: string): number => {
  const n = positiveInt(v)
  if (n > maxGateways) throw new InvalidArgumentError(`at most ${maxGateways} gateways per member`)
  return n
}

const command = new Command("natcd run")
  .description("run a local natcd cluster in the foreground")
  .addOption(new Option("--members <n>", "number of members").env("MEMBERS").argParser(positiveInt).default(1))
  .addOption(new Option("--data-dir <dir>", "data root").env("DATA_DIR").default("./data"))
  .addOption(new Option("--nats <urls>", "use this NATS server instead of starting one").env("NATS_URL"))
  .addOption(new Option("--nats-port <port>", "port of the nats-server started here").argParser(positiveInt).default(4222))
  .addOption(new Option("--port-offset <n>", "added to every port").argParser((v) => Number.parseInt(v, 10)).default(0))
  .addOption(new Option("--cluster <name>", "cluster name").env("NATCD_CLUSTER").default("natcd"))
  .addOption(new Option("--watch-replicas <n>", "watch service replicas for the cluster (services/watch)").env("NATCD_WATCH_REPLICAS").argParser(positiveInt).default(1))
  .addOption(
    new Option("--gateways <n>", `gateway processes per member, sharing its client address (1 to ${maxGateways})`)
      .env("NATCD_GATEWAYS").argParser(gatewayCount).default(1)
  )
  .addOption(new Option("--log-level <level>", "log level").env("NATCD_LOG_LEVEL").choices(["Debug", "Info", "Warn", "Error"]).default("Info"))
  .addOption(new Option("--metrics-base <port>", "first /metrics and /health port (before the port offset)").env("NATCD_METRICS_BASE").argParser(positiveInt).default(12000))
  .addOption(new Option("--liveness-failures <n>", "kill a process after this many failed /livez polls in a row (0: never)").env("NATCD_LIVENESS_FAILURES").argParser((v) => Number.parseInt(v, 10)).default(4))
  .addOption(new Option("--nats-cluster <n>", "nats-servers to start, joined in one NATS cluster").env("NATS_CLUSTER").argParser(positiveInt).default(1))
  .addOption(
    new Option("--service-node-flags <flags>", "Node and V8 flags of every service process, space-separated")
      .env("NATCD_SERVICE_NODE_FLAGS").default("--max-semi-space-size=4")
  )
  .addOption(
    new Option("--compile-cache <dir>", "Node's module compile cache of the service processes (default <data-dir>/compile-cache; NODE_DISABLE_COMPILE_CACHE=1: none)")
      .env("NODE_COMPILE_CACHE")
  )
  .addOption(
    new Option("--nats-monitor-port <port>", "serve nats-server's monitoring endpoints (/varz, /connz) on 127.0.0.1 at this port (before the port offset; server j of a NATS cluster adds 10000 × j); off unless set")
      .env("NATCD_NATS_MONITOR_PORT").argParser(positiveInt)
  )
  .addOption(
    new Option("--client-tls [mode]", "https client URLs: 'ca' (bare flag, env TLS=1): a CA and certificates created under <data-dir>/creds/client-tls, client certificates required; 'auto' (env TLS=auto): each gateway's self-signed certificate, etcd's --auto-tls")
      .choices(["ca", "auto"])
  )
  .addOption(new Option("--nats-tls", "TLS to NATS with a CA and certificates created under <data-dir>/creds/tls (env NATS_TLS=1)"))
  .parse(process.argv)

const opts = command.opts<{
  members: number
  watchReplicas: number
  gateways: number
  dataDir: string
  nats?: string
  natsPort: number
  portOffset: number
  cluster: string
  logLevel: "Debug" | "Info" | "Warn" | "Error"
  metricsBase: number
  natsCluster: number
  livenessFailures: number
  serviceNodeFlags: string
  compileCache?: string
  natsMonitorPort?: number
  natsTls?: boolean
  clientTls?: boolean | "ca" | "auto"
}>()
const dataDir = resolve(opts.dataDir)
const servicesDir = fileURLToPath(new URL("../", import.meta.url))
/**
 * Node's module compile cache (`--compile-cache`, `NODE_COMPILE_CACHE`; default
 * `<data-dir>/compile-cache`, private like the rest of the data dir), handed to every service
 * process through its environment. A service started with a warm cache loads neither Node's
 * TypeScript stripper nor re-parses its modules: measured on an idle 3-member cluster, 23 MiB
 * less resident memory per process and 0.4–0.5 s less CPU per start (README, "What sets
 * natcd's figures"; the directory: README, "Data on disk").
 * Each service flushes the cache once it has loaded (../runtime/process.ts launch), so a
 * process killed with SIGKILL still leaves it warm for the next.
 */
process.env.NODE_COMPILE_CACHE = opts.compileCache ?? join(dataDir, "compile-cache")

/** Client ports of members 1..3 as etcd's local cluster (Procfile) uses; later members continue. */
const clientPort = (memberIndex: number): number =>
  opts.portOffset + (memberIndex === 0 ? 2379 : memberIndex === 1 ? 22379 : memberIndex === 2 ? 32379 : 2379 + 10000 * memberIndex)

/** Slots of a member's services in its block of metrics ports. */
const serviceSlots = { gateway: 0, raft: 1, wal: 2, mvcc: 3, lease: 4 } as const

/**
 * The /metrics and /health port of member `memberIndex`'s `service` (0-based index), of its
 * gateway `k` (1-based) when `service` is "gateway", or of watch replica `k` (1-based) when
 * `service` is "watch".
 */
const metricsPort = (memberIndex: number, service: keyof typeof serviceSlots | "watch", k = 1): number =>
  opts.metricsBase + opts.portOffset +
  (service === "watch" ? 90 + k : 10 * memberIndex + (service === "gateway" && k > 1 ? 3 + k : serviceSlots[service]))

const watchReplicaNames = Array.from({ length: opts.watchReplicas }, (_, i) => `w${i + 1}`)
const memberNames = Array.from({ length: opts.members }, (_, i) => `m${i + 1}`)
// NATS_TLS=1 (make run NATS_TLS=1) as --nats-tls; commander would take NATS_TLS=0 as "on".
const natsTlsOn = opts.natsTls === true || ["1", "true", "yes"].includes((process.env.NATS_TLS ?? "").toLowerCase())
// TLS=1 or TLS=auto (make run TLS=...) as --client-tls; TLS=0 or unset: plain text.
const tlsEnv = (process.env.TLS ?? "").toLowerCase()
const clientTlsMode: "ca" | "auto" | undefined = opts.clientTls === "auto" || (opts.clientTls === undefined && tlsEnv === "auto")
  ? "auto"
  : opts.clientTls === true || opts.clientTls === "ca" || ["1", "true", "yes", "ca"].includes(tlsEnv)
  ? "ca"
  : undefined
privateDir(dataDir)
const { credsDir, natsTls, clientTlsArgs, natsSecurityArgs } = setUpCredentials({
  dataDir, cluster: opts.cluster, members: memberNames, watchReplicas: watchReplicaNames, natsTls: natsTlsOn, clientTlsMode
})
const supervision = { livenessFailures: opts.livenessFailures, logLevel: opts.logLevel }

const node = process.execPath
/**
 * Node and V8 flags of every service process (`--service-node-flags`, `NATCD_SERVICE_NODE_FLAGS`;
 * default `--max-semi-space-size=4`). A 4 MiB young-generation semi-space (V8 sizes it from the
 * machine's memory, up to 32 MiB on large hosts) keeps each process's resident memory ~100 MiB
 * lower under load at no measurable CPU cost (natcd bench: 16 MiB took 0 to 5 % less CPU per
 * put, within the noise, for about 200 MiB more per member).
 */
const serviceNodeFlags: ReadonlyArray<string> = opts.serviceNodeFlags.split(" ").filter((f) => f !== "")
/** Member `member`'s process of `service` (its gateway `k` for the gateway, 1-based). */
const serviceSpec = (service: keyof typeof serviceSlots, memberIndex: number, member: string, natsUrl: string, extra: ReadonlyArray<string> = [], k = 1): ProcessSpec => ({
  name: `${service}/${member}${k > 1 ? `/g${k}` : ""}`,
  command: node,
  healthPort: metricsPort(memberIndex, service, k),
  args: [
    ...serviceNodeFlags,
    join(servicesDir, service, "main.ts"),
    `--metrics-port=${metricsPort(memberIndex, service, k)}`,
    `--member=${member}`,
    `--cluster=${opts.cluster}`,
    `--nats=${natsUrl}`,
    `--data-dir=${dataDir}`,
    `--log-level=${opts.logLevel}`,
    ...natsSecurityArgs({ role: service, name: member }),
    ...extra
  ]
})

const program = Effect.gen(function*() {
  let natsUrl = opts.nats === "" ? undefined : opts.nats
  /** The NATS URL member i's services use (its own server of a NATS cluster). */
  let memberNatsUrl = (_i: number) => natsUrl!
  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  if (natsUrl === undefined) {
    const servers = opts.natsCluster
    const nats = new NatsServers({
      servers, natsPort: opts.natsPort, portOffset: opts.portOffset, cluster: opts.cluster, dataDir, credsDir, logLevel: opts.logLevel,
      natsMonitorPort: opts.natsMonitorPort, natsTls
    })
    for (let j = 0; j < servers; j++) fibers.push(yield* Effect.forkChild(supervise(nats.writeConfig(j), supervision)))
    for (let j = 0; j < servers; j++) yield* waitForPort(nats.clientPort(j))
    natsUrl = nats.urls()
    if (servers > 1) memberNatsUrl = (i) => nats.memberUrl(i)
  } else {
    // An external nats-server: its operator includes <data-dir>/nats-authorization.conf.
    if (opts.natsCluster > 1) {
      const urls = natsUrl.split(",")
      if (urls.length === opts.natsCluster) memberNatsUrl = (i) => urls[i % urls.length]!
    }
  }
  const members = memberNames
  for (const [i, member] of members.entries()) {
    privateDir(join(dataDir, member))
    const clientUrl = `${clientTlsMode === undefined ? "http" : "https"}://127.0.0.1:${clientPort(i)}`
    const url = memberNatsUrl(i)
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("wal", i, member, url), supervision)))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("mvcc", i, member, url), supervision)))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("lease", i, member, url), supervision)))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("raft", i, member, url, [`--initial-cluster=${members.join(",")}`, `--advertise-client-urls=${clientUrl}`]), supervision)))
    const gatewayArgs = [`--listen-client-urls=${clientUrl}`, ...clientTlsArgs, ...(opts.gateways > 1 ? ["--socket-reuse-port"] : [])]
    for (let k = 1; k <= opts.gateways; k++) fibers.push(yield* Effect.forkChild(supervise(serviceSpec("gateway", i, member, url, gatewayArgs, k), supervision)))
  }
  // Watch replicas belong to no member: no --member on their command line, named w1, w2, ...
  for (let i = 1; i <= opts.watchReplicas; i++) {
    fibers.push(yield* Effect.forkChild(supervise({
      name: `watch/w${i}`,
      command: node,
      healthPort: metricsPort(0, "watch", i),
      args: [...serviceNodeFlags, join(servicesDir, "watch", "main.ts"), `--replica=w${i}`, `--metrics-port=${metricsPort(0, "watch", i)}`, `--data-dir=${dataDir}`, `--cluster=${opts.cluster}`, `--nats=${natsUrl}`, `--log-level=${opts.logLevel}`, ...natsSecurityArgs({ role: "watch", name: `w${i}` })]
    }, supervision)))
  }
  yield* Effect.logInfo("natcd running").pipe(
    Effect.annotateLogs({ members: members.join(","), gatewaysPerMember: opts.gateways, dataDir, nats: natsUrl, clientUrls: members.map((_, i) => `${clientTlsMode === undefined ? "http" : "https"}://127.0.0.1:${clientPort(i)}`).join(",") })
  )
  // Stop services before nats-server: interrupt in reverse start order.
  yield* Effect.addFinalizer(() => Effect.forEach([...fibers].reverse(), (f) => Fiber.interrupt(f), { discard: true }))
  return yield* Effect.never
})

NodeRuntime.runMain(
  Effect.scoped(program).pipe(
    Effect.annotateLogs({ service: "supervisor" }),
    Effect.provide(loggingLayer(opts.logLevel))
  ) as Effect.Effect<never>
)
