/**
 * The client side of the bus for reads: the gateway's read path, shared by its KV handlers
 * (services/gateway/kv.ts) and its internal client (services/gateway/internal-kv.ts): a linearizable Range first learns a ReadIndex from the member's raft
 * service, then the member's mvcc service serves it once it applied that index (etcd
 * server/etcdserver/v3_server.go linearizableReadLoop); a serializable Range goes to mvcc at
 * once.
 *
 * Batching, as etcd's read loop batches: the reads that arrive in one event-loop turn share one
 * `readindex` request, and the ranges ready in one turn travel to mvcc in one `range` frame (at
 * most {@link maxRangeBatch}). Sharing a ReadIndex is linearizable because the request for it
 * leaves after every read that shares it arrived; a read never joins a request already sent.
 * mvcc answers a batch in one frame; results that would make that frame too large come back as
 * `retry` and are asked for again alone.
 */
import { MalformedFrame, toEtcdError } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { mvccRange, raftReadIndex } from "../../shared/endpoints.ts"
import type { AuthInfo } from "../../shared/auth.ts"
import { currentAuthInfo } from "./auth-context.ts"
import type { RpcClient } from "./rpc.ts"
import { callEndpoint, okOf } from "./rpc.ts"

/** Most ranges in one `range` frame. */
export const maxRangeBatch = 128

/** A Range's response with the revision and raft term its header carries. */
export interface RangeOutcome {
  readonly response: Kv.RangeResponse
  readonly revision: number
  readonly term: number
}

/** Where the reader sends its requests. */
export interface ReaderOptions {
  readonly readIndexSubject: string
  readonly rangeSubject: string
  /** How long a read may take before "request timed out" (etcd's request timeout). */
  readonly requestTimeoutMs: number
}

interface Pending<A> {
  readonly resolve: (value: A) => void
  readonly reject: (error: unknown) => void
}

interface QueuedRange extends Pending<RangeOutcome> {
  readonly request: Kv.RangeRequest
  readonly minAppliedIndex: number
  readonly authInfo: AuthInfo
}

/**
 * Batches ReadIndex requests and ranges per event-loop turn. Invariant: `reads` and `ranges`
 * hold only callers whose batch has not been sent; a flush is scheduled whenever either is
 * non-empty.
 */
export class Reader {
  private reads: Array<Pending<number>> = []
  private readsTrace = ""
  private ranges: QueuedRange[] = []
  private rangesTrace = ""
  private readonly rpc: RpcClient
  private readonly options: ReaderOptions

  constructor(rpc: RpcClient, options: ReaderOptions) {
    this.rpc = rpc
    this.options = options
  }

  /**
   * Serves `request`: linearizable unless `request.serializable`, for the current request's
   * user (./auth-context.ts). Rejects with a shared/errors.ts instance (NoLeader,
   * RequestTimeout, Compacted, FutureRevision, AuthError, …).
   */
  async range(request: Kv.RangeRequest, traceparent: string): Promise<RangeOutcome> {
    const authInfo = currentAuthInfo()
    const minAppliedIndex = request.serializable === true ? 0 : await this.readIndex(traceparent)
    return new Promise<RangeOutcome>((resolve, reject) => {
      if (this.ranges.length === 0) {
        this.rangesTrace = traceparent
        setImmediate(() => this.flushRanges())
      }
      this.ranges.push({ request, minAppliedIndex, authInfo, resolve, reject })
      if (this.ranges.length >= maxRangeBatch) this.flushRanges()
    })
  }

  /** The index a linearizable read must wait for, shared by the reads of this turn. */
  readIndex(traceparent: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.reads.length === 0) {
        this.readsTrace = traceparent
        setImmediate(() => this.flushReads())
      }
      this.reads.push({ resolve, reject })
    })
  }

  private flushReads(): void {
    const waiters = this.reads
    if (waiters.length === 0) return
    this.reads = []
    callEndpoint(this.rpc, raftReadIndex, this.options.readIndexSubject, {}, { timeoutMs: this.options.requestTimeoutMs, traceparent: this.readsTrace })
      .then((reply) => {
        const { index } = okOf(reply)
        for (const w of waiters) w.resolve(index)
      })
      .catch((e) => {
        for (const w of waiters) w.reject(e)
      })
  }

  private flushRanges(): void {
    const batch = this.ranges
    if (batch.length === 0) return
    this.ranges = []
    this.send(batch, this.rangesTrace)
  }

  private send(batch: ReadonlyArray<QueuedRange>, traceparent: string): void {
    const requests = batch.map((q) => ({ request: q.request, minAppliedIndex: q.minAppliedIndex, authInfo: q.authInfo }))
    callEndpoint(this.rpc, mvccRange, this.options.rangeSubject, { requests }, { timeoutMs: this.options.requestTimeoutMs, traceparent })
      .then((reply) => {
        const { results } = okOf(reply)
        if (results.length !== batch.length) throw new MalformedFrame({ reason: "range reply count" })
        batch.forEach((q, i) => {
          const r = results[i]!
          if ("ok" in r) q.resolve(r.ok as RangeOutcome)
          else if ("err" in r) q.reject(toEtcdError(r.err))
          else if (batch.length > 1) this.send([q], traceparent)
          else q.reject(new MalformedFrame({ reason: "range result too large to send" }))
        })
      })
      .catch((e) => {
        for (const q of batch) q.reject(e)
      })
  }
}
