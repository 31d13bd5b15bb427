/**
 * The MVCC key-value store: etcd's store semantics (revisions, generations, compaction) over
 * an injected synchronous backend, driven one committed raft entry at a time.
 *
 * This is the pure core: no IO of its own, no clock, no Effect. The shell owns the backend
 * (LMDB), opens one write transaction per applied entry (or batch of entries), calls
 * {@link KvStore.apply}, and commits; reads call {@link KvStore.range} with a read
 * transaction. The in-memory index is rebuilt from the backend by {@link KvStore.restore}.
 *
 * Compaction has two parts, as in etcd (kvstore.go compact / updateCompactRev and
 * kvstore_compaction.go scheduleCompaction). Applying it records scheduledCompactRev in the
 * apply transaction and compacts the index at once, so reads below the revision fail at once;
 * the records the compaction drops stay in the backend until {@link KvStore.compactBatch},
 * called by the shell between applies, deletes them in batches and finally records
 * finishedCompactRev (./compaction.ts). Until then {@link KvStore.isLiveRecord} tells which
 * records belong to the key space; every reader that walks the key bucket instead of the
 * index (watch history, HashKV) filters with it, so what members answer never depends on how
 * far their deletion got. A restart with a compaction not finished compacts the rebuilt index
 * again and resumes the deletion (etcd restore does the same).
 *
 * The walks of the key bucket in revision order (rebuilding the index, replaying events) are
 * ./key-bucket-scan.ts.
 *
 * Differences from etcd, on purpose:
 * - The consistent index is stored by the store itself in every apply transaction.
 * - A txn that etcd would crash on is failed and undone instead (see txn.ts).
 *
 * Alarms (etcd server/etcdserver/apply.go): alarm requests are applied by the
 * {@link AlarmStore}; while a NOSPACE alarm is active the store behaves as etcd's
 * applierV3Capped: a put, and a txn with a put among the top-level ops of either branch, fail
 * with NoSpace and change nothing; deletes, read-only txns, compactions and alarm requests are
 * applied as usual. While a CORRUPT alarm is active (raised by the corruption check,
 * ../corrupt-check.ts) the store behaves as etcd's applierV3Corrupt: everything but alarm
 * requests and read-only txns fails with Corrupt and changes nothing.
 *
 * Follows etcd server/storage/mvcc/kvstore.go, kvstore_txn.go, kvstore_compaction.go and
 * server/etcdserver/txn.
 */
import type { EtcdErrorData } from "../../../shared/errors.ts"
import type {
  AlarmMember,
  AlarmType,
  CompactionRequest,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  WriteRequest,
  WriteResponse
} from "../../../shared/kv.ts"
import { Index, type LeaseId, Revision } from "../../../shared/ids.ts"
import {
  type BackendReadTx,
  type BackendWriteTx,
  unsafeReadCompactRev,
  unsafeReadConsistentIndex,
  unsafeSetCompactRev,
  unsafeUpdateConsistentIndex
} from "./backend.ts"
import { AlarmStore } from "./alarms.ts"
import { restoreIndex, unsafeReadEvents } from "./key-bucket-scan.ts"
import {
  type CompactionBatch,
  compactionEnd,
  type CompactionScan,
  isLiveRecord,
  nextScanKey,
  planCompactionBatch
} from "./compaction.ts"
import { executeRange } from "./range.ts"
import { bytesToRev } from "./revision.ts"
import { TreeIndex } from "./tree-index.ts"
import { applyPut, applyTxn, executeDeleteRange, type LeaseExists } from "./txn.ts"
import { type MvccEvent, StoreTxnWrite } from "./write-txn.ts"

export { validateRange, validateWrite, defaultMaxTxnOps } from "./validate.ts"
export type { MvccEvent } from "./write-txn.ts"
export type { CompactionBatch } from "./compaction.ts"
export { unsafeReadEvents } from "./key-bucket-scan.ts"

/** Options of {@link KvStore.restore}. */
export interface KvStoreOptions {
  /**
   * Whether a lease exists, asked for every put with a non-zero lease (at apply time, so it
   * may consult state that changes). Default: no lease exists, so any non-zero lease fails
   * with LeaseNotFound.
   */
  readonly leaseExists?: (id: LeaseId) => boolean
}

/**
 * The outcome of {@link KvStore.range}: the response and the store revision it was read at
 * (the response header revision), or an expected error.
 */
export type RangeOutcome = { readonly ok: RangeResponse; readonly revision: Revision } | { readonly err: EtcdErrorData }

/**
 * The outcome of {@link KvStore.apply}:
 * - `ok`: the response; `revision` is the store revision after the request (the response
 *   header revision); `events` lists the key changes in order (empty when nothing changed),
 *   for watchers and the lessor.
 * - `err`: an expected failure; nothing changed except the consistent index.
 * - `skipped`: the index was applied before; nothing changed.
 */
export type ApplyResult =
  | { readonly ok: WriteResponse; readonly revision: Revision; readonly events: ReadonlyArray<MvccEvent> }
  | { readonly err: EtcdErrorData }
  | { readonly skipped: true }

/**
 * Invariants: 1 <= currentRev; compactRev <= currentRev (compactRev is -1 until the first
 * compaction, as etcd's compactMainRev; it is the scheduled compact revision); every revision
 * the index holds has its record in the backend's key bucket, and every record there whose
 * revision the index does not hold has main revision <= compactRev and waits for the
 * background deletion, which `compaction` tracks (undefined when none is pending, i.e.
 * finishedCompactRev = scheduledCompactRev); consistentIndex is the value stored in meta.
 */
export class KvStore {
  private readonly state: { index: TreeIndex; compactRev: number }
  private compaction: CompactionScan | undefined
  private currentRev = 1
  private consistentIdx = 0
  private readonly leaseExists: LeaseExists
  private alarms = new AlarmStore()

  private constructor(options: KvStoreOptions | undefined) {
    this.state = { index: new TreeIndex(), compactRev: -1 }
    this.leaseExists = options?.leaseExists ?? (() => false)
  }

  /**
   * Builds a store from the backend: reads the key bucket in revision order to rebuild the
   * index (etcd restore / restoreIntoIndex), the compact revision and the consistent index.
   * An empty backend gives a fresh store at revision 1. When the scheduled compact revision is
   * ahead of the finished one (a compaction whose deletion had not finished), the rebuilt index
   * is compacted at the scheduled revision and the deletion starts over from the first record
   * ({@link pendingCompaction}), as etcd's restore calls compactLockfree. Throws on a corrupt
   * backend.
   */
  static restore(tx: BackendReadTx, options?: KvStoreOptions): KvStore {
    const s = new KvStore(options)
    const finished = unsafeReadCompactRev(tx, "finished")
    const scheduled = unsafeReadCompactRev(tx, "scheduled")
    const pending = scheduled !== undefined && (finished === undefined || scheduled > finished) ? scheduled : undefined
    if (pending !== undefined) s.state.compactRev = pending
    else if (finished !== undefined) s.state.compactRev = finished
    const index = s.state.index
    const currentRev = restoreIndex(tx, index)
    if (pending !== undefined) {
      // The records are a suffix of each key's history (./compaction.ts), so compacting the
      // rebuilt index again gives the index the compaction produced before the restart.
      index.compact(pending)
      s.compaction = { revision: pending, next: new Uint8Array() }
    }
    // Every record of the newest revisions may be compacted away; the revision never goes back.
    s.currentRev = Math.max(currentRev, s.state.compactRev, scheduled ?? 0)
    s.consistentIdx = unsafeReadConsistentIndex(tx)
    s.alarms = AlarmStore.restore(tx)
    return s
  }

  /** The store revision: the revision of the last change (1 for an empty store). */
  currentRevision(): Revision {
    return Revision(this.currentRev)
  }

  /** The compact revision: reads below it fail as Compacted; -1 until the first compaction. */
  compactRevision(): Revision {
    return Revision(this.state.compactRev)
  }

  /**
   * The compact revision whose dropped records are still being deleted (etcd: scheduled
   * compaction not finished), or undefined when none is. The shell then calls
   * {@link compactBatch} until it reports `done`.
   */
  pendingCompaction(): Revision | undefined {
    return this.compaction === undefined ? undefined : Revision(this.compaction.revision)
  }

  /**
   * One batch of the physical compaction (one iteration of etcd's scheduleCompaction loop), in
   * backend write transaction `tx`: reads up to `limit` (>= 1) key-bucket records of main
   * revision <= the pending compact revision, from where the last batch stopped, and deletes
   * those the index does not hold. When fewer than `limit` records were left it also writes
   * finishedCompactRev in `tx` and reports `done`. A no-op reporting `done` when nothing is
   * pending. The caller commits `tx` afterwards; it must not call this inside an apply's
   * transaction (a batch is its own transaction, between applies).
   */
  compactBatch(tx: BackendWriteTx, limit: number): CompactionBatch {
    const scan = this.compaction
    if (scan === undefined) return { revision: undefined, scanned: 0, deleted: 0, done: true }
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`compaction batch limit must be a positive integer: ${limit}`)
    const records = tx.range("key", scan.next, compactionEnd(scan.revision), limit)
    const doomed = planCompactionBatch(this.state.index, records)
    for (const key of doomed) tx.delete("key", key)
    const done = records.length < limit
    if (done) unsafeSetCompactRev(tx, "finished", scan.revision)
    // Last, so that a throwing transaction leaves the scan where it was.
    this.compaction = done ? undefined : { revision: scan.revision, next: nextScanKey(records[records.length - 1]!.key) }
    return { revision: scan.revision, scanned: records.length, deleted: doomed.length, done }
  }

  /**
   * Whether the key-bucket record `bucketKey` (value `value`) belongs to the key space: true
   * unless it waits for the background deletion of a compaction. Readers that walk the key
   * bucket rather than the index filter with this, so their answer does not depend on how far
   * the deletion got (HashKV, watch history).
   */
  isLiveRecord(bucketKey: Uint8Array, value: Uint8Array): boolean {
    if (this.compaction === undefined) return true
    if (bytesToRev(bucketKey).main > this.state.compactRev) return true
    return isLiveRecord(this.state.index, bucketKey, value)
  }

  /**
   * The key changes of main revisions startRev..endRev (inclusive) read from the key bucket
   * ({@link unsafeReadEvents}), leaving out records that wait for the background deletion.
   * Callers refuse startRev below the compact revision first.
   */
  unsafeReadEvents(tx: BackendReadTx, startRev: number, endRev: number): MvccEvent[] {
    return unsafeReadEvents(tx, startRev, endRev, (k, v) => this.isLiveRecord(k, v))
  }

  /** The raft index of the last applied entry (0 for none), as stored in the backend. */
  consistentIndex(): Index {
    return Index(this.consistentIdx)
  }

  /**
   * Serves a RangeRequest at the current revision (or `req.revision`). The caller validates
   * the request first ({@link validateRange}). Errors: FutureRevision when req.revision is
   * above the current revision, Compacted when below the compact revision.
   */
  range(tx: BackendReadTx, req: RangeRequest): RangeOutcome {
    const r = executeRange(this.state, tx, req, this.currentRev)
    return "err" in r ? r : { ok: r, revision: Revision(this.currentRev) }
  }

  /**
   * Applies one committed write at raft index `index` in backend write transaction `tx`, and
   * writes consistentIndex = index in the same transaction (also when the request fails).
   * The caller commits `tx` afterwards; until then reads through other transactions must not
   * be served at the new revision.
   *
   * Re-applying an index <= consistentIndex is a no-op returning `{ skipped: true }`. A
   * request that changes nothing (a delete of missing keys, a txn whose branch only reads)
   * does not bump the revision. Errors: LeaseNotFound, KeyNotFound (put / txn), Compacted and
   * FutureRevision (compaction, and ranges inside a txn). A failed request changes nothing
   * but the consistent index.
   */
  apply(tx: BackendWriteTx, index: Index, req: WriteRequest): ApplyResult {
    if (index <= this.consistentIdx) return { skipped: true }
    const result = this.applyRequest(tx, req)
    unsafeUpdateConsistentIndex(tx, index)
    this.consistentIdx = index
    return result
  }

  /**
   * Records that raft entry `index` was applied without touching the key space (an entry for
   * another service, a duplicate proposal): writes consistentIndex = index in `tx` and keeps
   * the in-memory copy in step, as etcd moves its consistent index for every entry. Returns
   * false, writing nothing, when index <= consistentIndex.
   */
  advanceConsistentIndex(tx: BackendWriteTx, index: Index): boolean {
    if (index <= this.consistentIdx) return false
    unsafeUpdateConsistentIndex(tx, index)
    this.consistentIdx = index
    return true
  }

  /** The active alarms of type `alarm` (every alarm for NONE). */
  activeAlarms(alarm: AlarmType = "NONE"): ReadonlyArray<AlarmMember> {
    return this.alarms.get(alarm)
  }

  private applyRequest(tx: BackendWriteTx, req: WriteRequest): ApplyResult {
    if ("alarm" in req) {
      return { ok: { alarm: this.alarms.apply(tx, req.alarm) }, revision: Revision(this.currentRev), events: [] }
    }
    // etcd applierV3Corrupt (etcdserver/corrupt.go): while CORRUPT is active, everything that
    // reaches the applier but alarm requests fails. etcd serves read-only txns without raft, so
    // they never meet that applier; natcd proposes every txn, so it lets read-only ones through.
    if (this.alarms.has("CORRUPT") && !("txn" in req && txnIsReadOnly(req.txn))) {
      return { err: { _tag: "Corrupt" } }
    }
    if ("compaction" in req) return this.compact(tx, req.compaction)
    // etcd applierV3Capped: while NOSPACE is active, writes that could grow the store fail.
    if (this.alarms.has("NOSPACE") && ("put" in req || ("txn" in req && txnHasPut(req.txn)))) {
      return { err: { _tag: "NoSpace" } }
    }
    const tw = new StoreTxnWrite(this.state, tx, this.currentRev)
    let ok: WriteResponse
    if ("put" in req) {
      const r = applyPut(tw, this.leaseExists, req.put)
      if ("err" in r) return r
      ok = { put: r }
    } else if ("deleteRange" in req) {
      ok = { deleteRange: executeDeleteRange(tw, req.deleteRange) }
    } else {
      const r = applyTxn(tw, this.state.compactRev, this.leaseExists, req.txn)
      if ("err" in r) return r
      ok = { txn: r }
    }
    // etcd storeTxnWrite.End: the revision moves only when something changed.
    if (tw.changes.length > 0) this.currentRev++
    return { ok, revision: Revision(this.currentRev), events: tw.changes }
  }

  /**
   * Compacts at `req.revision` (etcd updateCompactRev + compact): records scheduledCompactRev
   * = rev in `tx` and compacts the index, which drops every revision <= rev except, for each
   * key alive at rev, its version at rev; tombstones <= rev go too, and keys with nothing left
   * leave the index (etcd 3.4/3.5, see key-index.ts). The backend records so dropped are
   * deleted later by {@link compactBatch} (a compaction still pending restarts its scan with
   * the new revision). Errors: Compacted when rev <= the compact revision, FutureRevision when
   * rev > the current revision. Reads at rev itself stay possible.
   */
  private compact(tx: BackendWriteTx, req: CompactionRequest): ApplyResult {
    const rev = req.revision
    if (rev <= this.state.compactRev) {
      return { err: { _tag: "Compacted", requestedRevision: rev, compactRevision: this.state.compactRev } }
    }
    if (rev > this.currentRev) {
      return { err: { _tag: "FutureRevision", requestedRevision: rev, currentRevision: this.currentRev } }
    }
    this.state.compactRev = rev
    unsafeSetCompactRev(tx, "scheduled", rev)
    this.state.index.compact(rev)
    this.compaction = { revision: rev, next: new Uint8Array() }
    return { ok: { compaction: {} }, revision: Revision(this.currentRev), events: [] }
  }

  /** The in-memory index, read-only by contract (tests and debugging). */
  unsafeIndex(): TreeIndex {
    return this.state.index
  }
}

/**
 * Whether a txn has a put among the top-level ops of either branch: etcd's capped applier
 * rejects a txn whose quota cost is above zero, and costTxn counts only top-level puts
 * (etcd server/etcdserver/quota.go), so a put inside a nested txn does not count.
 */
export const txnHasPut = (t: TxnRequest): boolean =>
  t.success.some((op) => "requestPut" in op) || t.failure.some((op) => "requestPut" in op)

/**
 * Whether a txn has only range ops among the top-level ops of both branches: etcd 3.4's
 * isTxnReadonly (etcdserver/v3_server.go), which serves such a txn without raft. A nested txn
 * makes it not read-only.
 */
export const txnIsReadOnly = (t: TxnRequest): boolean =>
  t.success.every((op) => "requestRange" in op) && t.failure.every((op) => "requestRange" in op)
