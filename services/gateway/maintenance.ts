/**
 * etcd's Maintenance.Alarm and the backend quota check of Put and Txn, served by the gateway.
 *
 * Alarm (etcd server/etcdserver/v3_server.go EtcdServer.Alarm): every action, GET included, is
 * proposed through raft and answered from the apply result, so the alarm list is the one of
 * the raft log position the request was applied at. The alarms live in each member's mvcc
 * store (services/mvcc/core/alarms.ts). As etcd 3.4, the response carries no header.
 *
 * Quota (etcd server/etcdserver/api/v3rpc/quota.go quotaKVServer and etcdserver/quota.go
 * backendQuota): before a Put, or a Txn with puts, is proposed, the gateway checks
 * `size + cost < quota`, where cost is 256 bytes plus key and value per put (for a txn, the
 * larger of its success and failure branches' top-level puts). When the check fails the
 * gateway raises the NOSPACE alarm for its member through raft (etcd quotaAlarmer.check) and
 * fails the request with NoSpace ("etcdserver: mvcc: database space exceeded"). Once the alarm
 * is applied, every member's store rejects puts as etcd's applierV3Capped does, until
 * `etcdctl alarm disarm`.
 *
 * Departures from etcd, on purpose:
 * - `size` is the mvcc service's in-use size (pages holding data; etcd's dbSizeInUse), not
 *   etcd's backend Size() (bolt's high-water mark, which only defragmentation lowers).
 *   Maintenance.Defragment is not served yet, so a compaction alone frees quota: compact,
 *   then `etcdctl alarm disarm`, restores writes.
 * - The size is read from the mvcc service at most {@link sizeCacheMs} old (and always fresh
 *   before refusing a write); etcd's own Size()
 *   moves only at backend commits (every 100 ms), so both may let a burst of writes pass a
 *   little over the quota. etcd's second, apply-time check (quotaApplierV3) is not done.
 */
import { NoSpace } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { mvccAlarms, mvccStatus } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint } from "../runtime/rpc.ts"
import type { Wire } from "./convert.ts"
import { wireBig } from "./convert.ts"
import type { Proposer } from "../runtime/proposer.ts"

/** etcd's default --quota-backend-bytes: 2 GiB. */
export const defaultQuotaBackendBytes = 2 * 1024 * 1024 * 1024

/** etcd kvOverhead: bytes charged per put on top of key and value. */
export const kvOverhead = 256

/** How old the mvcc size used by the quota check may be, in ms. */
export const sizeCacheMs = 100

/**
 * The quota in bytes for a `--quota-backend-bytes` value, as etcd NewBackendQuota: 0 means
 * the default (2 GiB), a negative value turns the quota off (undefined).
 */
export const quotaBytes = (flag: number): number | undefined =>
  flag < 0 ? undefined : flag === 0 ? defaultQuotaBackendBytes : flag

const costPut = (p: Kv.PutRequest): number => kvOverhead + p.key.length + p.value.length

const costOps = (ops: ReadonlyArray<Kv.RequestOp>): number =>
  ops.reduce((n, op) => n + ("requestPut" in op ? costPut(op.requestPut) : 0), 0)

/** etcd backendQuota.Cost for a write request: 0 for anything but a put or a txn with puts. */
export const quotaCost = (request: Kv.WriteRequest): number => {
  if ("put" in request) return costPut(request.put)
  if ("txn" in request) return Math.max(costOps(request.txn.success), costOps(request.txn.failure))
  return 0
}

/** What the Maintenance handlers and the quota check use. */
export interface MaintenanceContext {
  readonly rpc: RpcClient
  readonly proposer: Proposer
  readonly subjects: { readonly mvccStatus: string; readonly mvccAlarms: string }
  readonly requestTimeoutMs: number
  /** The quota in bytes ({@link quotaBytes}); undefined: no quota. */
  readonly quotaBytes: number | undefined
  /** The member's identity, learned from its raft service. */
  readonly identity: () => Promise<{ readonly memberId: bigint }>
}

const alarmTypes: ReadonlySet<string> = new Set(["NONE", "NOSPACE", "CORRUPT"])
const alarmActions: ReadonlySet<string> = new Set(["GET", "ACTIVATE", "DEACTIVATE"])

/** etcd AlarmRequest (wire) -> internal. Unknown enum values are kept out by proto-loader; guarded anyway. */
export const alarmRequestFromWire = (w: Wire): Kv.AlarmRequest => ({
  action: (alarmActions.has(w.action) ? w.action : "GET") as Kv.AlarmAction,
  memberId: wireBig(w.memberID),
  alarm: (alarmTypes.has(w.alarm) ? w.alarm : "NONE") as Kv.AlarmType
})

/** Internal AlarmResponse -> wire (no header, as etcd 3.4). */
export const alarmResponseToWire = (r: Kv.AlarmResponse): Wire => ({
  alarms: r.alarms.map((m) => ({ memberID: BigInt(m.memberId).toString(), alarm: m.alarm }))
})

/** Makes the Maintenance.Alarm handler and the quota check used by Put and Txn. */
export const makeMaintenanceHandlers = (ctx: MaintenanceContext) => {
  let cached: { atMs: number; inUseBytes: number } | undefined
  /** The size fetch in flight for callers content with a cached size: one at a time, shared. */
  let refreshing: Promise<number> | undefined

  const fetchInUseBytes = async (traceparent: string): Promise<number> => {
    const now = Date.now()
    const s = await callEndpoint(ctx.rpc, mvccStatus, ctx.subjects.mvccStatus, {}, { timeoutMs: ctx.requestTimeoutMs, traceparent })
    if (cached === undefined || cached.atMs <= now) cached = { atMs: now, inUseBytes: s.dbSizeInUseBytes }
    return s.dbSizeInUseBytes
  }

  /** The backend's in-use bytes: at most sizeCacheMs old, or (`fresh`) fetched after this call. */
  const inUseBytes = (traceparent: string, fresh: boolean): Promise<number> => {
    if (fresh) return fetchInUseBytes(traceparent)
    if (cached !== undefined && Date.now() - cached.atMs < sizeCacheMs) return Promise.resolve(cached.inUseBytes)
    if (refreshing === undefined) {
      refreshing = fetchInUseBytes(traceparent).finally(() => (refreshing = undefined))
    }
    return refreshing
  }

  /**
   * etcd quotaAlarmer.check: resolves when `request` fits the quota; otherwise raises the
   * NOSPACE alarm for this member (waiting for it, ignoring its failure, as etcd) and rejects
   * with NoSpace.
   */
  const checkQuota = async (request: Kv.WriteRequest, traceparent: string): Promise<void> => {
    if (ctx.quotaBytes === undefined) return
    const cost = quotaCost(request)
    if (cost === 0) return
    if ((await inUseBytes(traceparent, false)) + cost < ctx.quotaBytes) return
    // A cached size may predate a compaction: only a fresh one may refuse a write.
    if ((await inUseBytes(traceparent, true)) + cost < ctx.quotaBytes) return
    try {
      const { memberId } = await ctx.identity()
      await ctx.proposer.propose({ alarm: { action: "ACTIVATE", memberId, alarm: "NOSPACE" } }, traceparent)
    } catch {
      // etcd ignores the outcome of raising the alarm; the request fails either way.
    }
    throw new NoSpace()
  }

  /**
   * The member's active alarms in etcd's Maintenance.Status `errors` form (the AlarmMember's
   * text form, "memberID:<id> alarm:<type> ", as etcd's maintenanceServer.Status).
   */
  const statusErrors = async (traceparent: string): Promise<ReadonlyArray<string>> => {
    const r = await callEndpoint(ctx.rpc, mvccAlarms, ctx.subjects.mvccAlarms, {}, { timeoutMs: ctx.requestTimeoutMs, traceparent })
    return r.alarms.map((m) => `memberID:${m.memberId} alarm:${m.alarm} `)
  }

  return {
    checkQuota,
    statusErrors,
    /** Maintenance.Alarm: GET, ACTIVATE, DEACTIVATE through raft. */
    Alarm: async (w: Wire): Promise<Wire> => {
      const r = await ctx.proposer.propose({ alarm: alarmRequestFromWire(w) }, "")
      return alarmResponseToWire((r.response as { alarm: Kv.AlarmResponse }).alarm)
    }
  }
}
