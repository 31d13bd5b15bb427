/**
 * The member's own raft snapshots (etcd's triggerSnapshot and snapshot in
 * server/etcdserver/server.go): when to take one, taking it, and compacting the in-memory log
 * after it. It also keeps the membership history since the last snapshot, so a snapshot at
 * index I carries the membership as of I.
 *
 * Order of one snapshot, as etcd (etcd issue 10219): the mvcc service copies its state at its
 * applied index I; the hard state committing at least I is flushed to the WAL; the raft
 * snapshot at I is saved through the wal service (snapshot file, its marker in the WAL, sync,
 * then release of the WAL files it covers); only then is it applied to the in-memory log
 * (createSnapshot, compact). One snapshot at a time; a failed attempt is retried no sooner
 * than {@link snapshotRetryDelayMs} later.
 *
 * It is not the install of a snapshot received from the leader (./snapshot-transfer.ts), though
 * it is told of one ({@link Snapshotter.restored}).
 */
import * as Effect from "effect/Effect"
import { mvccSnapshot, subjectOf } from "../../shared/endpoints.ts"
import { Index } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import type { MemberInfo } from "../../shared/schema.ts"
import { runDetached } from "../runtime/process.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { catchUpCompactIndex } from "./core/catch-up.ts"
import type { MemoryStorage } from "./core/storage.ts"
import { encodeSnapshotData, Membership } from "./membership.ts"
import type { WalClient } from "./wal-client.ts"
import { mvccSnapshotTimeoutMs, snapshotRetryDelayMs } from "./timeouts.ts"
import { describeError } from "../../shared/errors.ts"

/**
 * Most membership changes (count of history records) kept since the last snapshot; reaching it
 * takes a snapshot, which drops the records below the snapshot index. Without it the history is
 * bounded only by --snapshot-count (one record per applied membership or attribute entry).
 */
const maxMembershipHistory = 1000

/** When to snapshot and what to keep after (the raft process's flags). */
export interface SnapshotPolicy {
  /** Applied entries between snapshots (etcd --snapshot-count). */
  readonly snapshotCount: number
  /** Bytes of entry data applied between snapshots, next to the count (natcd's own). */
  readonly snapshotBytes: number
  /** Entries kept before a snapshot for slow followers (etcd SnapshotCatchUpEntries). */
  readonly snapshotCatchupEntries: number
  /** Bytes of entry data kept before a snapshot for slow followers, next to the count (natcd's own). */
  readonly snapshotCatchupBytes: number
}

/** What the snapshotter needs of the raft driver. */
export interface SnapshotterRaft {
  /** The highest index handed to the mvcc service. */
  applied(): number
  /** Resolves once every hard state handed to the WAL so far is written. */
  flushHardState(): Promise<void>
}

/**
 * Invariants: `history` is sorted by index, its first record at or below `lastSnapshotIndex`
 * (the membership as of the last snapshot); at most one snapshot is being taken
 * (`snapshotting`).
 */
export class Snapshotter {
  /** The membership after each change at or above the last snapshot, to snapshot it as of any index. */
  private history: Array<{ index: number; members: MemberInfo[] }>
  private lastSnapshotIndex: number
  /**
   * Bytes of entry data applied since the last snapshot started (or since the start): the
   * --snapshot-bytes trigger. Reset when a snapshot starts, not when it ends at its index, so
   * an mvcc service that lags raft by more than --snapshot-bytes does not make every snapshot
   * start the next one at once; given back when the snapshot fails.
   */
  private appliedBytesSinceSnapshot = 0
  private snapshotting = false
  /** No snapshot attempt before this time (ms since the epoch); see snapshotRetryDelayMs. */
  private snapshotRetryAtMs = 0
  private readonly raft: SnapshotterRaft
  private readonly storage: MemoryStorage
  private readonly wal: Pick<WalClient, "saveTakenSnapshot">
  private readonly rpc: RpcClient
  private readonly at: { readonly cluster: string; readonly member: string }
  private readonly mvccSnapshotSubject: string
  private readonly policy: SnapshotPolicy

  /**
   * `startIndex` is the index of the snapshot the member started from (0 for none), `members`
   * the membership as of it.
   */
  constructor(deps: {
    readonly raft: SnapshotterRaft
    readonly storage: MemoryStorage
    readonly wal: Pick<WalClient, "saveTakenSnapshot">
    readonly rpc: RpcClient
    readonly at: { readonly cluster: string; readonly member: string }
    readonly policy: SnapshotPolicy
  }, startIndex: number, members: MemberInfo[]) {
    this.raft = deps.raft
    this.storage = deps.storage
    this.wal = deps.wal
    this.rpc = deps.rpc
    this.at = deps.at
    this.mvccSnapshotSubject = subjectOf(mvccSnapshot, deps.at)
    this.policy = deps.policy
    this.history = [{ index: startIndex, members }]
    this.lastSnapshotIndex = startIndex
  }

  /** Records the membership `members` after the change applied at `index`. */
  membershipChanged(index: number, members: MemberInfo[]): void {
    this.history.push({ index, members })
  }

  /**
   * Counts `committed` (just handed to the mvcc service) and starts a snapshot when
   * --snapshot-count entries or --snapshot-bytes bytes were applied since the last one, or
   * the membership history is full. Returns at once.
   */
  applied(committed: ReadonlyArray<Entry>): void {
    for (const e of committed) this.appliedBytesSinceSnapshot += e.data.byteLength
    if (
      this.raft.applied() - this.lastSnapshotIndex >= this.policy.snapshotCount ||
      this.appliedBytesSinceSnapshot >= this.policy.snapshotBytes ||
      this.history.length > maxMembershipHistory
    ) void this.take()
  }

  /**
   * Told that a snapshot received from the leader at `index` was saved and restored, with the
   * membership `members` it holds: it replaces the history.
   */
  restored(index: number, members: MemberInfo[]): void {
    this.history = [{ index, members }]
    this.lastSnapshotIndex = index
    this.appliedBytesSinceSnapshot = 0
  }

  private membershipAt(index: number): MemberInfo[] {
    return [...this.history].reverse().find((h) => h.index <= index)?.members ?? []
  }

  /**
   * Takes a snapshot (etcd's triggerSnapshot): the mvcc service copies its state at its applied
   * index I; the raft snapshot at I (membership as of I, and the mvcc file) is saved through
   * the wal service (file, WAL marker, sync, release); then the in-memory log keeps only the
   * last --snapshot-catchup-entries entries before I for slow followers, and no more than
   * --snapshot-catchup-bytes of entry data (./core/catch-up.ts). Never rejects: a failure is
   * logged and retried later.
   */
  private async take(): Promise<void> {
    if (this.snapshotting || Date.now() < this.snapshotRetryAtMs) return
    this.snapshotting = true
    const bytesCounted = this.appliedBytesSinceSnapshot
    this.appliedBytesSinceSnapshot = 0
    let taken = false
    try {
      const info = okOf(await callEndpoint(this.rpc, mvccSnapshot, this.mvccSnapshotSubject, { minIndex: 0 }, { timeoutMs: mvccSnapshotTimeoutMs, retryAfterMs: mvccSnapshotTimeoutMs }))
      const index = Math.min(info.index, this.raft.applied())
      if (index <= this.lastSnapshotIndex || info.index > this.raft.applied()) return
      const storage = this.storage
      const term = storage.term(Index(index))
      if (typeof term === "string") return
      const members = this.membershipAt(index)
      const probe = new Membership(this.at.cluster)
      probe.restore(members)
      const confState = probe.confState()
      const data = encodeSnapshotData({ members, mvcc: info, source: this.at.member })
      const snapshot = { metadata: { index: Index(index), term, confState }, data }
      // The WAL's hard state must commit at least up to the snapshot before its record.
      await this.raft.flushHardState()
      await this.wal.saveTakenSnapshot(snapshot)
      taken = true
      // A newer snapshot from the leader may have been installed meanwhile: it replaced the log.
      if (typeof storage.createSnapshot(Index(index), confState, data) === "string") return
      const upToSnapshot = storage.entries(storage.firstIndex(), Index(index + 1), Number.POSITIVE_INFINITY)
      const compactIndex = typeof upToSnapshot === "string"
        ? undefined
        : catchUpCompactIndex(upToSnapshot, { entries: this.policy.snapshotCatchupEntries, bytes: this.policy.snapshotCatchupBytes })
      if (compactIndex !== undefined) storage.compact(Index(compactIndex))
      this.lastSnapshotIndex = index
      this.history = [...this.history.filter((h) => h.index > index), { index, members }].sort((a, b) => a.index - b.index)
      runDetached(Effect.logInfo("snapshot taken").pipe(Effect.annotateLogs({ index, term, mvccFile: info.file, sizeBytes: info.sizeBytes, firstIndex: storage.firstIndex() })))
    } catch (e) {
      const reason = (e as { reason?: unknown })?.reason
      runDetached(Effect.logWarning("snapshot failed; will retry").pipe(
        Effect.annotateLogs({ error: describeError(e), ...(typeof reason === "string" ? { reason } : {}), retryInMs: snapshotRetryDelayMs })
      ))
    } finally {
      this.snapshotting = false
      if (!taken) {
        this.appliedBytesSinceSnapshot += bytesCounted
        this.snapshotRetryAtMs = Date.now() + snapshotRetryDelayMs
      }
    }
  }
}
