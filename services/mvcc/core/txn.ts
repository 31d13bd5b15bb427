/**
 * The semantics of Put, DeleteRange and Txn on top of a {@link StoreTxnWrite}.
 *
 * Follows etcd server/etcdserver/txn (put.go, delete.go, txn.go): a txn first evaluates its
 * compares against the store as it was before the txn (the "txn path": one boolean per txn,
 * nested txns included, depth first), then checks the chosen branches (range revisions,
 * leases, ignore_value / ignore_lease) against that same view, and only then executes the ops
 * in order, each seeing the writes of the ops before it.
 *
 * One departure: etcd 3.4 panics (and the member crash-loops) when a put with ignore_value or
 * ignore_lease finds its key gone because an earlier op of the same txn deleted it, which
 * checkIntervals lets through for a delete with range_end "\0". natcd instead undoes the txn
 * and fails it with KeyNotFound, changing nothing.
 */
import type { EtcdErrorData } from "../../../shared/errors.ts"
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse
} from "../../../shared/kv.ts"
import type { LeaseId } from "../../../shared/ids.ts"
import { compareBytes, toKeyString } from "./key-bytes.ts"
import { indexEnd } from "./range.ts"
import { requestLease, type StoreTxnWrite } from "./write-txn.ts"

/** Whether a lease exists (injected by the shell; lease 0 is never looked up). */
export type LeaseExists = (id: LeaseId) => boolean

type Failure = { readonly err: EtcdErrorData }

const isFailure = (x: object): x is Failure => "err" in x

const zeroKv: KeyValue = {
  key: new Uint8Array(),
  createRevision: 0 as KeyValue["createRevision"],
  modRevision: 0 as KeyValue["modRevision"],
  version: 0,
  value: new Uint8Array(),
  lease: 0n as KeyValue["lease"]
}

const sign = (n: number): number => n < 0 ? -1 : n > 0 ? 1 : 0

/** Evaluates one compare against one key-value (etcd compareKV). */
export const compareKV = (c: Compare, kv: KeyValue): boolean => {
  let result: number
  switch (c.target) {
    case "VALUE":
      result = sign(compareBytes(kv.value, c.value ?? zeroKv.value))
      break
    case "CREATE":
      result = sign(kv.createRevision - (c.createRevision ?? 0))
      break
    case "MOD":
      result = sign(kv.modRevision - (c.modRevision ?? 0))
      break
    case "VERSION":
      result = sign(kv.version - (c.version ?? 0))
      break
    case "LEASE": {
      const want = c.lease ?? 0n
      result = kv.lease < want ? -1 : kv.lease > want ? 1 : 0
      break
    }
    default:
      result = 0
  }
  switch (c.result) {
    case "EQUAL":
      return result === 0
    case "NOT_EQUAL":
      return result !== 0
    case "GREATER":
      return result > 0
    case "LESS":
      return result < 0
    default:
      return true
  }
}

/**
 * Evaluates one compare over its key or range at the txn's read revision (etcd applyCompare):
 * every key in the range must satisfy it. With no key present, a VALUE compare is false and
 * any other compare is evaluated against zero values (so `version = 0` holds for a missing key).
 */
export const applyCompare = (tw: StoreTxnWrite, c: Compare): boolean => {
  const rr = tw.rangeKeys(toKeyString(c.key), indexEnd(c.rangeEnd), { limit: 0, rev: 0, countOnly: false })
  if (isFailure(rr)) return false
  if (rr.kvs.length === 0) return c.target === "VALUE" ? false : compareKV(c, zeroKv)
  return rr.kvs.every((kv) => compareKV(c, kv))
}

/** The txn path: whether each txn (this one, then nested ones depth first) takes success. */
const compareToPath = (tw: StoreTxnWrite, rt: TxnRequest): boolean[] => {
  const ok = rt.compare.every((c) => applyCompare(tw, c))
  const path = [ok]
  for (const op of ok ? rt.success : rt.failure) {
    if ("requestTxn" in op) path.push(...compareToPath(tw, op.requestTxn))
  }
  return path
}

const checkRange = (tw: StoreTxnWrite, firstRev: number, r: RangeRequest): EtcdErrorData | undefined => {
  const revision = r.revision ?? 0
  if (revision === 0) return undefined
  if (revision > tw.rev()) return { _tag: "FutureRevision", requestedRevision: revision, currentRevision: tw.rev() }
  if (revision < firstRev) return { _tag: "Compacted", requestedRevision: revision, compactRevision: firstRev }
  return undefined
}

/**
 * Checks a put before any write (etcd checkLease + checkAndGetPrevKV): LeaseNotFound for an
 * unknown lease, KeyNotFound for ignore_value / ignore_lease on a missing key. Returns the
 * key's current version when the put needs it.
 */
const checkPut = (
  tw: StoreTxnWrite,
  leaseExists: LeaseExists,
  p: PutRequest
): { prev: KeyValue | undefined } | Failure => {
  const lease = requestLease(p.lease)
  if (lease !== 0n && !leaseExists(lease)) return { err: { _tag: "LeaseNotFound", leaseId: lease } }
  const needPrev = p.ignoreValue === true || p.ignoreLease === true || p.prevKv === true
  const prev = needPrev ? tw.get(p.key) : undefined
  if ((p.ignoreValue === true || p.ignoreLease === true) && prev === undefined) return { err: { _tag: "KeyNotFound" } }
  return { prev }
}

/** Checks the ops on a txn's path; returns how many nested txns it walked (etcd checkTxn). */
const checkTxn = (
  tw: StoreTxnWrite,
  firstRev: number,
  leaseExists: LeaseExists,
  rt: TxnRequest,
  path: ReadonlyArray<boolean>
): { txns: number } | Failure => {
  let txnCount = 0
  let rest = path
  for (const op of rest[0] ? rt.success : rt.failure) {
    if ("requestRange" in op) {
      const err = checkRange(tw, firstRev, op.requestRange)
      if (err !== undefined) return { err }
    } else if ("requestPut" in op) {
      const r = checkPut(tw, leaseExists, op.requestPut)
      if (isFailure(r)) return r
    } else if ("requestTxn" in op) {
      const r = checkTxn(tw, firstRev, leaseExists, op.requestTxn, rest.slice(1))
      if (isFailure(r)) return r
      txnCount += r.txns + 1
      rest = [rest[0]!, ...rest.slice(r.txns + 2)]
    }
  }
  return { txns: txnCount }
}

/**
 * Executes a put whose checks passed (etcd put): ignore_value / ignore_lease take the current
 * value / lease, prev_kv returns the replaced version. Fails with KeyNotFound only in the
 * case described in the module comment.
 */
export const executePut = (tw: StoreTxnWrite, p: PutRequest): PutResponse | Failure => {
  const needPrev = p.ignoreValue === true || p.ignoreLease === true || p.prevKv === true
  const prev = needPrev ? tw.get(p.key) : undefined
  if ((p.ignoreValue === true || p.ignoreLease === true) && prev === undefined) return { err: { _tag: "KeyNotFound" } }
  const value = p.ignoreValue === true ? prev!.value : p.value
  const lease = p.ignoreLease === true ? prev!.lease : requestLease(p.lease)
  tw.put(p.key, value, lease)
  return p.prevKv === true && prev !== undefined ? { prevKv: prev } : {}
}

/** Executes a delete range (etcd deleteRange): prev_kv returns the deleted versions. */
export const executeDeleteRange = (tw: StoreTxnWrite, d: DeleteRangeRequest): DeleteRangeResponse => {
  const key = toKeyString(d.key)
  const end = indexEnd(d.rangeEnd)
  let prevKvs: ReadonlyArray<KeyValue> = []
  if (d.prevKv === true) {
    const rr = tw.rangeKeys(key, end, { limit: 0, rev: 0, countOnly: false })
    if (!isFailure(rr)) prevKvs = rr.kvs
  }
  const deleted = tw.deleteRange(key, end)
  return { deleted, prevKvs }
}

/** Executes the ops on a txn's path in order; returns the response and nested txns walked. */
const executeTxn = (
  tw: StoreTxnWrite,
  rt: TxnRequest,
  path: ReadonlyArray<boolean>
): { resp: TxnResponse; txns: number } | Failure => {
  const succeeded = path[0]!
  const responses: ResponseOp[] = []
  let txns = 0
  let rest = path
  for (const op of succeeded ? rt.success : rt.failure) {
    const r = executeOp(tw, op, rest)
    if (isFailure(r)) return r
    responses.push(r.resp)
    if (r.txns !== undefined) {
      txns += r.txns + 1
      rest = [rest[0]!, ...rest.slice(r.txns + 2)]
    }
  }
  return { resp: { succeeded, responses }, txns }
}

const executeOp = (
  tw: StoreTxnWrite,
  op: RequestOp,
  path: ReadonlyArray<boolean>
): { resp: ResponseOp; txns?: number } | Failure => {
  if ("requestRange" in op) {
    const revision = tw.rev()
    const r = tw.range(op.requestRange)
    // checkTxn has ruled out revision errors; one here is a broken invariant.
    if (isFailure(r)) throw new Error(`applyTxn: failed Range: ${r.err._tag}`)
    return { resp: { responseRange: r, revision } }
  }
  if ("requestPut" in op) {
    const r = executePut(tw, op.requestPut)
    return isFailure(r) ? r : { resp: { responsePut: r, revision: tw.beginRev + 1 } }
  }
  if ("requestDeleteRange" in op) {
    const r = executeDeleteRange(tw, op.requestDeleteRange)
    // etcd storeTxnWrite.DeleteRange: the write revision once anything changed, else the read one.
    return { resp: { responseDeleteRange: r, revision: tw.changes.length > 0 ? tw.beginRev + 1 : tw.beginRev } }
  }
  const r = executeTxn(tw, op.requestTxn, path.slice(1))
  return isFailure(r) ? r : { resp: { responseTxn: r.resp }, txns: r.txns }
}

/**
 * Runs a whole txn in `tw` (etcd Txn): compares, checks, then execution. On failure nothing
 * is left written (the caller rolls back if the execution phase wrote). `firstRev` is the
 * store's compact revision.
 */
export const applyTxn = (
  tw: StoreTxnWrite,
  firstRev: number,
  leaseExists: LeaseExists,
  rt: TxnRequest
): TxnResponse | Failure => {
  const path = compareToPath(tw, rt)
  const checked = checkTxn(tw, firstRev, leaseExists, rt, path)
  if (isFailure(checked)) return checked
  const r = executeTxn(tw, rt, path)
  if (isFailure(r)) {
    tw.rollback()
    return r
  }
  return r.resp
}

/**
 * Runs a top-level put (etcd Put): lease and ignore_* checks before writing. Errors:
 * LeaseNotFound, KeyNotFound.
 */
export const applyPut = (tw: StoreTxnWrite, leaseExists: LeaseExists, p: PutRequest): PutResponse | Failure => {
  const checked = checkPut(tw, leaseExists, p)
  if (isFailure(checked)) return checked
  return executePut(tw, p)
}
