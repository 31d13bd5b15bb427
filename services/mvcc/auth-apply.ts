/**
 * Applying a proposal with authentication in the picture (etcd server/etcdserver/apply_auth.go,
 * authApplierV3): Auth requests go to the auth store; every other request made for a client is
 * checked against the auth store first, with the user and auth revision its proposal carries,
 * and refused with the store's error, having changed nothing but the consistent index.
 *
 * The checks, as etcd's (3.5's for nested txns, which 3.4 left unchecked):
 * - Put: WRITE on the key; with `prevKv` also READ; with a lease, WRITE on every key attached to
 *   that lease (a revoke would delete them), unless the user is root;
 * - DeleteRange: WRITE on the range; with `prevKv` also READ;
 * - Txn: READ on every compare's range, and each op of both branches as above, nested txns too;
 * - LeaseRevoke: WRITE on every attached key, unless the user is root;
 * - Compaction, alarms, LeaseGrant, LeaseCheckpoint: none (etcd checks none of them at apply).
 *
 * Proposals without `authInfo` are the system's own (the lease service's expiry revocations
 * and checkpoints, the mvcc service's auto compaction): they are not checked, as etcd revokes
 * expired leases as root (authStore.WithRoot). Gateways always attach an `authInfo` (an empty
 * one for a client without credentials), so a client request is never taken for the system's.
 */
import type { AuthInfo, AuthResponse, AuthWriteRequest } from "../../shared/auth.ts"
import { isAuthWriteRequest } from "../../shared/auth.ts"
import { type Index, type LeaseId, Revision } from "../../shared/ids.ts"
import type { LeaseWriteRequest, RequestOp, TxnRequest, WriteRequest } from "../../shared/kv.ts"
import type { AuthFailure, AuthStore } from "./core/auth-store.ts"
import type { BackendWriteTx } from "./core/backend.ts"
import type { KvStore } from "./core/store.ts"
import { applyWithLeases, type LeaseAwareApplyResult } from "../lease/core/lease-apply.ts"
import type { LeaseTable } from "../lease/core/lease-table.ts"

/** What the auth checks need of the lease table: the keys attached to a lease. */
export interface AttachedKeys {
  has(id: LeaseId): boolean
  keys(id: LeaseId): ReadonlyArray<Uint8Array>
}

/** etcd checkLeasePuts: WRITE on every key attached to `lease` (none to check for an unknown one), root passes. */
const checkLeasePuts = (auth: AuthStore, leases: AttachedKeys, info: AuthInfo, lease: LeaseId | undefined): AuthFailure | undefined => {
  if (lease === undefined || lease === 0n || !leases.has(lease)) return undefined
  if (auth.checkAdmin(info) === undefined) return undefined
  for (const key of leases.keys(lease)) {
    const denied = auth.checkRange(info, { key }, "WRITE")
    if (denied !== undefined) return denied
  }
  return undefined
}

const checkOps = (auth: AuthStore, leases: AttachedKeys, info: AuthInfo, ops: ReadonlyArray<RequestOp>): AuthFailure | undefined => {
  for (const op of ops) {
    const denied = "requestRange" in op
      ? auth.checkRange(info, op.requestRange, "READ")
      : "requestPut" in op
      ? checkPut(auth, leases, info, op.requestPut)
      : "requestDeleteRange" in op
      ? checkDelete(auth, info, op.requestDeleteRange)
      : checkTxn(auth, leases, info, op.requestTxn)
    if (denied !== undefined) return denied
  }
  return undefined
}

const checkPut = (
  auth: AuthStore,
  leases: AttachedKeys,
  info: AuthInfo,
  put: { readonly key: Uint8Array; readonly lease?: LeaseId; readonly prevKv?: boolean }
): AuthFailure | undefined =>
  auth.checkRange(info, put, "WRITE") ?? checkLeasePuts(auth, leases, info, put.lease) ??
    (put.prevKv === true ? auth.checkRange(info, put, "READ") : undefined)

const checkDelete = (auth: AuthStore, info: AuthInfo, del: { readonly key: Uint8Array; readonly rangeEnd?: Uint8Array; readonly prevKv?: boolean }) =>
  auth.checkRange(info, del, "WRITE") ?? (del.prevKv === true ? auth.checkRange(info, del, "READ") : undefined)

/** etcd checkTxnAuth: compares need READ, then every op of both branches. */
const checkTxn = (auth: AuthStore, leases: AttachedKeys, info: AuthInfo, txn: TxnRequest): AuthFailure | undefined => {
  for (const c of txn.compare) {
    const denied = auth.checkRange(info, c, "READ")
    if (denied !== undefined) return denied
  }
  return checkOps(auth, leases, info, txn.success) ?? checkOps(auth, leases, info, txn.failure)
}

/**
 * Whether `info` may make `request` (see the module comment); undefined when permitted (always,
 * while authentication is disabled).
 */
export const authorizeWrite = (auth: AuthStore, leases: AttachedKeys, info: AuthInfo, request: WriteRequest | LeaseWriteRequest): AuthFailure | undefined => {
  if (!auth.isEnabled()) return undefined
  if ("put" in request) return checkPut(auth, leases, info, request.put)
  if ("deleteRange" in request) return checkDelete(auth, info, request.deleteRange)
  if ("txn" in request) return checkTxn(auth, leases, info, request.txn)
  if ("leaseRevoke" in request) return checkLeasePuts(auth, leases, info, request.leaseRevoke.id)
  return undefined
}

/** The member's token provider, as the apply sees it (./auth-tokens.ts AuthTokens). */
export interface TokenIssuer {
  assign(username: string, simpleTokenPrefix: string, index: number, revision: number, mine: boolean): string | undefined
  invalidateUser(username: string): void
  disable(): void
}

/** {@link LeaseAwareApplyResult}, or the outcome of an Auth request. */
export type AuthAwareApplyResult = LeaseAwareApplyResult | { readonly ok: { readonly auth: AuthResponse }; readonly revision: Revision; readonly events: readonly [] }

/**
 * Applies a proposal's `request` at raft `index` in `tx`, made by `info` (undefined: the
 * system's own): Auth requests to the auth store (assigning Authenticate's token with
 * `tokens`), other requests checked by {@link authorizeWrite} and then applied with leases
 * (../lease/core/lease-apply.ts). `mine`: this member answers the proposal (a JWT is signed only then).
 * A refused request only moves the consistent index; `{ skipped }` when `index` was applied before.
 */
export const applyWithAuth = (
  store: KvStore,
  leases: LeaseTable,
  auth: AuthStore,
  tokens: TokenIssuer,
  tx: BackendWriteTx,
  index: Index,
  request: WriteRequest | LeaseWriteRequest | AuthWriteRequest,
  info: AuthInfo | undefined,
  mine: boolean
): AuthAwareApplyResult => {
  if (isAuthWriteRequest(request)) {
    if (!store.advanceConsistentIndex(tx, index)) return { skipped: true }
    const r = auth.apply(tx, info, request.auth)
    if ("err" in r) return r
    if (r.invalidateUser !== undefined) tokens.invalidateUser(r.invalidateUser)
    if (r.disabled === true) tokens.disable()
    let response = r.ok
    if (r.authenticated !== undefined && "authenticate" in request.auth) {
      const token = tokens.assign(r.authenticated, request.auth.authenticate.simpleToken, index, auth.authRevision(), mine)
      // The auth revision lets the gateway see whether the store changed since it checked the password.
      if (token !== undefined) response = { token, authRevision: auth.authRevision() }
    }
    return { ok: { auth: response }, revision: Revision(store.currentRevision()), events: [] }
  }
  if (info !== undefined) {
    const denied = authorizeWrite(auth, leases, info, request)
    if (denied !== undefined) {
      if (!store.advanceConsistentIndex(tx, index)) return { skipped: true }
      return denied
    }
  }
  return applyWithLeases(store, leases, tx, index, request)
}
