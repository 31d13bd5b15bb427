/**
 * etcd's services as one gateway serves them: the handlers of KV, Watch, Lease, Cluster,
 * Maintenance, Auth, and the v3lock Lock and v3election Election services, built on what they
 * share (the proposer, the reader, the member's identity, its health and leader, the auth
 * store), with the admin-only calls wrapped as etcd checks them, and the member's observability
 * (readiness check, proposal metrics, slow-trace keep notices, watch failover metrics).
 *
 * What it is not: the client port (./client-port.ts serves these handlers) or the handlers
 * themselves (./kv.ts, ./watch.ts, ./lease.ts, ./cluster.ts, ./maintenance.ts,
 * ./backend-maintenance.ts, ./auth.ts, ./lock.ts, ./election.ts). Every resource acquired here
 * (proposer, health poller, leader monitor, watch sessions) is released with the scope.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import {
  gatewayResult, gatewayWatch, leaseKeepAlive, leaseTimeToLive, mvccAlarms, mvccAuth, mvccChunk, mvccDefragment, mvccHashKv, mvccLeases,
  mvccRange, mvccSnapshot, mvccStatus, raftPropose, raftReadIndex, raftStatus, subjectOf, traceKeep
} from "../../shared/endpoints.ts"
import { endpointOptions, Nats, runDetached } from "../runtime/process.ts"
import type { CommonFlags } from "../runtime/process.ts"
import { callEndpoint, publishEndpoint } from "../runtime/rpc.ts"
import { makeBackendMaintenanceHandlers } from "./backend-maintenance.ts"
import { makeClusterHandlers } from "./cluster.ts"
import { makeKvHandlers } from "./kv.ts"
import { makeMaintenanceHandlers, quotaBytes } from "./maintenance.ts"
import { Proposer } from "../runtime/proposer.ts"
import { Reader } from "../runtime/reader.ts"
import { makeElectionHandlers } from "./election.ts"
import { makeInternalKv } from "./internal-kv.ts"
import { makeLeaseHandlers } from "./lease.ts"
import { makeLockHandlers } from "./lock.ts"
import { minLeaseTtlSec } from "../lease/core/lessor.ts"
import { abortable, bidiStream, serverStream } from "./call-handlers.ts"
import type { CallerResolver } from "./call-handlers.ts"
import type { EtcdServiceHandlers } from "./server.ts"
import { makeWatchHandler } from "./watch.ts"
import { checkMemberReady, MemberHealth } from "./health.ts"
import { LeaderMonitor } from "./leader.ts"
import { asEmbeddedClientError } from "./errors.ts"
import { asRawAuthError, makeAuth } from "./auth.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { counter, counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import type { Counter } from "prom-client"
import { onSlowRoot } from "../runtime/tracing.ts"
import type { GatewayFlags } from "./gateway-flags.ts"
import { proposalResultWaitMs } from "./timeouts.ts"

/** What the client port needs of the gateway's services. */
export interface EtcdServices {
  /** The handlers of each etcd service, by service and method name (./server.ts startGrpcServer). */
  readonly services: EtcdServiceHandlers
  /** The member's leader, for require-leader calls (./leader.ts). */
  readonly leader: LeaderMonitor
  /** Resolves each call's caller (./auth.ts). */
  readonly caller: CallerResolver
  /** The member's services' health, for /health (./health.ts). */
  readonly memberHealth: MemberHealth
}

/**
 * Builds the gateway's services for member `flags.member`; `clientCertAuth`: the client port
 * authenticates clients by their certificate's common name (etcd --client-cert-auth).
 */
export const makeEtcdServices = (
  flags: CommonFlags & GatewayFlags,
  clientCertAuth: boolean
): Effect.Effect<EtcdServices, never, Nats | Scope.Scope> =>
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
          resultWaitMs: proposalResultWaitMs,
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
    const memberHealth = new MemberHealth(rpc, at)
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
      clientCertAuth,
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
    const services: EtcdServiceHandlers = {
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
    }
    return { services, leader, caller: auth.resolve, memberHealth }
  })
