/**
 * Conversion between etcd's protobuf wire objects (snake_case, as @grpc/proto-loader hands them
 * over with `longs: String, enums: String, oneofs: true, defaults: true`) and natcd's internal
 * KV shapes (shared/kv.ts). This is the only place that speaks snake_case.
 *
 * int64 fields arrive as decimal strings. Revisions and limits become numbers; a value beyond
 * 2^53 is clamped to Number.MAX_SAFE_INTEGER, which keeps its meaning (a revision that far is
 * "a future revision", a limit that large is "no limit" in practice). Lease ids stay bigint.
 */
import { InvalidRequest } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { Revision } from "../../shared/ids.ts"

/** A protobuf object as proto-loader decodes it. */
export type Wire = Record<string, any>

const EMPTY = new Uint8Array(0)

/** int64 (decimal string or number) -> safe number, clamped into the safe range. */
export const wireInt = (v: unknown): number => {
  if (v === undefined || v === null || v === "") return 0
  const n = typeof v === "number" ? v : Number(v)
  if (Number.isSafeInteger(n)) return n
  if (typeof v === "string") {
    const b = BigInt(v)
    return b > 0n ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER
  }
  return Number.isFinite(n) ? Math.trunc(Math.max(Math.min(n, Number.MAX_SAFE_INTEGER), Number.MIN_SAFE_INTEGER)) : 0
}

/** int64/uint64 (decimal string or number) -> bigint. */
export const wireBig = (v: unknown): bigint => {
  if (v === undefined || v === null || v === "") return 0n
  return BigInt(v as string | number)
}

const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : EMPTY)
const nonEmpty = (b: Uint8Array): Uint8Array | undefined => (b.length === 0 ? undefined : b)

/** etcd RangeRequest -> internal. */
export const rangeRequestFromWire = (w: Wire): Kv.RangeRequest => {
  const rangeEnd = nonEmpty(bytes(w.range_end))
  return {
    key: bytes(w.key),
    ...(rangeEnd === undefined ? {} : { rangeEnd }),
    limit: wireInt(w.limit),
    revision: wireInt(w.revision),
    sortOrder: (w.sort_order ?? "NONE") as Kv.SortOrder,
    sortTarget: (w.sort_target ?? "KEY") as Kv.SortTarget,
    serializable: w.serializable === true,
    keysOnly: w.keys_only === true,
    countOnly: w.count_only === true,
    minModRevision: wireInt(w.min_mod_revision),
    maxModRevision: wireInt(w.max_mod_revision),
    minCreateRevision: wireInt(w.min_create_revision),
    maxCreateRevision: wireInt(w.max_create_revision)
  }
}

/** etcd PutRequest -> internal. */
export const putRequestFromWire = (w: Wire): Kv.PutRequest => ({
  key: bytes(w.key),
  value: bytes(w.value),
  lease: LeaseId(wireBig(w.lease)),
  prevKv: w.prev_kv === true,
  ignoreValue: w.ignore_value === true,
  ignoreLease: w.ignore_lease === true
})

/** etcd DeleteRangeRequest -> internal. */
export const deleteRangeRequestFromWire = (w: Wire): Kv.DeleteRangeRequest => {
  const rangeEnd = nonEmpty(bytes(w.range_end))
  return { key: bytes(w.key), ...(rangeEnd === undefined ? {} : { rangeEnd }), prevKv: w.prev_kv === true }
}

const compareFromWire = (w: Wire): Kv.Compare => {
  const rangeEnd = nonEmpty(bytes(w.range_end))
  const base = {
    result: (w.result ?? "EQUAL") as Kv.CompareResult,
    target: (w.target ?? "VERSION") as Kv.CompareTarget,
    key: bytes(w.key),
    ...(rangeEnd === undefined ? {} : { rangeEnd })
  }
  switch (w.target_union) {
    case "version":
      return { ...base, version: wireInt(w.version) }
    case "create_revision":
      return { ...base, createRevision: wireInt(w.create_revision) }
    case "mod_revision":
      return { ...base, modRevision: wireInt(w.mod_revision) }
    case "value":
      return { ...base, value: bytes(w.value) }
    case "lease":
      return { ...base, lease: LeaseId(wireBig(w.lease)) }
    default:
      return base
  }
}

const requestOpFromWire = (w: Wire): Kv.RequestOp => {
  switch (w.request) {
    case "request_range":
      return { requestRange: rangeRequestFromWire(w.request_range) }
    case "request_put":
      return { requestPut: putRequestFromWire(w.request_put) }
    case "request_delete_range":
      return { requestDeleteRange: deleteRangeRequestFromWire(w.request_delete_range) }
    case "request_txn":
      return { requestTxn: txnRequestFromWire(w.request_txn) }
    default:
      // etcd rejects an empty RequestOp in checkRequestOp with this message.
      throw new InvalidRequest({ message: "etcdserver: key is not provided" })
  }
}

/** etcd TxnRequest -> internal. Throws InvalidRequest on an empty RequestOp. */
export const txnRequestFromWire = (w: Wire): Kv.TxnRequest => ({
  compare: ((w.compare ?? []) as Wire[]).map(compareFromWire),
  success: ((w.success ?? []) as Wire[]).map(requestOpFromWire),
  failure: ((w.failure ?? []) as Wire[]).map(requestOpFromWire)
})

/** The response header natcd sends, as etcd's ResponseHeader. */
export interface Header {
  readonly clusterId: bigint
  readonly memberId: bigint
  readonly revision: number
  readonly raftTerm: number
}

/** Internal header -> wire. */
export const headerToWire = (h: Header): Wire => ({
  cluster_id: h.clusterId.toString(),
  member_id: h.memberId.toString(),
  revision: h.revision,
  raft_term: h.raftTerm
})

/** Internal KeyValue -> mvccpb.KeyValue. */
export const kvToWire = (kv: Kv.KeyValue): Wire => ({
  key: kv.key,
  create_revision: kv.createRevision as Revision,
  mod_revision: kv.modRevision,
  version: kv.version,
  value: kv.value,
  lease: kv.lease.toString()
})

/** Internal RangeResponse -> wire (header added by the caller's header argument). */
export const rangeResponseToWire = (r: Kv.RangeResponse, header: Header): Wire => ({
  header: headerToWire(header),
  ...rangeResponseBody(r)
})

const rangeResponseBody = (r: Kv.RangeResponse): Wire => ({ kvs: r.kvs.map(kvToWire), more: r.more, count: r.count })

export const putResponseToWire = (r: Kv.PutResponse, header: Header): Wire => ({
  header: headerToWire(header),
  ...putResponseBody(r)
})

const putResponseBody = (r: Kv.PutResponse): Wire => (r.prevKv === undefined ? {} : { prev_kv: kvToWire(r.prevKv) })

export const deleteRangeResponseToWire = (r: Kv.DeleteRangeResponse, header: Header): Wire => ({
  header: headerToWire(header),
  ...deleteRangeResponseBody(r)
})

const deleteRangeResponseBody = (r: Kv.DeleteRangeResponse): Wire => ({ deleted: r.deleted, prev_kvs: r.prevKvs.map(kvToWire) })

/**
 * A txn op's response -> wire. etcd fills only the revision of a nested op's header (see
 * shared/kv.ts ResponseOp) and leaves a nested txn's header empty; the cluster, member and
 * term go in the top-level header only (etcd v3rpc header.fill).
 */
const responseOpToWire = (op: Kv.ResponseOp): Wire => {
  const nested = (): Wire => ({ revision: "revision" in op && op.revision !== undefined ? op.revision : 0 })
  if ("responseRange" in op) return { response_range: { ...rangeResponseBody(op.responseRange), header: nested() } }
  if ("responsePut" in op) return { response_put: { ...putResponseBody(op.responsePut), header: nested() } }
  if ("responseDeleteRange" in op) {
    return { response_delete_range: { ...deleteRangeResponseBody(op.responseDeleteRange), header: nested() } }
  }
  return { response_txn: txnResponseBody(op.responseTxn, {}) }
}

const txnResponseBody = (r: Kv.TxnResponse, header: Wire): Wire => ({
  header,
  succeeded: r.succeeded,
  responses: r.responses.map(responseOpToWire)
})

/** Internal TxnResponse -> wire, with `header` at the top level only (as etcd). */
export const txnResponseToWire = (r: Kv.TxnResponse, header: Header): Wire => txnResponseBody(r, headerToWire(header))
