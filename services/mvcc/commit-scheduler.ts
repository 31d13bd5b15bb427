/**
 * When the applier's buffered writes reach the disk (etcd server/storage/backend/backend.go run
 * loop and batchTx.Unlock): applied entries go into the backend's write buffer
 * (./backend-lmdb.ts); the buffer is committed as one durable LMDB transaction once it holds
 * `batchLimit` writes, or `batchIntervalMs` after the first uncommitted write, whichever comes
 * first (etcd: 10000 operations, 100 ms). Reads see the buffered state at once. Each commit is
 * timed (etcd_disk_backend_commit_duration_seconds) and traced. What is safe to publish before
 * the commit is the applier's business (./apply.ts, the durability invariant).
 */
import { diskBuckets, histogram } from "../runtime/metrics.ts"
import { nowUs, recordSpan } from "../runtime/tracing.ts"
import type { LmdbBackend } from "./backend-lmdb.ts"

/** etcd's default backend batch limit (--backend-batch-limit), in writes. */
export const defaultBatchLimit = 10_000

/** etcd's default backend batch interval (--backend-batch-interval), in ms. */
export const defaultBatchIntervalMs = 100

/** etcd's backend commit latency (server/storage/backend/metrics.go). */
const backendCommitSeconds = () =>
  histogram({ name: "etcd_disk_backend_commit_duration_seconds", help: "The latency distributions of commit called by backend.", buckets: diskBuckets })

/** The batch policy's settings (./apply.ts ApplierOptions). */
export interface CommitPolicy {
  /** Commit once this many writes are buffered (etcd --backend-batch-limit, 10000). */
  readonly batchLimit: number
  /** Commit at most this many ms after the first buffered write (etcd --backend-batch-interval, 100 ms). */
  readonly batchIntervalMs: number
}

/** Commits the backend's write buffer by etcd's batch policy. */
export class CommitScheduler {
  private commitTimer: ReturnType<typeof setTimeout> | undefined
  /** The traceparent of the first traced apply since the last backend commit ("" for none). */
  private commitTrace = ""

  private readonly backend: LmdbBackend
  private readonly policy: CommitPolicy
  private readonly log: (level: "warn", message: string, fields: Record<string, unknown>) => void

  constructor(backend: LmdbBackend, policy: CommitPolicy, log: (level: "warn", message: string, fields: Record<string, unknown>) => void) {
    this.backend = backend
    this.policy = policy
    this.log = log
  }

  /** Names the trace the next commit's span joins, unless an earlier apply since the last commit named one. */
  noteTrace(traceparent: string): void {
    if (this.commitTrace === "") this.commitTrace = traceparent
  }

  /**
   * Commits the write buffer now (durably) and cancels the pending interval commit. Called by
   * the batch policy, at shutdown, and by tests.
   */
  commit(): void {
    if (this.commitTimer !== undefined) {
      clearTimeout(this.commitTimer)
      this.commitTimer = undefined
    }
    this.commitBackend()
  }

  /** etcd's batch policy: commit at the write limit, else within the batch interval. */
  schedule(): void {
    const pending = this.backend.pendingWrites()
    if (pending === 0) return
    if (pending >= this.policy.batchLimit) return this.commit()
    if (this.commitTimer !== undefined) return
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined
      try {
        this.commitBackend()
      } catch (e) {
        // The buffer is kept; the next write or interval retries the commit.
        this.log("warn", "backend commit failed", { error: String(e) })
        this.schedule()
      }
    }, this.policy.batchIntervalMs)
    this.commitTimer.unref?.()
  }

  /**
   * The backend commit, timed (etcd_disk_backend_commit_duration_seconds) and traced: a
   * `mvcc.backend.commit` span in the trace of the first traced entry the batch holds.
   */
  private commitBackend(): void {
    const writes = this.backend.pendingWrites()
    if (writes === 0) return
    const startUs = nowUs()
    this.backend.commit()
    const endUs = nowUs()
    backendCommitSeconds().observe((endUs - startUs) / 1e6)
    if (this.commitTrace !== "") {
      recordSpan("mvcc.backend.commit", this.commitTrace, startUs, endUs, { writes })
      this.commitTrace = ""
    }
  }
}
