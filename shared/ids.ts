/**
 * Identifiers and counters that cross process boundaries, one representation per concept.
 *
 * - 64-bit identifiers (member, cluster, lease, request ids) are `bigint`: etcd builds them
 *   from a member prefix, a millisecond timestamp and a counter, so they routinely exceed 2^53.
 * - Raft terms and indexes and MVCC revisions are `number` (safe integers). They count events
 *   one by one from 1; at a million per second they reach 2^53 after 285 years. The gateway is
 *   the only place that sees wire int64 values for them and clamps out-of-range requests there
 *   (a requested revision beyond 2^53 is simply "a future revision", as in etcd).
 *
 * Brands keep a Revision from being passed where an Index is expected. Constructors are
 * plain casts: they cost nothing on hot paths.
 */

/** A 64-bit member id, as etcd's types.ID. */
export type MemberId = bigint & { readonly MemberId: unique symbol }
/** A 64-bit cluster id, as etcd's cluster_id in response headers. */
export type ClusterId = bigint & { readonly ClusterId: unique symbol }
/** A 64-bit lease id; 0 means "no lease", as etcd's lease.NoLease. */
export type LeaseId = bigint & { readonly LeaseId: unique symbol }
/** A raft term (starts at 0; a member's first election makes it 1 or more). */
export type Term = number & { readonly Term: unique symbol }
/** A raft log index (1-based; 0 means "none"). */
export type Index = number & { readonly Index: unique symbol }
/** An MVCC main revision: store-wide, starts at 1, one increment per mutating request. */
export type Revision = number & { readonly Revision: unique symbol }

export const MemberId = (n: bigint): MemberId => n as MemberId
export const ClusterId = (n: bigint): ClusterId => n as ClusterId
export const LeaseId = (n: bigint): LeaseId => n as LeaseId
export const Term = (n: number): Term => n as Term
export const Index = (n: number): Index => n as Index
export const Revision = (n: number): Revision => n as Revision

/** Lease id 0: the key has no lease. */
export const NoLease: LeaseId = LeaseId(0n)

const U64_MASK = (1n << 64n) - 1n

/**
 * Reads a uint64 from the first 8 bytes of a digest, big-endian, as etcd does when it derives
 * member and cluster ids from sha1 sums (server/etcdserver/api/membership/member.go).
 */
export const uint64FromDigest = (digest: Uint8Array): bigint => {
  let n = 0n
  for (let i = 0; i < 8; i++) n = (n << 8n) | BigInt(digest[i] ?? 0)
  return n & U64_MASK
}

/** Renders a 64-bit id as etcd prints it: lower-case hex without padding (types.ID.String). */
export const idToHex = (id: bigint): string => (id & U64_MASK).toString(16)
