/**
 * etcd's KV and Maintenance.Status handlers, served by the gateway.
 *
 * Writes (Put, DeleteRange, Txn, Compact) are validated here as etcd's v3rpc layer does
 * (empty key, txn size, duplicate keys), then proposed through raft by the {@link Proposer}.
 * Range is linearizable by default: the gateway asks raft for a ReadIndex, then the mvcc
 * service serves the read once it has applied that index (etcd server/etcdserver/v3_server.go
 * linearizableReadLoop). Serializable ranges go straight to the local mvcc service. Both go
 * through the batching {@link Reader} (./reader.ts).
 */
import { requestContext } from "../runtime/tracing.ts"
import { isHealthProbe } from "./health.ts"
import { RequestTimeout, toEtcdError } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { mvccStatus, raftStatus } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint } from "../runtime/rpc.ts"
import { defaultMaxTxnOps, validateRange, validateWrite } from "../mvcc/core/validate.ts"
import * as Convert from "./convert.ts"
import type { Header, Wire } from "./convert.ts"
import type { Proposer, WriteOutcome } from "../runtime/proposer.ts"
import type { Reader } from "../runtime/reader.ts"

/** The etcd API version natcd's wire implements; reported by Maintenance.Status. */
export const apiVersion = "3.5.0"

/** The subjects and clients the handlers use. */
export interface KvContext {
  readonly rpc: RpcClient
  readonly proposer: Proposer
  readonly subjects: { readonly raftStatus: string; readonly mvccStatus: string }
  /** The read path (ReadIndex, then mvcc), batched per event-loop turn. */
  readonly reader: Reader
  readonly requestTimeoutMs: number
  /** The member's identity, learned from its raft service. */
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
  /** The active alarms as Maintenance.Status `errors` lists them (./maintenance.ts). */
  readonly statusErrors?: (traceparent: string) => Promise<ReadonlyArray<string>>
  /** The backend quota check of Put and Txn (./maintenance.ts); rejects with NoSpace. */
  readonly checkQuota?: (request: Kv.WriteRequest, traceparent: string) => Promise<void>
  /** Told whether the member has a leader whenever Status learns it (./leader.ts LeaderMonitor.observe). */
  readonly leaderSeen?: (hasLeader: boolean) => void
  /** What is wrong with the member's services (./health.ts); etcdctl's health probe fails while non-empty. */
  readonly memberProblems?: () => Promise<ReadonlyArray<string>>
}

/**
 * Runs a handler body in the request's root span (opened by ./call-handlers.ts through ./call-observation.ts, named after the gRPC
 * method), annotating it with `attributes` (the key) and, once answered, the response
 * header's revision; passes the body the traceparent its frames carry ("" when untraced).
 */
const inSpan = async <A>(_name: string, attributes: Record<string, string | number | boolean>, body: (traceparent: string) => Promise<A>): Promise<A> => {
  const ctx = requestContext.getStore()
  if (ctx?.span === undefined) return body("")
  Object.assign(ctx.span.attributes, attributes)
  const response = await body(ctx.traceparent)
  const revision = (response as { header?: { revision?: unknown } })?.header?.revision
  if (revision !== undefined) ctx.span.attributes.revision = Number(revision)
  return response
}

const keyAttr = (key: Uint8Array) => Buffer.from(key).toString("latin1").slice(0, 128)

/** Makes the KV and Maintenance.Status handlers as promise-returning functions of wire objects. */
export const makeKvHandlers = (ctx: KvContext) => {
  const header = async (revision: number, raftTerm: number): Promise<Header> => {
    const id = await ctx.identity()
    return { clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm }
  }

  const write = async (request: Kv.WriteRequest, traceparent: string): Promise<WriteOutcome> => {
    const invalid = validateWrite(request, defaultMaxTxnOps)
    if (invalid !== undefined) throw toEtcdError(invalid)
    if (ctx.checkQuota !== undefined) await ctx.checkQuota(request, traceparent)
    return ctx.proposer.propose(request, traceparent)
  }

  const range = async (request: Kv.RangeRequest, traceparent: string) => {
    const invalid = validateRange(request)
    if (invalid !== undefined) throw toEtcdError(invalid)
    if (ctx.memberProblems !== undefined && request.serializable !== true && isHealthProbe(request.key, request.rangeEnd) && (await ctx.memberProblems()).length > 0) {
      throw new RequestTimeout()
    }
    return ctx.reader.range(request, traceparent)
  }

  return {
    identity: ctx.identity,
    Range: (w: Wire) => {
      const request = Convert.rangeRequestFromWire(w)
      return inSpan("KV.Range", { key: keyAttr(request.key) }, async (tp) => {
        const r = await range(request, tp)
        return Convert.rangeResponseToWire(r.response, await header(r.revision, r.term))
      })
    },
    Put: (w: Wire) => {
      const request = Convert.putRequestFromWire(w)
      return inSpan("KV.Put", { key: keyAttr(request.key) }, async (tp) => {
        const r = await write({ put: request }, tp)
        return Convert.putResponseToWire((r.response as { put: Kv.PutResponse }).put, await header(r.revision, r.term))
      })
    },
    DeleteRange: (w: Wire) => {
      const request = Convert.deleteRangeRequestFromWire(w)
      return inSpan("KV.DeleteRange", { key: keyAttr(request.key) }, async (tp) => {
        const r = await write({ deleteRange: request }, tp)
        return Convert.deleteRangeResponseToWire(
          (r.response as { deleteRange: Kv.DeleteRangeResponse }).deleteRange,
          await header(r.revision, r.term)
        )
      })
    },
    Txn: (w: Wire) =>
      inSpan("KV.Txn", {}, async (tp) => {
        const request = Convert.txnRequestFromWire(w)
        const r = await write({ txn: request }, tp)
        return Convert.txnResponseToWire((r.response as { txn: Kv.TxnResponse }).txn, await header(r.revision, r.term))
      }),
    Compact: (w: Wire) =>
      inSpan("KV.Compact", {}, async (tp) => {
        const request: Kv.CompactionRequest = { revision: Convert.wireInt(w.revision), physical: w.physical === true }
        const r = await write({ compaction: request }, tp)
        return { header: Convert.headerToWire(await header(r.revision, r.term)) }
      }),
    Status: (_w: Wire) =>
      inSpan("Maintenance.Status", {}, async (tp) => {
        // A malformed status reply throws MalformedFrame (callEndpoint), an error frame its error.
        const [raft, mvcc, errors] = await Promise.all([
          callEndpoint(ctx.rpc, raftStatus, ctx.subjects.raftStatus, {}, { timeoutMs: ctx.requestTimeoutMs, traceparent: tp }),
          callEndpoint(ctx.rpc, mvccStatus, ctx.subjects.mvccStatus, {}, { timeoutMs: ctx.requestTimeoutMs, traceparent: tp }),
          ctx.statusErrors?.(tp) ?? Promise.resolve([])
        ])
        ctx.leaderSeen?.(raft.leader !== 0n)
        return {
          header: Convert.headerToWire({
            clusterId: raft.clusterId,
            memberId: raft.memberId,
            revision: mvcc.revision,
            raftTerm: raft.term
          }),
          version: apiVersion,
          dbSize: mvcc.dbSizeBytes,
          leader: raft.leader.toString(),
          raftIndex: raft.commitIndex,
          raftTerm: raft.term,
          raftAppliedIndex: mvcc.appliedIndex,
          // etcd's Status lists a missing leader first, then the alarms.
          errors: raft.leader === 0n ? ["etcdserver: no leader", ...errors] : errors,
          dbSizeInUse: mvcc.dbSizeInUseBytes,
          isLearner: raft.isLearner
        }
      })
  }
}
