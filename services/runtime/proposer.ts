/**
 * The client side of the bus for writes, shared by the gateway and the lease service: turns a
 * write request into a proposal, hands it to the member's raft service, and waits for the apply
 * result that the member's mvcc service publishes to this process's result subject (a gateway's
 * gateway.result, the lease service's lease.result).
 *
 * Loss handling (NATS core is at-most-once): a proposal that raft did not acknowledge, or whose
 * result did not arrive within `resultWaitMs`, is proposed again with the same request id until
 * the deadline (./retry.ts). The mvcc service applies a request id once (a retried duplicate is skipped and
 * its cached result re-sent), so retries never apply a write twice. After the deadline the
 * outcome is unknown and the client gets etcd's "request timed out" (or "no leader" when raft
 * kept answering that), exactly the ambiguity etcd itself reports.
 *
 * Batching: the proposals of one event-loop turn travel to raft in one `propose` frame (up to
 * {@link maxBatchBytes}), and the mvcc service answers the proposals of one applied batch in one
 * `apply.result` frame, so the per-frame cost of each NATS hop is shared by every write in
 * flight rather than paid per write.
 *
 * Follows etcd server/etcdserver/v3_server.go (processInternalRaftRequestOnce) in spirit: one
 * wait registration per request id, triggered by the applier.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { randomBytes } from "node:crypto"
import { ContextDeadlineExceeded, RequestTimeout, RequestTooLarge, Stopped, toEtcdError, tagOf } from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { packValue } from "../../shared/frame.ts"
import type { AuthWriteRequest } from "../../shared/auth.ts"
import type { LeaseWriteRequest, WriteRequest } from "../../shared/kv.ts"
import type { ApplyResults } from "../../shared/schema.ts"
import { gatewayResult, leaseResult, raftPropose, tokensOf } from "../../shared/endpoints.ts"
import type { EndpointRequest, RpcClient } from "./rpc.ts"
import { callEndpoint, okOf, serveEndpoint } from "./rpc.ts"
import { currentTraceparent } from "./tracing.ts"
import { currentAuthInfo } from "./auth-context.ts"
import { retryPromise } from "./retry.ts"
import { setTimeout as sleep } from "node:timers/promises"
import { proposeCallMaxMs } from "./timeouts.ts"

/** A write's outcome: the mvcc response (shared/kv.ts WriteResponse) with revision and term. */
export interface WriteOutcome {
  readonly response: unknown
  readonly revision: number
  readonly term: number
}

/** Proposer settings. */
export interface ProposerOptions {
  readonly member: string
  readonly proposeSubject: string
  readonly resultSubject: string
  /** Total time a write may take before "request timed out" (etcd: 5 s + 2 x election timeout). */
  readonly requestTimeoutMs: number
  /** How long to wait for a result before proposing again. */
  readonly resultWaitMs: number
  /** Largest encoded proposal accepted (etcd --max-request-bytes, 1.5 MiB). */
  readonly maxRequestBytes: number
  /**
   * True for a gateway: every proposal carries the current request's auth info
   * (./auth-context.ts), checked at apply. False for the lease service, whose proposals
   * (expiry revocations, checkpoints) are the system's own and carry none.
   */
  readonly clientRequests: boolean
}

interface Waiter {
  resolve: (outcome: WriteOutcome) => void
  /** With the apply's error (its result frame's data as an instance), or Stopped at close. */
  reject: (error: EtcdError) => void
}

/** An attempt's signal that the proposal was accepted but its result has not come yet. */
class NoResultYet extends Error {}

/** An attempt's signal that the result promise settled (an outcome, or an apply failure): it is the answer. */
class Settled extends Error {}

/** Largest sum of proposal bytes in one propose frame (well under nats-server's 8 MiB max_payload). */
export const maxBatchBytes = 4 * 1024 * 1024

/** Proposals gathered for the next propose frame, and the outcome they share. */
interface Batch {
  readonly proposals: Uint8Array[]
  bytes: number
  readonly traceparent: string
  /** How long the frame is retried without a reply (the first proposal's remaining time, at most 1 s). */
  readonly timeoutMs: number
  readonly acked: Promise<void>
  ack: () => void
  fail: (error: unknown) => void
}

/**
 * Proposes writes and matches their results. Invariant: `waiters` holds exactly the request
 * ids of calls to {@link Proposer.propose} still in progress.
 */
export class Proposer {
  private readonly waiters = new Map<bigint, Waiter>()
  private readonly idPrefix: bigint
  private counter = 0n
  private readonly stopResults: () => void
  private readonly rpc: RpcClient
  private readonly options: ProposerOptions
  private readonly now: () => number
  /** Proposals that ended without an outcome (etcd_server_proposals_failed_total): NoLeader or RequestTimeout. */
  readonly counters = { failed: 0 }

  constructor(nc: NatsConnection, rpc: RpcClient, options: ProposerOptions, now: () => number = Date.now) {
    this.rpc = rpc
    this.options = options
    this.now = now
    // Request ids: 32 random bits of this instance, then a 32-bit counter. Unique across
    // gateway instances with overwhelming probability; the mvcc dedup key adds the origin member.
    this.idPrefix = BigInt("0x" + randomBytes(4).toString("hex")) << 32n
    const onResults = ({ body }: EndpointRequest<typeof ApplyResults.Type, never>) => {
      for (const result of body.results) {
        const waiter = this.waiters.get(result.requestId)
        if (waiter === undefined) continue
        this.waiters.delete(result.requestId)
        if ("err" in result) waiter.reject(toEtcdError(result.err as EtcdErrorData))
        else waiter.resolve(result.ok)
      }
    }
    // The gateway's proposer receives gateway.result, the lease service's lease.result (same
    // kind and schema); the result subject says which.
    const gatewayTokens = tokensOf(gatewayResult, options.resultSubject)
    const leaseTokens = tokensOf(leaseResult, options.resultSubject)
    if (gatewayTokens !== undefined) this.stopResults = serveEndpoint(nc, gatewayResult, gatewayTokens, onResults).stop
    else if (leaseTokens !== undefined) this.stopResults = serveEndpoint(nc, leaseResult, leaseTokens, onResults).stop
    else throw new Error(`not a gateway.result or lease.result subject: ${options.resultSubject}`)
  }

  private batch: Batch | undefined

  /**
   * Hands `data` to raft in the next propose frame (sent at the end of this event-loop turn, or
   * at once when the frame is full). Resolves when raft accepted the frame; rejects with error
   * data (NoLeader, RequestTimeout after `timeoutMs` without a reply).
   */
  private send(data: Uint8Array, traceparent: string, timeoutMs: number): Promise<void> {
    if (this.batch !== undefined && this.batch.bytes + data.length > maxBatchBytes) this.flush()
    let batch = this.batch
    if (batch === undefined) {
      let ack!: () => void
      let fail!: (error: unknown) => void
      const acked = new Promise<void>((resolve, reject) => {
        ack = resolve
        fail = reject
      })
      batch = { proposals: [], bytes: 0, traceparent, timeoutMs, acked, ack, fail }
      this.batch = batch
      const current = batch
      setImmediate(() => {
        if (this.batch === current) this.flush()
      })
    }
    batch.proposals.push(data)
    batch.bytes += data.length
    return batch.acked
  }

  private flush(): void {
    const batch = this.batch
    if (batch === undefined) return
    this.batch = undefined
    callEndpoint(this.rpc, raftPropose, this.options.proposeSubject, { proposals: batch.proposals }, { timeoutMs: batch.timeoutMs, traceparent: batch.traceparent })
      .then((reply) => {
        okOf(reply)
        batch.ack()
      })
      .catch(batch.fail)
  }

  /**
   * Proposes `request` and resolves with its outcome once applied by this member. Rejects with
   * RequestTooLarge (before proposing); with the error the apply returned, its result frame's
   * data as a shared/errors.ts instance (e.g. Compacted, KeyNotFound); with Stopped when the
   * proposer closes; at the deadline (`requestTimeoutMs`) with ContextDeadlineExceeded when
   * raft's last word was that there is no leader to take it (as etcd) and with RequestTimeout
   * otherwise. Retries go through ./retry.ts: after "no leader" in 100 ms, after an unanswered
   * frame or a missing result at once, with the same request id.
   */
  async propose(request: WriteRequest | LeaseWriteRequest | AuthWriteRequest, traceparentGiven: string): Promise<WriteOutcome> {
    // Callers without a traceparent (lease, lock, election handlers) are traced by their request context.
    const traceparent = traceparentGiven || currentTraceparent()
    const requestId = this.idPrefix | (this.counter++ & 0xffffffffn)
    const deadlineMs = this.now() + this.options.requestTimeoutMs
    const data = packValue({
      requestId,
      origin: this.options.member,
      replyTo: this.options.resultSubject,
      deadlineMs,
      traceparent,
      request,
      ...(this.options.clientRequests ? { authInfo: currentAuthInfo() } : {})
    })
    if (data.length > this.options.maxRequestBytes) {
      throw new RequestTooLarge({ sizeBytes: data.length, maxBytes: this.options.maxRequestBytes })
    }
    const result = new Promise<WriteOutcome>((resolve, reject) => this.waiters.set(requestId, { resolve, reject }))
    let settled = false
    result.then(() => (settled = true), () => (settled = true))
    // Whether raft's last word since it last accepted the proposal was "no leader".
    let noLeader = false
    const attempt = async (): Promise<WriteOutcome> => {
      if (settled) throw new Settled()
      try {
        await this.send(data, traceparent, Math.max(1, Math.min(deadlineMs - this.now(), proposeCallMaxMs)))
      } catch (e) {
        if (settled) throw new Settled()
        if (tagOf(e) === "NoLeader") noLeader = true
        throw e
      }
      noLeader = false
      // Accepted: wait for the result, then propose again if none came.
      const wait = Math.min(this.options.resultWaitMs, Math.max(0, deadlineMs - this.now()))
      const outcome = await Promise.race([result, sleep(wait).then(() => undefined)]).catch(() => {
        // The apply failed (e.g. Compacted) or the proposer closed: that is the answer.
        throw new Settled()
      })
      if (outcome !== undefined) return outcome
      throw new NoResultYet()
    }
    try {
      return await retryPromise({
        name: "proposal",
        deadlineMs: deadlineMs - this.now(),
        // Raft without a leader: wait a little. A frame raft did not answer in time, or a result
        // that did not come: propose again at once (the wait was the time already spent).
        backoff: (e) => (tagOf(e) === "NoLeader" ? 100 : 0),
        retryable: (e) => e instanceof NoResultYet || tagOf(e) === "NoLeader" || tagOf(e) === "RequestTimeout",
        atBound: () => {
          if (settled) return new Settled()
          this.counters.failed++
          // Never handed to a leader: etcd's raft blocks the proposal until the context ends.
          return noLeader ? new ContextDeadlineExceeded() : new RequestTimeout()
        }
      }, attempt)
    } catch (e) {
      // The outcome arrived as the deadline passed, or was a failure: it is the answer.
      if (e instanceof Settled) return await result
      throw e
    } finally {
      this.waiters.delete(requestId)
    }
  }

  /** Proposals in flight: proposed and waiting for their apply result (etcd_server_proposals_pending). */
  pendingCount(): number {
    return this.waiters.size
  }

  /** Fails all waiting proposals with Stopped and stops listening for results. */
  close(): void {
    this.stopResults()
    for (const w of this.waiters.values()) w.reject(new Stopped())
    this.waiters.clear()
  }
}

