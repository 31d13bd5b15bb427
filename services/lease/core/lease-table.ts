/**
 * The replicated lease table of one member: every lease granted and not revoked, with its TTL,
 * its checkpointed remaining TTL and the keys attached to it. Every member's mvcc service keeps
 * it, changed only by applied raft entries, in the same backend transaction as the key changes
 * (etcd server/lease/lessor.go's leaseMap and itemSet plus its `lease` bucket; the expiry
 * tracking of the lessor lives in the lease service, services/lease).
 *
 * What it is not: it has no clock and never expires anything. A lease goes only by an applied
 * LeaseRevoke, which the leader's lease service proposes when the lease expires.
 *
 * Storage, in the backend's `meta` bucket next to the alarms (etcd keeps a separate `lease`
 * bucket; natcd's backend has two buckets and the alarm records set the precedent):
 * - `lease/L` + id (8 bytes big-endian, as uint64) -> TTL (8 bytes) + remaining TTL (8 bytes),
 *   in seconds (etcd leasepb.Lease{ID, TTL, RemainingTTL}), + the raft index of the grant
 *   (8 bytes);
 * - `lease/K` + id + SHA-256 of the user key -> the user key: the attachment index. etcd
 *   rebuilds it from the key bucket at startup; natcd persists it so a restart does not read
 *   every key, and hashes the user key because LMDB keys are limited to about 2 KB.
 *
 * Attachment follows etcd's storeTxnWrite.put/delete: a put with lease L attaches the key to L
 * (detaching it from its previous lease, if different); a put without a lease or a delete
 * detaches it. The table reads that from the apply's events ({@link LeaseTable.applyEvents}):
 * every event carries the key's lease and the replaced version (prevKv) with its lease.
 *
 * Sync for the lease service: each grant, revocation and checkpoint is logged in memory with its
 * raft index, so the leader's lease service can ask for the changes since the index it last saw
 * ({@link LeaseTable.changesSince}); after a restart, or beyond the log's bound, it gets the full
 * table instead.
 *
 * Invariant: `leases` holds exactly the `lease/L` records, and each lease's `keys` exactly its
 * `lease/K` records; `log` is sorted by index and every index in it is > `logBase`.
 */
import { createHash } from "node:crypto"
import type { EtcdErrorData } from "../../../shared/errors.ts"
import { LeaseId } from "../../../shared/ids.ts"
import type { LeaseCheckpoint, LeaseGrantRequest } from "../../../shared/kv.ts"
import type { BackendReadTx, BackendWriteTx } from "../../mvcc/core/backend.ts"
import { concatBytes, prefixEnd, toKeyString } from "../../mvcc/core/key-bytes.ts"
import type { MvccEvent } from "../../mvcc/core/store.ts"

/** etcd's MaxLeaseTTL, in seconds. */
export const maxLeaseTtl = 9_000_000_000

/** Changes remembered for incremental sync; older ones cost a full sync. */
const maxLogEntries = 100_000

/** A lease as the table holds it. */
export interface LeaseRecord {
  readonly id: LeaseId
  /** Granted TTL, seconds. */
  readonly ttl: number
  /** Checkpointed remaining TTL, seconds; 0 when none. */
  readonly remainingTtl: number
  /** The raft index of the grant: tells a re-grant of a revoked id from the lease before it. */
  readonly grantIndex: number
}

interface MutableLease {
  readonly id: LeaseId
  ttl: number
  remainingTtl: number
  readonly grantIndex: number
  /** Attached keys: binary key string -> key bytes. */
  readonly keys: Map<string, Uint8Array>
}

/** What changed since an index ({@link LeaseTable.changesSince}). */
export interface LeaseChanges {
  /** True when `leases` is the whole table (then `removed` is empty). */
  readonly full: boolean
  /** Leases granted or changed since (or every lease when full). */
  readonly leases: ReadonlyArray<LeaseRecord>
  /** Leases revoked since. */
  readonly removed: ReadonlyArray<LeaseId>
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))
const leasePrefix = ascii("lease/L")
const keyPrefix = ascii("lease/K")

const u64 = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n))
  return b
}

const leaseRecordKey = (id: bigint): Uint8Array => concatBytes(leasePrefix, u64(id))
const attachKey = (id: bigint, key: Uint8Array): Uint8Array =>
  concatBytes(keyPrefix, u64(id), createHash("sha256").update(key).digest())

const encodeLease = (l: { readonly ttl: number; readonly remainingTtl: number; readonly grantIndex: number }): Uint8Array => {
  const b = new Uint8Array(24)
  const v = new DataView(b.buffer)
  v.setBigUint64(0, BigInt(l.ttl))
  v.setBigUint64(8, BigInt(l.remainingTtl))
  v.setBigUint64(16, BigInt(l.grantIndex))
  return b
}

/** The lease table. See the module comment for storage and invariants. */
export class LeaseTable {
  private readonly leases = new Map<bigint, MutableLease>()
  private readonly log: Array<{ readonly index: number; readonly id: bigint }> = []
  /** Changes at or below this index are not in `log`. */
  private logBase: number

  private constructor(logBase: number) {
    this.logBase = logBase
  }

  /**
   * Reads the table from the backend. `consistentIndex` is the store's applied index: changes
   * up to it are known only as the full table. Throws on a corrupt record.
   */
  static restore(tx: BackendReadTx, consistentIndex: number): LeaseTable {
    const t = new LeaseTable(consistentIndex)
    for (const { key, value } of tx.range("meta", leasePrefix, prefixEnd(leasePrefix))) {
      if (key.length !== leasePrefix.length + 8 || value.length !== 24) throw new Error("lease table: corrupt lease record")
      const id = LeaseId(BigInt.asIntN(64, new DataView(key.buffer, key.byteOffset).getBigUint64(leasePrefix.length)))
      const v = new DataView(value.buffer, value.byteOffset)
      t.leases.set(id, {
        id,
        ttl: Number(v.getBigUint64(0)),
        remainingTtl: Number(v.getBigUint64(8)),
        grantIndex: Number(v.getBigUint64(16)),
        keys: new Map()
      })
    }
    for (const { key, value } of tx.range("meta", keyPrefix, prefixEnd(keyPrefix))) {
      const id = BigInt.asIntN(64, new DataView(key.buffer, key.byteOffset).getBigUint64(keyPrefix.length))
      const l = t.leases.get(id)
      if (l === undefined) throw new Error(`lease table: key attached to unknown lease ${id}`)
      l.keys.set(toKeyString(value), value.slice())
    }
    return t
  }

  /** Whether lease `id` exists (the store's leaseExists hook). */
  has(id: bigint): boolean {
    return this.leases.has(id)
  }

  /** The number of leases. */
  get size(): number {
    return this.leases.size
  }

  /** Lease `id`, or undefined. */
  get(id: bigint): LeaseRecord | undefined {
    const l = this.leases.get(id)
    return l === undefined ? undefined : { id: l.id, ttl: l.ttl, remainingTtl: l.remainingTtl, grantIndex: l.grantIndex }
  }

  /** Every lease id, in no particular order. */
  ids(): LeaseId[] {
    return [...this.leases.values()].map((l) => l.id)
  }

  /** The keys attached to lease `id`, sorted bytewise (etcd sorts them before revoking); [] when unknown. */
  keys(id: bigint): Uint8Array[] {
    const l = this.leases.get(id)
    if (l === undefined) return []
    return [...l.keys.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, k]) => k)
  }

  /**
   * Applies a grant at raft `index` (etcd lessor.Grant). Errors: LeaseNotFound for id 0,
   * LeaseTtlTooLarge beyond {@link maxLeaseTtl}, LeaseExists for a known id. The TTL is raised
   * to `minTtl`. Returns the lease with its final TTL.
   */
  grant(tx: BackendWriteTx, index: number, req: LeaseGrantRequest): LeaseRecord | { readonly err: EtcdErrorData } {
    if (req.id === 0n) return { err: { _tag: "LeaseNotFound", leaseId: req.id } }
    if (req.ttl > maxLeaseTtl) return { err: { _tag: "LeaseTtlTooLarge", ttl: req.ttl } }
    if (this.leases.has(req.id)) return { err: { _tag: "LeaseExists", leaseId: req.id } }
    const ttl = Math.max(req.ttl, req.minTtl)
    const l: MutableLease = { id: req.id, ttl, remainingTtl: 0, grantIndex: index, keys: new Map() }
    this.leases.set(req.id, l)
    tx.put("meta", leaseRecordKey(req.id), encodeLease(l))
    this.logChange(index, req.id)
    return { id: req.id, ttl, remainingTtl: 0, grantIndex: index }
  }

  /**
   * Removes lease `id` and its records after its keys were deleted (the caller deletes them in
   * the store first, in one revision, and passes the delete events through {@link applyEvents}).
   */
  remove(tx: BackendWriteTx, index: number, id: bigint): void {
    const l = this.leases.get(id)
    if (l === undefined) return
    for (const key of l.keys.values()) tx.delete("meta", attachKey(id, key))
    this.leases.delete(id)
    tx.delete("meta", leaseRecordKey(id))
    this.logChange(index, id)
  }

  /** Applies checkpoints (etcd lessor.Checkpoint): records each known lease's remaining TTL. */
  checkpoint(tx: BackendWriteTx, index: number, checkpoints: ReadonlyArray<LeaseCheckpoint>): void {
    for (const c of checkpoints) {
      const l = this.leases.get(c.id)
      if (l === undefined || l.remainingTtl === c.remainingTtl) continue
      l.remainingTtl = Math.max(0, c.remainingTtl)
      tx.put("meta", leaseRecordKey(c.id), encodeLease(l))
      this.logChange(index, c.id)
    }
  }

  /**
   * Attaches and detaches keys as the applied key changes say (etcd storeTxnWrite.put and
   * delete): a PUT moves the key from prevKv's lease to kv's lease, a DELETE detaches it from
   * prevKv's lease. Events of a failed (rolled back) request are never passed here.
   */
  applyEvents(tx: BackendWriteTx, events: ReadonlyArray<MvccEvent>): void {
    for (const e of events) {
      const before = e.prevKv?.lease ?? 0n
      const after = e.type === "PUT" ? e.kv.lease : 0n
      if (before === after) continue
      if (before !== 0n) this.detach(tx, before, e.kv.key)
      if (after !== 0n) this.attach(tx, after, e.kv.key)
    }
  }

  private attach(tx: BackendWriteTx, id: bigint, key: Uint8Array): void {
    const l = this.leases.get(id)
    // The store checked the lease at the put; a missing lease here is a broken invariant.
    if (l === undefined) throw new Error(`lease table: attach to unknown lease ${id}`)
    l.keys.set(toKeyString(key), key.slice())
    tx.put("meta", attachKey(id, key), key)
  }

  private detach(tx: BackendWriteTx, id: bigint, key: Uint8Array): void {
    const l = this.leases.get(id)
    if (l === undefined) return
    if (l.keys.delete(toKeyString(key))) tx.delete("meta", attachKey(id, key))
  }

  private logChange(index: number, id: bigint): void {
    const last = this.log[this.log.length - 1]
    if (last !== undefined && last.index === index && last.id === id) return
    this.log.push({ index, id })
    if (this.log.length > maxLogEntries) {
      const dropped = this.log.splice(0, this.log.length - maxLogEntries)
      this.logBase = Math.max(this.logBase, dropped[dropped.length - 1]!.index)
    }
  }

  /**
   * The changes applied after raft index `sinceIndex`: the leases granted or checkpointed since
   * (as they are now) and those revoked since; the whole table when `sinceIndex` is older than
   * what the log remembers (or 0).
   */
  changesSince(sinceIndex: number): LeaseChanges {
    if (sinceIndex <= 0 || sinceIndex < this.logBase) {
      return { full: true, leases: [...this.leases.keys()].map((id) => this.get(id)!), removed: [] }
    }
    let lo = 0
    let hi = this.log.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.log[mid]!.index <= sinceIndex) lo = mid + 1
      else hi = mid
    }
    const seen = new Set<bigint>()
    const leases: LeaseRecord[] = []
    const removed: LeaseId[] = []
    for (let i = lo; i < this.log.length; i++) {
      const id = this.log[i]!.id
      if (seen.has(id)) continue
      seen.add(id)
      const l = this.get(id)
      if (l === undefined) removed.push(LeaseId(id))
      else leases.push(l)
    }
    return { full: false, leases, removed }
  }
}
