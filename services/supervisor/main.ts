/**
 * `natcd run`: a local natcd cluster in the foreground.
 *
 * Starts its own nats-server (unless --nats/NATS_URL names one) and, per member, the wal, raft,
 * mvcc, lease and gateway services as separate OS processes, each with `--member=<name>` on its
 * command line. A service that exits is restarted with backoff (100 ms doubling to 5 s, reset
 * after 30 s of uptime). SIGINT/SIGTERM stops every service (SIGTERM, SIGKILL after 5 s) and
 * then nats-server. Data lives under --data-dir (DATA_DIR, default ./data): nats-server's config
 * and one folder per member. --watch-replicas (NATCD_WATCH_REPLICAS) watch service replicas run
 * for the whole cluster, on the command line as `services/watch/main.ts --replica=w<i>`.
 *
 *   node services/supervisor/main.ts [--members=1] [--data-dir=./data] [--nats=URL]
 *     [--nats-port=4222] [--port-offset=0] [--cluster=natcd] [--watch-replicas=1]
 *
 * --port-offset shifts every port (nats-server's and the members' client ports) so that several
 * clusters can run side by side, e.g. next to a real etcd on 2379.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Command, Option } from "commander"
import { Duration, Effect, Fiber, Schedule } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { createConnection } from "node:net"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { maxFrameBytes } from "../../shared/frame.ts"
import { loggingLayer, positiveInt } from "../runtime/process.ts"

const command = new Command("natcd run")
  .description("run a local natcd cluster in the foreground")
  .addOption(new Option("--members <n>", "number of members").env("MEMBERS").argParser(positiveInt).default(1))
  .addOption(new Option("--data-dir <dir>", "data root").env("DATA_DIR").default("./data"))
  .addOption(new Option("--nats <urls>", "use this NATS server instead of starting one").env("NATS_URL"))
  .addOption(new Option("--nats-port <port>", "port of the nats-server started here").argParser(positiveInt).default(4222))
  .addOption(new Option("--port-offset <n>", "added to every port").argParser((v) => Number.parseInt(v, 10)).default(0))
  .addOption(new Option("--cluster <name>", "cluster name").env("NATCD_CLUSTER").default("natcd"))
  .addOption(new Option("--watch-replicas <n>", "watch service replicas for the cluster (services/watch)").env("NATCD_WATCH_REPLICAS").argParser(positiveInt).default(1))
  .addOption(new Option("--log-level <level>", "log level").env("NATCD_LOG_LEVEL").choices(["Debug", "Info", "Warn", "Error"]).default("Info"))
  .parse(process.argv)

const opts = command.opts<{
  members: number
  watchReplicas: number
  dataDir: string
  nats?: string
  natsPort: number
  portOffset: number
  cluster: string
  logLevel: "Debug" | "Info" | "Warn" | "Error"
}>()
const dataDir = resolve(opts.dataDir)
const servicesDir = fileURLToPath(new URL("../", import.meta.url))

/** Client ports of members 1..3 as etcd's local cluster (Procfile) uses; later members continue. */
const clientPort = (memberIndex: number): number =>
  opts.portOffset + (memberIndex === 0 ? 2379 : memberIndex === 1 ? 22379 : memberIndex === 2 ? 32379 : 2379 + 10000 * memberIndex)

interface ProcessSpec {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
}

const waitForPort = (port: number) =>
  Effect.tryPromise(() =>
    new Promise<void>((ok, fail) => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => {
        socket.end()
        ok()
      })
      socket.on("error", fail)
    })
  ).pipe(Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)), times: 100 }))

const stopChild = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000)
    child.once("exit", () => {
      clearTimeout(killer)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

/** Runs `spec` until interrupted, restarting it with backoff whenever it exits. */
const supervise = (spec: ProcessSpec) =>
  Effect.gen(function*() {
    let backoffMs = 100
    while (true) {
      const startedAt = Date.now()
      const exit = yield* Effect.acquireUseRelease(
        Effect.sync(() => spawn(spec.command, spec.args as string[], { stdio: ["ignore", "inherit", "inherit"] })),
        (child) =>
          Effect.callback<{ code: number | null; signal: string | null }>((resume) => {
            child.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
            child.once("error", (e) => resume(Effect.succeed({ code: -1, signal: e.message })))
          }),
        stopChild
      )
      if (Date.now() - startedAt > 30_000) backoffMs = 100
      yield* Effect.logWarning("process exited; restarting").pipe(
        Effect.annotateLogs({ process: spec.name, code: exit.code, signal: exit.signal, backoffMs })
      )
      yield* Effect.sleep(Duration.millis(backoffMs))
      backoffMs = Math.min(backoffMs * 2, 5000)
    }
  })

const node = process.execPath
const serviceSpec = (service: string, member: string, natsUrl: string, extra: ReadonlyArray<string> = []): ProcessSpec => ({
  name: `${service}/${member}`,
  command: node,
  args: [
    join(servicesDir, service, "main.ts"),
    `--member=${member}`,
    `--cluster=${opts.cluster}`,
    `--nats=${natsUrl}`,
    `--data-dir=${dataDir}`,
    `--log-level=${opts.logLevel}`,
    ...extra
  ]
})

const program = Effect.gen(function*() {
  mkdirSync(dataDir, { recursive: true })
  let natsUrl = opts.nats === "" ? undefined : opts.nats
  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  if (natsUrl === undefined) {
    const natsPort = opts.natsPort + opts.portOffset
    const conf = join(dataDir, "nats-server.conf")
    writeFileSync(conf, [
      "# Written by natcd run.",
      "listen: 127.0.0.1:" + natsPort,
      // etcd accepts requests of 1.5 MiB; frames carry them plus raft batches.
      `max_payload: ${maxFrameBytes}`,
      "max_pending: 268435456",
      "write_deadline: \"10s\"",
      ""
    ].join("\n"))
    fibers.push(yield* Effect.forkChild(supervise({ name: "nats-server", command: "nats-server", args: ["-c", conf] })))
    yield* waitForPort(natsPort)
    natsUrl = `nats://127.0.0.1:${natsPort}`
  }
  const members = Array.from({ length: opts.members }, (_, i) => `m${i + 1}`)
  for (const [i, member] of members.entries()) {
    mkdirSync(join(dataDir, member), { recursive: true })
    const clientUrl = `http://127.0.0.1:${clientPort(i)}`
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("wal", member, natsUrl))))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("mvcc", member, natsUrl))))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("lease", member, natsUrl))))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("raft", member, natsUrl, [`--initial-cluster=${members.join(",")}`, `--advertise-client-urls=${clientUrl}`]))))
    fibers.push(yield* Effect.forkChild(supervise(serviceSpec("gateway", member, natsUrl, [`--listen-client-urls=${clientUrl}`]))))
  }
  // Watch replicas belong to no member: no --member on their command line, named w1, w2, ...
  for (let i = 1; i <= opts.watchReplicas; i++) {
    fibers.push(yield* Effect.forkChild(supervise({
      name: `watch/w${i}`,
      command: node,
      args: [join(servicesDir, "watch", "main.ts"), `--replica=w${i}`, `--cluster=${opts.cluster}`, `--nats=${natsUrl}`, `--log-level=${opts.logLevel}`]
    })))
  }
  yield* Effect.logInfo("natcd running").pipe(
    Effect.annotateLogs({ members: members.join(","), dataDir, nats: natsUrl, clientUrls: members.map((_, i) => `http://127.0.0.1:${clientPort(i)}`).join(",") })
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
