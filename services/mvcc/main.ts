/**
 * The mvcc process: a member's key-value state machine on LMDB.
 *
 *   node services/mvcc/main.ts --member=m1 [--apply-queue=1024] [--backend-batch-limit=10000]
 *     [--backend-batch-interval=100ms] [--compaction-batch-limit=1000]
 *     [--auto-compaction-mode=periodic|revision]
 *     [--auto-compaction-retention=0] [--experimental-initial-corrupt-check]
 *     [--experimental-corrupt-check-time=0] (+ the common flags)
 *
 * Every flag can also be set through its environment variable (NATCD_BACKEND_BATCH_LIMIT,
 * NATCD_BACKEND_BATCH_INTERVAL, NATCD_COMPACTION_BATCH_LIMIT, NATCD_AUTO_COMPACTION_MODE,
 * NATCD_AUTO_COMPACTION_RETENTION, NATCD_INITIAL_CORRUPT_CHECK, NATCD_CORRUPT_CHECK_TIME, ...),
 * which is how `make run` (the supervisor passes its environment on) configures them.
 *
 * Writes are batched into LMDB transactions of up to --backend-batch-limit writes or
 * --backend-batch-interval (etcd's defaults: 10000, 100 ms); reads see the batch before it is
 * committed (./apply.ts, ./backend-lmdb.ts). A compaction is applied at once (the index, and
 * the compact revision reads check); the records it drops are deleted in the background in
 * batches of --compaction-batch-limit records, one LMDB transaction each, between applies
 * (etcd --experimental-compaction-batch-limit, ./apply.ts). The auto compactor
 * (./compactor.ts) runs here when --auto-compaction-retention is not 0, proposing compactions
 * through raft while this member leads.
 *
 * Committed entries arrive on `mvcc.apply` and go into a bounded FIFO queue; exactly one fiber
 * takes from it and applies batches in raft index order (./apply.ts), as etcd's FIFO scheduler
 * does. A full queue drops the frame (counted): the gap is repaired from the raft service, so
 * the bound costs a re-fetch, never a lost entry. `mvcc.range` serves reads once the applied
 * index reaches the request's `minAppliedIndex` (the ReadIndex of a linearizable read), waiting
 * at most 5 s (then RequestTimeout) with at most 10000 reads waiting (beyond: TooManyRequests,
 * see ./apply.ts waitApplied);
 * `mvcc.status` reports applied index, revision and db size; `mvcc.alarms` the active alarms.
 *
 * This file composes the process: it opens the backend and the stores, starts the apply fiber
 * and the background jobs, and wires the endpoints, which live beside it: ./flags.ts (the
 * flags), ./read-endpoints.ts (range, status, alarms, hashkv), ./maintenance-endpoints.ts
 * (snapshot, chunk, defragment, install), ./lease-endpoints.ts, ./auth-endpoint.ts, ./events.ts
 * (the event stream and history for watch), ./metrics.ts.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { gatewayResult, mvccApply, mvccEvents, mvccHashKv, mvccHistory, raftEntries, raftMembers, raftPropose, raftStatus, subjectOf } from "../../shared/endpoints.ts"
import { endpointOptions, launch, memberDir, Nats, runDetached } from "../runtime/process.ts"
import { privateDirMode, touchPrivateDir } from "../runtime/private-files.ts"
import { callEndpoint, publishEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { currentTraceparent, nowUs } from "../runtime/tracing.ts"
import { Applier, type ApplyBatch, ApplyFailed } from "./apply.ts"
import { proposeLocal, runCompactor } from "./compactor.ts"
import { type CorruptCheckContext, runInitialCheck, runPeriodicCheck } from "./corrupt-check.ts"
import { LmdbBackend } from "./backend-lmdb.ts"
import { installPending, SnapshotFiles } from "./snapshot.ts"
import { KvStore } from "./core/store.ts"
import { unsafeReadConsistentIndex } from "./core/backend.ts"
import { serveLeaseEndpoints } from "./lease-endpoints.ts"
import { LeaseTable } from "../lease/core/lease-table.ts"
import { AuthStore } from "./core/auth-store.ts"
import { AuthTokens } from "./auth-tokens.ts"
import { serveAuthEndpoint } from "./auth-endpoint.ts"
import { defaultEventFrameBytes, EventStream, readHistory } from "./events.ts"
import { autoCompactionOf, injectedApplyFailure, parseMvccFlags, tokenKindOf } from "./flags.ts"
import { type Lifecycle, serveMaintenanceEndpoints } from "./maintenance-endpoints.ts"
import { registerMvccMetrics } from "./metrics.ts"
import { serveReadEndpoints } from "./read-endpoints.ts"
import { raftCallTimeoutMs, tokenSweepMs } from "./timeouts.ts"

const flags = parseMvccFlags(process.argv)
const tokenKind = tokenKindOf(flags)
const autoCompaction = autoCompactionOf(flags)

/** The event stream's idle heartbeat period, in ms (how soon a watch replica notices a lost last frame). */
const eventHeartbeatMs = 500

/** A fetched snapshot or defragmented copy (`<dbPath>.install`) could not be put in place: the process cannot start. */
class PendingInstallFailed extends Data.TaggedError("PendingInstallFailed")<{ readonly dbPath: string; readonly cause: unknown }> {}

/** An apply queue item failed: an ApplyFailed `cause` stops the process, any other is repaired from raft. */
class ApplyStepFailed extends Data.TaggedError("ApplyStepFailed")<{ readonly cause: unknown }> {}

const MvccLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    // The member directory is private (0700), as etcd's TouchDirAll checks at start.
    const tightened = touchPrivateDir(memberDir(flags))
    if (tightened.previousMode !== undefined) {
      yield* Effect.logWarning("member directory was not private; set it to 0700").pipe(
        Effect.annotateLogs({ dir: memberDir(flags), previousMode: tightened.previousMode.toString(8) })
      )
    }
    const dir = join(memberDir(flags), "mvcc")
    mkdirSync(dir, { recursive: true, mode: privateDirMode })
    const dbPath = join(dir, "kv.mdb")
    // A snapshot fetched from the leader before the last exit becomes the state now.
    const pending = yield* Effect.tryPromise({ try: () => installPending(dbPath), catch: (cause) => new PendingInstallFailed({ dbPath, cause }) })
    if (pending === "installed") yield* Effect.logInfo("installed a snapshot received from the leader")
    else if (pending !== "none") yield* Effect.logWarning("a pending snapshot did not open; kept the current database").pipe(Effect.annotateLogs({ error: pending.rejected }))
    const snapshots = new SnapshotFiles(dir, dbPath)
    const backend = yield* Effect.acquireRelease(
      Effect.sync(() => LmdbBackend.open(dbPath)),
      // Closing commits what is buffered: a failure there is a defect (the restart re-applies from raft).
      (b) => Effect.promise(() => b.close())
    )
    // The lease table is restored first: the store asks it whether a put's lease exists.
    const leases = LeaseTable.restore(backend.read, unsafeReadConsistentIndex(backend.read))
    const store = KvStore.restore(backend.read, { leaseExists: (id) => leases.has(id) })
    const auth = AuthStore.restore(backend.read)
    const tokens = new AuthTokens(tokenKind, flags.authTokenTtl)
    // etcd's simple token TTL keeper runs every second.
    const sweep = setInterval(() => tokens.sweep(), tokenSweepMs)
    sweep.unref()
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(sweep)))
    // Watch (./events.ts): the committed event stream every watch replica follows.
    const eventsSubject = subjectOf(mvccEvents, at)
    // The trace of the first traced revision of the batch being applied rides on its events
    // frame, so the watch replicas' receipt of it joins that request's trace.
    let eventsTrace = ""
    const eventStream = new EventStream(store, (frame) => {
      publishEndpoint(rpc, mvccEvents, eventsSubject, frame, eventsTrace)
      eventsTrace = ""
    }, {
      member: flags.member, heartbeatMs: eventHeartbeatMs, frameBytes: defaultEventFrameBytes
    })
    const applier = new Applier(backend, store, flags.member, {
      // `to` is the proposal's replyTo: a gateway.result or a lease.result subject of this
      // member; both share kind apply.result and schema ApplyResults, so gatewayResult serves.
      publish: (to, bodies, traceparent) => publishEndpoint(rpc, gatewayResult, to, { results: bodies }, traceparent),
      onEvents: (revision, events) => {
        if (eventsTrace === "") eventsTrace = currentTraceparent()
        eventStream.applied(revision, events)
      },
      onBatchApplied: (term) => eventStream.flush(term, Date.now()),
      fetchEntries: async (from) => {
        return await callEndpoint(rpc, raftEntries, at, { from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: raftCallTimeoutMs })
      },
      log: (level, message, fields) =>
        runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields)))
    }, {
      batchLimit: flags.backendBatchLimit,
      batchIntervalMs: flags.backendBatchInterval,
      compactionBatchLimit: flags.compactionBatchLimit,
      ...injectedApplyFailure(dir)
    }, leases, { store: auth, tokens })
    // Runs before the backend closes: the background compaction stops (it resumes at the next
    // start) and what is buffered is committed.
    yield* Effect.addFinalizer(() => Effect.sync(() => applier.close()))
    yield* Effect.logInfo("mvcc open").pipe(
      Effect.annotateLogs({ revision: store.currentRevision(), appliedIndex: applier.appliedIndex(), compactRevision: store.compactRevision() })
    )
    const resumed = store.pendingCompaction()
    if (resumed !== undefined) {
      yield* Effect.logInfo("resuming scheduled compaction").pipe(Effect.annotateLogs({ compactRevision: resumed }))
    }

    // The FIFO apply scheduler: a bounded queue and one fiber applying in order.
    const queue = yield* Queue.bounded<ApplyBatch | "catch-up">(flags.applyQueue)
    // Frames dropped because the queue was full (repaired from raft); logged at shutdown.
    let droppedFrames = 0
    yield* Effect.addFinalizer(() =>
      Effect.logInfo("mvcc stopping").pipe(Effect.annotateLogs({ ...applier.counters, droppedFrames, commits: backend.commits }))
    )
    /**
     * One item of the apply queue: a batch of committed entries, or a catch-up from raft.
     * Fails with ApplyStepFailed; the caller decides between repairing and fail-stop. Untraced:
     * it runs once per applied batch on the write path, which each proposal's spans cover.
     */
    const applyStep = Effect.fnUntraced(function*(item: ApplyBatch | "catch-up") {
      yield* Effect.tryPromise({
        try: () => (item === "catch-up" ? applier.catchUp(Number.MAX_SAFE_INTEGER) : applier.applyBatch(item)),
        catch: (cause) => new ApplyStepFailed({ cause })
      })
    })
    yield* Queue.take(queue).pipe(
      Effect.flatMap((item) =>
        applyStep(item).pipe(
          Effect.catchTag("ApplyStepFailed", ({ cause: failed }) => {
            if (!(failed instanceof ApplyFailed)) return Effect.logWarning("apply batch failed; will repair from raft", failed)
            // Fail-stop, as etcd panics: memory may hold part of the batch. Exit without the
            // shutdown commit; the restart reopens at the consistent index and re-applies from raft.
            return Effect.logError("apply failed; exiting to restart from the consistent index").pipe(
              Effect.annotateLogs({ index: failed.index, error: failed.message, appliedIndex: store.consistentIndex() }),
              Effect.andThen(Effect.sync(() => process.exit(1)))
            )
          })
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )

    const corruptCheck: CorruptCheckContext = {
      rpc,
      store,
      read: () => backend.read,
      applier,
      subjects: {
        raftStatus: subjectOf(raftStatus, at),
        raftMembers: subjectOf(raftMembers, at),
        peerHashKv: (name) => subjectOf(mvccHashKv, { cluster: flags.cluster, member: name })
      },
      propose: (request) => proposeLocal({ rpc, applier, member: flags.member, subjects: { raftStatus: subjectOf(raftStatus, at), raftPropose: subjectOf(raftPropose, at) } }, request)
    }
    // etcd CheckInitialHashKV: before serving anything; a mismatch stops the process.
    if (flags.experimentalInitialCorruptCheck) yield* runInitialCheck(corruptCheck)

    const opts = endpointOptions("mvcc")
    const lifecycle: Lifecycle = { restarting: false }
    const endpoints = [
      serveEndpoint(nc, mvccApply, at, (req) => {
        // After fetching a snapshot this process only waits to restart on it.
        if (lifecycle.restarting) return
        const batch = req.traceparent === "" ? req.body : { ...req.body, receivedUs: nowUs() }
        if (!Queue.offerUnsafe(queue, batch)) droppedFrames++
      }, opts),
      ...serveReadEndpoints({
        nc, at, backend, store, applier, auth,
        catchUp: () => Queue.offerUnsafe(queue, "catch-up"),
        restarting: () => lifecycle.restarting,
        options: opts
      }),
      serveAuthEndpoint(nc, at, { auth, tokens, waitApplied: (index) => applier.waitApplied(index) }, opts),
      ...serveMaintenanceEndpoints({ nc, rpc, at, backend, dbPath, snapshots, maxSnapshots: flags.maxSnapshots, applier, lifecycle, options: opts })
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => endpoints.forEach((e) => e.stop())))
    const leaseEndpoints = serveLeaseEndpoints({
      nc,
      at,
      leases,
      applier,
      store,
      catchUp: () => Queue.offerUnsafe(queue, "catch-up"),
      options: opts
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => leaseEndpoints.forEach((e) => e.stop())))
    // Watch history reads (./events.ts) and the idle heartbeat of the event stream.
    const history = serveEndpoint(nc, mvccHistory, at, (req) => {
      req.reply(readHistory(store, backend.read, req.body, applier.currentTerm()))
    }, opts)
    const heartbeat = setInterval(() => eventStream.heartbeat(applier.currentTerm(), Date.now()), eventHeartbeatMs)
    yield* Effect.addFinalizer(() => Effect.sync(() => {
      clearInterval(heartbeat)
      history.stop()
    }))
    registerMvccMetrics({ applier, backend, store, queueDepth: () => Queue.sizeUnsafe(queue), droppedFrames: () => droppedFrames })
    addReadinessCheck("apply", () => (lifecycle.restarting ? "restarting on a new backend" : undefined))

    // Catch up at start: entries committed while this process was down.
    Queue.offerUnsafe(queue, "catch-up")

    // etcd monitorKVHash: the leader compares HashKV with its followers every interval.
    if (flags.experimentalCorruptCheckTime > 0) yield* runPeriodicCheck(corruptCheck, flags.experimentalCorruptCheckTime).pipe(Effect.forkScoped)

    if (autoCompaction !== undefined) {
      yield* Effect.logInfo("auto compaction enabled").pipe(Effect.annotateLogs({ ...autoCompaction }))
      yield* runCompactor({
        rpc,
        applier,
        store,
        member: flags.member,
        subjects: {
          raftStatus: subjectOf(raftStatus, at),
          raftPropose: subjectOf(raftPropose, at)
        },
        revisionCheckIntervalMs: flags.autoCompactionCheckIntervalMs
      }, autoCompaction).pipe(Effect.forkScoped)
    }
  })
)

launch("mvcc", flags, MvccLive)
