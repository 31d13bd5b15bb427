/**
 * Applying a proposal's request with leases in the picture: KV writes go to the store and their
 * key changes attach keys to and detach them from leases; lease requests (grant, revoke,
 * checkpoint) go to the lease table, a revoke deleting the lease's keys through the store in
 * one revision. Everything happens in the caller's backend transaction, so the lease table and
 * the key space change atomically with the consistent index.
 *
 * Follows etcd server/etcdserver/apply.go (applierV3backend.LeaseGrant, LeaseRevoke,
 * LeaseCheckpoint; applierV3Capped refusing grants under NOSPACE) and server/lease/lessor.go
 * Revoke (keys deleted in sorted order in one write txn, then the lease record).
 */
import type { LeaseWriteRequest, LeaseWriteResponse, WriteRequest } from "../../../shared/kv.ts"
import { isLeaseWriteRequest } from "../../../shared/kv.ts"
import { type Index, Revision } from "../../../shared/ids.ts"
import type { BackendWriteTx } from "../../mvcc/core/backend.ts"
import type { ApplyResult, KvStore, MvccEvent } from "../../mvcc/core/store.ts"
import type { LeaseTable } from "./lease-table.ts"

/** {@link ApplyResult}, or the outcome of a lease request (its events: the revoked lease's key deletions). */
export type LeaseAwareApplyResult =
  | ApplyResult
  | { readonly ok: LeaseWriteResponse; readonly revision: Revision; readonly events: ReadonlyArray<MvccEvent> }

/**
 * Applies `request` at raft `index` in `tx`. Errors (as data): the store's, plus
 * LeaseNotFound (revoke of an unknown lease, put with one), LeaseExists, LeaseTtlTooLarge and
 * NoSpace (grant under a NOSPACE alarm), Corrupt (grant or revoke under a CORRUPT alarm). `{ skipped }` when `index` was applied before.
 */
export const applyWithLeases = (
  store: KvStore,
  leases: LeaseTable,
  tx: BackendWriteTx,
  index: Index,
  request: WriteRequest | LeaseWriteRequest
): LeaseAwareApplyResult => {
  if (!isLeaseWriteRequest(request)) {
    const r = store.apply(tx, index, request)
    if ("ok" in r && r.events.length > 0) leases.applyEvents(tx, r.events)
    return r
  }
  // etcd applierV3Corrupt: under a CORRUPT alarm lease grants and revocations fail (checkpoints pass).
  if (store.activeAlarms("CORRUPT").length > 0 && !("leaseCheckpoint" in request)) {
    if (!store.advanceConsistentIndex(tx, index)) return { skipped: true }
    return { err: { _tag: "Corrupt" } }
  }
  if ("leaseRevoke" in request) {
    const id = request.leaseRevoke.id
    if (!leases.has(id)) {
      if (!store.advanceConsistentIndex(tx, index)) return { skipped: true }
      return { err: { _tag: "LeaseNotFound", leaseId: id } }
    }
    const keys = leases.keys(id)
    let revision = store.currentRevision()
    let events: ReadonlyArray<MvccEvent> = []
    if (keys.length > 0) {
      const r = store.apply(tx, index, {
        txn: { compare: [], success: keys.map((key) => ({ requestDeleteRange: { key } })), failure: [] }
      })
      if (!("ok" in r)) return r
      leases.applyEvents(tx, r.events)
      revision = r.revision
      events = r.events
    } else if (!store.advanceConsistentIndex(tx, index)) {
      return { skipped: true }
    }
    leases.remove(tx, index, id)
    return { ok: { leaseRevoke: {} }, revision, events }
  }
  if (!store.advanceConsistentIndex(tx, index)) return { skipped: true }
  const revision = Revision(store.currentRevision())
  if ("leaseGrant" in request) {
    if (store.activeAlarms("NOSPACE").length > 0) return { err: { _tag: "NoSpace" } }
    const r = leases.grant(tx, index, request.leaseGrant)
    if ("err" in r) return r
    return { ok: { leaseGrant: { id: r.id, ttl: r.ttl } }, revision, events: [] }
  }
  leases.checkpoint(tx, index, request.leaseCheckpoint.checkpoints)
  return { ok: { leaseCheckpoint: {} }, revision, events: [] }
}
