/**
 * What etcd's lock and election services share (etcd client/v3/concurrency session.go, key.go,
 * mutex.go's key naming): the session lease, ownership keys named after the lease, and
 * waiting until every key created before one's own under a prefix is gone.
 *
 * Waiting: etcd's waitDeletes watches the last key created before one's own until it is
 * deleted, then looks again. natcd's gateway polls instead: it reads the member's local store
 * (a serializable range, cheap) every {@link pollMs} until no key under the prefix has a
 * create revision <= maxCreateRev, then confirms with one linearizable range, whose header it
 * returns. Polling the local store is correct because a key with a create revision below one's
 * own can never reappear: a key created later gets a larger create revision, so once the local
 * store (at a revision >= one's own key's) shows none, there are none for good. It costs a
 * local read per waiter per poll and up to {@link pollMs} of latency per hand-over.
 */
import type { EtcdErrorData } from "../../shared/errors.ts"
import { LeaseId } from "../../shared/ids.ts"
import type * as Kv from "../../shared/kv.ts"
import type { InternalKv, Revisioned } from "./internal-kv.ts"
import { prefixRangeEnd } from "./internal-kv.ts"
import type { LeaseWriteResponse } from "../../shared/kv.ts"
import type { Proposer } from "../runtime/proposer.ts"
import { concatBytes } from "../mvcc/core/key-bytes.ts"
import { randomLeaseId } from "./lease.ts"

/** Poll interval of waiters, ms. */
export const pollMs = 25

/** etcd's default session TTL (concurrency.defaultSessionTTL), seconds. */
export const defaultSessionTtl = 60

const encoder = new TextEncoder()

/** `name` + "/": the prefix under which a lock's or an election's keys live (etcd pfx). */
export const keyPrefix = (name: Uint8Array): Uint8Array => concatBytes(name, encoder.encode("/"))

/** The ownership key of `lease` under `prefix`: prefix + the lease id in hex (Go's %x of an int64). */
export const ownerKey = (prefix: Uint8Array, lease: bigint): Uint8Array =>
  concatBytes(prefix, encoder.encode(BigInt.asIntN(64, lease).toString(16)))

/**
 * The session lease (etcd concurrency.NewSession with WithLease): `lease` when not 0, else a
 * new lease with etcd's default TTL of 60 s. As in etcd's lock and election servers the
 * session is orphaned at once: nobody keeps the lease alive but the client.
 */
export const sessionLease = async (proposer: Proposer, lease: bigint, minTtl: number, traceparent: string): Promise<LeaseId> => {
  if (lease !== 0n) return LeaseId(lease)
  const r = await proposer.propose({ leaseGrant: { id: randomLeaseId(), ttl: defaultSessionTtl, minTtl } }, traceparent)
  return (r.response as Extract<LeaseWriteResponse, { leaseGrant: unknown }>).leaseGrant.id
}

/** The range of keys under `prefix`, first (or last) by create revision, one key (etcd WithFirstCreate / WithLastCreate). */
export const byCreate = (prefix: Uint8Array, order: "ASCEND" | "DESCEND", extra: Partial<Kv.RangeRequest> = {}): Kv.RangeRequest => ({
  key: prefix,
  rangeEnd: prefixRangeEnd(prefix),
  sortOrder: order,
  sortTarget: "CREATE",
  limit: 1,
  ...extra
})

/** Rejected when `signal` aborts: the client went away. */
const aborted = (): EtcdErrorData => ({ _tag: "ConcurrencyError", message: "context canceled" })

/** Sleeps `ms`, rejecting early when `signal` aborts. */
export const sleepOrAbort = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(aborted())
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(aborted())
    }
    signal.addEventListener("abort", onAbort, { once: true })
  })

/**
 * etcd waitDeletes: resolves once no key under `prefix` has create revision <= maxCreateRev,
 * with the linearizable range that confirmed it. Rejects when `signal` aborts or a read fails.
 */
export const waitDeletes = async (
  kv: InternalKv,
  prefix: Uint8Array,
  maxCreateRev: number,
  signal: AbortSignal,
  traceparent: string
): Promise<Revisioned<Kv.RangeResponse>> => {
  const request = byCreate(prefix, "DESCEND", { maxCreateRevision: maxCreateRev })
  for (;;) {
    if (signal.aborted) throw aborted()
    const local = await kv.range({ ...request, serializable: true }, traceparent)
    // The local store must have reached our own key's revision to say anything.
    if (local.revision > maxCreateRev && local.response.kvs.length === 0) {
      const confirmed = await kv.range(request, traceparent)
      if (confirmed.response.kvs.length === 0) return confirmed
    }
    await sleepOrAbort(pollMs, signal)
  }
}

/** A txn compare `create_revision(key) = rev` (etcd v3.Compare(v3.CreateRevision(key), "=", rev)). */
export const createRevisionIs = (key: Uint8Array, rev: number): Kv.Compare => ({ result: "EQUAL", target: "CREATE", key, createRevision: rev })
