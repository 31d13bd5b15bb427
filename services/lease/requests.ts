/**
 * The lease service's answers to the member's gateway: keep-alives (`lease.keepalive`, etcd
 * LeaseRenew) and TimeToLive (`lease.timetolive`, etcd LeaseTimeToLive). The leader's lease
 * service answers from its lessor; a follower's forwards the request to the leader's, once (the
 * leader's answers NotLeader rather than forwarding again), as etcd's followers forward
 * LeaseRenew to the leader over HTTP. Keep-alives are never written through raft.
 *
 * While no leader is known, the leader's lessor is not promoted yet, leadership moves, or the
 * lease has expired and its revocation is pending, the request is tried again (../runtime/retry.ts)
 * until the request timeout: see {@link keepAlive} for the waits and the errors at the bound.
 */
import { LeaseNotFound, NoLeader, NotLeader, RequestTimeout, tagOf } from "../../shared/errors.ts"
import { leaseKeepAlive, leaseTimeToLive, mvccLease } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import { retryPromise } from "../runtime/retry.ts"
import type { RetryPolicy } from "../runtime/retry.ts"
import type { Lessor } from "./core/lessor.ts"
import type { ForwardedEndpoint, LeaderRoute } from "./leader-route.ts"
import { forwardedKeepAliveTimeoutMs, forwardedTimeToLiveTimeoutMs } from "./timeouts.ts"

/** What the request handlers need from the lease shell. */
export interface LeaseRequestContext {
  readonly lessor: Lessor
  readonly rpc: RpcClient
  readonly route: LeaderRoute
  /** Time a request may take in all, ms. */
  readonly requestTimeoutMs: number
  /** The member's `mvcc.lease` subject. */
  readonly leaseSubject: string
  /** The clock of the lessor, ms. */
  readonly now: () => number
  /** Brings the lessor's view of the lease table up to at least the given applied index. */
  readonly sync: (minAppliedIndex: number) => Promise<void>
  /** Proposes dropping a lease's checkpoint (a renewal restarts its TTL); fire and forget. */
  readonly clearCheckpoint: (id: bigint) => void
  readonly counters: { renewals: number; forwarded: number }
}

/** Why an attempt is to be made again; see {@link leaderPolicy}. */
type Wait = "no leader known" | "leader not promoted yet" | "leader moved" | "lease expiring"

/** An attempt's signal that the request should be tried again after a wait. */
class TryAgain extends Error {
  readonly why: Wait
  constructor(why: Wait) {
    super(why)
    this.why = why
  }
}

/**
 * The retry policy of keep-alives and TimeToLive: until the request timeout, 50 ms after finding
 * this member leading but not promoted yet, 100 ms otherwise. At the bound: NoLeader when the
 * last attempt knew no leader, else RequestTimeout.
 */
const leaderPolicy = (name: string, ctx: LeaseRequestContext, id: bigint): RetryPolicy<unknown, NoLeader | RequestTimeout> => ({
  name,
  deadlineMs: ctx.requestTimeoutMs,
  backoff: (e) => ((e as TryAgain).why === "leader not promoted yet" ? 50 : 100),
  retryable: (e) => e instanceof TryAgain,
  atBound: (last) => ((last as TryAgain).why === "no leader known" ? new NoLeader() : new RequestTimeout()),
  logFields: { lease: id.toString(16) }
})

/**
 * One attempt to hand a request to the leader's lease service with `call(subject)`: resolves
 * with its answer; rejects with TryAgain when no leader is known yet, this member leads but has
 * not promoted yet, or the leader's service answered NotLeader, RequestTimeout or NoLeader
 * (leadership moved); and with any other failure of the call as it is.
 */
const viaLeader = async <A>(ctx: LeaseRequestContext, endpoint: ForwardedEndpoint, call: (subject: string) => Promise<A>): Promise<A> => {
  const target = await ctx.route.leaderSubject(endpoint)
  if (target === undefined) throw new TryAgain("no leader known")
  // We lead but have not promoted yet (reading the table): wait for it.
  if (target === "self") throw new TryAgain("leader not promoted yet")
  try {
    return await call(target)
  } catch (e) {
    const tag = tagOf(e)
    if (tag !== "NotLeader" && tag !== "RequestTimeout" && tag !== "NoLeader") throw e
    ctx.route.forget()
    throw new TryAgain("leader moved")
  }
}

/**
 * A keep-alive: renews on the leader, forwards from a follower (`forwarded` is true on the
 * leader's side of a forward). Resolves with the TTL in seconds; rejects with LeaseNotFound, with
 * NotLeader for a forwarded request that found no primary here, and at the request timeout with
 * NoLeader or RequestTimeout (see {@link leaderPolicy}). An expired lease whose revocation is
 * pending is asked again every 100 ms: etcd waits for the revocation, and then answers "not
 * found".
 */
export const keepAlive = (ctx: LeaseRequestContext, id: bigint, forwarded: boolean, traceparent: string): Promise<number> => {
  const deadline = ctx.now() + ctx.requestTimeoutMs
  let expiring = false
  return retryPromise(leaderPolicy("lease keep-alive", ctx, id), async () => {
    if (expiring) {
      expiring = false
      await ctx.sync(0).catch(() => undefined)
    }
    if (ctx.lessor.isPrimary()) {
      let r = ctx.lessor.renew(id, ctx.now())
      if ("err" in r && r.err === "NotFound") {
        // Granted a moment ago and not synced yet? Catch up to the commit index, then retry.
        await ctx.sync(await ctx.route.commitIndex())
        r = ctx.lessor.renew(id, ctx.now())
      }
      if ("ttl" in r) {
        ctx.counters.renewals++
        if (r.clearCheckpoint) ctx.clearCheckpoint(id)
        return r.ttl
      }
      if ("expired" in r) {
        expiring = true
        throw new TryAgain("lease expiring")
      }
      if (r.err === "NotFound") throw new LeaseNotFound({ leaseId: id })
    }
    if (forwarded) throw new NotLeader()
    return viaLeader(ctx, "keepalive", async (target) => {
      ctx.counters.forwarded++
      return okOf(await callEndpoint(ctx.rpc, leaseKeepAlive, target, { id, forwarded: true }, {
        timeoutMs: Math.max(1, Math.min(forwardedKeepAliveTimeoutMs, deadline - ctx.now())),
        traceparent
      })).ttl
    })
  })
}

/**
 * LeaseTimeToLive on the leader (forwarded from followers, as {@link keepAlive}): the granted
 * TTL, the remaining TTL in whole seconds (truncated, as etcd's int64(Remaining().Seconds())),
 * and the attached keys when asked. Rejects with LeaseNotFound for an unknown lease, NotLeader
 * as {@link keepAlive}, the failures of the leader's reads as they come, and at the request
 * timeout with NoLeader or RequestTimeout.
 */
export const timeToLive = (
  ctx: LeaseRequestContext,
  id: bigint,
  keys: boolean,
  forwarded: boolean,
  traceparent: string
): Promise<{ grantedTtl: number; ttl: number; keys: Uint8Array[] }> => {
  const deadline = ctx.now() + ctx.requestTimeoutMs
  return retryPromise(leaderPolicy("lease time-to-live", ctx, id), async () => {
    if (ctx.lessor.isPrimary()) {
      const commit = await ctx.route.commitIndex()
      await ctx.sync(commit)
      const r = await callEndpoint(ctx.rpc, mvccLease, ctx.leaseSubject, { id, keys, minAppliedIndex: commit }, {
        timeoutMs: ctx.requestTimeoutMs,
        traceparent
      })
      if (r.lease === undefined) throw new LeaseNotFound({ leaseId: id })
      const remainingMs = ctx.lessor.remainingMs(id, ctx.now()) ?? r.lease.ttl * 1000
      return { grantedTtl: r.lease.ttl, ttl: Math.trunc(remainingMs / 1000), keys: [...r.keys] }
    }
    if (forwarded) throw new NotLeader()
    return viaLeader(ctx, "timetolive", async (target) => {
      const r = okOf(await callEndpoint(ctx.rpc, leaseTimeToLive, target, { id, keys, forwarded: true }, {
        timeoutMs: Math.max(1, Math.min(forwardedTimeToLiveTimeoutMs, deadline - ctx.now())),
        traceparent
      }))
      return { grantedTtl: r.grantedTtl, ttl: r.ttl, keys: [...r.keys] }
    })
  })
}
