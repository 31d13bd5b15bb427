/**
 * The mvcc process's metrics, under etcd's names where etcd has them
 * (server/storage/mvcc/metrics.go, server/etcdserver/metrics.go) and natcd_mvcc_* for the apply
 * queue, gap repair, dedup, backend commits and waiting reads. Each is read from its owner when
 * scraped; nothing here counts on its own.
 */
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import type { Applier } from "./apply.ts"
import type { LmdbBackend } from "./backend-lmdb.ts"
import type { KvStore } from "./core/store.ts"

/** Where the metrics are read from. */
export interface MvccMetricsSources {
  readonly applier: Applier
  readonly backend: LmdbBackend
  readonly store: KvStore
  /** Frames waiting in the FIFO apply queue. */
  readonly queueDepth: () => number
  /** Apply frames dropped because the queue was full. */
  readonly droppedFrames: () => number
}

/** Registers the mvcc process's gauges and counters. */
export const registerMvccMetrics = (ctx: MvccMetricsSources): void => {
  const { applier, backend, store } = ctx
  gaugeFrom("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", () => applier.appliedIndex())
  gaugeFrom("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", () => backend.size().fileBytes)
  gaugeFrom("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", () => backend.size().inUseBytes)
  gaugeFrom("etcd_debugging_mvcc_keys_total", "Total number of keys.", () => store.unsafeIndex().size)
  gaugeFrom("etcd_mvcc_current_revision", "The current revision of the store.", () => store.currentRevision())
  gaugeFrom("etcd_mvcc_compact_revision", "The revision of the last compaction in store.", () => store.compactRevision())
  gaugeFrom("natcd_mvcc_apply_queue_depth", "Frames of committed entries waiting in the FIFO apply queue.", ctx.queueDepth)
  counterFrom("natcd_mvcc_apply_queue_dropped_total", "Apply frames dropped because the queue was full (repaired from raft).", ctx.droppedFrames)
  counterFrom("natcd_mvcc_apply_gaps_repaired_total", "Times missing committed entries were fetched from raft.", () => applier.counters.gapsRepaired)
  counterFrom("natcd_mvcc_duplicate_proposals_total", "Retried proposals skipped because their request id was applied before.", () => applier.counters.duplicates)
  counterFrom("natcd_mvcc_backend_commits_total", "LMDB transactions committed.", () => backend.commits)
  counterFrom("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted.", () => applier.counters.compactedKeys)
  gaugeFrom("natcd_mvcc_range_waiters", "Reads waiting for the applied index they need.", () => applier.waitingReaders())
  counterFrom("natcd_mvcc_range_wait_timeouts_total", "Reads that timed out waiting for their applied index (RequestTimeout).", () => applier.counters.waitTimeouts)
  counterFrom("natcd_mvcc_range_wait_refusals_total", "Reads refused because too many were waiting (TooManyRequests).", () => applier.counters.waitRefusals)
}
