/**
 * The gateway process: etcd's v3 gRPC API for one member.
 *
 *   node services/gateway/main.ts --member=m1 [--listen-client-urls=http://127.0.0.1:2379]
 *     [--request-timeout-ms=7000] [--max-request-bytes=1572864] [--election-timeout=1000]
 *     [--socket-reuse-port] (+ the common flags)
 *
 * A member may have several gateways: they keep no state of their own (each has a random
 * instance token for its reply subjects), so they serve as separate endpoints, behind a load
 * balancer, or on one host and port with --socket-reuse-port (the kernel spreads connections).
 *
 * Serves KV, Watch, Lease (./lease.ts), Cluster, Maintenance, and etcd's v3lock Lock
 * (./lock.ts) and v3election Election (./election.ts) services. --election-timeout sets the
 * minimum lease TTL, ceil(1.5 x election timeout) seconds, as etcd derives it.
 */
import * as grpc from "@grpc/grpc-js"
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Duplex } from "node:stream"
import { InvalidArgumentError, Option } from "commander"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import {
  gatewayResult, gatewayWatch, leaseKeepAlive, leaseTimeToLive, mvccAlarms, mvccAuth, mvccChunk, mvccDefragment, mvccHashKv, mvccLeases,
  mvccRange, mvccSnapshot, mvccStatus, raftPropose, raftReadIndex, raftStatus, subjectOf, traceKeep
} from "../../shared/endpoints.ts"
import { endpointOptions, launch, memberDir, Nats, parseBool, parseFlags, positiveInt, runDetached } from "../runtime/process.ts"
import { ensureSelfSignedCertificate } from "../runtime/certs.ts"
import { planClientListener, serveClientPlain, serveClientTls } from "./client-tls.ts"
import type { ClientTlsFlags } from "./client-tls.ts"
import { callEndpoint, publishEndpoint } from "../runtime/rpc.ts"
import { makeBackendMaintenanceHandlers } from "./backend-maintenance.ts"
import { makeClusterHandlers } from "./cluster.ts"
import { apiVersion, makeKvHandlers } from "./kv.ts"
import { makeMaintenanceHandlers, quotaBytes } from "./maintenance.ts"
import { Proposer } from "../runtime/proposer.ts"
import { Reader } from "../runtime/reader.ts"
import { makeElectionHandlers } from "./election.ts"
import { makeInternalKv } from "./internal-kv.ts"
import { makeLeaseHandlers } from "./lease.ts"
import { makeLockHandlers } from "./lock.ts"
import { minLeaseTtlSec } from "../lease/core/lessor.ts"
import { abortable, bidiStream, serverStream, startGrpcServer } from "./server.ts"
import { defaultUnackedBudgetBytes, makeWatchHandler } from "./watch.ts"
import { checkMemberReady, etcdHealth, MemberHealth } from "./health.ts"
import { makeHttpGateway } from "./http-gateway.ts"
import { LeaderMonitor } from "./leader.ts"
import { asEmbeddedClientError } from "./errors.ts"
import { asRawAuthError, defaultBcryptCost, makeAuth } from "./auth.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { counter, counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import type { Counter } from "prom-client"
import { onSlowRoot } from "../runtime/tracing.ts"

interface GatewayFlags extends ClientTlsFlags {
  readonly listenClientUrls: string
  readonly requestTimeoutMs: number
  readonly maxRequestBytes: number
  readonly quotaBackendBytes: number
  readonly electionTimeout: number
  readonly maxConcurrentStreams: number
  readonly watchUnackedBudgetBytes: number
  readonly bcryptCost: number
}

/**
 * Default --max-concurrent-streams: 10000 streams per client connection. etcd 3.5 allows
 * 2^32 - 1; natcd bounds it so that one connection cannot hold unbounded per-stream state.
 */
const defaultMaxConcurrentStreams = 10_000

/** etcd --bcrypt-cost: an integer 4..31 (bcrypt's MinCost..MaxCost). */
const bcryptCost = (value: string): number => {
  const n = positiveInt(value)
  if (n < 4 || n > 31) throw new InvalidArgumentError("must be between 4 and 31")
  return n
}

const flags = parseFlags<GatewayFlags>("gateway", process.argv, (c) =>
  c
    .addOption(new Option("--listen-client-urls <url>", "client URL to serve gRPC on").env("NATCD_LISTEN_CLIENT_URLS").default("http://127.0.0.1:2379"))
    .addOption(new Option("--request-timeout-ms <ms>", "write/read timeout (etcd: 5 s + 2 x election timeout)").argParser(positiveInt).default(7000))
    .addOption(new Option("--max-request-bytes <n>", "largest request accepted, as etcd").argParser(positiveInt).default(1572864))
    .addOption(
      new Option("--quota-backend-bytes <n>", "backend quota (0: etcd's 2 GiB default, negative: none)")
        .env("NATCD_QUOTA_BACKEND_BYTES").argParser((v) => Number.parseInt(v, 10)).default(0)
    )
    .addOption(new Option("--election-timeout <ms>", "raft election timeout; sets the minimum lease TTL, ceil(1.5 x it)").env("NATCD_ELECTION_TIMEOUT").argParser(positiveInt).default(1000))
    .addOption(
      new Option("--max-concurrent-streams <n>", "concurrent gRPC streams per client connection (etcd 3.5's flag; etcd's default is unlimited)")
        .env("NATCD_MAX_CONCURRENT_STREAMS").argParser(positiveInt).default(defaultMaxConcurrentStreams)
    )
    .addOption(
      new Option("--watch-unacked-budget-bytes <n>", "watch response bytes in flight to this gateway over all its streams, shared equally as their windows")
        .env("NATCD_GATEWAY_WATCH_UNACKED_BUDGET_BYTES").argParser(positiveInt).default(defaultUnackedBudgetBytes)
    )
    .addOption(
      new Option("--bcrypt-cost <n>", "bcrypt cost of the password hashes made for UserAdd and UserChangePassword (etcd: 10; 4..31)")
        .env("NATCD_BCRYPT_COST").argParser(bcryptCost).default(defaultBcryptCost)
    )
    // Client TLS, etcd's flags (./client-tls.ts).
    .addOption(new Option("--cert-file <path>", "client server TLS certificate file (PEM)").env("NATCD_CERT_FILE").default(""))
    .addOption(new Option("--key-file <path>", "client server TLS key file (PEM)").env("NATCD_KEY_FILE").default(""))
    .addOption(new Option("--trusted-ca-file <path>", "client server TLS trusted CA certificate file").env("NATCD_TRUSTED_CA_FILE").default(""))
    .addOption(new Option("--client-cert-auth [bool]", "enable client cert authentication").env("NATCD_CLIENT_CERT_AUTH").argParser(parseBool).default(false))
    .addOption(new Option("--auto-tls [bool]", "client TLS using generated certificates").env("NATCD_AUTO_TLS").argParser(parseBool).default(false))
    .addOption(new Option("--tls-min-version <version>", "minimum TLS version supported (TLS1.2 or TLS1.3)").env("NATCD_TLS_MIN_VERSION").default("TLS1.2"))
    .addOption(new Option("--cipher-suites <list>", "comma-separated TLS 1.2 cipher suites, Go's names (default: Node's)").env("NATCD_CIPHER_SUITES").default(""))
    .addOption(
      new Option("--socket-reuse-port [bool]", "bind the client port with SO_REUSEPORT, so that several gateways of the member on this host share it (etcd 3.5's flag)")
        .env("NATCD_SOCKET_REUSE_PORT").argParser(parseBool).default(false)
    )
)

// The client listener is checked before anything starts: a bad TLS configuration is a start-up
// error with etcd's message, and an https:// URL never serves plain text.
const listenUrl = flags.listenClientUrls.split(",")[0]!
const listenerPlan = planClientListener(listenUrl, flags, join(memberDir(flags), "fixtures", "client"))
if (listenerPlan._tag === "Invalid") {
  process.stderr.write(`${JSON.stringify({
    message: listenerPlan.message, level: "FATAL", timestamp: new Date().toISOString(), annotations: { service: "gateway", member: flags.member }
  })}\n`)
  process.exit(1)
}

/**
 * Where this process's gRPC server listens for the JSON gateway: `<member dir>/gw-<pid>.sock`
 * (the member directory is private, 0700; a socket path longer than Unix's limit goes under the
 * system's temporary directory instead). Sockets left by gateway processes that are gone (a
 * kill -9) are removed first.
 */
const gatewaySocketPath = (dir: string): string => {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "EPERM"
    }
  }
  const home = join(dir, `gw-${process.pid}.sock`).length <= maxUnixPathBytes ? dir : join(tmpdir(), `natcd-${process.getuid?.() ?? 0}`)
  mkdirSync(home, { recursive: true, mode: 0o700 })
  // Only a directory of this user, which nobody else may enter (a shared temporary directory
  // could hold one made by someone else, to catch the socket): tightened to 0700 as etcd's
  // private directories are.
  const st = lstatSync(home)
  if (!st.isDirectory() || st.uid !== process.getuid?.()) throw new Error(`${home} must be a directory of this user for the gateway's socket`)
  if ((st.mode & 0o077) !== 0) chmodSync(home, 0o700)
  for (const f of existsSync(home) ? readdirSync(home) : []) {
    const m = /^gw-(\d+)\.sock$/.exec(f)
    if (m !== null && !alive(Number(m[1]))) rmSync(join(home, f), { force: true })
  }
  const path = join(home, `gw-${process.pid}.sock`)
  rmSync(path, { force: true })
  return path
}
/** The longest Unix socket path (sockaddr_un.sun_path is 108 bytes with its terminator). */
const maxUnixPathBytes = 107

const GatewayLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc, instance } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const proposer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Proposer(nc, rpc, {
          member: flags.member,
          proposeSubject: subjectOf(raftPropose, at),
          resultSubject: subjectOf(gatewayResult, { ...at, instance }),
          requestTimeoutMs: flags.requestTimeoutMs,
          resultWaitMs: 3000,
          maxRequestBytes: flags.maxRequestBytes,
          clientRequests: true
        })
      ),
      (p) => Effect.sync(() => p.close())
    )
    const raftStatusSubject = subjectOf(raftStatus, at)
    let identity: Promise<{ clusterId: bigint; memberId: bigint }> | undefined
    const fetchIdentity = async () => {
      const s = await callEndpoint(rpc, raftStatus, raftStatusSubject, {}, { timeoutMs: flags.requestTimeoutMs })
      return { clusterId: s.clusterId, memberId: s.memberId }
    }
    // The quota check needs the member id, learned lazily through the KV handlers' cache.
    let memberIdentity: () => Promise<{ memberId: bigint }> = () => Promise.reject(new Error("not ready"))
    const maintenance = makeMaintenanceHandlers({
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      subjects: {
        mvccStatus: subjectOf(mvccStatus, at),
        mvccAlarms: subjectOf(mvccAlarms, at)
      },
      quotaBytes: quotaBytes(flags.quotaBackendBytes),
      identity: () => memberIdentity()
    })
    // Observability: the member's health (./health.ts), proposal metrics, slow-trace keep notices.
    const memberHealth = yield* Effect.acquireRelease(Effect.sync(() => new MemberHealth(rpc, at)), (h) => Effect.sync(() => h.stop()))
    addReadinessCheck("member", () =>
      checkMemberReady(rpc, {
        raftStatus: raftStatusSubject,
        readIndex: subjectOf(raftReadIndex, at),
        mvccStatus: subjectOf(mvccStatus, at)
      }, memberHealth)
    )
    gaugeFrom("etcd_server_proposals_pending", "The current number of pending proposals to commit.", () => proposer.pendingCount())
    counterFrom("etcd_server_proposals_failed_total", "The total number of failed proposals seen.", () => proposer.counters.failed)
    onSlowRoot((traceId) => publishEndpoint(rpc, traceKeep, { cluster: flags.cluster }, { traceId }))
    yield* Effect.addFinalizer(() => Effect.sync(() => onSlowRoot(undefined)))
    const reader = new Reader(rpc, {
      readIndexSubject: subjectOf(raftReadIndex, at),
      rangeSubject: subjectOf(mvccRange, at),
      requestTimeoutMs: flags.requestTimeoutMs
    })
    // etcd's require-leader requests (./leader.ts).
    const leader = yield* Effect.acquireRelease(
      Effect.sync(() => new LeaderMonitor(nc, rpc, { at, electionTimeoutMs: flags.electionTimeout }, endpointOptions("gateway"))),
      (m) => Effect.sync(() => m.stop())
    )
    const handlers = makeKvHandlers({
      leaderSeen: (hasLeader) => leader.observe(hasLeader),
      memberProblems: () => memberHealth.problems(),
      checkQuota: maintenance.checkQuota,
      statusErrors: maintenance.statusErrors,
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      reader,
      subjects: {
        raftStatus: raftStatusSubject,
        mvccStatus: subjectOf(mvccStatus, at)
      },
      identity: () => {
        identity ??= fetchIdentity().catch((e) => {
          identity = undefined
          throw e
        })
        return identity
      }
    })
    memberIdentity = handlers.identity
    const cluster = makeClusterHandlers({
      rpc,
      cluster: flags.cluster,
      member: flags.member,
      requestTimeoutMs: flags.requestTimeoutMs,
      identity: handlers.identity
    })
    const backendMaintenance = makeBackendMaintenanceHandlers({
      rpc,
      requestTimeoutMs: flags.requestTimeoutMs,
      identity: handlers.identity,
      raftTerm: async () => {
        return (await callEndpoint(rpc, raftStatus, raftStatusSubject, {}, { timeoutMs: flags.requestTimeoutMs })).term
      },
      subjects: {
        hashKv: subjectOf(mvccHashKv, at),
        snapshot: subjectOf(mvccSnapshot, at),
        chunk: subjectOf(mvccChunk, at),
        defragment: subjectOf(mvccDefragment, at),
        status: subjectOf(mvccStatus, at)
      }
    })
    const auth = makeAuth({
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      subjects: { auth: subjectOf(mvccAuth, at) },
      reader,
      bcryptCost: flags.bcryptCost,
      clientCertAuth: listenerPlan._tag === "Tls" && listenerPlan.clientCertAuth,
      header: async (revision, raftTerm) => {
        const id = await handlers.identity()
        return { clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm }
      }
    })
    // etcd's admin-only calls: membership changes (checkMembershipOperationPermission), and the
    // backend maintenance calls, which etcd answers with the auth store's unconverted error
    // (authMaintenanceServer; ./auth.ts asRawAuthError).
    const admin = <A extends ReadonlyArray<any>, R>(f: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
      await auth.checkAdmin()
      return f(...args)
    }
    const adminRaw = <A extends ReadonlyArray<any>, R>(f: (...args: A) => Promise<R>) => (...args: A): Promise<R> =>
      admin(f)(...args).catch((e: unknown) => {
        throw asRawAuthError(e)
      })
    const watch = yield* Effect.acquireRelease(
      Effect.sync(() =>
        makeWatchHandler({
          nc, rpc, cluster: flags.cluster, instance, maxRequestBytes: flags.maxRequestBytes, identity: handlers.identity,
          checkRead: auth.checkRead,
          unackedBudgetBytes: flags.watchUnackedBudgetBytes,
          responseSubject: subjectOf(gatewayWatch, { ...at, instance }),
          log: (level, message, fields) =>
            runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields)))
        })
      ),
      (w) => Effect.sync(() => w.close())
    )
    counter({
      name: "natcd_gateway_watch_failovers_total",
      help: "Watch streams moved to a new session, by reason: the replica was draining, did not answer, did not know the session, or a response message was lost.",
      labelNames: ["reason"],
      collect(this: Counter<string>) {
        this.reset()
        for (const [reason, n] of Object.entries(watch.failovers)) this.inc({ reason }, n)
      }
    })
    gaugeFrom("natcd_gateway_watch_replicas", "Watch replicas this gateway has load reports of (placement candidates and stale ones).", watch.trackedReplicas)
    const lease = makeLeaseHandlers({
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      electionTimeoutMs: flags.electionTimeout,
      subjects: {
        keepAlive: subjectOf(leaseKeepAlive, at),
        timeToLive: subjectOf(leaseTimeToLive, at),
        leases: subjectOf(mvccLeases, at),
        readIndex: subjectOf(raftReadIndex, at),
        raftStatus: raftStatusSubject,
        mvccStatus: subjectOf(mvccStatus, at)
      },
      identity: handlers.identity
    })
    const internalKv = makeInternalKv({
      proposer,
      reader,
      identity: handlers.identity,
      checkQuota: maintenance.checkQuota
    })
    // Lock and Election answer etcd's errors as its embedded client does (./errors.ts asEmbeddedClientError).
    const viaClient = <A extends ReadonlyArray<any>, R>(f: (...args: A) => Promise<R>) => (...args: A): Promise<R> =>
      f(...args).catch((e: unknown) => {
        throw asEmbeddedClientError(e)
      })
    const lock = makeLockHandlers({ kv: internalKv, proposer, minTtl: minLeaseTtlSec(flags.electionTimeout) })
    const election = makeElectionHandlers({ kv: internalKv, proposer, minTtl: minLeaseTtlSec(flags.electionTimeout) })
    const plan = listenerPlan
    for (const warning of plan.warnings) yield* Effect.logWarning(warning).pipe(Effect.annotateLogs({ clientUrl: listenUrl }))
    if (plan._tag === "Tls" && plan.selfSigned) {
      // etcd's --auto-tls: a self-signed certificate for the listen URL's host, kept for restarts.
      yield* Effect.try(() => ensureSelfSignedCertificate(plan.certFile, plan.keyFile, [plan.host])).pipe(Effect.orDie)
    }
    const address = `${plan.host.includes(":") ? `[${plan.host}]` : plan.host}:${plan.port}`
    // etcd serves clients only once its member published its attributes (ReadyNotify): until
    // then a member's name is missing from MemberList. The gateway binds the client port once
    // its raft service reports the member's name in the membership (at once after a restart).
    yield* Effect.tryPromise(() => callEndpoint(rpc, raftStatus, raftStatusSubject, {}, { timeoutMs: 1000 })).pipe(
      Effect.flatMap((s) => (s.published === false ? Effect.fail("not published") : Effect.void)),
      Effect.tapError(() => Effect.logDebug("waiting for the member to publish its attributes before serving clients")),
      Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)) })
    )
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        startGrpcServer(undefined, {
          KV: { Range: handlers.Range, Put: handlers.Put, DeleteRange: handlers.DeleteRange, Txn: handlers.Txn, Compact: handlers.Compact },
          Lease: {
            LeaseGrant: lease.LeaseGrant,
            LeaseRevoke: lease.LeaseRevoke,
            LeaseKeepAlive: bidiStream(lease.LeaseKeepAlive),
            LeaseTimeToLive: lease.LeaseTimeToLive,
            LeaseLeases: lease.LeaseLeases
          },
          Lock: { Lock: abortable(viaClient(lock.Lock)), Unlock: viaClient(lock.Unlock) },
          Election: {
            Campaign: abortable(viaClient(election.Campaign)),
            Proclaim: viaClient(election.Proclaim),
            Leader: viaClient(election.Leader),
            Observe: abortable(viaClient(election.Observe)),
            Resign: viaClient(election.Resign)
          },
          Cluster: {
            MemberList: cluster.MemberList,
            MemberAdd: admin(cluster.MemberAdd),
            MemberRemove: admin(cluster.MemberRemove),
            MemberUpdate: admin(cluster.MemberUpdate),
            MemberPromote: admin(cluster.MemberPromote)
          },
          Maintenance: {
            Status: handlers.Status,
            MoveLeader: cluster.MoveLeader,
            Alarm: maintenance.Alarm,
            HashKV: adminRaw(backendMaintenance.HashKV),
            Defragment: adminRaw(backendMaintenance.Defragment),
            Snapshot: serverStream(adminRaw(backendMaintenance.Snapshot.handle))
          },
          Auth: auth.handlers,
          Watch: { Watch: bidiStream(watch.Watch) }
        }, { maxRequestBytes: flags.maxRequestBytes, maxConcurrentStreams: flags.maxConcurrentStreams }, leader, auth.resolve)
      ).pipe(Effect.orDie),
      // Unary calls in flight get up to 2 s to finish; then long-lived streams (Watch,
      // LeaseKeepAlive, Observe) are cut, as etcd's shutdown does, so that clients reconnect
      // elsewhere at once rather than holding a restart (rolling restarts) up.
      (server) =>
        Effect.promise(() =>
          new Promise<void>((r) => {
            const force = setTimeout(() => {
              server.forceShutdown()
              r()
            }, 2000)
            server.tryShutdown(() => {
              clearTimeout(force)
              r()
            })
          })
        )
    )
    // The JSON gateway calls this server as a gRPC client, through a Unix socket in the
    // member's private directory (./http-gateway.ts); removed at shutdown.
    const socketPath = yield* Effect.try(() => gatewaySocketPath(memberDir(flags))).pipe(Effect.orDie)
    yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())))
          // Private as every file of the member (its directory is 0700 already).
          .then(() => chmodSync(socketPath, 0o600))
      ).pipe(Effect.orDie),
      () => Effect.sync(() => rmSync(socketPath, { force: true }))
    )
    const httpSide = yield* Effect.acquireRelease(
      Effect.sync(() =>
        makeHttpGateway({
          grpcTarget: `unix:${socketPath}`,
          maxRequestBytes: flags.maxRequestBytes,
          version: { etcdserver: apiVersion, etcdcluster: apiVersion },
          health: (query) =>
            etcdHealth(rpc, {
              raftStatus: raftStatusSubject,
              readIndex: subjectOf(raftReadIndex, at),
              mvccStatus: subjectOf(mvccStatus, at),
              mvccAlarms: subjectOf(mvccAlarms, at)
            }, memberHealth, query)
        })
      ),
      (h) => Effect.sync(() => h.close())
    )
    // The gateway owns the client port (plain or TLS, with SO_REUSEPORT when several gateways
    // share it) and, as etcd's cmux, hands each connection to the gRPC server or the HTTP side.
    // Released before the gRPC server's shutdown above: no new connections, then the drain.
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
    const connections = { grpc: (connection: Duplex) => injector.injectConnection(connection), http: httpSide.connection }
    yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        plan._tag === "Tls"
          ? serveClientTls(plan, connections, (level, message, fields) =>
            runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields))))
          : serveClientPlain(plan, connections)
      ).pipe(Effect.orDie),
      (listener) => Effect.promise(() => listener.close())
    )
    yield* Effect.logInfo(`serving etcd v3 gRPC${plan._tag === "Tls" ? " over TLS" : ""}`).pipe(
      Effect.annotateLogs({ address, reusePort: plan.reusePort, ...(plan._tag === "Tls" ? { clientCertAuth: plan.clientCertAuth } : {}) })
    )
  })
)

launch("gateway", flags, GatewayLive)
