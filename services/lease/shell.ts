/**
 * The lease service's shell: drives the pure lessor (./core/lessor.ts) with the member's raft
 * role, the applied lease table and a clock, and serves keep-alives and TimeToLive.
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
 *
 * Keep-alives (`lease.keepalive`) and TimeToLive (`lease.timetolive`) come from the member's
 * gateway. A follower's lease service forwards them to the leader's (found through
 * `raft.status` and `raft.members`), once; keep-alives are never written through raft (etcd
 * LeaseRenew on the leader, forwarded by followers over HTTP).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { LeaseWriteRequest } from "../../shared/kv.ts"
import type { RaftStatus } from "../../shared/schema.ts"
import {
  leaseKeepAlive, leaseResult, leaseTimeToLive, mvccLease, mvccLeases, raftMembers, raftPropose, raftStatus, subjectOf
} from "../../shared/endpoints.ts"
import { Proposer } from "../runtime/proposer.ts"
import type { RpcClient, ServeOptions } from "../runtime/rpc.ts"
import { followRaftState } from "../runtime/raft-state.ts"
import { callEndpoint, okOf, serveEndpoint } from "../runtime/rpc.ts"
import { Lessor, maxCheckpointBatch } from "./core/lessor.ts"
import { setTimeout as sleep } from "node:timers/promises"

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
  private readonly subjects: {
    readonly raftStatus: string
    readonly raftMembers: string
    readonly leases: string
    readonly lease: string
  }
  private primaryTerm = 0
  private syncedIndex = 0
  private syncing: Promise<void> | undefined
  private status: typeof RaftStatus.Type | undefined
  private leaderName: { readonly id: bigint; readonly name: string } | undefined
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
    this.subjects = {
      raftStatus: subjectOf(raftStatus, at),
      raftMembers: subjectOf(raftMembers, at),
      leases: subjectOf(mvccLeases, at),
      lease: subjectOf(mvccLease, at)
    }
    this.proposer = new Proposer(nc, rpc, {
      member: options.member,
      proposeSubject: subjectOf(raftPropose, at),
      resultSubject: subjectOf(leaseResult, { ...at, instance }),
      requestTimeoutMs: options.requestTimeoutMs,
      resultWaitMs: 3000,
      maxRequestBytes: 8 * 1024 * 1024,
      clientRequests: false
    })
  }

  /** Serves the endpoints and starts the loops. */
  start(serveOptions: ServeOptions): void {
    const at = { cluster: this.options.cluster, member: this.options.member }
    this.endpoints.push(
      // A poll that gets no answer keeps the role we know: the raft service's own CheckQuorum
      // demotes a partitioned leader and we learn it at the next answer.
      followRaftState(this.nc, this.rpc, at, { onStatus: (s) => void this.onStatus(s) }, { pollMs: this.options.statusPollMs, serveOptions }),
      serveEndpoint(this.nc, leaseKeepAlive, at, (req) => {
        this.keepAlive(req.body.id, req.body.forwarded, req.traceparent).then(
          (ttl) => req.reply({ ok: { ttl } }),
          (e) => req.reply({ err: asErrorData(e) })
        )
      }, serveOptions),
      serveEndpoint(this.nc, leaseTimeToLive, at, (req) => {
        this.timeToLive(req.body.id, req.body.keys, req.body.forwarded, req.traceparent).then(
          (ok) => req.reply({ ok }),
          (e) => req.reply({ err: asErrorData(e) })
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
    this.status = status
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
      this.log.warn("lease service could not read the lease table; will retry", { error: String((e as Error)?.message ?? e) })
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
      const r = await callEndpoint(this.rpc, mvccLeases, this.subjects.leases, { sinceIndex: this.syncedIndex, minAppliedIndex }, {
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

  /**
   * A keep-alive: renews on the leader, forwards from a follower. Resolves with the TTL in
   * seconds; rejects with LeaseNotFound, NoLeader, NotLeader (a forwarded request that found
   * no primary here) or RequestTimeout.
   */
  private async keepAlive(id: bigint, forwarded: boolean, traceparent: string): Promise<number> {
    const deadline = this.now() + this.options.requestTimeoutMs
    for (;;) {
      if (this.lessor.isPrimary()) {
        let r = this.lessor.renew(id, this.now())
        if ("err" in r && r.err === "NotFound") {
          // Granted a moment ago and not synced yet? Catch up to the commit index, then retry.
          await this.sync(await this.commitIndex())
          r = this.lessor.renew(id, this.now())
        }
        if ("ttl" in r) {
          this.counters.renewals++
          if (r.clearCheckpoint) {
            this.propose({ leaseCheckpoint: { checkpoints: [{ id: LeaseId(id), remainingTtl: 0 }] } }).catch(() => undefined)
          }
          return r.ttl
        }
        if ("expired" in r) {
          // etcd waits for the pending revocation: the answer is then "not found".
          await sleep(100)
          await this.sync(0).catch(() => undefined)
          if (this.now() > deadline) throw { _tag: "RequestTimeout" } satisfies EtcdErrorData
          continue
        }
        if (r.err === "NotFound") throw { _tag: "LeaseNotFound", leaseId: id } satisfies EtcdErrorData
      }
      if (forwarded) throw { _tag: "NotLeader" } satisfies EtcdErrorData
      const ttl = await this.viaLeader("keepalive", deadline, async (target) => {
        this.counters.forwarded++
        return okOf(await callEndpoint(this.rpc, leaseKeepAlive, target, { id, forwarded: true }, {
          timeoutMs: Math.max(1, Math.min(2000, deadline - this.now())),
          traceparent
        })).ttl
      })
      if (ttl !== undefined) return ttl
    }
  }

  /**
   * One attempt to hand a request to the leader's lease service with `call(subject)`. Resolves
   * with its answer, or undefined when the caller should try again (no leader known yet, this
   * member leads but has not promoted yet, or leadership moved); rejects with any other error of
   * the call, and with NoLeader or RequestTimeout once `deadline` (ms, this.now() clock) passed.
   */
  private async viaLeader<A>(endpoint: "keepalive" | "timetolive", deadline: number, call: (subject: string) => Promise<A>): Promise<A | undefined> {
    const target = await this.leaderSubject(endpoint)
    if (target === "self") {
      // We lead but have not promoted yet (reading the table): wait for it.
      await sleep(50)
    } else if (target !== undefined) {
      try {
        return await call(target)
      } catch (e) {
        const tag = (e as EtcdErrorData)?._tag
        if (tag !== "NotLeader" && tag !== "RequestTimeout" && tag !== "NoLeader") throw e
        this.status = undefined
        await sleep(100)
      }
    } else {
      await sleep(100)
    }
    if (this.now() > deadline) throw { _tag: target === undefined ? "NoLeader" : "RequestTimeout" } satisfies EtcdErrorData
    return undefined
  }

  /**
   * LeaseTimeToLive on the leader (forwarded from followers): the granted TTL, the remaining
   * TTL in whole seconds (truncated, as etcd's int64(Remaining().Seconds())), and the attached
   * keys when asked. Rejects with LeaseNotFound for an unknown lease.
   */
  private async timeToLive(id: bigint, keys: boolean, forwarded: boolean, traceparent: string): Promise<{ grantedTtl: number; ttl: number; keys: Uint8Array[] }> {
    const deadline = this.now() + this.options.requestTimeoutMs
    for (;;) {
      if (this.lessor.isPrimary()) {
        const commit = await this.commitIndex()
        await this.sync(commit)
        const r = await callEndpoint(this.rpc, mvccLease, this.subjects.lease, { id, keys, minAppliedIndex: commit }, {
          timeoutMs: this.options.requestTimeoutMs,
          traceparent
        })
        if (r.lease === undefined) throw { _tag: "LeaseNotFound", leaseId: id } satisfies EtcdErrorData
        const remainingMs = this.lessor.remainingMs(id, this.now()) ?? r.lease.ttl * 1000
        return { grantedTtl: r.lease.ttl, ttl: Math.trunc(remainingMs / 1000), keys: [...r.keys] }
      }
      if (forwarded) throw { _tag: "NotLeader" } satisfies EtcdErrorData
      const answer = await this.viaLeader("timetolive", deadline, async (target) => {
        const r = okOf(await callEndpoint(this.rpc, leaseTimeToLive, target, { id, keys, forwarded: true }, {
          timeoutMs: Math.max(1, Math.min(3000, deadline - this.now())),
          traceparent
        }))
        return { grantedTtl: r.grantedTtl, ttl: r.ttl, keys: [...r.keys] }
      })
      if (answer !== undefined) return answer
    }
  }

  /** The leader's commit index, from a fresh raft status. */
  private async commitIndex(): Promise<number> {
    const s = await callEndpoint(this.rpc, raftStatus, this.subjects.raftStatus, {}, { timeoutMs: 2000 })
    this.status = s
    return s.commitIndex
  }

  /**
   * The subject of the leader's lease `endpoint`: "self" when this member leads, undefined when
   * no leader is known.
   */
  private async leaderSubject(endpoint: "keepalive" | "timetolive"): Promise<string | "self" | undefined> {
    if (this.status === undefined) {
      try {
        await this.commitIndex()
      } catch {
        return undefined
      }
    }
    const s = this.status!
    if (s.leader === 0n) return undefined
    if (s.leader === s.memberId) return "self"
    if (this.leaderName?.id !== s.leader) {
      try {
        const members = (await callEndpoint(this.rpc, raftMembers, this.subjects.raftMembers, {}, { timeoutMs: 2000 })).members
        const m = members.find((x) => x.id === s.leader)
        if (m === undefined || m.name === "") return undefined
        this.leaderName = { id: m.id, name: m.name }
      } catch {
        return undefined
      }
    }
    const leader = { cluster: this.options.cluster, member: this.leaderName!.name }
    return endpoint === "keepalive" ? subjectOf(leaseKeepAlive, leader) : subjectOf(leaseTimeToLive, leader)
  }
}

/** Error data for a reply: tagged data as is, anything else as a defect. */
const asErrorData = (e: unknown): EtcdErrorData => {
  const tag = (e as { _tag?: unknown } | null)?._tag
  if (typeof tag === "string") return e as EtcdErrorData
  return { _tag: "MalformedFrame", reason: `lease service: ${String((e as Error)?.message ?? e)}` }
}
