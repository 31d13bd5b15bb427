/**
 * The floor of the gateway's watch relay: the least CPU per delivered watch event that a Node
 * process on natcd's stack (@nats-io/transport-node, node:http2, @grpc/grpc-js) spends
 * receiving watch responses the replica already encoded and writing them to clients' gRPC
 * streams, with nothing else to do; and, for comparison, the same load through the gateway's
 * real watch path (variant `gateway`).
 *
 *   node bench/relay-floor/main.ts [--revisions=1000] [--streams=10] [--watchers-per-stream=100]
 *     [--message-bytes=65536] [--variant=both] [--revisions-per-second=0] [--conns=8]
 *     [--client-window=65535] [--relay-cpu-prof-dir=<dir>]
 *
 * --variant: a comma-separated list of variants, run one after the other in that order, each
 * with fresh children (repeats allowed, e.g. `grpc-js,gateway,grpc-js,gateway` interleaves
 * them); `both` (the default) is grpc-js,http2 and `all` is grpc-js,http2,gateway.
 *
 * It starts its own nats-server (plain, 127.0.0.1:15424) and, per variant, three processes:
 * - a publisher plays the watch replica: per revision and stream, one WatchResponse per watcher,
 *   each holding one PUT event (key `k/000123`, 256-byte value), encoded by the replica's own
 *   encoder (services/watch/encode.ts), packed (shared/watch-relay.ts) into numbered
 *   gateway.watch frames (shared/frame.ts) of at most --message-bytes of responses, one subject
 *   per stream, with at most the replica's default window (4 MiB) unacknowledged per stream;
 * - the relay, the process measured, plays the gateway (services/gateway/watch-sessions.ts and
 *   watch-stream.ts): per message it decodes the frame, checks its marks (unpackRelay) and its
 *   number, writes its responses to the client's stream in one write (every response is for
 *   the client: the message is one run), and once HTTP/2 took them acknowledges, once per
 *   stream per event-loop turn (the gateway's own Watch service, variant `gateway`, sends one
 *   acknowledgement per replica per turn for all its streams). Variant `grpc-js`: the gateway's own server
 *   (services/gateway/server.ts) serving Watch, written to by the gateway's pass-through writes
 *   (services/gateway/watch-sender.ts); variant `http2`: a bare node:http2 server answering the
 *   Watch POST itself and writing with `stream.write`;
 * - a client opens --streams Watch streams over --conns HTTP/2 connections (node:http2, with
 *   --client-window bytes of flow-control window per stream and per connection; 65535, HTTP/2's
 *   default, is what the benchmark's grpc-js client has), sends one create request on each, and
 *   counts the responses it receives (one event each) until all streams × watchers × revisions
 *   arrived.
 *
 * What the relay leaves out of the gateway's deliver path: the schema check of the body, the
 * per-watch bookkeeping and spans, pings and load reports; none of them is needed to move the
 * bytes.
 *
 * Variant `gateway`: the relay is the gateway's real Watch service, makeWatchHandler
 * (services/gateway/watch.ts, with watch-sessions.ts, watch-stream.ts, watch-create.ts,
 * watch-sender.ts), mounted as the gateway mounts it (bidiStream on startGrpcServer, with the
 * relayed-bytes Watch definition and the call interceptor), with a WatchContext built as the
 * gateway builds it: a NATS connection, an RpcClient on the gateway identity's inbox, a random
 * instance and its response subject gateway.watch.<instance> (shared/endpoints.ts); header ids
 * fixed at 1, no auth check (checkRead absent), no leader gate nor caller resolution, warnings
 * printed. The publisher becomes the replica's side of the real protocol, through the endpoint
 * declarations and the rpc helpers (services/runtime/rpc.ts): it serves watch.open (queue
 * group; it publishes no watch.load, so the gateway opens through it) answering its name and
 * head 0, watch.create (idempotent; its created response, encoded as the replica does, goes out
 * first on the session), watch.cancel, watch.progress, watch.ping (the sessions it does not
 * hold), watch.close, and watch.ack for flow control (the replica's default window, 4 MiB, or
 * the gateway's when smaller); per revision and session it sends one events response per watch
 * (the gateway-assigned ids), numbered 1, 2, ... per session, published with publishEndpoint
 * to the gateway's subject as services/watch/main.ts does. The client sends one create request
 * per watcher (--watchers-per-stream per stream, prefix `k/`), and the measurement starts once
 * every created response arrived. What this adds to the floor is the gateway's own work per
 * message and response: the decode of the body by its schema, the session lookup and number
 * check, the per-watch tracking of each mark (watch-stream.ts track), the runs and their
 * writes, acks through publishEndpoint (frame encoding through the RpcClient), the pings
 * (one per second), and grpc-js's own call handling of the counted bidi stream. What it still
 * leaves out: the real replica's hub (the publisher is not measured), auth checks, traced
 * deliveries (no traceparent), and the other services, processes and load of a member.
 *
 * The first 10 % of the revisions are a warm-up, published and delivered before the rest
 * is published, so that nothing is in flight when the measurement starts (nor when it ends).
 * Per variant it prints one JSON line and a summary: events/s, and the CPU µs per delivered
 * event (user + system, GC included) of the relay, and for context of the publisher, the client
 * and nats-server, over the events after the warm-up (for `gateway`, with the Watch service's
 * counters: a run with failovers, sequence gaps or malformed messages is flagged). The relay's
 * figure is what the gateway cannot go below on this stack; compare it with the gateways' CPU
 * per event in `watch-scale` (bench/main.ts). --relay-cpu-prof-dir writes a V8 CPU profile of
 * the relay there (profiling slows it); the relay then prints the time of each CPU probe on the
 * profile's clock (µs), which bounds the measured part of the profile.
 *
 * This file is the command line and the parent: it starts nats-server, forks the children per
 * variant (this file again, with the role as its first argument), probes their CPU and prints
 * the report. What it is not: the children's work, in ./replica.ts (the publisher and the
 * replica), ./relay.ts (the relay, measured) and ./client.ts; ./shared.ts holds what they share.
 */
import { type ChildProcess, fork, spawn } from "node:child_process"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { Command, Option } from "commander"
import { defaultHubOptions } from "../../services/watch/core/hub-options.ts"
import { cpuMs } from "../proc.ts"
import { runClient } from "./client.ts"
import { isGatewayStats, runRelay } from "./relay.ts"
import { runPublisher, runReplica } from "./replica.ts"
import { natsPort, warmRevisions } from "./shared.ts"
import type { FloorOptions } from "./shared.ts"

const variants = ["grpc-js", "http2", "gateway"] as const
/** How long the events of one variant may take to arrive before the run fails. */
const deliveryTimeoutMs = 50_000

/** A forked child and its messages, taken in order by what each waiter accepts. */
interface ChildLink {
  next<A>(accepts: (m: unknown) => m is A): Promise<A>
  send(message: string | object): void
  /** Asks the child to exit and waits for it (killed after 5 s). */
  stop(): Promise<void>
}

const forkChild = (args: ReadonlyArray<string>, execArgv: ReadonlyArray<string> = []): ChildLink => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), args, { stdio: "inherit", execArgv: [...process.execArgv, ...execArgv] })
  const inbox: unknown[] = []
  const waiters: Array<{ accepts: (m: unknown) => boolean; resolve: (m: unknown) => void; reject: (e: Error) => void }> = []
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.on("message", (m) => {
    const i = waiters.findIndex((w) => w.accepts(m))
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m)
    else inbox.push(m)
  })
  child.once("exit", (code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${args[0]} exited (code ${code})`))
  })
  return {
    next: <A>(accepts: (m: unknown) => m is A) => {
      const i = inbox.findIndex(accepts)
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as A)
      if (child.exitCode !== null) return Promise.reject(new Error(`${args[0]} exited (code ${child.exitCode})`))
      return new Promise<A>((resolve, reject) => waiters.push({ accepts, resolve: resolve as (m: unknown) => void, reject }))
    },
    send: (message) => {
      if (child.connected) child.send(message)
    },
    stop: async () => {
      if (child.connected) child.send("exit")
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}

const isText = (text: string) => (m: unknown): m is string => m === text
const isPhase = (phase: string) => (m: unknown): m is { phase: string } => (m as { phase?: unknown } | null)?.phase === phase
const isCpuUsage = (m: unknown): m is NodeJS.CpuUsage => typeof (m as { user?: unknown } | null)?.user === "number"
const isClientProbe = (m: unknown): m is { cpu: NodeJS.CpuUsage; delivered: number } => typeof (m as { delivered?: unknown } | null)?.delivered === "number"

const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** CPU ms so far of each process, and the client's delivered events. */
interface Probe {
  readonly atMs: number
  readonly delivered: number
  readonly relay: number
  /** The relay's system (kernel) part. */
  readonly relaySystem: number
  readonly publisher: number
  readonly client: number
  readonly natsServer: number
}

const usageMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000

const probe = async (relay: ChildLink, publisher: ChildLink, client: ChildLink, natsPid: number): Promise<Probe> => {
  for (const c of [relay, publisher, client]) c.send("cpu")
  const [r, p, c] = await Promise.all([relay.next(isCpuUsage), publisher.next(isCpuUsage), client.next(isClientProbe)])
  return { atMs: performance.now(), delivered: c.delivered, relay: usageMs(r), relaySystem: r.system / 1000, publisher: usageMs(p), client: usageMs(c.cpu), natsServer: cpuMs(natsPid) }
}

/** One variant with fresh children: probes after the warm-up and at the end. */
const runVariant = async (variant: string, o: FloorOptions, natsPid: number, profileDir: string | undefined) => {
  const json = JSON.stringify(o)
  const children: ChildLink[] = []
  const start = (args: ReadonlyArray<string>, execArgv?: ReadonlyArray<string>) => {
    const c = forkChild(args, execArgv)
    children.push(c)
    return c.next(isText("ready")).then(() => c)
  }
  let paced: ReturnType<typeof setInterval> | undefined
  try {
    const relay = await start(["relay", json, variant], profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`])
    const publisher = await start([variant === "gateway" ? "replica" : "publisher", json])
    const client = await start(["client", json, variant])
    if (variant === "gateway") await within(client.next(isPhase("created")), 20_000, "watches created")
    else await within(relay.next(isText("open")), 10_000, "streams open")
    publisher.send({ publishUpTo: warmRevisions(o) })
    await within(client.next(isPhase("warm")), deliveryTimeoutMs, "warm-up")
    // Nothing is in flight now: the CPU measured from here is that of the events counted from here.
    const before = await probe(relay, publisher, client, natsPid)
    paced = pace(publisher, warmRevisions(o), o.revisions, o.revisionsPerSecond)
    // A paced run takes its pace's time on top of the delivery bound.
    const pacingMs = o.revisionsPerSecond > 0 ? ((o.revisions - warmRevisions(o)) / o.revisionsPerSecond) * 1000 : 0
    await within(client.next(isPhase("done")), deliveryTimeoutMs + pacingMs, "delivery")
    const after = await probe(relay, publisher, client, natsPid)
    if (variant !== "gateway") return { variant, before, after }
    relay.send("stats")
    return { variant, before, after, gateway: (await relay.next(isGatewayStats)).gatewayStats }
  } finally {
    clearInterval(paced)
    await Promise.all(children.map((c) => c.stop()))
  }
}

/**
 * Raises the publisher's last revision from `from` to `to`: at once when `perSecond` is 0, else
 * by `perSecond` revisions a second in steps of 10 ms (as puts arrive in a cluster, one
 * revision's messages at a time). Returns the pacing timer (undefined when not paced).
 */
const pace = (publisher: ChildLink, from: number, to: number, perSecond: number): ReturnType<typeof setInterval> | undefined => {
  if (perSecond <= 0) {
    publisher.send({ publishUpTo: to })
    return undefined
  }
  const startedAt = performance.now()
  let raised = from
  const timer = setInterval(() => {
    const due = Math.min(to, from + Math.floor(((performance.now() - startedAt) / 1000) * perSecond))
    if (due > raised) publisher.send({ publishUpTo: (raised = due) })
    if (raised >= to) clearInterval(timer)
  }, 10)
  return timer
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits

const report = (o: FloorOptions, run: { variant: string; before: Probe; after: Probe; gateway?: Record<string, unknown> }) => {
  const { before, after } = run
  const events = after.delivered - before.delivered
  const usPerEvent = (k: Exclude<keyof Probe, "atMs" | "delivered">) => round(((after[k] - before[k]) * 1000) / events, 2)
  const line = {
    variant: run.variant, ...o, events,
    eventsPerSec: Math.round(events / ((after.atMs - before.atMs) / 1000)),
    cpuUsPerEvent: { relay: usPerEvent("relay"), relaySystem: usPerEvent("relaySystem"), publisher: usPerEvent("publisher"), client: usPerEvent("client"), natsServer: usPerEvent("natsServer") },
    ...(run.gateway === undefined ? {} : { gateway: run.gateway })
  }
  console.log(JSON.stringify(line))
  const c = line.cpuUsPerEvent
  console.log(`${run.variant}: ${line.eventsPerSec} events/s, relay ${c.relay} µs/event (${c.relaySystem} of it in the kernel; publisher ${c.publisher}, client ${c.client}, nats-server ${c.natsServer})`)
  if (run.gateway !== undefined && (run.gateway.failovers !== 0 || run.gateway.seqGaps !== 0 || run.gateway.malformed !== 0)) {
    console.log(`${run.variant}: the gateway moved streams or dropped messages (${JSON.stringify(run.gateway)}): not a clean run`)
  }
}

const runParent = async () => {
  const opts = new Command("relay-floor")
    .addOption(new Option("--revisions <n>").default("1000"))
    .addOption(new Option("--streams <n>").default("10"))
    .addOption(new Option("--watchers-per-stream <n>").default("100"))
    .addOption(new Option("--message-bytes <n>", "most response bytes per relay message").default(String(defaultHubOptions.maxMessageBytes)))
    .addOption(new Option("--variant <names>", `comma-separated, run in order (repeats allowed): ${variants.join(", ")}; both: grpc-js,http2; all: every one`).default("both"))
    .addOption(new Option("--revisions-per-second <n>", "publish the measured revisions at this pace (0: as fast as the relay takes them)").default("0"))
    .addOption(new Option("--conns <n>", "the client's HTTP/2 connections").default("8"))
    .addOption(new Option("--client-window <bytes>", "the client's flow-control window, per stream and per connection").default("65535"))
    .addOption(new Option("--relay-cpu-prof-dir <dir>", "write a CPU profile of the relay there"))
    .parse(process.argv)
    .opts<{ revisions: string; streams: string; watchersPerStream: string; messageBytes: string; variant: string; revisionsPerSecond: string; conns: string; clientWindow: string; relayCpuProfDir?: string }>()
  const o: FloorOptions = {
    revisions: Number(opts.revisions),
    streams: Number(opts.streams),
    watchersPerStream: Number(opts.watchersPerStream),
    messageBytes: Number(opts.messageBytes),
    conns: Number(opts.conns),
    clientWindow: Number(opts.clientWindow),
    revisionsPerSecond: Number(opts.revisionsPerSecond)
  }
  if (!(o.revisionsPerSecond >= 0)) throw new Error(`--revisions-per-second: a number of revisions a second, 0 or more, not ${opts.revisionsPerSecond}`)
  const chosen = opts.variant === "both" ? ["grpc-js", "http2"] : opts.variant === "all" ? [...variants] : opts.variant.split(",")
  const unknown = chosen.filter((v) => !(variants as ReadonlyArray<string>).includes(v))
  if (unknown.length > 0) throw new Error(`--variant: unknown ${unknown.join(", ")} (${variants.join(", ")}, both, all)`)
  const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: "ignore" })
  try {
    await sleep(500)
    for (const variant of chosen) {
      report(o, await runVariant(variant, o, server.pid!, opts.relayCpuProfDir))
    }
  } finally {
    server.kill()
  }
}

const [role, json, variant] = process.argv.slice(2)
// A child whose parent is gone (killed) exits too.
if (role !== undefined && !role.startsWith("-")) process.once("disconnect", () => process.exit(0))
if (role === "publisher") await runPublisher(JSON.parse(json!) as FloorOptions)
else if (role === "replica") await runReplica(JSON.parse(json!) as FloorOptions)
else if (role === "relay") await runRelay(JSON.parse(json!) as FloorOptions, variant!)
else if (role === "client") runClient(JSON.parse(json!) as FloorOptions, variant ?? "")
else await runParent()
