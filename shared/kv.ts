/**
 * The KV requests and responses that cross processes (gateway -> raft log -> mvcc -> gateway),
 * in natcd's internal shape: etcd's etcdserverpb messages (api/etcdserverpb/rpc.proto) with
 * camelCase field names, keys and values as `Uint8Array`, revisions as `number`, lease ids as
 * `bigint`. Enums keep etcd's names as string literals so frames stay readable when dumped.
 *
 * Only the gateway converts between this shape and the protobuf wire shape. Optional fields
 * follow proto3: absent means the zero value.
 */
import type { LeaseId, Revision } from "./ids.ts"

/** A key-value pair as etcd's mvccpb.KeyValue. `lease` is 0n when the key has none. */
export interface KeyValue {
  readonly key: Uint8Array
  readonly createRevision: Revision
  readonly modRevision: Revision
  /** Modifications since creation; a delete resets it to 0 (the tombstone is not returned). */
  readonly version: number
  readonly value: Uint8Array
  readonly lease: LeaseId
}

export type SortOrder = "NONE" | "ASCEND" | "DESCEND"
export type SortTarget = "KEY" | "VERSION" | "CREATE" | "MOD" | "VALUE"

/**
 * etcd's RangeRequest. `rangeEnd` empty: the single key `key`; `[0]` (one zero byte): every
 * key >= `key`; otherwise the half-open range [key, rangeEnd). `revision` <= 0: current.
 */
export interface RangeRequest {
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
  readonly limit?: number
  readonly revision?: number
  readonly sortOrder?: SortOrder
  readonly sortTarget?: SortTarget
  readonly serializable?: boolean
  readonly keysOnly?: boolean
  readonly countOnly?: boolean
  readonly minModRevision?: number
  readonly maxModRevision?: number
  readonly minCreateRevision?: number
  readonly maxCreateRevision?: number
}

export interface RangeResponse {
  readonly kvs: ReadonlyArray<KeyValue>
  /** True when `limit` cut the result. */
  readonly more: boolean
  /** The number of keys in the range (before `limit`). */
  readonly count: number
}

export interface PutRequest {
  readonly key: Uint8Array
  readonly value: Uint8Array
  readonly lease?: LeaseId
  readonly prevKv?: boolean
  readonly ignoreValue?: boolean
  readonly ignoreLease?: boolean
}

export interface PutResponse {
  readonly prevKv?: KeyValue
}

export interface DeleteRangeRequest {
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
  readonly prevKv?: boolean
}

export interface DeleteRangeResponse {
  readonly deleted: number
  readonly prevKvs: ReadonlyArray<KeyValue>
}

export type CompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL"
export type CompareTarget = "VERSION" | "CREATE" | "MOD" | "VALUE" | "LEASE"

/** etcd's Compare: exactly one of the target fields is read, chosen by `target`. */
export interface Compare {
  readonly result: CompareResult
  readonly target: CompareTarget
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
  readonly version?: number
  readonly createRevision?: number
  readonly modRevision?: number
  readonly value?: Uint8Array
  readonly lease?: LeaseId
}

export type RequestOp =
  | { readonly requestRange: RangeRequest }
  | { readonly requestPut: PutRequest }
  | { readonly requestDeleteRange: DeleteRangeRequest }
  | { readonly requestTxn: TxnRequest }

/**
 * One response of a txn branch. `revision` is the revision etcd puts in the op's own response
 * header (etcd server/etcdserver/apply.go): for a range, the txn's read revision at that
 * point; for a put, the txn's write revision; for a delete, the write revision when the txn
 * has changed something so far, else the read revision. A nested txn's header carries no
 * revision (etcd leaves it empty), so `revision` is absent there.
 */
export type ResponseOp =
  | { readonly responseRange: RangeResponse; readonly revision?: number }
  | { readonly responsePut: PutResponse; readonly revision?: number }
  | { readonly responseDeleteRange: DeleteRangeResponse; readonly revision?: number }
  | { readonly responseTxn: TxnResponse }

export interface TxnRequest {
  readonly compare: ReadonlyArray<Compare>
  readonly success: ReadonlyArray<RequestOp>
  readonly failure: ReadonlyArray<RequestOp>
}

export interface TxnResponse {
  readonly succeeded: boolean
  readonly responses: ReadonlyArray<ResponseOp>
}

export interface CompactionRequest {
  readonly revision: number
  readonly physical?: boolean
}

/** etcd's AlarmType: NONE (in a GET: every type), NOSPACE (quota exceeded), CORRUPT. */
export type AlarmType = "NONE" | "NOSPACE" | "CORRUPT"

/** etcd's AlarmRequest.AlarmAction. */
export type AlarmAction = "GET" | "ACTIVATE" | "DEACTIVATE"

/** An active alarm: which member raised which alarm (etcd AlarmMember). */
export interface AlarmMember {
  readonly memberId: bigint
  readonly alarm: AlarmType
}

/**
 * etcd's AlarmRequest, replicated through raft like a write so that every member's alarm
 * store changes at the same raft index (etcd applies GET through raft too).
 */
export interface AlarmRequest {
  readonly action: AlarmAction
  readonly memberId: bigint
  readonly alarm: AlarmType
}

/** etcd's AlarmResponse (without header: etcd 3.4 sends none). */
export interface AlarmResponse {
  readonly alarms: ReadonlyArray<AlarmMember>
}

/**
 * A request that changes the store, as it travels inside a raft entry (etcd's
 * InternalRaftRequest, reduced to the KV and alarm parts for now).
 */
export type WriteRequest =
  | { readonly put: PutRequest }
  | { readonly deleteRange: DeleteRangeRequest }
  | { readonly txn: TxnRequest }
  | { readonly compaction: CompactionRequest }
  | { readonly alarm: AlarmRequest }

/** The answer to a {@link WriteRequest}, with the store revision after it was applied. */
export type WriteResponse =
  | { readonly put: PutResponse }
  | { readonly deleteRange: DeleteRangeResponse }
  | { readonly txn: TxnResponse }
  | { readonly compaction: Record<string, never> }
  | { readonly alarm: AlarmResponse }

// ---------------------------------------------------------------------------------------------
// Leases (etcd's LeaseGrant / LeaseRevoke / LeaseCheckpoint internal raft requests). They travel
// in proposals like the KV writes above and are applied by every member's mvcc service to its
// lease table (services/lease/core/lease-table.ts), in the same LMDB transaction as the key changes.

/**
 * etcd's LeaseGrantRequest as proposed: `id` chosen by the client or the gateway (never 0),
 * `ttl` in seconds as asked, `minTtl` the member's minimum TTL in seconds (etcd raises a
 * smaller TTL to ceil(1.5 × election timeout) at apply time).
 */
export interface LeaseGrantRequest {
  readonly id: LeaseId
  readonly ttl: number
  readonly minTtl: number
}

/** etcd's LeaseRevokeRequest: revoke the lease and delete every key attached, in one revision. */
export interface LeaseRevokeRequest {
  readonly id: LeaseId
}

/** etcd's LeaseCheckpoint: the remaining TTL (seconds) of a lease, as the leader's lessor saw it. */
export interface LeaseCheckpoint {
  readonly id: LeaseId
  readonly remainingTtl: number
}

/** A lease request inside a proposal (etcd InternalRaftRequest's lease fields). */
export type LeaseWriteRequest =
  | { readonly leaseGrant: LeaseGrantRequest }
  | { readonly leaseRevoke: LeaseRevokeRequest }
  | { readonly leaseCheckpoint: { readonly checkpoints: ReadonlyArray<LeaseCheckpoint> } }

/** The answer to a {@link LeaseWriteRequest}: the granted lease with its final TTL (seconds). */
export type LeaseWriteResponse =
  | { readonly leaseGrant: { readonly id: LeaseId; readonly ttl: number } }
  | { readonly leaseRevoke: Record<string, never> }
  | { readonly leaseCheckpoint: Record<string, never> }

/** True when a proposal's request is a {@link LeaseWriteRequest}. */
export const isLeaseWriteRequest = (r: WriteRequest | LeaseWriteRequest): r is LeaseWriteRequest =>
  "leaseGrant" in r || "leaseRevoke" in r || "leaseCheckpoint" in r
