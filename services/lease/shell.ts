/**
 * The lease service's shell: drives the pure lessor (./core/lessor.ts) with the member's raft
 * role, the applied lease table and a clock, and serves keep-alives and TimeToLive (answered by
 * ./requests.ts; the leader is found through ./leader-route.ts).
 *
 * Only the leader's lease service tracks expiry (etcd: only the primary lessor does):
 * - it follows its raft service's status (../runtime/raft-state.ts: pushed `raft.state` frames,
 *   and `raft.status` every {@link LeaseShellOptions.statusPollMs} as a backstop) to learn
 *   whether this member leads. On
 *   becoming leader (or on a new term while leading) it reads the whole lease table from its
 *   mvcc service at the leader's commit index and promotes the lessor: every lease gets its
 *   remaining TTL (the checkpointed one, else its TTL) plus one election timeout from now (etcd
 *   Promote), so no lease expires early because of the election. On losing leadership it
 *   demotes: nothing expires.
 * - while leading it follows the table's changes (`mvcc.leases`, incremental by raft index)
 *   every {@link LeaseShellOptions.syncPollMs}, and every 500 ms proposes the revocation of
 *   expired leases through raft, at most half the revoke rate per tick (etcd
 *   revokeExpiredLeases: 1000/s by default); a revocation that does not apply is proposed again
 *   after 3 s. It never deletes anything itself: a lease goes when its LeaseRevoke applies on
 *   every member.
 * - with checkpointing on, it proposes the remaining TTL of long leases every checkpoint
 *   interval (etcd LeaseCheckpoint), so that a new leader, or a restarted cluster, continues
 *   from there rather than from the full TTL.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { errorDataOf, describeError } from "../../shared/errors.ts"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { LeaseWriteRequest } from "../../shared/kv.ts"
import type { RaftStatus } from "../../shared/schema.ts"
import { leaseKeepAlive, leaseResult, leaseTimeToLive, mvccLease, mvccLeases, raftPropose, subjectOf } from "../../shared/endpoints.ts"
import { Proposer } from "../runtime/proposer.ts"
import type { RpcClient, ServeOptions } from "../runtime/rpc.ts"
import { followRaftState } from "../runtime/raft-state.ts"
import { callEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import { Lessor, maxCheckpointBatch } from "./core/lessor.ts"
import { LeaderRoute } from "./leader-route.ts"
import { keepAlive, timeToLive } from "./requests.ts"
import type { LeaseRequestContext } from "./requests.ts"
import { proposalResultWaitMs } from "./timeouts.ts"

/** Settings of the lease service. */
export interface LeaseShellOptions {
  readonly cluster: string
  readonly member: string
  /** The raft election timeout, ms: the extension every lease gets at promotion. */
  readonly electionTimeoutMs: number
  /** Checkpoint interval in ms; undefined: checkpointing off. */
  readonly checkpointIntervalMs: number | undefined
  /** Revocations per second at most (etcd 1000). */
  readonly revokeRate: number
  /** Time a request may take in all, ms. */
  readonly requestTimeoutMs: number
  /** How often the raft role is asked for besides the pushed raft.state frames, ms. */
  readonly statusPollMs: number
  /** How often the leader follows the lease table, ms. */
  readonly syncPollMs: number
}

/** Callbacks for logging. */
export interface LeaseShellLog {
  readonly info: (message: string, fields: Record<string, unknown>) => void
  readonly warn: (message: string, fields: Record<string, unknown>) => void
}


/** The period of the expiry and checkpoint loop (etcd lessor runLoop). */
const tickMs = 500

/**
 * The running lease service. Invariant: `lessor.isPrimary()` only while the last raft status
 * said this member leads in term `primaryTerm`, and `syncedIndex` is the applied index the
 * lessor's view of the table is complete up to.
 */
export class LeaseShell {
  private readonly lessor: Lessor
  private readonly nc: NatsConnection
  private readonly rpc: RpcClient
  private readonly options: LeaseShellOptions
  private readonly log: LeaseShellLog
  private readonly now: () => number
  private readonly proposer: Proposer
  private readonly route: LeaderRoute
  private readonly requests: LeaseRequestContext
  /** The member's `mvcc.leases` subject. */
  private readonly leasesSubject: string
  private primaryTerm = 0
  private syncedIndex = 0
  private syncing: Promise<void> | undefined
  private stopped = false
  private readonly timers: Array<ReturnType<typeof setInterval>> = []
  private readonly endpoints: Array<{ readonly stop: () => void }> = []
  private readonly pendingRevokes = new Set<bigint>()
  /** Counters for logs and tests. */
  readonly counters = { promotions: 0, demotions: 0, revokesProposed: 0, checkpointsProposed: 0, renewals: 0, forwarded: 0 }

  constructor(nc: NatsConnection, rpc: RpcClient, instance: string, options: LeaseShellOptions, log: LeaseShellLog, now: () => number = () => performance.now()) {
    this.nc = nc
    this.rpc = rpc
    this.options = options
    this.log = log
    this.now = now
    this.lessor = new Lessor({
      ...(options.checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs: options.checkpointIntervalMs }),
      revokeRate: options.revokeRate
    })
    const at = { cluster: options.cluster, member: options.member }
    this.route = new LeaderRoute(rpc, at)
    this.leasesSubject = subjectOf(mvccLeases, at)
    this.proposer = new Proposer(nc, rpc, {
      member: options.member,
      proposeSubject: subjectOf(raftPropose, at),
      resultSubject: subjectOf(leaseResult, { ...at, instance }),
      requestTimeoutMs: options.requestTimeoutMs,
      resultWaitMs: proposalResultWaitMs,
      maxRequestBytes: 8 * 1024 * 1024,
      clientRequests: false
    })
    this.requests = {
      lessor: this.lessor,
      rpc,
      route: this.route,
      requestTimeoutMs: options.requestTimeoutMs,
      leaseSubject: subjectOf(mvccLease, at),
      now,
      sync: (minAppliedIndex) => this.sync(minAppliedIndex),
      clearCheckpoint: (id) => {
        this.propose({ leaseCheckpoint: { checkpoints: [{ id: LeaseId(id), remainingTtl: 0 }] } }).catch(() => undefined)
      },
      counters: this.counters
    }
  }

  /** Serves the endpoints and starts the loops. */
  start(serveOptions: ServeOptions): void {
    const at = { cluster: this.options.cluster, member: this.options.member }
    this.endpoints.push(
      // A poll that gets no answer keeps the role we know: the raft service's own CheckQuorum
      // demotes a partitioned leader and we learn it at the next answer.
      followRaftState(this.nc, this.rpc, at, { onStatus: (s) => void this.onStatus(s) }, { pollMs: this.options.statusPollMs, serveOptions }),
      serveEndpoint(this.nc, leaseKeepAlive, at, (req) => {
        keepAlive(this.requests, req.body.id, req.body.forwarded, req.traceparent).then(
          (ttl) => req.reply({ ok: { ttl } }),
          (e) => req.reply({ err: errorDataOf(e, "lease service") })
        )
      }, serveOptions),
      serveEndpoint(this.nc, leaseTimeToLive, at, (req) => {
        timeToLive(this.requests, req.body.id, req.body.keys, req.body.forwarded, req.traceparent).then(
          (ok) => req.reply({ ok }),
          (e) => req.reply({ err: errorDataOf(e, "lease service") })
        )
      }, serveOptions)
    )
    this.timers.push(setInterval(() => {
      if (this.lessor.isPrimary()) void this.sync(0).catch(() => undefined)
    }, this.options.syncPollMs))
    this.timers.push(setInterval(() => this.tick(), tickMs))
  }

  /** Stops loops and endpoints; waiting requests fail with Stopped. */
  stop(): void {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    for (const e of this.endpoints) e.stop()
    this.proposer.close()
  }

  /** True while this lease service tracks expiry. */
  isPrimary(): boolean {
    return this.lessor.isPrimary()
  }

  /** Takes the member's raft status (pushed or polled): promotes or demotes the lessor on a change. */
  private async onStatus(status: typeof RaftStatus.Type): Promise<void> {
    if (this.stopped) return
    this.route.observe(status)
    const leading = status.raftState === "StateLeader" && status.leader === status.memberId
    if (leading && (!this.lessor.isPrimary() || this.primaryTerm !== status.term)) {
      await this.promote(status)
    } else if (!leading && this.lessor.isPrimary()) {
      this.lessor.demote()
      this.primaryTerm = 0
      this.counters.demotions++
      this.log.info("lease service demoted", { term: status.term, leases: this.lessor.size })
    }
  }

  private promoting = false

  /** Reads the whole table at the leader's commit index, then promotes (etcd Promote). */
  private async promote(status: typeof RaftStatus.Type): Promise<void> {
    if (this.promoting) return
    this.promoting = true
    try {
      this.syncedIndex = 0
      await this.sync(status.commitIndex)
      if (this.stopped) return
      this.lessor.promote(this.now(), this.options.electionTimeoutMs)
      this.primaryTerm = status.term
      this.counters.promotions++
      this.log.info("lease service promoted", { term: status.term, leases: this.lessor.size, syncedIndex: this.syncedIndex })
    } catch (e) {
      this.log.warn("lease service could not read the lease table; will retry", { error: describeError(e) })
    } finally {
      this.promoting = false
    }
  }

  /**
   * Brings the lessor's view of the table up to at least `minAppliedIndex` (and to whatever
   * the mvcc service applied by then). One sync runs at a time; callers queue behind it.
   */
  private async sync(minAppliedIndex: number): Promise<void> {
    while (this.syncing !== undefined) await this.syncing.catch(() => undefined)
    if (this.syncedIndex > 0 && this.syncedIndex >= minAppliedIndex && minAppliedIndex > 0) return
    const run = (async () => {
      const r = await callEndpoint(this.rpc, mvccLeases, this.leasesSubject, { sinceIndex: this.syncedIndex, minAppliedIndex }, {
        timeoutMs: this.options.requestTimeoutMs
      })
      const now = this.now()
      if (r.full) {
        const present = new Set(r.leases.map((l) => l.id))
        for (const id of [...this.lessor.ids()]) if (!present.has(id)) this.lessor.remove(id)
      }
      for (const id of r.removed) {
        this.lessor.remove(id)
        this.pendingRevokes.delete(id)
      }
      for (const l of r.leases) this.lessor.upsert(l, now)
      this.syncedIndex = Math.max(this.syncedIndex, r.appliedIndex)
    })()
    this.syncing = run
    try {
      await run
    } finally {
      this.syncing = undefined
    }
  }

  /** The 500 ms loop: revoke expired leases (rate-limited), propose due checkpoints. */
  private tick(): void {
    if (!this.lessor.isPrimary() || this.stopped) return
    const now = this.now()
    const expired = this.lessor.findExpired(now, this.lessor.revokeLimitPerTick())
    for (const id of expired) {
      this.counters.revokesProposed++
      this.pendingRevokes.add(id)
      this.propose({ leaseRevoke: { id: LeaseId(id) } }).then(
        () => this.pendingRevokes.delete(id),
        (e) => {
          this.pendingRevokes.delete(id)
          // LeaseNotFound: a client revoked it first. Anything else: retried in 3 s.
          if ((e as EtcdErrorData)?._tag !== "LeaseNotFound") this.log.warn("lease revocation failed; will retry", { lease: id.toString(16), error: (e as EtcdErrorData)?._tag })
        }
      )
    }
    if (expired.length > 0) void this.sync(0).catch(() => undefined)
    for (;;) {
      const due = this.lessor.dueCheckpoints(now, maxCheckpointBatch)
      if (due.length === 0) break
      this.counters.checkpointsProposed += due.length
      this.propose({ leaseCheckpoint: { checkpoints: due.map((c) => ({ id: LeaseId(c.id), remainingTtl: c.remainingTtl })) } }).catch((e) =>
        this.log.warn("lease checkpoint failed", { error: (e as EtcdErrorData)?._tag })
      )
      if (due.length < maxCheckpointBatch) break
    }
  }

  private propose(request: LeaseWriteRequest): Promise<unknown> {
    return this.proposer.propose(request, "")
  }
}
