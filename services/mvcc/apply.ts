/**
 * The mvcc service's apply path: committed raft entries, strictly in index order, into the
 * store (etcd server/etcdserver/apply.go and the FIFO of pkg/schedule; the queue and its
 * single consuming fiber live in ./main.ts). This module decides what each entry does; its
 * helpers deliver the rest:
 * - ./commit-scheduler.ts: batching of the backend commits (etcd --backend-batch-limit,
 *   --backend-batch-interval); reads see the buffered state at once;
 * - ./background-compaction.ts: deleting what a compaction dropped, between applies;
 * - ./apply-results.ts: results to proposers, the cache that answers retries, local waiters;
 * - ./apply-waiters.ts: reads waiting for an applied index (bounded, with a timeout).
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
 */
import * as Schema from "effect/Schema"
import { unpackValue } from "../../shared/frame.ts"
import { Index } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Proposal } from "../../shared/schema.ts"
import { decodeUint64, encodeUint64 } from "./core/backend.ts"
import { type DedupBounds, metaDedupClockKey } from "./core/dedup.ts"
import type { KvStore, MvccEvent } from "./core/store.ts"
import { withHopSpan } from "../runtime/rpc.ts"
import { nowUs, recordSpan } from "../runtime/tracing.ts"
import { applyWithAuth, type TokenIssuer } from "./auth-apply.ts"
import { AuthTokens } from "./auth-tokens.ts"
import { AuthStore } from "./core/auth-store.ts"
import { LeaseTable } from "../lease/core/lease-table.ts"
import type { LmdbBackend, LmdbWriteTx } from "./backend-lmdb.ts"
import { applyWaitersMax, AppliedWaiters, type WaitOutcome } from "./apply-waiters.ts"
import { type Outgoing, ProposalResults, type PublishResults, type ResultBody } from "./apply-results.ts"
import { BackgroundCompaction, defaultCompactionBatchLimit } from "./background-compaction.ts"
import { type CommitPolicy, CommitScheduler, defaultBatchIntervalMs, defaultBatchLimit } from "./commit-scheduler.ts"
import { DedupTable } from "./dedup-table.ts"
import { applyWaitTimeoutMs } from "./timeouts.ts"

// The apply path's defaults and outcomes, for its callers (./main.ts, tests), from its parts.
export { applyWaitersMax, type WaitOutcome, waitError } from "./apply-waiters.ts"
export { localReplyTo, type ResultBody } from "./apply-results.ts"
export { compactionPauseMs, defaultCompactionBatchLimit } from "./background-compaction.ts"
export { defaultBatchIntervalMs, defaultBatchLimit } from "./commit-scheduler.ts"

const metaTermKey = new TextEncoder().encode("term")

/** A frame of committed entries, as raft publishes them. */
export interface ApplyBatch {
  readonly entries: ReadonlyArray<Entry>
  readonly commitIndex: number
  readonly term: number
  /** When the frame arrived (µs since the epoch; traced frames only), for the queue-wait span. */
  readonly receivedUs?: number
}

/** The applier's collaborators. */
export interface ApplierIo {
  /** Publishes results to a proposer's subject (./apply-results.ts PublishResults). */
  readonly publish: PublishResults
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

/** Settings of an {@link Applier}: the commit batching (./commit-scheduler.ts CommitPolicy) and the rest. */
export interface ApplierOptions extends CommitPolicy {
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

const decodeProposal = Schema.decodeUnknownExit(Proposal)

/**
 * Applies batches in index order. Invariants: `applied` is the consistent index stored in the
 * backend (the last entry applied, including no-ops).
 */
export class Applier {
  private applied: number
  private term: number
  /** Reads waiting for an applied index (./apply-waiters.ts). */
  private readonly waiters: AppliedWaiters
  /** The ids of applied proposals, in the backend and mirrored in memory (./dedup-table.ts). */
  private readonly dedup: DedupTable
  /** Where results go, and the recent ones kept for retries (./apply-results.ts). */
  private readonly results: ProposalResults
  readonly counters = { entries: 0, duplicates: 0, undecodable: 0, gapsRepaired: 0, compactedKeys: 0, waitTimeouts: 0, waitRefusals: 0 }
  private readonly backend: LmdbBackend
  private readonly store: KvStore
  private readonly member: string
  private readonly io: ApplierIo
  private readonly options: ApplierOptions
  /** The backend's batched commits (./commit-scheduler.ts). */
  private readonly commits: CommitScheduler
  /** The deletion of what compactions dropped (./background-compaction.ts). */
  private readonly compaction: BackgroundCompaction
  /** Set when the entries being applied held a compaction: the batch is committed at once. */
  private compacted = false
  /** Arrival time of the batch being applied (traced frames), for mvcc.apply.queue spans. */
  private batchReceivedUs: number | undefined
  /** The member's lease table, changed in the same transactions as the store (../lease/core/lease-apply.ts). */
  private readonly leases: LeaseTable
  /** The member's auth store, changed in the same transactions as the store (./auth-apply.ts). */
  readonly auth: AuthStore
  /** The member's token provider: Authenticate's tokens are assigned as it is applied. */
  private readonly tokens: TokenIssuer

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
    this.waiters = new AppliedWaiters(this.options.waitersMax, this.counters)
    this.results = new ProposalResults((subject, bodies, traceparent) => io.publish(subject, bodies, traceparent))
    this.commits = new CommitScheduler(backend, this.options, (level, message, fields) => io.log(level, message, fields))
    this.compaction = new BackgroundCompaction({
      backend,
      store,
      batchLimit: this.options.compactionBatchLimit,
      commit: () => this.commit(),
      log: (level, message, fields) => io.log(level, message, fields),
      counters: this.counters,
      onFinished: () => this.results.releasePhysical()
    })
    this.applied = store.consistentIndex()
    const t = backend.read.get("meta", metaTermKey)
    this.term = t === undefined ? 0 : decodeUint64(t)
    this.dedup = DedupTable.restore(backend, this.options.dedup)
    // A compaction whose deletion a restart cut short resumes (etcd restore).
    this.compaction.schedule()
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
    return this.waiters.wait(index, timeoutMs)
  }

  /** Readers waiting for an applied index now (tests and metrics). */
  waitingReaders(): number {
    return this.waiters.size()
  }

  /**
   * A promise of the result of the local proposal `requestId` (reply subject
   * {@link localReplyTo}), resolved when this member applies it. The caller stops waiting at
   * its own deadline with {@link forgetLocalResult}.
   */
  awaitLocalResult(requestId: bigint): Promise<ResultBody> {
    return this.results.awaitLocal(requestId)
  }

  /** Drops the waiter of a local proposal. */
  forgetLocalResult(requestId: bigint): void {
    this.results.forgetLocal(requestId)
  }

  /**
   * Commits the write buffer now (durably) and cancels the pending interval commit. Called by
   * the batch policy, at shutdown, and by tests.
   */
  commit(): void {
    this.commits.commit()
  }

  /**
   * Stops the background compaction and the interval commit, then commits what is buffered.
   * Called at shutdown, before the backend closes; a compaction not finished resumes at the
   * next start.
   */
  close(): void {
    this.compaction.close()
    this.commit()
  }

  /**
   * Runs the pending compaction's remaining batches now, blocking applies meanwhile, and
   * answers the `physical` compactions waiting (./background-compaction.ts finishNow; for
   * defragmenting). Throws when a batch fails.
   */
  finishCompaction(): void {
    this.compaction.finishNow()
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
      this.compaction.schedule()
    } else {
      this.commits.schedule()
    }
    this.waiters.wake(this.applied)
    // Published before the commit: see the durability invariant in the module comment.
    this.results.send(toSend)
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
      this.commits.noteTrace(traceparent)
      const deadlineMs = Math.max(0, p.deadlineMs)
      this.dedup.advance(tx, deadlineMs, entry.index)
      const mine = p.origin === this.member
      if (this.dedup.has(tx, p.requestId)) {
        this.counters.duplicates++
        const cached = mine ? this.results.get(p.requestId) : undefined
        return cached === undefined ? undefined : { subject: p.replyTo, body: cached, traceparent }
      }
      this.dedup.add(tx, p.requestId, deadlineMs, entry.index)
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
        return this.results.holdPhysical(out)
      }
      return this.results.cached(out)
    })
  }
}
