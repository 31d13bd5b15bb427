/**
 * What every natcd service process shares: its command-line flags, its NATS connection (with
 * the process's RPC client and reply inbox) as an Effect service, JSON logging, and the launch
 * of its layer as the process's main program.
 *
 * Flags (each also read from an environment variable, flag first):
 *
 * | flag | env | default | meaning |
 * |---|---|---|---|
 * | --member | NATCD_MEMBER | m1 | member name; part of every subject and of the data path |
 * | --cluster | NATCD_CLUSTER | natcd | cluster name; first token of every subject |
 * | --nats | NATS_URL | nats://127.0.0.1:4222 | NATS server URL(s), comma-separated |
 * | --data-dir | DATA_DIR | ./data | data root; the member's files live in <data-dir>/<member>/ |
 * | --log-level | NATCD_LOG_LEVEL | Info | Debug, Info, Warn or Error |
 * | --metrics-port | NATCD_METRICS_PORT | 0 | port of /metrics, /livez, /readyz, /health (0: none) |
 * | --metrics-host | NATCD_METRICS_HOST | 127.0.0.1 | address that listener binds |
 * | --trace-sample-ratio | NATCD_TRACE_SAMPLE_RATIO | 1 | share of requests traced from the start (gateway) |
 * | --trace-slow-ms | NATCD_TRACE_SLOW_MS | 1000 | requests slower than this are traced anyway (0: off) |
 * | --nats-creds | NATCD_NATS_CREDS | (none) | file holding this process's NATS NKey seed (`<data-dir>/creds/<service>.<member>.nk`) |
 * | --nats-tls-ca | NATCD_NATS_TLS_CA | (none) | CA bundle to verify nats-server's certificate (TLS to NATS) |
 * | --nats-tls-cert | NATCD_NATS_TLS_CERT | (none) | client certificate presented to nats-server |
 * | --nats-tls-key | NATCD_NATS_TLS_KEY | (none) | the client certificate's private key |
 *
 * Tracing, metrics and health: ./observability.ts.
 */
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Command, Option } from "commander"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import type { LogLevel } from "effect"
import { randomBytes } from "node:crypto"
import { flushCompileCache } from "node:module"
import { join, resolve } from "node:path"
import { checkToken } from "../../shared/subjects.ts"
import { inboxPrefix } from "../../shared/endpoints.ts"
import type { Role } from "../../shared/endpoints.ts"
import { natsSecurityOptions } from "./nats-auth.ts"
import type { NatsSecurityFlags } from "./nats-auth.ts"
import { observabilityLayer } from "./observability.ts"
import { idleReleaseLayer } from "./idle-release.ts"
import { defaultIdleReleasePolicy } from "./idle-release-policy.ts"
import { RpcClient } from "./rpc.ts"
import { currentTraceId } from "./tracing.ts"
import { parseGoDurationMs } from "../mvcc/core/compactor.ts"
import type { ServeOptions } from "./rpc.ts"
import { malformedLogEveryMs, natsPingIntervalMs, natsReconnectWaitMs } from "./timeouts.ts"

/** Flags common to every service. */
export interface CommonFlags {
  readonly member: string
  readonly cluster: string
  readonly nats: string
  readonly dataDir: string
  readonly logLevel: LogLevel.LogLevel
  /** Port of the HTTP listener for /metrics and health (./health.ts); 0: none. */
  readonly metricsPort: number
  readonly metricsHost: string
  /** Share of requests the gateway traces from the start, in [0, 1]. */
  readonly traceSampleRatio: number
  /** Requests slower than this many ms are traced anyway (tail sampling); 0: off. */
  readonly traceSlowMs: number
  /** File with this process's NATS NKey seed; absent: connect anonymously (refused by natcd's nats-server). */
  readonly natsCreds?: string
  /** TLS to NATS: CA bundle, client certificate and key files (each optional). */
  readonly natsTlsCa?: string
  readonly natsTlsCert?: string
  readonly natsTlsKey?: string
  /**
   * Growth of the resident size, MiB, after which a quiet process runs a memory-reducing
   * collection (./idle-release.ts); 0: never.
   */
  readonly idleReleaseMib: number
}

/** The member's own directory: `<dataDir>/<member>`. */
export const memberDir = (flags: CommonFlags): string => join(flags.dataDir, flags.member)

/**
 * Parses `argv` (process.argv) for service `name`: the common flags plus `extra` options
 * added by `configure`. Exits the process with a usage message on bad flags (commander).
 */
export const parseFlags = <T extends object = {}>(
  name: string,
  argv: ReadonlyArray<string>,
  configure: (command: Command) => Command = (c) => c
): CommonFlags & T => {
  // Before anything is created: data at rest is private, as etcd keeps it (files 0600,
  // directories 0700: fileutil.PrivateFileMode / PrivateDirMode), whatever umask we inherit.
  // The file code passes those modes explicitly too (./private-files.ts); the umask also covers
  // what others create for us (LMDB's data and lock files, nats-client or trace files).
  process.umask(0o077)
  const command = configure(
    new Command(`natcd ${name}`)
      .description(`natcd ${name} service`)
      .addOption(new Option("--member <name>", "member name").env("NATCD_MEMBER").default("m1"))
      .addOption(new Option("--cluster <name>", "cluster name").env("NATCD_CLUSTER").default("natcd"))
      .addOption(new Option("--nats <urls>", "NATS server URL(s)").env("NATS_URL").default("nats://127.0.0.1:4222"))
      .addOption(new Option("--data-dir <dir>", "data root").env("DATA_DIR").default("./data"))
      .addOption(
        new Option("--log-level <level>", "log level")
          .env("NATCD_LOG_LEVEL")
          .choices(["Debug", "Info", "Warn", "Error"])
          .default("Info")
      )
      .addOption(new Option("--metrics-port <port>", "port of /metrics, /livez, /readyz and /health (0: none)").env("NATCD_METRICS_PORT").argParser(nonNegativeInt).default(0))
      .addOption(new Option("--metrics-host <host>", "address of the /metrics and /health listener").env("NATCD_METRICS_HOST").default("127.0.0.1"))
      .addOption(new Option("--trace-sample-ratio <ratio>", "share of requests traced from the start, 0..1").env("NATCD_TRACE_SAMPLE_RATIO").argParser(ratio).default(1))
      .addOption(new Option("--trace-slow-ms <ms>", "trace requests slower than this anyway (0: off)").env("NATCD_TRACE_SLOW_MS").argParser(nonNegativeInt).default(1000))
      .addOption(new Option("--nats-creds <file>", "file with this process's NATS NKey seed").env("NATCD_NATS_CREDS"))
      .addOption(new Option("--nats-tls-ca <file>", "CA bundle verifying nats-server's certificate").env("NATCD_NATS_TLS_CA"))
      .addOption(new Option("--nats-tls-cert <file>", "client certificate for nats-server").env("NATCD_NATS_TLS_CERT"))
      .addOption(new Option("--nats-tls-key <file>", "key of the client certificate for nats-server").env("NATCD_NATS_TLS_KEY"))
      .addOption(
        new Option("--idle-release-mib <MiB>", "when quiet after growing this many MiB, give freed heap pages back to the OS (0: never)")
          .env("NATCD_IDLE_RELEASE_MIB")
          .argParser(nonNegativeInt)
          .default(defaultIdleReleasePolicy.growthBytes / 2 ** 20)
      )
      .allowExcessArguments(false)
  )
  command.parse(argv as string[])
  const opts = command.opts() as CommonFlags & T
  checkToken("member name", opts.member)
  checkToken("cluster name", opts.cluster)
  return { ...opts, dataDir: resolve(opts.dataDir) }
}

/** Parses a flag value as a positive integer or exits with commander's error. */
export const positiveInt = (value: string): number => {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`not a positive integer: ${value}`)
  return n
}

/**
 * Parses a comma-separated list of client URLs (--advertise-client-urls): each must be an
 * http:// or https:// URL, as etcd requires; the URLs come back as given, scheme included (etcd
 * publishes them so in MemberList). Throws commander's error otherwise.
 */
export const clientUrlList = (value: string): ReadonlyArray<string> => {
  const urls = value.split(",").map((u) => u.trim()).filter((u) => u.length > 0)
  for (const u of urls) {
    if (!/^https?:\/\/[^/?#]+/.test(u)) throw new Error(`URL scheme must be http or https: ${u}`)
  }
  return urls
}

/**
 * Parses a positive duration flag: milliseconds as a bare number, or a Go duration ("1.5s",
 * "10m", as etcd's flags take them); throws commander's error otherwise.
 */
export const durationMs = (value: string): number => {
  const ms = /^\d+$/.test(value) ? Number(value) : parseGoDurationMs(value)
  if (ms === undefined || ms <= 0) throw new Error(`not a positive duration: ${value}`)
  return ms
}

/** A boolean flag given bare (`--flag`), as `--flag=true|false`, or through its env variable. */
export const parseBool = (value: string | boolean | undefined): boolean => {
  if (value === undefined || value === true || value === "true" || value === "1") return true
  if (value === false || value === "false" || value === "0") return false
  throw new Error(`not a boolean: ${String(value)}`)
}

/** Parses a flag value as a non-negative integer or exits with commander's error. */
export const nonNegativeInt = (value: string): number => {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${value}`)
  return n
}

const ratio = (value: string): number => {
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error(`not a ratio in [0, 1]: ${value}`)
  return n
}

/**
 * The process's NATS connection, RPC client and identity. `instance` is a random token unique
 * to this process run (used in its reply subjects).
 */
export class Nats extends Context.Service<Nats, {
  readonly nc: NatsConnection
  readonly rpc: RpcClient
  readonly instance: string
}>()("natcd/runtime/Nats") {
  /**
   * Connects to `servers` (retrying until the server answers, reconnecting forever after, to
   * the listed servers only) and drains the connection when the layer is released.
   */
  static readonly layer = (servers: string, name: string, identity: { readonly cluster: string; readonly role: Role; readonly name: string }, security: NatsSecurityFlags = {}) =>
    Layer.effect(
      Nats,
      Effect.gen(function*() {
        const securityOptions = yield* Effect.try(() => natsSecurityOptions(security)).pipe(Effect.orDie)
        const nc = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => connect({
              ...securityOptions,
              servers: servers.split(","),
              name,
              waitOnFirstConnect: true,
              maxReconnectAttempts: -1,
              reconnectTimeWait: natsReconnectWaitMs,
              pingInterval: natsPingIntervalMs,
              // Use only the servers given: a member pinned to its own server of a NATS cluster
              // drops out with it (as with its network) rather than wandering to servers the
              // cluster gossips; list several servers in --nats to let a process fail over.
              ignoreClusterUpdates: true
            }),
            catch: (e) =>
              (e as { name?: string }).name === "AuthorizationError"
                ? new Error(`nats-server refused this process's identity (${identity.role}${identity.name === "" ? "" : "." + identity.name}): ${
                  security.natsCreds ? `check the key in ${security.natsCreds}` : "pass --nats-creds=<data-dir>/creds/<file>.nk (bin/natcd creds add creates one)"
                }`, { cause: e })
                : e
          }).pipe(Effect.orDie),
          // Cannot reject (a drain on a closed connection is caught): nothing to fail with.
          (nc) => Effect.promise(() => nc.drain().catch(() => undefined))
        )
        const instance = randomBytes(8).toString("hex")
        const rpc = yield* Effect.acquireRelease(
          // The inbox is under the identity's prefix: its NATS permission lets only it subscribe there.
          Effect.sync(() => new RpcClient(nc, `${inboxPrefix(identity.cluster, identity)}.${instance}`)),
          (rpc) => Effect.sync(() => rpc.close())
        )
        yield* Effect.logInfo("connected to NATS").pipe(Effect.annotateLogs({ servers }))
        return Nats.of({ nc, rpc, instance })
      })
    )
}

/** JSON log lines at the given minimum level, annotated with service and member. */
export const loggingLayer = (level: LogLevel.LogLevel) =>
  Layer.mergeAll(Logger.layer([Logger.consoleJson]), Layer.succeed(References.MinimumLogLevel, level))

/** The process's log context, set by {@link launch}. */
let detachedContext: { service: string; member: string; level: LogLevel.LogLevel } = { service: "natcd", member: "", level: "Info" }

/**
 * Runs an effect outside the main program (from a NATS or timer callback) with the process's
 * JSON logger and its service and member annotations. Returns at once.
 */
export const runDetached = <A, E>(effect: Effect.Effect<A, E>): void => {
  const traceId = currentTraceId()
  Effect.runFork(
    effect.pipe(
      Effect.annotateLogs(traceId === undefined
        ? { service: detachedContext.service, member: detachedContext.member }
        : { service: detachedContext.service, member: detachedContext.member, traceId }),
      Effect.provide(loggingLayer(detachedContext.level))
    )
  )
}

/**
 * Runs `layer` as the process's main program (`Layer.launch` under the Node runtime, which
 * interrupts it, releasing every resource, on SIGINT/SIGTERM), with logging and the NATS
 * connection provided, beside the process's observability (./observability.ts) and, unless
 * `--idle-release-mib 0`, its idle memory release (./idle-release.ts).
 *
 * Every module the service imports statically is loaded by now: when Node's compile cache is on
 * (`NODE_COMPILE_CACHE`, set by the supervisor), this writes it out at once rather than at exit,
 * so that a process killed with SIGKILL still leaves the cache warm for the next start.
 */
export const launch = <E>(service: Role, flags: CommonFlags, layer: Layer.Layer<never, E, Nats>, options: { readonly member?: string } = {}): void => {
  flushCompileCache()
  const member = options.member ?? flags.member
  detachedContext = { service, member, level: flags.logLevel }
  const idleRelease = flags.idleReleaseMib > 0 ? idleReleaseLayer({ ...defaultIdleReleasePolicy, growthBytes: flags.idleReleaseMib * 2 ** 20 }) : Layer.empty
  const program = Layer.launch(Layer.mergeAll(observabilityLayer(service, member, flags), idleRelease, layer)).pipe(
    Effect.provide(Nats.layer(flags.nats, `natcd-${service}-${member}`, { cluster: flags.cluster, role: service, name: member }, flags)),
    Effect.annotateLogs({ service, member }),
    Effect.provide(loggingLayer(flags.logLevel))
  )
  NodeRuntime.runMain(program as Effect.Effect<never, unknown>)
}

/**
 * Serve options that log endpoint trouble: a handler defect at Error level, malformed messages at
 * Warn level at most once a second with the running count (a flood of garbage must not flood
 * the logs).
 */
export const endpointOptions = (endpoint: string): ServeOptions => {
  let lastLogMs = 0
  return {
    onDefect: (e) => runDetached(Effect.logError("endpoint handler failed", e).pipe(Effect.annotateLogs({ endpoint }))),
    onMalformed: (reason, count) => {
      const now = Date.now()
      if (now - lastLogMs < malformedLogEveryMs) return
      lastLogMs = now
      runDetached(Effect.logWarning("dropped malformed frame").pipe(Effect.annotateLogs({ endpoint, reason, malformedTotal: count })))
    }
  }
}
