/**
 * The lessor's expiry logic on a logical clock: which leases are alive, when each expires, which
 * are due for revocation (rate-limited) and for a remaining-TTL checkpoint. It follows etcd
 * server/lease/lessor.go (Grant, Renew, Promote, Demote, Checkpoint, findExpiredLeases,
 * findDueScheduledCheckpoints, scheduleCheckpointIfNeeded) with these differences:
 *
 * - No clock, no IO: every call takes `nowMs`, a time in ms on the caller's monotonic clock,
 *   and returns data; the shell (services/lease/main.ts) proposes revocations and checkpoints
 *   through raft and feeds the applied lease table back with {@link Lessor.upsert} and
 *   {@link Lessor.remove}.
 * - The lease table itself (which leases exist, their TTL, the keys attached) is replicated
 *   state kept by every member's mvcc service (services/lease/core/lease-table.ts); this core only
 *   mirrors id, TTL and checkpointed remaining TTL to track expiry, and only on the leader
 *   (the "primary" in etcd's words). On a non-primary every lease lives forever, as etcd's
 *   `forever()`.
 * - Renew does not block on an expired lease waiting for its revocation to apply; it returns
 *   `expired` and the shell waits (etcd waits on the lease's revokec channel).
 *
 * Units: TTLs in whole seconds (etcd's int64 TTL); times in ms.
 *
 * Worked example (min TTL 2 s, not checkpointing):
 *
 *     promote(t=0, extend=1000)        primary; nothing to track yet
 *     upsert({7, ttl 5}, t=100)        lease 7 granted: expires at 5100
 *     renew(7, t=2000)                 -> ttl 5; expires at 7000
 *     findExpired(t=6999, 500)         -> []
 *     findExpired(t=7000, 500)         -> [7]; re-queued at 10000 (the retry interval) in case
 *                                         the revocation proposal is lost
 *     remove(7)                        the revocation applied
 *     demote()                         a follower again: nothing expires
 */
import { LeaseQueue } from "./lease-queue.ts"

/** etcd's default lease revocation rate, in leases per second (leaseRevokeRate). */
export const defaultLeaseRevokeRate = 1000

/** etcd's expiredLeaseRetryInterval: an expired lease not revoked by then is revoked again, in ms. */
export const defaultExpiredRetryMs = 3000

/** etcd's defaultLeaseCheckpointInterval: 5 minutes, in ms. */
export const defaultCheckpointIntervalMs = 5 * 60 * 1000

/** etcd's maxLeaseCheckpointBatchSize: checkpoints per raft proposal. */
export const maxCheckpointBatch = 1000

/**
 * etcd's minimum lease TTL: ceil(1.5 × election timeout) in seconds, so that a lease cannot
 * expire during a leader election (etcd embed/config.go, server.go minTTL). 2 s for the
 * default 1000 ms election timeout.
 */
export const minLeaseTtlSec = (electionTimeoutMs: number): number => Math.ceil((3 * electionTimeoutMs) / 2 / 1000)

/** Settings of a {@link Lessor}. */
export interface LessorConfig {
  /**
   * Checkpoint the remaining TTL through raft every this many ms (etcd
   * --experimental-lease-checkpoint-interval); undefined: checkpointing off.
   */
  readonly checkpointIntervalMs?: number
  /** Revocations per second at most (etcd leaseRevokeRate, 1000). */
  readonly revokeRate?: number
  /** Ms before an expired lease whose revocation did not apply is returned again (3000). */
  readonly expiredRetryMs?: number
}

/** A lease as the lessor tracks it. */
export interface TrackedLease {
  readonly id: bigint
  /** Granted TTL in seconds (already raised to the minimum at grant). */
  readonly ttl: number
  /** Checkpointed remaining TTL in seconds; 0 when none (then `ttl` counts). */
  readonly remainingTtl: number
  /** When the lease expires, in ms; Infinity while not primary (etcd forever()). */
  readonly expiryMs: number
}

/** What {@link Lessor.renew} returns. */
export type RenewResult =
  /** Renewed: the lease's TTL in seconds; `clearCheckpoint`: propose a checkpoint of 0 (etcd does before renewing). */
  | { readonly ttl: number; readonly clearCheckpoint: boolean }
  | { readonly err: "NotFound" | "NotPrimary" }
  /** Expired and awaiting revocation: the caller waits for it to go (then NotFound) or for a demotion. */
  | { readonly expired: true }

/** A remaining TTL to checkpoint through raft (etcd pb.LeaseCheckpoint). */
export interface Checkpoint {
  readonly id: bigint
  readonly remainingTtl: number
}

/** A lease as the applied table holds it (services/lease/core/lease-table.ts LeaseRecord). */
export interface AppliedLease {
  readonly id: bigint
  /** Granted TTL, seconds. */
  readonly ttl: number
  /** Checkpointed remaining TTL, seconds; 0 when none. */
  readonly remainingTtl: number
  /** Raft index of the grant: a different index is a new lease with the same id. */
  readonly grantIndex: number
}

interface MutableLease {
  id: bigint
  ttl: number
  remainingTtl: number
  grantIndex: number
  expiryMs: number
}

/**
 * The lessor. Invariants: while primary, every lease is in `expiry` at its `expiryMs`; while
 * not primary, `expiry` and `checkpoints` are empty and every `expiryMs` is Infinity.
 */
export class Lessor {
  private readonly leases = new Map<bigint, MutableLease>()
  private readonly expiry = new LeaseQueue()
  private readonly checkpoints = new LeaseQueue()
  private primary = false
  private readonly checkpointIntervalMs: number | undefined
  private readonly revokeRate: number
  private readonly expiredRetryMs: number

  constructor(config: LessorConfig = {}) {
    this.checkpointIntervalMs = config.checkpointIntervalMs
    this.revokeRate = config.revokeRate ?? defaultLeaseRevokeRate
    this.expiredRetryMs = config.expiredRetryMs ?? defaultExpiredRetryMs
  }

  /** True while this lessor tracks expiry (its member leads). */
  isPrimary(): boolean {
    return this.primary
  }

  /** The number of leases known. */
  get size(): number {
    return this.leases.size
  }

  /** The lease `id` as tracked, or undefined. */
  lookup(id: bigint): TrackedLease | undefined {
    return this.leases.get(id)
  }

  /** Every lease id known. */
  ids(): IterableIterator<bigint> {
    return this.leases.keys()
  }

  /**
   * Records a lease of the applied table: a new lease (etcd Grant: expiry = now + TTL when
   * primary) or a changed checkpointed remaining TTL of a known one (etcd Checkpoint: the
   * expiry stays; a checkpoint is scheduled again when due). Unchanged leases are left alone.
   */
  upsert(lease: AppliedLease, nowMs: number): void {
    const { id, ttl, remainingTtl, grantIndex } = lease
    const known = this.leases.get(id)
    if (known === undefined || known.grantIndex !== grantIndex) {
      // New, or revoked and granted again since the last sync: a new lease either way.
      if (known !== undefined) this.remove(id)
      const l: MutableLease = { id, ttl, remainingTtl, grantIndex, expiryMs: Infinity }
      this.leases.set(id, l)
      if (this.primary) {
        this.refresh(l, nowMs, 0)
        this.scheduleCheckpointIfNeeded(l, nowMs)
      }
      return
    }
    if (known.ttl === ttl && known.remainingTtl === remainingTtl) return
    known.ttl = ttl
    known.remainingTtl = remainingTtl
    if (this.primary) this.scheduleCheckpointIfNeeded(known, nowMs)
  }

  /** Forgets a lease that was revoked (by a client or by expiry). */
  remove(id: bigint): void {
    this.leases.delete(id)
    this.expiry.remove(id)
    this.checkpoints.remove(id)
  }

  /**
   * Becomes primary (etcd Promote): every lease's expiry becomes now + extend + its remaining
   * TTL (the checkpointed one, else its TTL), so none expires early because of the election;
   * with at least `revokeRate` leases, expiries that pile up within a second are spread so
   * that at most 3/4 of the revocation rate falls in any one second.
   * `extendMs` is etcd's election timeout.
   */
  promote(nowMs: number, extendMs: number): void {
    this.primary = true
    this.expiry.clear()
    this.checkpoints.clear()
    for (const l of this.leases.values()) {
      this.refresh(l, nowMs, extendMs)
      this.scheduleCheckpointIfNeeded(l, nowMs)
    }
    if (this.leases.size < this.revokeRate) return
    const sorted = [...this.leases.values()].sort((a, b) => a.expiryMs - b.expiryMs)
    let baseWindow = sorted[0]!.expiryMs - nowMs
    let nextWindow = baseWindow + 1000
    let expires = 0
    const target = Math.floor((3 * this.revokeRate) / 4)
    for (const l of sorted) {
      const remaining = l.expiryMs - nowMs
      if (remaining > nextWindow) {
        baseWindow = remaining
        nextWindow = baseWindow + 1000
        expires = 1
        continue
      }
      expires++
      if (expires <= target) continue
      // The lease's share of the rate: the expires-th lease of this window moves by
      // expires/target seconds, minus how far beyond the window's base it already is.
      const delay = Math.max(0, 1000 * (expires / target) - (remaining - baseWindow))
      nextWindow = baseWindow + delay
      this.refresh(l, nowMs, delay + extendMs)
      this.scheduleCheckpointIfNeeded(l, nowMs)
    }
  }

  /** Stops being primary (etcd Demote): every lease lives forever, nothing is queued. */
  demote(): void {
    this.primary = false
    this.expiry.clear()
    this.checkpoints.clear()
    for (const l of this.leases.values()) l.expiryMs = Infinity
  }

  /**
   * A keep-alive (etcd Renew): expiry = now + TTL. Errors: NotPrimary off the leader, NotFound
   * for an unknown lease; `expired` for a lease past its expiry (its revocation is pending).
   */
  renew(id: bigint, nowMs: number): RenewResult {
    if (!this.primary) return { err: "NotPrimary" }
    const l = this.leases.get(id)
    if (l === undefined) return { err: "NotFound" }
    if (nowMs >= l.expiryMs) return { expired: true }
    const clearCheckpoint = this.checkpointIntervalMs !== undefined && l.remainingTtl > 0
    this.refresh(l, nowMs, 0, true)
    return { ttl: l.ttl, clearCheckpoint }
  }

  /**
   * The remaining time of lease `id` in ms (etcd Lease.Remaining): negative once expired,
   * Infinity while not primary; undefined for an unknown lease.
   */
  remainingMs(id: bigint, nowMs: number): number | undefined {
    const l = this.leases.get(id)
    return l === undefined ? undefined : l.expiryMs - nowMs
  }

  /**
   * Up to `limit` expired leases (etcd findExpiredLeases), each re-queued at now + the retry
   * interval so that it comes back if its revocation never applies. Empty when not primary.
   * etcd calls this every 500 ms with limit = revokeRate / 2; see {@link revokeLimitPerTick}.
   */
  findExpired(nowMs: number, limit: number): bigint[] {
    const out: bigint[] = []
    if (!this.primary) return out
    while (out.length < limit) {
      const top = this.expiry.peek()
      if (top === undefined || top.time > nowMs) break
      const l = this.leases.get(top.id)
      if (l === undefined) {
        this.expiry.remove(top.id)
        continue
      }
      this.expiry.registerOrUpdate(top.id, nowMs + this.expiredRetryMs)
      if (nowMs >= l.expiryMs) out.push(l.id)
    }
    return out
  }

  /** The revocations allowed per 500 ms tick: half the per-second rate (etcd revokeExpiredLeases). */
  revokeLimitPerTick(): number {
    return Math.max(1, Math.floor(this.revokeRate / 2))
  }

  /**
   * Up to `limit` checkpoints due at `nowMs` (etcd findDueScheduledCheckpoints): the remaining
   * TTL, rounded up to a second, of each lease whose checkpoint time came, skipping expired
   * leases and those with a full TTL left. Empty when not primary or not checkpointing.
   */
  dueCheckpoints(nowMs: number, limit: number = maxCheckpointBatch): Checkpoint[] {
    const out: Checkpoint[] = []
    if (!this.primary || this.checkpointIntervalMs === undefined) return out
    while (out.length < limit) {
      const top = this.checkpoints.peek()
      if (top === undefined || top.time > nowMs) break
      this.checkpoints.remove(top.id)
      const l = this.leases.get(top.id)
      if (l === undefined || nowMs >= l.expiryMs) continue
      const remainingTtl = Math.ceil((l.expiryMs - nowMs) / 1000)
      if (remainingTtl >= l.ttl) continue
      out.push({ id: l.id, remainingTtl })
    }
    return out
  }

  /**
   * etcd Lease.refresh: expiry = now + extend + remaining TTL (the checkpointed remaining TTL
   * when set, else the TTL); a renewal (`renewing`) always counts the full TTL.
   */
  private refresh(l: MutableLease, nowMs: number, extendMs: number, renewing = false): void {
    const ttlSec = !renewing && l.remainingTtl > 0 ? l.remainingTtl : l.ttl
    l.expiryMs = nowMs + extendMs + ttlSec * 1000
    this.expiry.registerOrUpdate(l.id, l.expiryMs)
  }

  private scheduleCheckpointIfNeeded(l: MutableLease, nowMs: number): void {
    if (this.checkpointIntervalMs === undefined) return
    const remainingSec = l.remainingTtl > 0 ? l.remainingTtl : l.ttl
    if (remainingSec > this.checkpointIntervalMs / 1000) {
      this.checkpoints.registerOrUpdate(l.id, nowMs + this.checkpointIntervalMs)
    }
  }
}
