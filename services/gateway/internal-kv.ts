/**
 * The gateway's own KV client, for the services it builds on KV (v3lock, v3election): the
 * same write path (validation, quota, raft proposal) and read path (ReadIndex, then the mvcc
 * service) as the KV handlers in ./kv.ts, in natcd's internal shapes, with no wire conversion.
 * etcd's lock and election servers do the same through an in-process clientv3.
 */
import type { EtcdErrorData } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { defaultMaxTxnOps, validateWrite } from "../mvcc/core/validate.ts"
import type { Header } from "./convert.ts"
import type { Proposer } from "../runtime/proposer.ts"
import type { Reader } from "../runtime/reader.ts"

/** What the internal client needs. */
export interface InternalKvContext {
  readonly proposer: Proposer
  /** The read path shared with the KV handlers (./reader.ts). */
  readonly reader: Reader
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
  /** The quota check of writes with puts (./maintenance.ts); rejects with NoSpace. */
  readonly checkQuota?: (request: Kv.WriteRequest, traceparent: string) => Promise<void>
}

/** A result with the revision and raft term its response header carries. */
export interface Revisioned<A> {
  readonly response: A
  readonly revision: number
  readonly term: number
}

/** The internal KV client. Every method rejects with etcd error data (see ./errors.ts). */
export interface InternalKv {
  /** A Txn through raft. */
  readonly txn: (request: Kv.TxnRequest, traceparent: string) => Promise<Revisioned<Kv.TxnResponse>>
  /** A DeleteRange of one key through raft. */
  readonly deleteKey: (key: Uint8Array, traceparent: string) => Promise<Revisioned<Kv.DeleteRangeResponse>>
  /** A Range: linearizable (ReadIndex first) unless `request.serializable`. */
  readonly range: (request: Kv.RangeRequest, traceparent: string) => Promise<Revisioned<Kv.RangeResponse>>
  /** A response header with this member's identity. */
  readonly header: (revision: number, term: number) => Promise<Header>
}

/** Makes the internal KV client. */
export const makeInternalKv = (ctx: InternalKvContext): InternalKv => {
  const write = async (request: Kv.WriteRequest, traceparent: string) => {
    const invalid = validateWrite(request, defaultMaxTxnOps)
    if (invalid !== undefined) throw invalid
    if (ctx.checkQuota !== undefined) await ctx.checkQuota(request, traceparent)
    return ctx.proposer.propose(request, traceparent)
  }
  return {
    txn: async (request, traceparent) => {
      const r = await write({ txn: request }, traceparent)
      return { response: (r.response as { txn: Kv.TxnResponse }).txn, revision: r.revision, term: r.term }
    },
    deleteKey: async (key, traceparent) => {
      const r = await write({ deleteRange: { key } }, traceparent)
      return { response: (r.response as { deleteRange: Kv.DeleteRangeResponse }).deleteRange, revision: r.revision, term: r.term }
    },
    range: (request, traceparent) => ctx.reader.range(request, traceparent),
    header: async (revision, term) => {
      const id = await ctx.identity()
      return { clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: term }
    }
  }
}

/** The end of the range of every key starting with `prefix` (etcd clientv3.GetPrefixRangeEnd). */
export const prefixRangeEnd = (prefix: Uint8Array): Uint8Array => {
  const end = prefix.slice()
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++
      return end.slice(0, i + 1)
    }
  }
  // Every byte is 0xff: the range runs to the end of the key space.
  return new Uint8Array([0])
}

/** Rejects with `error` as etcd error data (typed helper for handlers). */
export const fail = (error: EtcdErrorData): never => {
  throw error
}
