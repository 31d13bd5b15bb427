/**
 * The mvcc service's apply path: committed raft entries, strictly in index order, into the
 * store (etcd server/etcdserver/apply.go and the FIFO of pkg/schedule; the queue and its
 * single consuming fiber live in ./main.ts).
 *
 * Batching (etcd server/storage/backend/backend.go run loop and batchTx.Unlock): applied
 * entries go into the backend's write buffer (backend-lmdb.ts); the buffer is committed as
 * one durable LMDB transaction once it holds {@link ApplierOptions.batchLimit} writes, or
 * {@link ApplierOptions.batchIntervalMs} after the first uncommitted write, whichever comes
 * first (etcd: 10000 operations, 100 ms). Reads see the buffered state at once.
 *
 * Invariant (durability of acknowledged writes): a result is published as soon as its entry
 * is applied to the buffer, before the LMDB commit. That is safe because the entry is already
 * durable in the WAL of a quorum (raft committed it), and the consistent index is committed in
 * the same LMDB transaction as the writes it covers: after a crash, the store reopens at the
 * last committed consistent index with exactly the writes up to it, and the raft service hands
 * the entries above it over again (raft.entries / mvcc.apply). Re-applying them is
 * deterministic, so each acknowledged write ends up present once, at the revision that was
 * acknowledged, never twice (the dedup records of those entries were in the lost buffer too).
 *
 * Per entry:
 * - Normal entry with a proposal: decode it, skip it if its request id was applied before
 *   (a retried proposal), else apply the write; record the request id in the `dedup` table and
 *   the raft index as consistent index, in the same transaction. The proposing member publishes
 *   the result to the proposer's subject after the commit (also for a skipped duplicate, from
 *   its cache of recent results, so a lost result frame is answered on retry).
 * - Empty Normal entry (a new leader's no-op), ConfChange entry, or undecodable data: only the
 *   consistent index moves. Undecodable data is counted and logged; every member skips it alike.
 *
 * Gaps: NATS may lose an apply frame, so a batch that does not start at applied + 1 first
 * fetches the missing entries from the member's raft service (`raft.entries`), and a frame whose
 * commit index is beyond its last entry triggers the same catch-up.
 *
 * Dedup pruning is a function of the log alone, so every member prunes alike: see
 * ./core/dedup.ts for the clock (derived from proposals' deadlines, moving at most 1 s per
 * proposal), the retention rules, the cap on records and the guarantees that remain.
 *
 * Compaction in the background (etcd 3.4 mvcc/kvstore_compaction.go scheduleCompaction):
 * applying a compaction only records it and compacts the index (./core/store.ts). The records
 * it drops are deleted afterwards by {@link Applier} itself, in batches of
 * {@link ApplierOptions.compactionBatchLimit} records (etcd
 * --experimental-compaction-batch-limit, 1000), each batch one LMDB transaction run on the
 * event loop between apply batches, never inside one, {@link compactionPauseMs} (etcd: 10 ms)
 * after the previous batch. The last batch records finishedCompactRev. A compaction asked for
 * with `physical: true` is answered once that has happened (etcd waits for its physc channel).
 *
 * Waiting readers (etcd's linearizable read waits for the applied index under the request's
 * context): a read waits at most {@link ApplierOptions.waitTimeoutMs} (default
 * {@link applyWaitTimeoutMs}) for its index, and at most {@link ApplierOptions.waitersMax}
 * (default {@link applyWaitersMax}) reads wait at once; see {@link Applier.waitApplied}.
 */
import * as Schema from "effect/Schema"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { unpackValue } from "../../shared/frame.ts"
import { Index } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Proposal } from "../../shared/schema.ts"
import { decodeUint64, encodeUint64 } from "./core/backend.ts"
import { decodeDedupValue, type DedupBounds, type DedupRecord, DedupWindow, encodeDedupValue, metaDedupClockKey } from "./core/dedup.ts"
import type { KvStore } from "./core/store.ts"
import type { MvccEvent } from "./core/store.ts"
import { withHopSpan } from "../runtime/rpc.ts"
import { diskBuckets, histogram } from "../runtime/metrics.ts"
import { nowUs, recordSpan } from "../runtime/tracing.ts"

/** etcd's backend commit latency (server/storage/backend/metrics.go). */
const backendCommitSeconds = () =>
  histogram({ name: "etcd_disk_backend_commit_duration_seconds", help: "The latency distributions of commit called by backend.", buckets: diskBuckets })
import { applyWithAuth, type TokenIssuer } from "./auth-apply.ts"
import { AuthTokens } from "./auth-tokens.ts"
import { AuthStore } from "./core/auth-store.ts"
import { LeaseTable } from "./lease-table.ts"
import type { LmdbBackend, LmdbWriteTx } from "./backend-lmdb.ts"

/** etcd's default backend batch limit (--backend-batch-limit), in writes. */
export const defaultBatchLimit = 10_000

/** etcd's default backend batch interval (--backend-batch-interval), in ms. */
export const defaultBatchIntervalMs = 100

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

/** Pause before retrying a background compaction batch that failed (an LMDB error), in ms. */
const compactionRetryMs = 1000

/**
 * How long a read waits for the applied index it needs, in ms, before it fails with
 * RequestTimeout ("etcdserver: request timed out"); shorter than the gateway's own request
 * timeout (7 s), so the gateway gets the answer rather than no reply.
 */
export const applyWaitTimeoutMs = 5_000

/**
 * Most reads that may wait for an applied index at once (waiters). One more fails at once with
 * TooManyRequests ("etcdserver: too many requests"), as etcd refuses requests when its applied
 * index lags too far behind the committed one.
 */
export const applyWaitersMax = 10_000

/**
 * Most `physical: true` compactions of this member waiting for the background deletion to
 * finish (results). Beyond it the oldest is answered at once: the compaction itself is applied
 * and durable, only its space is not all freed yet.
 */
const physicalWaitersMax = 1024

/** Results kept in memory for re-sending to retried proposals. */
const resultCacheSize = 4096

const metaTermKey = new TextEncoder().encode("term")

/** A frame of committed entries, as raft publishes them. */
export interface ApplyBatch {
  readonly entries: ReadonlyArray<Entry>
  readonly commitIndex: number
  readonly term: number
  /** When the frame arrived (µs since the epoch; traced frames only), for the queue-wait span. */
  readonly receivedUs?: number
}

/** What an applied proposal produced, as sent to its proposer (shared/schema.ts ApplyResult). */
export type ResultBody =
  | { readonly requestId: bigint; readonly ok: { readonly response: unknown; readonly revision: number; readonly term: number } }
  | { readonly requestId: bigint; readonly err: EtcdErrorData }

/** The applier's collaborators. */
export interface ApplierIo {
  /**
   * Publishes results to a proposer's subject (one frame: the results of one applied batch for
   * that subject, in index order), in the trace `traceparent` names (the first traced one's).
   */
  readonly publish: (subject: string, bodies: ReadonlyArray<ResultBody>, traceparent: string) => void
  /** Committed entries from `from` on (the raft service's log), for gap repair. */
  readonly fetchEntries: (from: number) => Promise<{ entries: ReadonlyArray<Entry>; commitIndex: number }>
  readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void
  /** Told of every applied write that changed the store: its revision and events (watch, ./events.ts). */
  readonly onEvents?: (revision: number, events: ReadonlyArray<MvccEvent>) => void
  /** Told after each applied batch (before results go out), to publish that batch's events. */
  readonly onBatchApplied?: (term: number) => void
}

/**
 * An apply that failed part-way: the backend undid the batch's buffered writes, but the key
 * index, the lease table, the applied index and the buffered events may already hold some of
 * it. The only safe continuation is etcd's: stop the process (etcd panics) and start again from
 * the consistent index on disk, re-applying the committed entries from raft.
 */
export class ApplyFailed extends Error {
  readonly index: number
  constructor(index: number, cause: unknown) {
    super(`apply of entry ${index} failed: ${(cause as Error)?.message ?? String(cause)}`)
    this.name = "ApplyFailed"
    this.index = index
  }
}

/** Batching settings of an {@link Applier}. */
export interface ApplierOptions {
  /** Commit once this many writes are buffered (etcd --backend-batch-limit, 10000). */
  readonly batchLimit: number
  /** Commit at most this many ms after the first buffered write (etcd --backend-batch-interval, 100 ms). */
  readonly batchIntervalMs: number
  /**
   * Records read per background compaction batch, each batch one LMDB transaction (etcd
   * --experimental-compaction-batch-limit, 1000; natcd --compaction-batch-limit).
   */
  readonly compactionBatchLimit: number
  /** How long a read waits for its applied index before RequestTimeout, in ms ({@link applyWaitTimeoutMs}). */
  readonly waitTimeoutMs: number
  /** Most reads waiting for an applied index at once; more fail with TooManyRequests ({@link applyWaitersMax}). */
  readonly waitersMax: number
  /** Bounds of the dedup window (./core/dedup.ts); mutable only so tests can shrink them. */
  readonly dedup?: Partial<DedupBounds>
  /**
   * Test builds only: true for an entry index whose apply must fail (after its writes began),
   * to show that a failed apply stops the process and loses nothing. Absent in production.
   */
  readonly injectFailure?: (index: number) => boolean
}

/**
 * How a wait for an applied index ended: the index was applied, the wait timed out
 * (RequestTimeout), or too many reads were waiting already (TooManyRequests).
 */
export type WaitOutcome = "applied" | "timedOut" | "tooMany"

/**
 * The error a reader answers for a wait that did not end "applied": etcd's ErrTimeout
 * ("etcdserver: request timed out") or ErrTooManyRequests ("etcdserver: too many requests").
 */
export const waitError = (outcome: Exclude<WaitOutcome, "applied">): EtcdErrorData =>
  outcome === "timedOut" ? { _tag: "RequestTimeout" } : { _tag: "TooManyRequests" }

/** A reader waiting for an applied index. */
interface Waiter {
  readonly index: number
  readonly resolve: (outcome: WaitOutcome) => void
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * The reply subject of proposals made by the mvcc process itself (the auto compactor): their
 * results are handed to {@link Applier.awaitLocalResult} instead of being published.
 */
export const localReplyTo = "local"

const decodeProposal = Schema.decodeUnknownExit(Proposal)

/** A result to publish after the batch commits. */
interface Outgoing {
  readonly subject: string
  readonly body: ResultBody
  readonly traceparent: string
}

const idKey = (requestId: bigint): Uint8Array => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, requestId)
  return b
}

/**
 * Applies batches in index order. Invariants: `applied` is the consistent index stored in the
 * backend (the last entry applied, including no-ops); `waiters` is sorted by index, holds at
 * most waitersMax readers, each with a running timer, and a waiter leaves it when resolved
 * (applied or timed out); `dedup` holds exactly the dedup table's records, in apply order.
 */
export class Applier {
  private applied: number
  private term: number
  private readonly waiters: Waiter[] = []
  /** The dedup table's records and the log clock (./core/dedup.ts), mirroring the backend. */
  private readonly dedup: DedupWindow
  private readonly results = new Map<bigint, ResultBody>()
  /**
   * The ids in `results`, oldest first from `resultNext` on (a ring of resultCacheSize). Evicting
   * through the Map's own order (`keys().next()`) would scan past every slot deleted since V8
   * last rehashed the table: about a microsecond per applied write at this size.
   */
  private readonly resultOrder: Array<bigint | undefined> = new Array(resultCacheSize)
  private resultNext = 0
  readonly counters = { entries: 0, duplicates: 0, undecodable: 0, gapsRepaired: 0, compactedKeys: 0, waitTimeouts: 0, waitRefusals: 0 }
  private readonly backend: LmdbBackend
  private readonly store: KvStore
  private readonly member: string
  private readonly io: ApplierIo
  private readonly options: ApplierOptions
  private commitTimer: ReturnType<typeof setTimeout> | undefined
  /** Set when the entries being applied held a compaction: the batch is committed at once. */
  private compacted = false
  private readonly localWaiters = new Map<bigint, (body: ResultBody) => void>()
  /** Arrival time of the batch being applied (traced frames), for mvcc.apply.queue spans. */
  private batchReceivedUs: number | undefined
  /** The traceparent of the first traced apply since the last backend commit ("" for none). */
  private commitTrace = ""
  /** The member's lease table, changed in the same transactions as the store (./lease-apply.ts). */
  private readonly leases: LeaseTable
  /** The member's auth store, changed in the same transactions as the store (./auth-apply.ts). */
  readonly auth: AuthStore
  /** The member's token provider: Authenticate's tokens are assigned as it is applied. */
  private readonly tokens: TokenIssuer
  /** The next background compaction batch, when one is due. */
  private compactionTimer: ReturnType<typeof setTimeout> | undefined
  /** Results of this member's `physical: true` compactions, sent once the deletion finished. */
  private physicalWaiters: Outgoing[] = []
  /** Set by {@link close}: no more background batches. */
  private closed = false
  /** Records dropped from the dedup window at restore (a lowered cap), deleted from the table with the next proposal. */
  private pendingDedupDeletes: DedupRecord[]

  constructor(
    backend: LmdbBackend,
    store: KvStore,
    member: string,
    io: ApplierIo,
    options?: Partial<ApplierOptions>,
    leases?: LeaseTable,
    auth?: { readonly store: AuthStore; readonly tokens: TokenIssuer }
  ) {
    this.leases = leases ?? LeaseTable.restore(backend.read, store.consistentIndex())
    this.auth = auth?.store ?? AuthStore.restore(backend.read)
    this.tokens = auth?.tokens ?? new AuthTokens({ kind: "simple" })
    this.backend = backend
    this.store = store
    this.member = member
    this.io = io
    this.options = {
      batchLimit: options?.batchLimit ?? defaultBatchLimit,
      batchIntervalMs: options?.batchIntervalMs ?? defaultBatchIntervalMs,
      compactionBatchLimit: options?.compactionBatchLimit ?? defaultCompactionBatchLimit,
      waitTimeoutMs: options?.waitTimeoutMs ?? applyWaitTimeoutMs,
      waitersMax: options?.waitersMax ?? applyWaitersMax,
      ...(options?.dedup === undefined ? {} : { dedup: options.dedup }),
      ...(options?.injectFailure === undefined ? {} : { injectFailure: options.injectFailure })
    }
    if (!Number.isSafeInteger(this.options.compactionBatchLimit) || this.options.compactionBatchLimit < 1) {
      throw new Error(`compaction batch limit must be a positive integer: ${this.options.compactionBatchLimit}`)
    }
    this.applied = store.consistentIndex()
    const t = backend.read.get("meta", metaTermKey)
    this.term = t === undefined ? 0 : decodeUint64(t)
    const clock = backend.read.get("meta", metaDedupClockKey)
    const records: DedupRecord[] = backend.dedupEntries().map(({ key, value }) => ({ id: idOf(key), ...decodeDedupValue(value) }))
    const { window, dropped } = DedupWindow.restore(clock === undefined ? 0 : decodeUint64(clock), records, this.options.dedup)
    this.dedup = window
    // Only when the cap was lowered: the table is trimmed alike on every member at its next apply.
    this.pendingDedupDeletes = dropped
    // A compaction whose deletion a restart cut short resumes (etcd restore).
    this.scheduleCompaction()
  }

  /** The last applied raft index. */
  appliedIndex(): number {
    return this.applied
  }

  /** The raft term of the last applied batch (for response headers). */
  currentTerm(): number {
    return this.term
  }

  /**
   * Waits until raft index `index` is applied. Returns undefined when it is already, else a
   * promise of how the wait ended: "applied"; "timedOut" after `timeoutMs` (default
   * {@link ApplierOptions.waitTimeoutMs}; the waiter is removed then); or "tooMany", at once,
   * when {@link ApplierOptions.waitersMax} readers wait already. Callers answer "timedOut"
   * with RequestTimeout and "tooMany" with TooManyRequests.
   */
  waitApplied(index: number, timeoutMs: number = this.options.waitTimeoutMs): Promise<WaitOutcome> | undefined {
    if (index <= this.applied) return undefined
    if (this.waiters.length >= this.options.waitersMax) {
      this.counters.waitRefusals++
      return Promise.resolve("tooMany")
    }
    return new Promise<WaitOutcome>((resolve) => {
      const waiter: Waiter = { index, resolve, timer: undefined }
      waiter.timer = setTimeout(() => {
        waiter.timer = undefined
        const at = this.waiters.indexOf(waiter)
        if (at !== -1) this.waiters.splice(at, 1)
        this.counters.waitTimeouts++
        resolve("timedOut")
      }, timeoutMs)
      waiter.timer.unref?.()
      // Sorted insert (after waiters of the same index, so they are woken in arrival order).
      let lo = 0
      let hi = this.waiters.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (this.waiters[mid]!.index <= index) lo = mid + 1
        else hi = mid
      }
      this.waiters.splice(lo, 0, waiter)
    })
  }

  /** Readers waiting for an applied index now (tests and metrics). */
  waitingReaders(): number {
    return this.waiters.length
  }

  /**
   * A promise of the result of the local proposal `requestId` (reply subject
   * {@link localReplyTo}), resolved when this member applies it. The caller stops waiting at
   * its own deadline with {@link forgetLocalResult}.
   */
  awaitLocalResult(requestId: bigint): Promise<ResultBody> {
    return new Promise((resolve) => this.localWaiters.set(requestId, resolve))
  }

  /** Drops the waiter of a local proposal. */
  forgetLocalResult(requestId: bigint): void {
    this.localWaiters.delete(requestId)
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

  /** etcd's batch policy: commit at the write limit, else within the batch interval. */
  private scheduleCommit(): void {
    const pending = this.backend.pendingWrites()
    if (pending === 0) return
    if (pending >= this.options.batchLimit) return this.commit()
    if (this.commitTimer !== undefined) return
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined
      try {
        this.commitBackend()
      } catch (e) {
        // The buffer is kept; the next write or interval retries the commit.
        this.io.log("warn", "backend commit failed", { error: String(e) })
        this.scheduleCommit()
      }
    }, this.options.batchIntervalMs)
    this.commitTimer.unref?.()
  }

  /**
   * Stops the background compaction and the interval commit, then commits what is buffered.
   * Called at shutdown, before the backend closes; a compaction not finished resumes at the
   * next start.
   */
  close(): void {
    this.closed = true
    if (this.compactionTimer !== undefined) {
      clearTimeout(this.compactionTimer)
      this.compactionTimer = undefined
    }
    this.commit()
  }

  /**
   * Runs the pending compaction's remaining batches now, one after another without pausing
   * (each still its own LMDB transaction), blocking applies meanwhile. For defragmenting,
   * which should copy the database without the records the compaction dropped; etcd's defrag
   * blocks writes for its whole length too. Throws when a batch fails.
   */
  finishCompaction(): void {
    if (this.compactionTimer !== undefined) {
      clearTimeout(this.compactionTimer)
      this.compactionTimer = undefined
    }
    while (this.store.pendingCompaction() !== undefined) {
      const batch = this.backend.write((tx) => this.store.compactBatch(tx, this.options.compactionBatchLimit))
      this.commit()
      this.counters.compactedKeys += batch.deleted
    }
    this.answerPhysical()
  }

  /** Answers the `physical` compactions waiting (the deletion finished). */
  private answerPhysical(): void {
    const waiting = this.physicalWaiters
    this.physicalWaiters = []
    this.send(waiting.map((out) => this.cached(out)))
  }

  /** Schedules the next background compaction batch, if a compaction is pending and none is scheduled. */
  private scheduleCompaction(pauseMs = compactionPauseMs): void {
    if (this.closed || this.compactionTimer !== undefined || this.store.pendingCompaction() === undefined) return
    this.compactionTimer = setTimeout(() => {
      this.compactionTimer = undefined
      this.runCompactionBatch()
    }, pauseMs)
    this.compactionTimer.unref?.()
  }

  /**
   * Runs one background compaction batch: deletes up to compactionBatchLimit dropped records
   * in one write, then commits (etcd ForceCommit after each batch; the commit also takes the
   * applied writes buffered so far, which are whole entries with their consistent index). Runs
   * as its own event-loop task, so never inside an apply. On the last batch, answers the
   * `physical` compactions waiting. A failure is logged and the batch retried after
   * {@link compactionRetryMs}.
   */
  private runCompactionBatch(): void {
    if (this.closed) return
    let batch
    try {
      batch = this.backend.write((tx) => this.store.compactBatch(tx, this.options.compactionBatchLimit))
    } catch (e) {
      // The write undid its deletions and the scan did not move: the same batch runs again.
      this.io.log("warn", "compaction batch failed; will retry", { error: String(e), compactRevision: this.store.pendingCompaction() })
      this.scheduleCompaction(compactionRetryMs)
      return
    }
    try {
      this.commit()
    } catch (e) {
      // The buffer keeps the deletions; the next commit takes them.
      this.io.log("warn", "backend commit failed", { error: String(e) })
    }
    this.counters.compactedKeys += batch.deleted
    if (!batch.done) return this.scheduleCompaction()
    if (batch.revision !== undefined) this.io.log("info", "finished scheduled compaction", { compactRevision: batch.revision })
    this.answerPhysical()
  }

  /**
   * Applies one batch (skipping entries already applied, repairing a gap before it), then
   * wakes readers and publishes results. Rejects only on a broken invariant (a defect).
   */
  async applyBatch(batch: ApplyBatch): Promise<void> {
    const first = batch.entries[0]
    if (first !== undefined && first.index > this.applied + 1) await this.catchUp(first.index - 1)
    const fresh = batch.entries.filter((e) => e.index > this.applied)
    this.batchReceivedUs = batch.receivedUs
    if (fresh.length > 0) this.applyEntries(fresh, batch.term)
    this.batchReceivedUs = undefined
    const last = batch.entries[batch.entries.length - 1]
    if (batch.commitIndex > this.applied && (last === undefined || batch.commitIndex > last.index)) {
      await this.catchUp(batch.commitIndex)
    }
  }

  /** Fetches and applies committed entries from the raft service until `target` is applied (or raft has no more). */
  async catchUp(target: number): Promise<void> {
    while (this.applied < target) {
      const { entries } = await this.io.fetchEntries(this.applied + 1)
      const fresh = entries.filter((e) => e.index > this.applied)
      if (fresh.length === 0 || fresh[0]!.index !== this.applied + 1) return
      this.counters.gapsRepaired++
      // Entries fetched here carry no frame term; the newest entry's term is at least the term
      // the member had when it was committed (a fresh store would otherwise report term 0).
      this.applyEntries(fresh, Math.max(this.term, fresh[fresh.length - 1]!.term))
    }
  }

  /**
   * Applies `entries` in one write of the backend. Throws {@link ApplyFailed} when an entry's
   * apply throws: the process must stop (see ApplyFailed); nothing of the batch is published.
   */
  private applyEntries(entries: ReadonlyArray<Entry>, term: number): void {
    const toSend: Array<Outgoing> = []
    let current = entries[0]?.index ?? this.applied + 1
    const clockBefore = this.dedup.clockMs()
    try {
      this.backend.write((tx) => {
        for (const entry of entries) {
          current = entry.index
          if (entry.index !== this.applied + 1) {
            throw new Error(`apply out of order: applied ${this.applied}, next ${entry.index}`)
          }
          const sent = this.applyEntry(tx, entry, term)
          if (this.options.injectFailure?.(entry.index) === true) throw new Error(`injected failure at index ${entry.index}`)
          if (sent !== undefined) toSend.push(sent)
          this.applied = entry.index
        }
        // No-op, ConfChange and duplicate entries move the consistent index too.
        this.store.advanceConsistentIndex(tx, Index(this.applied))
        if (term !== this.term) tx.put("meta", metaTermKey, encodeUint64(term))
        if (this.dedup.clockMs() !== clockBefore) tx.put("meta", metaDedupClockKey, encodeUint64(this.dedup.clockMs()))
      })
    } catch (e) {
      throw new ApplyFailed(current, e)
    }
    this.term = term
    this.counters.entries += entries.length
    this.io.onBatchApplied?.(term)
    // etcd commits at once after recording a compaction (kvstore.go updateCompactRev ForceCommit),
    // then deletes what it dropped in the background.
    if (this.compacted) {
      this.compacted = false
      this.commit()
      this.scheduleCompaction()
    } else {
      this.scheduleCommit()
    }
    let woken = 0
    while (woken < this.waiters.length && this.waiters[woken]!.index <= this.applied) woken++
    for (const w of this.waiters.splice(0, woken)) {
      clearTimeout(w.timer)
      w.resolve("applied")
    }
    // Published before the commit: see the durability invariant in the module comment.
    this.send(toSend)
  }

  /** Publishes results: local ones to their waiters, the rest in one frame per proposer subject. */
  private send(toSend: ReadonlyArray<Outgoing>): void {
    const bySubject = new Map<string, { bodies: ResultBody[]; traceparent: string }>()
    for (const { subject, body, traceparent } of toSend) {
      if (subject === localReplyTo) {
        const resolve = this.localWaiters.get(body.requestId)
        this.localWaiters.delete(body.requestId)
        resolve?.(body)
        continue
      }
      const group = bySubject.get(subject)
      if (group === undefined) bySubject.set(subject, { bodies: [body], traceparent })
      else {
        group.bodies.push(body)
        if (group.traceparent === "") group.traceparent = traceparent
      }
    }
    for (const [subject, { bodies, traceparent }] of bySubject) this.io.publish(subject, bodies, traceparent)
  }

  private applyEntry(tx: LmdbWriteTx, entry: Entry, term: number): Outgoing | undefined {
    if (entry.type !== "Normal" || entry.data.length === 0) return undefined
    let raw: unknown
    try {
      raw = unpackValue(entry.data)
    } catch {
      raw = undefined
    }
    const decoded = decodeProposal(raw)
    if (decoded._tag === "Failure") {
      this.counters.undecodable++
      this.io.log("warn", "skipping undecodable entry", { index: entry.index })
      return undefined
    }
    const p = decoded.value
    if (p.traceparent !== "" && this.batchReceivedUs !== undefined) {
      recordSpan("mvcc.apply.queue", p.traceparent, this.batchReceivedUs, nowUs(), { index: entry.index })
    }
    return withHopSpan("mvcc.apply", p.traceparent, (traceparent) => {
      if (this.commitTrace === "") this.commitTrace = traceparent
      const deadlineMs = Math.max(0, p.deadlineMs)
      this.forget(tx, this.pendingDedupDeletes)
      this.pendingDedupDeletes = []
      this.forget(tx, this.dedup.advance(deadlineMs, entry.index))
      const id = idKey(p.requestId)
      const mine = p.origin === this.member
      if (tx.dedupGet(id) !== undefined) {
        this.counters.duplicates++
        const cached = mine ? this.results.get(p.requestId) : undefined
        return cached === undefined ? undefined : { subject: p.replyTo, body: cached, traceparent }
      }
      tx.dedupPut(id, encodeDedupValue(deadlineMs, entry.index))
      this.forget(tx, this.dedup.add({ id: p.requestId, deadlineMs, index: entry.index }))
      const r = applyWithAuth(this.store, this.leases, this.auth, this.tokens, tx, Index(entry.index), p.request, p.authInfo, mine)
      if ("ok" in r && r.events.length > 0) this.io.onEvents?.(r.revision, r.events)
      if ("compaction" in p.request && "ok" in r) this.compacted = true
      if (!mine || "skipped" in r) return undefined
      const body: ResultBody = "err" in r
        ? { requestId: p.requestId, err: r.err }
        : { requestId: p.requestId, ok: { response: r.ok, revision: r.revision, term } }
      const out = { subject: p.replyTo, body, traceparent }
      // etcd v3_server Compact: with physical set, the answer waits for the deletion to finish
      // (and is cached for retries only then, so a retry does not get it early).
      if ("compaction" in p.request && p.request.compaction.physical === true && "ok" in r) {
        this.physicalWaiters.push(out)
        const oldest = this.physicalWaiters.length > physicalWaitersMax ? this.physicalWaiters.shift() : undefined
        return oldest === undefined ? undefined : this.cached(oldest)
      }
      return this.cached(out)
    })
  }

  /** Keeps `out`'s result for re-sending to a retry of its proposal (the newest {@link resultCacheSize}). */
  private cached(out: Outgoing): Outgoing {
    const id = out.body.requestId
    if (!this.results.has(id)) {
      const evicted = this.resultOrder[this.resultNext]
      if (evicted !== undefined) this.results.delete(evicted)
      this.resultOrder[this.resultNext] = id
      this.resultNext = (this.resultNext + 1) % resultCacheSize
    }
    this.results.set(id, out.body)
    return out
  }

  /** Deletes dropped dedup records from the table, in the apply's transaction. */
  private forget(tx: LmdbWriteTx, records: ReadonlyArray<DedupRecord>): void {
    for (const r of records) tx.dedupDelete(idKey(r.id))
  }
}

/** The request id stored under an 8-byte dedup key. */
const idOf = (key: Uint8Array): bigint => new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(0)
