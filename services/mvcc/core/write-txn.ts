/**
 * One write transaction of the MVCC store: the key changes of one request, all at main
 * revision beginRev + 1 with sub revisions 0, 1, 2, ... in order.
 *
 * Writes go straight to the backend transaction and the index, so later reads of the same
 * transaction see them (read revision beginRev + 1 once something changed). The transaction
 * keeps enough to undo itself: a copy of every KeyIndex it touched and the bucket keys it
 * wrote. etcd cannot undo a write txn (it panics instead); natcd needs it for one case etcd
 * crashes on, see txn.ts.
 *
 * Follows etcd server/storage/mvcc/kvstore_txn.go (storeTxnWrite) and, for the events,
 * watchable_store_txn.go. Leases are not attached here: events carry each key's lease.
 */
import type { EtcdErrorData } from "../../../shared/errors.ts"
import type { KeyValue, RangeRequest, RangeResponse } from "../../../shared/kv.ts"
import { LeaseId, NoLease, Revision } from "../../../shared/ids.ts"
import type { BackendWriteTx } from "./backend.ts"
import type { KeyIndex } from "./key-index.ts"
import { fromKeyString, toKeyString } from "./key-bytes.ts"
import { encodeKeyValue } from "./kv-codec.ts"
import { executeRange, type RangeOptions, rangeKeys, type RangeResult, type ReadState, unsafeReadRev } from "./range.ts"
import { type Rev, revToBytes } from "./revision.ts"

/**
 * A change made by a write, in order, as a watcher sees it (etcd mvccpb.Event).
 * - PUT: `kv` is the new version; `prevKv` the version it replaced, if the key existed.
 * - DELETE: `kv` holds the key and `modRevision` = the delete's revision, all else zero;
 *   `prevKv` is the deleted version.
 */
export interface MvccEvent {
  readonly type: "PUT" | "DELETE"
  readonly kv: KeyValue
  readonly prevKv?: KeyValue
}

const empty = new Uint8Array()

/**
 * Invariants: every change has main revision beginRev + 1 and sub revision = its position in
 * `changes`; `undo` holds, for each key touched, its KeyIndex as it was before (undefined
 * when the key was not in the index).
 */
export class StoreTxnWrite {
  readonly beginRev: number
  readonly changes: MvccEvent[] = []
  private readonly undo = new Map<string, KeyIndex | undefined>()
  private readonly written: Uint8Array[] = []
  private readonly state: ReadState
  private readonly tx: BackendWriteTx

  constructor(state: ReadState, tx: BackendWriteTx, beginRev: number) {
    this.state = state
    this.tx = tx
    this.beginRev = beginRev
  }

  /** The revision reads of this txn see: beginRev, or beginRev + 1 once it changed something. */
  rev(): number {
    return this.changes.length > 0 ? this.beginRev + 1 : this.beginRev
  }

  /** Raw range at this txn's read revision (etcd storeTxnWrite.Range). */
  rangeKeys(key: string, end: string | undefined, ro: RangeOptions): RangeResult | { err: EtcdErrorData } {
    return rangeKeys(this.state, this.tx, key, end, this.rev(), ro)
  }

  /** A full RangeRequest at this txn's read revision. */
  range(r: RangeRequest): RangeResponse | { err: EtcdErrorData } {
    return executeRange(this.state, this.tx, r, this.rev())
  }

  /** The current version of `key` as this txn sees it, if any. */
  get(key: Uint8Array): KeyValue | undefined {
    const r = this.rangeKeys(toKeyString(key), undefined, { limit: 0, rev: 0, countOnly: false })
    return "err" in r ? undefined : r.kvs[0]
  }

  private remember(key: string): void {
    if (this.undo.has(key)) return
    this.undo.set(key, this.state.index.keyIndex(key)?.clone())
  }

  /**
   * Writes a new version of `key`: createRevision kept from the live generation or set to this
   * revision, version + 1. Returns the revision of the write (beginRev + 1).
   */
  put(key: Uint8Array, value: Uint8Array, lease: LeaseId): number {
    const main = this.beginRev + 1
    const keyStr = toKeyString(key)
    const prev = this.state.index.get(keyStr, main)
    const idxRev: Rev = { main, sub: this.changes.length }
    const kv: KeyValue = {
      key: key.slice(),
      createRevision: Revision(prev === undefined ? main : prev.created.main),
      modRevision: Revision(main),
      version: (prev?.version ?? 0) + 1,
      value: value.slice(),
      lease
    }
    const prevKv = prev === undefined ? undefined : unsafeReadRev(this.tx, prev.modified)
    const bucketKey = revToBytes(idxRev)
    this.tx.put("key", bucketKey, encodeKeyValue(kv))
    this.written.push(bucketKey)
    this.remember(keyStr)
    this.state.index.put(keyStr, idxRev)
    this.changes.push(prevKv === undefined ? { type: "PUT", kv } : { type: "PUT", kv, prevKv })
    return main
  }

  /**
   * Deletes every key of the range visible now, writing one tombstone each. Returns the number
   * of keys deleted (etcd storeTxnWrite.DeleteRange / deleteRange).
   */
  deleteRange(key: string, end: string | undefined): number {
    const { keys, gets } = this.state.index.range(key, end, this.rev())
    for (let i = 0; i < keys.length; i++) this.delete(keys[i]!, gets[i]!.modified)
    return keys.length
  }

  private delete(keyStr: string, current: Rev): void {
    const main = this.beginRev + 1
    const idxRev: Rev = { main, sub: this.changes.length }
    const key = fromKeyString(keyStr)
    const prevKv = unsafeReadRev(this.tx, current)
    const bucketKey = revToBytes(idxRev, true)
    // The tombstone record holds only the key, as etcd's.
    this.tx.put("key", bucketKey, encodeKeyValue({
      key,
      createRevision: Revision(0),
      modRevision: Revision(0),
      version: 0,
      value: empty,
      lease: NoLease
    }))
    this.written.push(bucketKey)
    this.remember(keyStr)
    if (!this.state.index.tombstone(keyStr, idxRev)) {
      throw new Error(`failed to tombstone an existing key ${JSON.stringify(keyStr)}`)
    }
    this.changes.push({
      type: "DELETE",
      kv: { key, createRevision: Revision(0), modRevision: Revision(main), version: 0, value: empty, lease: NoLease },
      prevKv
    })
  }

  /** Undoes every write of this txn in the backend and the index. */
  rollback(): void {
    for (const k of this.written) this.tx.delete("key", k)
    for (const [key, ki] of this.undo) {
      if (ki === undefined) this.state.index.remove(key)
      else this.state.index.insert(ki)
    }
    this.written.length = 0
    this.undo.clear()
    this.changes.length = 0
  }
}

/** The lease of a put: the request's, 0 when absent. */
export const requestLease = (lease: bigint | undefined): LeaseId => LeaseId(lease ?? 0n)
