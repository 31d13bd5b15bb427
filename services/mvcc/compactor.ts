/**
 * The auto compactor of a member (etcd server/etcdserver/api/v3compactor), run by the mvcc
 * service because the mvcc service knows the store revision.
 *
 * One fiber per mvcc process loops at the interval ./core/compactor.ts names. At each check it
 * asks the member's raft service (`raft.status`) whether this member leads; only the leader
 * compacts, as etcd pauses the compactor on followers. A compaction is proposed through the
 * member's raft service (`raft.propose`) as a Proposal with reply subject
 * {@link localReplyTo}, so its result comes back from this process's own applier
 * (Applier.awaitLocalResult). Like the gateway's proposer it is proposed again with the same
 * request id until its deadline when no result arrives (NATS core may lose frames); the
 * applier applies one request id once.
 */
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import { etcdErrorOf, RequestTimeout } from "../../shared/errors.ts"
import type { EtcdError } from "../../shared/errors.ts"
import { packValue } from "../../shared/frame.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import { raftPropose, raftStatus } from "../../shared/endpoints.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { retryPromise } from "../runtime/retry.ts"
import type { Applier, ResultBody } from "./apply.ts"
import { localReplyTo } from "./apply.ts"
import type { KvStore } from "./core/store.ts"
import { type AutoCompaction, type CompactionOutcome, PeriodicCompactor, RevisionCompactor } from "./core/compactor.ts"
import { compactionProposeCallMs, compactionProposeRetryMs, compactionProposeTimeoutMs, compactionResultWaitMs, raftCallTimeoutMs } from "./timeouts.ts"

/** What the compactor needs from its process. */
export interface CompactorContext {
  readonly rpc: RpcClient
  readonly applier: Applier
  readonly store: KvStore
  readonly member: string
  readonly subjects: { readonly raftStatus: string; readonly raftPropose: string }
  /** Check interval of revision mode in ms (etcd: 5 minutes; shorter only for tests). */
  readonly revisionCheckIntervalMs: number
}

/** An attempt's signal that raft took the proposal but this member has not applied it yet. */
class NotAppliedYet extends Error {}

/**
 * Proposes `request` through the member's raft service and waits for this member to apply it.
 * Resolves with the result, or undefined when none arrived before the deadline
 * ({@link compactionProposeTimeoutMs}). A proposal raft did not take (no leader, no answer) is proposed
 * again after {@link compactionProposeRetryMs}, one whose result did not come within
 * {@link compactionResultWaitMs} at once, with the same request id (../runtime/retry.ts).
 */
export const proposeLocal = async (
  ctx: Pick<CompactorContext, "rpc" | "applier" | "member" | "subjects">,
  request: WriteRequest
): Promise<ResultBody | undefined> => {
  const requestId = BigInt("0x" + randomBytes(8).toString("hex"))
  const deadlineMs = Date.now() + compactionProposeTimeoutMs
  const data = packValue({ requestId, origin: ctx.member, replyTo: localReplyTo, deadlineMs, traceparent: "", request })
  const result = ctx.applier.awaitLocalResult(requestId)
  const attempt = async (): Promise<ResultBody> => {
    okOf(await callEndpoint(ctx.rpc, raftPropose, ctx.subjects.raftPropose, { proposals: [data] }, { timeoutMs: Math.max(1, Math.min(compactionProposeCallMs, deadlineMs - Date.now())) }))
    const wait = Math.max(0, Math.min(compactionResultWaitMs, deadlineMs - Date.now()))
    const body = await Promise.race([result, new Promise<undefined>((r) => setTimeout(() => r(undefined), wait))])
    if (body === undefined) throw new NotAppliedYet()
    return body
  }
  try {
    return await retryPromise({
      name: "compaction proposal",
      deadlineMs: compactionProposeTimeoutMs,
      backoff: (e) => (e instanceof NotAppliedYet ? 0 : compactionProposeRetryMs),
      retryable: () => true,
      atBound: () => new RequestTimeout(),
      logLevel: "Info",
      logFields: { requestId: requestId.toString(16) }
    }, attempt).catch(() => undefined) // At the deadline the outcome is unknown.
  } finally {
    ctx.applier.forgetLocalResult(requestId)
  }
}

/**
 * Whether this member is the raft leader now (raft.status within raftCallTimeoutMs); fails
 * with the call's error (no answer, or what raft answered) as a shared/errors.ts instance.
 */
const isLeader = Effect.fn("natcd/mvcc/compactor.isLeader")(function*(ctx: CompactorContext) {
  const s = yield* Effect.tryPromise({
    try: () => callEndpoint(ctx.rpc, raftStatus, ctx.subjects.raftStatus, {}, { timeoutMs: raftCallTimeoutMs }),
    catch: (e) => etcdErrorOf(e, "raft.status")
  })
  return s.leader !== 0n && s.leader === s.memberId
})

/** {@link isLeader}, false when raft did not tell (logged at Debug): the round is skipped, as before. */
const leadsNow = (ctx: CompactorContext) =>
  isLeader(ctx).pipe(
    Effect.catch((e) => Effect.logDebug("compactor: raft did not say who leads; skipping this round").pipe(Effect.annotateLogs({ error: e._tag }), Effect.as(false)))
  )

/**
 * Proposes a compaction at `revision` and waits for its local result: "ok", or "compacted"
 * when the revision was compacted already, or "failed" for any other error the apply returned.
 * Fails with RequestTimeout when no result came before the proposal's deadline (the outcome
 * is unknown).
 */
const compactAt = Effect.fn("natcd/mvcc/compactor.compact")(function*(ctx: CompactorContext, revision: number) {
  // proposeLocal resolves undefined at its deadline rather than rejecting: a rejection is a defect.
  const r = yield* Effect.promise(() => proposeLocal(ctx, { compaction: { revision, physical: false } }))
  if (r === undefined) return yield* Effect.fail<EtcdError>(new RequestTimeout())
  if ("ok" in r) return "ok" as CompactionOutcome
  return (r.err._tag === "Compacted" ? "compacted" : "failed") as CompactionOutcome
})

/** {@link compactAt}, with a failure logged and counted as the outcome "failed". */
const compactOutcome = (ctx: CompactorContext, revision: number) =>
  compactAt(ctx, revision).pipe(
    Effect.catch((e) =>
      Effect.logInfo("compaction proposal got no result before its deadline").pipe(Effect.annotateLogs({ revision, error: e._tag }), Effect.as<CompactionOutcome>("failed"))
    )
  )

const log = (message: string, fields: Record<string, unknown>) => Effect.logInfo(message).pipe(Effect.annotateLogs(fields))

/** One round of the revision compactor: compacts when this member leads and `core` says a revision is due. */
const revisionRound = Effect.fn("natcd/mvcc/compactor.revisionRound")(function*(ctx: CompactorContext, core: RevisionCompactor, retention: number) {
  const leader = yield* leadsNow(ctx)
  const rev = core.due(ctx.store.currentRevision(), leader)
  if (rev === undefined) return
  yield* log("starting auto revision compaction", { revision: rev, retention })
  const outcome = yield* compactOutcome(ctx, rev)
  core.done(rev, outcome)
  yield* log(outcome === "failed" ? "failed auto revision compaction" : "completed auto revision compaction", { revision: rev, outcome })
})

/** One round of the periodic compactor: compacts when this member leads and `core` says a revision is due. */
const periodicRound = Effect.fn("natcd/mvcc/compactor.periodicRound")(function*(ctx: CompactorContext, core: PeriodicCompactor, periodMs: number) {
  const leader = yield* leadsNow(ctx)
  const rev = core.due(Date.now(), leader)
  if (rev === undefined) return
  yield* log("starting auto periodic compaction", { revision: rev, periodMs })
  const outcome = yield* compactOutcome(ctx, rev)
  core.done(Date.now(), outcome)
  yield* log(outcome === "failed" ? "failed auto periodic compaction" : "completed auto periodic compaction", { revision: rev, outcome })
})

/**
 * The compactor loop for `config`, as an Effect that runs until interrupted. Logs each
 * compaction it starts and how it ended, as etcd does; a round whose leader check or proposal
 * fails is logged and ends as etcd's does ("failed", or skipped when raft did not answer).
 */
export const runCompactor = (ctx: CompactorContext, config: AutoCompaction) =>
  Effect.gen(function*() {
    if (config.mode === "revision") {
      const core = new RevisionCompactor(config.retention)
      for (;;) {
        yield* Effect.sleep(ctx.revisionCheckIntervalMs)
        yield* revisionRound(ctx, core, config.retention)
      }
    }
    const core = new PeriodicCompactor(config.periodMs, Date.now())
    for (;;) {
      core.record(ctx.store.currentRevision())
      yield* Effect.sleep(core.checkIntervalMs())
      yield* periodicRound(ctx, core, config.periodMs)
    }
  })
