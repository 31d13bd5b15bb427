/**
 * The physical half of a compaction, in the background (etcd 3.4 mvcc/kvstore_compaction.go
 * scheduleCompaction): applying a compaction only records it and compacts the index
 * (./core/store.ts); the records it drops are deleted afterwards, in batches of
 * `compactionBatchLimit` records (etcd --experimental-compaction-batch-limit, 1000), each batch
 * one LMDB transaction run on the event loop between apply batches, never inside one,
 * {@link compactionPauseMs} (etcd: 10 ms) after the previous batch. The last batch records
 * finishedCompactRev (the store does, ./core/store.ts compactBatch) and tells the applier, which
 * then answers the compactions asked for with `physical: true`.
 */
import type { KvStore } from "./core/store.ts"
import type { LmdbBackend } from "./backend-lmdb.ts"
import { compactionRetryMs } from "./timeouts.ts"

/**
 * etcd's default --experimental-compaction-batch-limit: key-bucket records read (and, when
 * dropped, deleted) per background compaction batch (records).
 */
export const defaultCompactionBatchLimit = 1000

/**
 * Pause between two background compaction batches, in ms (etcd scheduleCompaction waits
 * 10 ms after committing each batch), so that applies run in between.
 */
export const compactionPauseMs = 10

/** What the background deletion works with. */
export interface CompactionDeps {
  readonly backend: LmdbBackend
  readonly store: KvStore
  /** Records per batch (>= 1). */
  readonly batchLimit: number
  /** Commits the backend's buffer now (./commit-scheduler.ts). */
  readonly commit: () => void
  readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void
  /** The applier's counters; `compactedKeys` counts the records deleted. */
  readonly counters: { compactedKeys: number }
  /** Told when the pending compaction's deletion finished. */
  readonly onFinished: () => void
}

/** Runs the pending compaction's deletion batch by batch, between applies. */
export class BackgroundCompaction {
  /** The next background compaction batch, when one is due. */
  private timer: ReturnType<typeof setTimeout> | undefined
  /** Set by {@link close}: no more background batches. */
  private closed = false

  private readonly deps: CompactionDeps

  constructor(deps: CompactionDeps) {
    this.deps = deps
  }

  /** Schedules the next background compaction batch, if a compaction is pending and none is scheduled. */
  schedule(pauseMs = compactionPauseMs): void {
    if (this.closed || this.timer !== undefined || this.deps.store.pendingCompaction() === undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.runBatch()
    }, pauseMs)
    this.timer.unref?.()
  }

  /** Stops the background batches (at shutdown); a compaction not finished resumes at the next start. */
  close(): void {
    this.closed = true
    this.cancel()
  }

  /**
   * Runs the pending compaction's remaining batches now, one after another without pausing
   * (each still its own LMDB transaction), blocking applies meanwhile. For defragmenting,
   * which should copy the database without the records the compaction dropped; etcd's defrag
   * blocks writes for its whole length too. Throws when a batch fails.
   */
  finishNow(): void {
    this.cancel()
    const { backend, store } = this.deps
    while (store.pendingCompaction() !== undefined) {
      const batch = backend.write((tx) => store.compactBatch(tx, this.deps.batchLimit))
      this.deps.commit()
      this.deps.counters.compactedKeys += batch.deleted
    }
    this.deps.onFinished()
  }

  private cancel(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
  }

  /**
   * Runs one background compaction batch: deletes up to batchLimit dropped records in one
   * write, then commits (etcd ForceCommit after each batch; the commit also takes the applied
   * writes buffered so far, which are whole entries with their consistent index). Runs as its
   * own event-loop task, so never inside an apply. On the last batch, tells the applier
   * (`onFinished`). A failure is logged and the batch retried after {@link compactionRetryMs}.
   */
  private runBatch(): void {
    if (this.closed) return
    const { backend, store } = this.deps
    let batch
    try {
      batch = backend.write((tx) => store.compactBatch(tx, this.deps.batchLimit))
    } catch (e) {
      // The write undid its deletions and the scan did not move: the same batch runs again.
      this.deps.log("warn", "compaction batch failed; will retry", { error: String(e), compactRevision: store.pendingCompaction() })
      this.schedule(compactionRetryMs)
      return
    }
    try {
      this.deps.commit()
    } catch (e) {
      // The buffer keeps the deletions; the next commit takes them.
      this.deps.log("warn", "backend commit failed", { error: String(e) })
    }
    this.deps.counters.compactedKeys += batch.deleted
    if (!batch.done) return this.schedule()
    if (batch.revision !== undefined) this.deps.log("info", "finished scheduled compaction", { compactRevision: batch.revision })
    this.deps.onFinished()
  }
}
