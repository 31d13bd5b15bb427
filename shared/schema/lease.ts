/**
 * Schemas of leases: the mvcc service's lease table (services/lease/core/lease-table.ts; mvcc.leases,
 * mvcc.lease) and the lease service's keep-alive and TimeToLive (services/lease). Lease writes
 * (grant, revoke, checkpoint) travel inside proposals (./kv.ts).
 */
import * as Schema from "effect/Schema"
import { Bytes, Int, okOrErr, opt, U64 } from "./codec.ts"

/** A lease of the applied table: TTL and checkpointed remaining TTL in seconds, raft index of its grant. */
export const LeaseRecordSchema = Schema.Struct({ id: U64, ttl: Int, remainingTtl: Int, grantIndex: Int })

/**
 * mvcc.leases: the lease table's changes after raft index `sinceIndex` (0: the whole table),
 * served once the member applied `minAppliedIndex`. Reply: `appliedIndex` the changes are
 * complete up to; `full` when `leases` is the whole table; `removed` the leases revoked since.
 */
export const MvccLeasesBody = Schema.Struct({ sinceIndex: Int, minAppliedIndex: Int })
export const MvccLeasesReply = Schema.Struct({
  appliedIndex: Int,
  full: Schema.Boolean,
  leases: Schema.Array(LeaseRecordSchema),
  removed: Schema.Array(U64)
})

/**
 * mvcc.lease: one lease (and with `keys` its attached keys, sorted) once the member applied
 * `minAppliedIndex`. `lease` absent: no such lease. `revision`/`term`: for response headers.
 */
export const MvccLeaseBody = Schema.Struct({ id: U64, keys: Schema.Boolean, minAppliedIndex: Int })
export const MvccLeaseReply = Schema.Struct({
  lease: opt(LeaseRecordSchema),
  keys: Schema.Array(Bytes),
  revision: Int,
  term: Int
})

/**
 * lease.keepalive: renew lease `id` (etcd LeaseRenew), served by the leader's lease service; a
 * follower's forwards it (`forwarded` is set on the forwarded copy, which is never forwarded
 * again). Reply: the lease's TTL in seconds. Errors: LeaseNotFound, NoLeader, NotLeader.
 */
export const LeaseKeepAliveBody = Schema.Struct({ id: U64, forwarded: Schema.Boolean })
export const LeaseKeepAliveReply = okOrErr(Schema.Struct({ ttl: Int }))

/**
 * lease.timetolive: granted TTL and remaining TTL (seconds, truncated as etcd's) of lease `id`,
 * with its attached keys when `keys`; served by the leader's lease service (forwarded like
 * keep-alives). Error: LeaseNotFound (the gateway answers TTL -1, as etcd).
 */
export const LeaseTimeToLiveBody = Schema.Struct({ id: U64, keys: Schema.Boolean, forwarded: Schema.Boolean })
export const LeaseTimeToLiveReply = okOrErr(Schema.Struct({ grantedTtl: Int, ttl: Int, keys: Schema.Array(Bytes) }))
