/**
 * etcd's corruption check, run by each member's mvcc service (etcd 3.4 etcdserver/corrupt.go:
 * CheckInitialHashKV, monitorKVHash, checkHashKV, getPeerHashKVs). The decisions are pure
 * (./core/corrupt-check.ts); this shell gathers hashes over NATS, logs what etcd logs, and acts:
 *
 * - Initial check (`--experimental-initial-corrupt-check`, off by default as in etcd): before
 *   the mvcc service serves anything, it hashes its key space at its own revision (the state on
 *   disk, as etcd does before replaying its WAL) and asks every other member's mvcc service for
 *   `mvcc.hashkv` at that revision. A mismatch (different hash, same compact revision) makes
 *   the process exit with "found data inconsistency with peers", as etcd's member refuses to
 *   start; the supervisor's restarts repeat the check (an operator must repair the member).
 *   Peers that do not answer (e.g. in their own initial check) are skipped, as in etcd.
 * - Periodic check (`--experimental-corrupt-check-time`, 0 = off, etcd's default): every
 *   interval, if this member leads, run etcd's checkHashKV and, on a mismatch, propose
 *   ACTIVATE CORRUPT for the member named through the member's raft service (as etcd's
 *   raftRequest with an AlarmRequest). Once applied, every member's store refuses what etcd's
 *   applierV3Corrupt refuses (./core/store.ts, ../lease/core/lease-apply.ts).
 *
 * Departures from etcd, on purpose:
 * - etcd's linearizableReadNotify between the two local hashes becomes: read the leader's
 *   commit index from `raft.status` and wait (bounded) until this member applied it. The check
 *   runs only on the leader, whose commit index is what a ReadIndex would return once its
 *   leadership is confirmed; the mvcc service is not a caller of `raft.readindex`.
 * - Peers are asked in parallel (etcd asks one after another), each with the same timeout.
 * - Members are listed by the member's raft service (`raft.members`), retried for a bounded
 *   time at start; etcd reads its own membership store.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { etcdErrorOf, tagOf } from "../../shared/errors.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import { mvccHashKv, raftMembers, raftStatus } from "../../shared/endpoints.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import { runDetached } from "../runtime/process.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import type { Applier } from "./apply.ts"
import type { ResultBody } from "./apply-results.ts"
import type { KvStore } from "./core/store.ts"
import type { BackendReadTx } from "./core/backend.ts"
import { type Finding, initialCheck, type LocalHash, type PeerHash, periodicCheck } from "./core/corrupt-check.ts"
import { hashKv } from "./hash.ts"
import { corruptCheckMembersRetryMs, corruptCheckMembersWaitMs, corruptCheckRequestTimeoutMs, raftCallTimeoutMs } from "./timeouts.ts"

/** What the corruption check needs from its process. */
export interface CorruptCheckContext {
  readonly rpc: RpcClient
  readonly store: KvStore
  readonly read: () => BackendReadTx
  readonly applier: Pick<Applier, "appliedIndex" | "waitApplied">
  readonly subjects: {
    readonly raftStatus: string
    readonly raftMembers: string
    /** The `mvcc.hashkv` subject of member `name`. */
    readonly peerHashKv: (name: string) => string
  }
  /** Proposes `request` through the member's raft service and waits for its local result (./compactor.ts proposeLocal). */
  readonly propose: (request: WriteRequest) => Promise<ResultBody | undefined>
}

const hex = (id: bigint): string => id.toString(16)

const log = (level: "debug" | "info" | "warn" | "error", message: string, fields: Record<string, unknown>) =>
  (level === "debug" ? Effect.logDebug(message) : level === "info" ? Effect.logInfo(message) : level === "warn" ? Effect.logWarning(message) : Effect.logError(message)).pipe(
    Effect.annotateLogs(fields)
  )

const logFinding = (f: Finding) => log("warn", f.message, f.fields)

/** This member's hash at its current revision (etcd kv.HashByRev(0)). */
export const localHash = (ctx: Pick<CorruptCheckContext, "store" | "read">): LocalHash => {
  const revision = ctx.store.currentRevision()
  return { hash: hashKv(ctx.read(), revision, (k, v) => ctx.store.isLiveRecord(k, v)), revision, compactRevision: ctx.store.compactRevision() }
}

/** The member's id and its peers' ids and names, from its raft service. */
/** This member, its leader and its peers, as the raft service lists them. */
interface Members {
  readonly memberId: bigint
  readonly leader: bigint
  readonly peers: ReadonlyArray<{ readonly id: bigint; readonly name: string }>
}

const membersOf = async (ctx: CorruptCheckContext): Promise<Members> => {
  const [status, { members }] = await Promise.all([
    callEndpoint(ctx.rpc, raftStatus, ctx.subjects.raftStatus, {}, { timeoutMs: raftCallTimeoutMs }),
    callEndpoint(ctx.rpc, raftMembers, ctx.subjects.raftMembers, {}, { timeoutMs: raftCallTimeoutMs })
  ])
  const peers = members
    .filter((m) => m.id !== status.memberId)
    // An unstarted member has no name yet; its peer URL is http://<name>:2380 (README, Membership).
    .map((m) => ({ id: m.id, name: m.name !== "" ? m.name : (/^https?:\/\/([A-Za-z0-9_-]{1,64})(:\d+)?\/?$/.exec(m.peerUrls[0] ?? "")?.[1] ?? "") }))
    .filter((m) => m.name !== "")
  return { memberId: status.memberId, leader: status.leader, peers }
}

/**
 * The members as the raft service lists them (raft.status and raft.members, each within
 * raftCallTimeoutMs); fails with the calls' error (RequestTimeout or Stopped without an answer,
 * or what raft answered) as a shared/errors.ts instance.
 */
const listMembers = Effect.fn("natcd/mvcc/corruptCheck.listMembers")(function*(ctx: CorruptCheckContext) {
  return yield* Effect.tryPromise({ try: () => membersOf(ctx), catch: (e) => etcdErrorOf(e, "raft.members") })
})

/** A periodic check step that failed: a bus call, or the apply wait (`cause`, logged as it is). */
class HashKvCheckFailed extends Data.TaggedError("HashKvCheckFailed")<{ readonly cause: unknown }> {}

/** Every peer's HashKV at `revision` (etcd getPeerHashKVs); failures become `err` answers. */
const peerHashes = (ctx: CorruptCheckContext, peers: ReadonlyArray<{ id: bigint; name: string }>, revision: number): Promise<PeerHash[]> =>
  Promise.all(peers.map(async (p): Promise<PeerHash> => {
    try {
      const r = okOf(await callEndpoint(ctx.rpc, mvccHashKv, ctx.subjects.peerHashKv(p.name), { revision }, { timeoutMs: corruptCheckRequestTimeoutMs }))
      return { memberId: p.id, ok: { hash: r.hash, compactRevision: r.compactRevision, revision: r.revision } }
    } catch (e) {
      const tag = tagOf(e)
      if (tag === "FutureRevision" || tag === "Compacted") return { memberId: p.id, err: tag }
      runDetached(log("warn", "failed hash kv request", { "remote-peer-id": hex(p.id), "requested-revision": revision, error: String(tag ?? e) }))
      return { memberId: p.id, err: "Unreachable" }
    }
  }))

/**
 * etcd CheckInitialHashKV. Succeeds when no peer disagrees (or the members could not be
 * listed within {@link corruptCheckMembersWaitMs}: logged, the check is skipped); dies (a defect: the
 * member must not serve) with an Error "<id> found data inconsistency with peers" otherwise.
 * Run before serving.
 */
export const runInitialCheck = Effect.fn("natcd/mvcc/corruptCheck.initial")(function*(ctx: CorruptCheckContext) {
  const deadline = Date.now() + corruptCheckMembersWaitMs
  let members: Members | undefined
  for (let attempt = 1; members === undefined; attempt++) {
    members = yield* listMembers(ctx).pipe(
      Effect.catch((e) => log("debug", "the raft service did not list the members; asking again", { attempt, error: e._tag }).pipe(Effect.as(undefined)))
    )
    if (members !== undefined) break
    if (Date.now() >= deadline) {
      yield* log("warn", "skipping initial corruption check: the raft service did not list the members", { attempts: attempt, waitedMs: corruptCheckMembersWaitMs })
      return
    }
    yield* Effect.sleep(corruptCheckMembersRetryMs)
  }
  const id = hex(members.memberId)
  yield* log("info", "starting initial corruption check", { "local-member-id": id, timeout: `${corruptCheckRequestTimeoutMs}ms` })
  const local = localHash(ctx)
  // peerHashes never rejects: each peer's failure is its `err` answer.
  const peers = yield* Effect.promise(() => peerHashes(ctx, members.peers, local.revision))
  const verdict = initialCheck(local, peers)
  for (const f of verdict.findings) yield* logFinding({ ...f, fields: { "local-member-id": id, ...f.fields } })
  if (!verdict.ok) {
    yield* log("error", "initial corruption check failed", { "local-member-id": id })
    return yield* Effect.die(new Error(`${id} found data inconsistency with peers`))
  }
  yield* log("info", "initial corruption checking passed; no corruption", { "local-member-id": id, "number-of-peers-checked": verdict.checked })
})

/** etcd checkHashKV, run on the leader. Resolves when done; throws when a step failed (logged by the caller). */
const checkHashKv = async (ctx: CorruptCheckContext, members: Members): Promise<void> => {
  const before = localHash(ctx)
  const peers = await peerHashes(ctx, members.peers, before.revision)
  // etcd linearizableReadNotify: wait until this member applied the leader's commit index.
  const { commitIndex } = await callEndpoint(ctx.rpc, raftStatus, ctx.subjects.raftStatus, {}, { timeoutMs: raftCallTimeoutMs })
  const outcome = await (ctx.applier.waitApplied(commitIndex, corruptCheckRequestTimeoutMs) ?? "applied")
  if (outcome === "timedOut") throw new Error(`applied index ${ctx.applier.appliedIndex()} did not reach the commit index ${commitIndex} within ${corruptCheckRequestTimeoutMs} ms`)
  if (outcome === "tooMany") throw new Error("too many reads wait for the applied index")
  const after = localHash(ctx)
  const verdict = periodicCheck(members.memberId, before, after, peers)
  for (const f of verdict.findings) runDetached(logFinding(f))
  if (verdict.alarm !== undefined) {
    const memberId = verdict.alarm
    runDetached(log("warn", "raising the CORRUPT alarm", { "member-id": hex(memberId) }))
    const r = await ctx.propose({ alarm: { action: "ACTIVATE", memberId, alarm: "CORRUPT" } })
    if (r === undefined || !("ok" in r)) {
      runDetached(log("warn", "failed to raise alarm", { "member-id": hex(memberId), error: r === undefined ? "no result before the deadline" : r.err._tag }))
    }
  }
  runDetached(log("info", "finished peer corruption check", { "number-of-peers-checked": verdict.checked }))
}

/**
 * One round of etcd monitorKVHash: if this member leads, run the check. Fails with
 * HashKvCheckFailed (a step of the check) and with the members listing's error; the caller
 * logs either and skips the round.
 */
const periodicRound = Effect.fn("natcd/mvcc/corruptCheck.periodicRound")(function*(ctx: CorruptCheckContext) {
  const members = yield* listMembers(ctx)
  if (members.leader === 0n || members.leader !== members.memberId) return
  yield* Effect.tryPromise({ try: () => checkHashKv(ctx, members), catch: (cause) => new HashKvCheckFailed({ cause }) })
})

/**
 * etcd monitorKVHash: every `intervalMs`, if this member leads, run the check. Each round is
 * bounded (HashKV and apply waits: {@link corruptCheckRequestTimeoutMs}; the alarm proposal: the
 * proposer's deadline); a failed round is logged and the next one starts on schedule. Runs
 * until interrupted.
 */
export const runPeriodicCheck = Effect.fn("natcd/mvcc/corruptCheck.periodic")(function*(ctx: CorruptCheckContext, intervalMs: number) {
  yield* log("info", "enabled corruption checking", { intervalMs })
  for (;;) {
    yield* Effect.sleep(intervalMs)
    yield* periodicRound(ctx).pipe(
      Effect.catchTag("HashKvCheckFailed", (e) => log("warn", "failed to check hash KV", { error: String(e.cause) })),
      // As etcd, a member that cannot tell whether it leads skips the round.
      Effect.catch((e) => log("debug", "skipping a corruption check round: the raft service did not list the members", { error: e._tag }))
    )
  }
})
