/**
 * Range reads over the index and the backend, and etcd's post-processing of a RangeRequest:
 * revision checks, limit, revision filters, sorting, keys-only and count-only.
 *
 * Follows etcd server/storage/mvcc/kvstore_txn.go (rangeKeys) and
 * server/etcdserver/txn/range.go (executeRange, rangeLimit, filterRangeResults,
 * sortRangeResults, asembleRangeResponse), as etcd 3.4/3.5 behave:
 * - `count` is the number of keys in the range at the revision, before the limit and before
 *   the min/max revision filters;
 * - the limit is pushed down to the index (as limit + 1, to learn `more`) only when the
 *   request asks for no sort order (or KEY ASCEND) and no revision filter; otherwise every key
 *   is read, filtered, sorted and then cut. With a sort target but order NONE the order
 *   becomes ASCEND *after* the limit was pushed down, so such a request sorts only the first
 *   limit + 1 keys, exactly as etcd does;
 * - keys_only clears values but keeps every other field (3.4/3.5 read the full record).
 *
 * Sorting is stable, so ties keep ascending key order in both directions. etcd uses Go's
 * unstable sort.Sort, which is an insertion sort (hence the same tie order) for up to 12
 * results and unspecified beyond.
 */
import type { EtcdErrorData } from "../../../shared/errors.ts"
import type { KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget } from "../../../shared/kv.ts"
import type { BackendReadTx } from "./backend.ts"
import { compareBytes, toKeyString } from "./key-bytes.ts"
import { decodeKeyValue } from "./kv-codec.ts"
import { type Rev, revToBytes } from "./revision.ts"
import type { TreeIndex } from "./tree-index.ts"

/** What a range needs from the store besides the backend transaction. */
export interface ReadState {
  readonly index: TreeIndex
  /** The store's compact revision (-1 when never compacted). */
  readonly compactRev: number
}

/** Options of {@link rangeKeys} (etcd mvcc.RangeOptions). */
export interface RangeOptions {
  /** Maximum number of kvs to read; <= 0 for no limit. */
  readonly limit: number
  /** Revision to read at; <= 0 for `curRev`. */
  readonly rev: number
  readonly countOnly: boolean
}

/** The raw result of {@link rangeKeys}. */
export interface RangeResult {
  readonly kvs: KeyValue[]
  /** Keys in the range at the revision, not capped by the limit. */
  readonly count: number
}

/**
 * Converts a request's range_end into the index's `end` argument: empty or absent -> the single
 * key (undefined); one zero byte -> every key >= key (""); otherwise the exclusive end
 * (etcd mkGteRange).
 */
export const indexEnd = (rangeEnd: Uint8Array | undefined): string | undefined => {
  if (rangeEnd === undefined || rangeEnd.length === 0) return undefined
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return ""
  return toKeyString(rangeEnd)
}

/** Reads the record of a revision; throws when the index points at a missing record (a defect). */
export const unsafeReadRev = (tx: BackendReadTx, r: Rev): KeyValue => {
  const v = tx.get("key", revToBytes(r))
  if (v === undefined) throw new Error(`range failed to find revision pair ${r.main}.${r.sub}`)
  return decodeKeyValue(v)
}

/**
 * Reads the keys of [key, end) visible at `ro.rev`, in key order (etcd rangeKeys). `curRev`
 * is the newest readable revision. Errors: FutureRevision when ro.rev > curRev, Compacted
 * when the revision read is below the compact revision.
 */
export const rangeKeys = (
  state: ReadState,
  tx: BackendReadTx,
  key: string,
  end: string | undefined,
  curRev: number,
  ro: RangeOptions
): RangeResult | { err: EtcdErrorData } => {
  let rev = ro.rev
  if (rev > curRev) return { err: { _tag: "FutureRevision", requestedRevision: rev, currentRevision: curRev } }
  if (rev <= 0) rev = curRev
  if (rev < state.compactRev) {
    return { err: { _tag: "Compacted", requestedRevision: rev, compactRevision: state.compactRev } }
  }
  if (ro.countOnly) return { kvs: [], count: state.index.countRevisions(key, end, rev) }
  const { revs, total } = state.index.revisions(key, end, rev, ro.limit)
  const kvs = revs.map((r) => unsafeReadRev(tx, r))
  return { kvs, count: total }
}

/** etcd IsDefaultOrdering: the index already returns this order. */
export const isDefaultOrdering = (target: SortTarget, order: SortOrder): boolean =>
  order === "NONE" || (target === "KEY" && order === "ASCEND")

/** etcd HasRevisionFilters. */
export const hasRevisionFilters = (r: RangeRequest): boolean =>
  (r.minModRevision ?? 0) !== 0 || (r.maxModRevision ?? 0) !== 0 ||
  (r.minCreateRevision ?? 0) !== 0 || (r.maxCreateRevision ?? 0) !== 0

const rangeLimit = (r: RangeRequest): number => {
  let limit = r.limit ?? 0
  if (!isDefaultOrdering(r.sortTarget ?? "KEY", r.sortOrder ?? "NONE") || hasRevisionFilters(r)) limit = 0
  if (limit > 0) limit = limit + 1
  return limit
}

const filterKvs = (kvs: KeyValue[], r: RangeRequest): KeyValue[] => {
  const maxMod = r.maxModRevision ?? 0
  const minMod = r.minModRevision ?? 0
  const maxCreate = r.maxCreateRevision ?? 0
  const minCreate = r.minCreateRevision ?? 0
  if (maxMod === 0 && minMod === 0 && maxCreate === 0 && minCreate === 0) return kvs
  return kvs.filter((kv) =>
    !(maxMod !== 0 && kv.modRevision > maxMod) &&
    !(minMod !== 0 && kv.modRevision < minMod) &&
    !(maxCreate !== 0 && kv.createRevision > maxCreate) &&
    !(minCreate !== 0 && kv.createRevision < minCreate)
  )
}

const sorters: { readonly [T in SortTarget]: (a: KeyValue, b: KeyValue) => number } = {
  KEY: (a, b) => compareBytes(a.key, b.key),
  VERSION: (a, b) => a.version - b.version,
  CREATE: (a, b) => a.createRevision - b.createRevision,
  MOD: (a, b) => a.modRevision - b.modRevision,
  VALUE: (a, b) => compareBytes(a.value, b.value)
}

const sortKvs = (kvs: KeyValue[], r: RangeRequest): void => {
  const target = r.sortTarget ?? "KEY"
  let order = r.sortOrder ?? "NONE"
  if (target !== "KEY" && order === "NONE") order = "ASCEND"
  if (isDefaultOrdering(target, order)) return
  const less = sorters[target]
  if (order === "ASCEND") kvs.sort(less)
  else kvs.sort((a, b) => less(b, a))
}

/**
 * Serves one RangeRequest at `curRev` (etcd executeRange): reads, filters, sorts and cuts.
 * Errors as {@link rangeKeys}.
 */
export const executeRange = (
  state: ReadState,
  tx: BackendReadTx,
  r: RangeRequest,
  curRev: number
): RangeResponse | { err: EtcdErrorData } => {
  const rr = rangeKeys(state, tx, toKeyString(r.key), indexEnd(r.rangeEnd), curRev, {
    limit: rangeLimit(r),
    rev: r.revision ?? 0,
    countOnly: r.countOnly === true
  })
  if ("err" in rr) return rr
  let kvs = filterKvs(rr.kvs, r)
  sortKvs(kvs, r)
  let more = false
  const limit = r.limit ?? 0
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit)
    more = true
  }
  if (r.keysOnly === true) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array() }))
  return { kvs, more, count: rr.count }
}
