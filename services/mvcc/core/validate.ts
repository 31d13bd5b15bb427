/**
 * Request checks done before a request enters the raft log, as etcd's v3rpc layer does them
 * (server/etcdserver/api/v3rpc/key.go: checkRangeRequest, checkPutRequest,
 * checkDeleteRequest, checkTxnRequest, checkRequestOp, checkIntervals). They depend only on
 * the request, never on store state; checks that need the store (lease existence,
 * ignore_value on a missing key, revisions) happen at apply time in store.ts.
 *
 * Errors are {@link EtcdErrorData}; `InvalidRequest.message` carries etcd's exact text for the
 * InvalidArgument errors that have no tag of their own.
 */
import type { EtcdErrorData } from "../../../shared/errors.ts"
import type { RangeRequest, RequestOp, TxnRequest, WriteRequest } from "../../../shared/kv.ts"
import { toKeyString } from "./key-bytes.ts"

/** etcd's default --max-txn-ops. */
export const defaultMaxTxnOps = 128

const sortOrders: ReadonlySet<string> = new Set(["NONE", "ASCEND", "DESCEND"])
const sortTargets: ReadonlySet<string> = new Set(["KEY", "VERSION", "CREATE", "MOD", "VALUE"])

const keyNotProvided: EtcdErrorData = { _tag: "KeyNotProvided" }
const duplicateKey: EtcdErrorData = { _tag: "DuplicateKey" }

/**
 * Checks a range request: a non-empty key (KeyNotProvided) and known sort options
 * (InvalidRequest "etcdserver: invalid sort option"). Returns undefined when valid.
 */
export function validateRange(req: RangeRequest): EtcdErrorData | undefined {
  if (req.key.length === 0) return keyNotProvided
  if (req.sortOrder !== undefined && !sortOrders.has(req.sortOrder)) {
    return { _tag: "InvalidRequest", message: "etcdserver: invalid sort option" }
  }
  if (req.sortTarget !== undefined && !sortTargets.has(req.sortTarget)) {
    return { _tag: "InvalidRequest", message: "etcdserver: invalid sort option" }
  }
  return undefined
}

/**
 * Checks a write request before proposing it. Errors:
 * - KeyNotProvided: an empty key in a put, delete, range or compare (at any txn depth);
 * - InvalidRequest "etcdserver: value is provided" / "etcdserver: lease is provided":
 *   ignore_value with a value, ignore_lease with a lease;
 * - TooManyOps: a txn whose largest of (compares, success ops, failure ops) exceeds
 *   `maxTxnOps`; nested txns get the budget left by their parent, as in etcd;
 * - DuplicateKey: a key put twice, or put and deleted, in one txn branch including nested
 *   txns (etcd checkIntervals; puts in the two branches of one nested txn may share keys);
 * - KeyNotFound: an empty request op (etcd's quirk for an unset oneof).
 * Compaction requests are not checked here (their revision is checked at apply).
 */
export function validateWrite(req: WriteRequest, maxTxnOps: number): EtcdErrorData | undefined {
  if ("put" in req) return checkPut(req.put)
  if ("deleteRange" in req) return req.deleteRange.key.length === 0 ? keyNotProvided : undefined
  if ("txn" in req) {
    const err = checkTxn(req.txn, maxTxnOps)
    if (err !== undefined) return err
    // Checked after the size checks, as etcd does, to avoid quadratic work on huge requests.
    const s = checkIntervals(req.txn.success)
    if ("err" in s) return s.err
    const f = checkIntervals(req.txn.failure)
    if ("err" in f) return f.err
    return undefined
  }
  return undefined
}

const checkPut = (p: { key: Uint8Array; value: Uint8Array; lease?: bigint; ignoreValue?: boolean; ignoreLease?: boolean }): EtcdErrorData | undefined => {
  if (p.key.length === 0) return keyNotProvided
  if (p.ignoreValue === true && p.value.length !== 0) return { _tag: "InvalidRequest", message: "etcdserver: value is provided" }
  if (p.ignoreLease === true && (p.lease ?? 0n) !== 0n) return { _tag: "InvalidRequest", message: "etcdserver: lease is provided" }
  return undefined
}

const checkTxn = (r: TxnRequest, maxTxnOps: number): EtcdErrorData | undefined => {
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length)
  if (opc > maxTxnOps) return { _tag: "TooManyOps", ops: opc, maxOps: maxTxnOps }
  for (const c of r.compare) if (c.key.length === 0) return keyNotProvided
  for (const u of r.success) {
    const err = checkRequestOp(u, maxTxnOps - opc)
    if (err !== undefined) return err
  }
  for (const u of r.failure) {
    const err = checkRequestOp(u, maxTxnOps - opc)
    if (err !== undefined) return err
  }
  return undefined
}

const checkRequestOp = (u: RequestOp, maxTxnOps: number): EtcdErrorData | undefined => {
  if ("requestRange" in u && u.requestRange !== undefined) return validateRange(u.requestRange)
  if ("requestPut" in u && u.requestPut !== undefined) return checkPut(u.requestPut)
  if ("requestDeleteRange" in u && u.requestDeleteRange !== undefined) {
    return u.requestDeleteRange.key.length === 0 ? keyNotProvided : undefined
  }
  if ("requestTxn" in u && u.requestTxn !== undefined) return checkTxn(u.requestTxn, maxTxnOps)
  return { _tag: "KeyNotFound" }
}

/**
 * A delete interval in etcd's "string affine" terms: [begin, end) over binary strings, where
 * an empty `end` is +infinity. A delete without range_end is the point [key, key+"\0").
 * A range_end of "\0" is taken literally, as etcd's checkIntervals does: [key, "\0") contains
 * no key, so a from-key delete never conflicts with a put (an etcd quirk kept on purpose).
 */
interface Interval {
  readonly begin: string
  readonly end: string
}

/** Whether the point `k` intersects `iv` (etcd adt Interval.Compare with a point). */
const intersectsPoint = (iv: Interval, k: string): boolean => {
  // Disjoint on the left: the point [k, k+"\0") ends at or before iv.begin.
  if (k + "\0" <= iv.begin) return false
  // Disjoint on the right: the point starts at or after iv.end (empty end = +infinity).
  if (iv.end !== "" && k >= iv.end) return false
  return true
}

/**
 * etcd checkIntervals: collects the puts and deletes of one list of ops, depth first, and
 * fails when a put meets an earlier-collected delete or another put. Linear scans replace
 * etcd's interval tree; both answer the same intersection question.
 */
const checkIntervals = (reqs: ReadonlyArray<RequestOp>): { puts: Set<string>; dels: Interval[] } | { err: EtcdErrorData } => {
  const dels: Interval[] = []
  for (const req of reqs) {
    if (!("requestDeleteRange" in req)) continue
    const d = req.requestDeleteRange
    const begin = toKeyString(d.key)
    const rangeEnd = d.rangeEnd ?? new Uint8Array()
    dels.push(rangeEnd.length !== 0 ? { begin, end: toKeyString(rangeEnd) } : { begin, end: begin + "\0" })
  }
  const hitsDel = (k: string) => dels.some((iv) => intersectsPoint(iv, k))

  const puts = new Set<string>()
  for (const req of reqs) {
    if (!("requestTxn" in req)) continue
    const then = checkIntervals(req.requestTxn.success)
    if ("err" in then) return then
    const els = checkIntervals(req.requestTxn.failure)
    if ("err" in els) return els
    for (const k of then.puts) {
      if (puts.has(k) || hitsDel(k)) return { err: duplicateKey }
      puts.add(k)
    }
    for (const k of els.puts) {
      // A key put in both branches is fine: only one branch runs.
      if (puts.has(k) && !then.puts.has(k)) return { err: duplicateKey }
      if (hitsDel(k)) return { err: duplicateKey }
      puts.add(k)
    }
    dels.push(...then.dels, ...els.dels)
  }

  for (const req of reqs) {
    if (!("requestPut" in req)) continue
    const k = toKeyString(req.requestPut.key)
    if (puts.has(k) || hitsDel(k)) return { err: duplicateKey }
    puts.add(k)
  }
  return { puts, dels }
}
