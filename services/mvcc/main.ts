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
 */
import { Option } from "commander"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { toErrorData, MalformedFrame } from "../../shared/errors.ts"
import type { MvccStatus } from "../../shared/schema.ts"
import {
  gatewayResult, mvccAlarms, mvccApply, mvccChunk, mvccDefragment, mvccEvents, mvccHashKv, mvccHistory, mvccInstall, mvccRange,
  mvccSnapshot, mvccStatus, raftEntries, raftMembers, raftPropose, raftStatus, subjectOf
} from "../../shared/endpoints.ts"
import { durationMs, endpointOptions, launch, memberDir, Nats, parseBool, parseFlags, positiveInt, runDetached } from "../runtime/process.ts"
import { privateDirMode, touchPrivateDir } from "../runtime/private-files.ts"
import { callEndpoint, okOf, publishEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { currentTraceparent, nowUs } from "../runtime/tracing.ts"
import { Applier, ApplyFailed, defaultBatchIntervalMs, defaultBatchLimit, defaultCompactionBatchLimit, waitError } from "./apply.ts"
import { proposeLocal, runCompactor } from "./compactor.ts"
import { type CorruptCheckContext, runInitialCheck, runPeriodicCheck } from "./corrupt-check.ts"
import { parseCompactionRetention, revisionCheckIntervalMs } from "./core/compactor.ts"
import type { ApplyBatch } from "./apply.ts"
import { LmdbBackend } from "./backend-lmdb.ts"
import { hashKv } from "./hash.ts"
import { installPending, installRefusal, SnapshotFiles } from "./snapshot.ts"
import { KvStore } from "./core/store.ts"
import { unsafeReadConsistentIndex } from "./core/backend.ts"
import { serveLeaseEndpoints } from "./lease-endpoints.ts"
import { LeaseTable } from "./lease-table.ts"
import { AuthStore } from "./core/auth-store.ts"
import { AuthTokens, defaultAuthTokenTtlSec, parseAuthToken } from "./auth-tokens.ts"
import { serveAuthEndpoint } from "./auth-endpoint.ts"
import { defaultEventFrameBytes, EventStream, readHistory } from "./events.ts"

interface MvccFlags {
  readonly applyQueue: number
  readonly maxSnapshots: number
  readonly backendBatchLimit: number
  readonly backendBatchInterval: number
  readonly compactionBatchLimit: number
  readonly autoCompactionMode: string
  readonly autoCompactionRetention: string
  readonly autoCompactionCheckIntervalMs: number
  readonly experimentalInitialCorruptCheck: boolean
  readonly experimentalCorruptCheckTime: number
  readonly authToken: string
  readonly authTokenTtl: number
}

/** A duration flag that may be 0 (off): Go duration or ms. */
const checkIntervalMs = (value: string): number => (/^0+(s|ms|m|h)?$/.test(value) ? 0 : durationMs(value))

const flags = parseFlags<MvccFlags>("mvcc", process.argv, (c) =>
  c
    .addOption(new Option("--apply-queue <frames>", "bound of the apply queue, in frames").argParser(positiveInt).default(1024))
    .addOption(new Option("--max-snapshots <n>", "snapshot files of the state to keep").env("NATCD_MAX_SNAPSHOTS").argParser(positiveInt).default(5))
    .addOption(
      new Option("--backend-batch-limit <writes>", "commit the backend after this many writes (etcd: 10000)")
        .env("NATCD_BACKEND_BATCH_LIMIT").argParser(positiveInt).default(defaultBatchLimit)
    )
    .addOption(
      new Option("--backend-batch-interval <duration>", "commit the backend at most this long after a write (Go duration or ms)")
        .env("NATCD_BACKEND_BATCH_INTERVAL").argParser(durationMs).default(defaultBatchIntervalMs)
    )
    .addOption(
      new Option("--compaction-batch-limit <records>", "records deleted per background compaction batch, one LMDB transaction each (etcd --experimental-compaction-batch-limit: 1000)")
        .env("NATCD_COMPACTION_BATCH_LIMIT").argParser(positiveInt).default(defaultCompactionBatchLimit)
    )
    .addOption(
      new Option("--auto-compaction-mode <mode>", "periodic or revision (etcd)")
        .env("NATCD_AUTO_COMPACTION_MODE").choices(["periodic", "revision"]).default("periodic")
    )
    .addOption(
      new Option("--auto-compaction-retention <retention>", "periodic: hours or a Go duration; revision: revisions; 0 = off")
        .env("NATCD_AUTO_COMPACTION_RETENTION").default("0")
    )
    .addOption(
      new Option("--auto-compaction-check-interval-ms <ms>", "revision mode's check interval (etcd: 5 min; a test knob)")
        .env("NATCD_AUTO_COMPACTION_CHECK_INTERVAL_MS").argParser(positiveInt).default(revisionCheckIntervalMs).hideHelp()
    )
    // etcd's corruption check (./corrupt-check.ts); both off by default, as in etcd 3.4 and 3.5.
    .addOption(
      new Option("--experimental-initial-corrupt-check [bool]", "compare HashKV with the peers before serving; exit on a mismatch (etcd)")
        .env("NATCD_INITIAL_CORRUPT_CHECK").argParser(parseBool).default(false)
    )
    .addOption(
      new Option("--experimental-corrupt-check-time <duration>", "leader's HashKV comparison interval (Go duration or ms); 0 = off (etcd)")
        .env("NATCD_CORRUPT_CHECK_TIME").argParser(checkIntervalMs).default(0)
    )
    // etcd's auth token options (./auth-tokens.ts).
    .addOption(
      new Option("--auth-token <type>", "simple, or jwt,pub-key=<file>,priv-key=<file>,sign-method=<RS256|ES256|…>[,ttl=<duration>] (etcd)")
        .env("NATCD_AUTH_TOKEN").default("simple")
    )
    .addOption(
      new Option("--auth-token-ttl <seconds>", "lifetime of a simple token after its last use (etcd: 300)")
        .env("NATCD_AUTH_TOKEN_TTL").argParser(positiveInt).default(defaultAuthTokenTtlSec)
    )
)

const tokenKind = (() => {
  try {
    return parseAuthToken(flags.authToken)
  } catch (e) {
    console.error(`natcd mvcc: --auth-token: ${(e as Error).message}`)
    process.exit(2)
  }
})()

const autoCompaction = parseCompactionRetention(flags.autoCompactionMode, flags.autoCompactionRetention)
if (autoCompaction !== undefined && "error" in autoCompaction) {
  console.error(`natcd mvcc: ${autoCompaction.error}`)
  process.exit(2)
}

/**
 * Test builds only: `NATCD_TEST_FAIL_APPLY_AT_INDEX=<n>` makes the apply of entry n fail once
 * per data directory (a marker file under `dir` records that it did), to show that a failed
 * apply stops the process and loses nothing. Unset in production: no hook.
 */
const injectedApplyFailure = (dir: string): { injectFailure?: (index: number) => boolean } => {
  const at = Number(process.env.NATCD_TEST_FAIL_APPLY_AT_INDEX ?? "")
  if (!Number.isSafeInteger(at) || at <= 0) return {}
  const marker = join(dir, "test-apply-failure-injected")
  return {
    injectFailure: (index) => {
      if (index !== at || existsSync(marker)) return false
      writeFileSync(marker, `${index}\n`, { mode: 0o600 })
      return true
    }
  }
}

/** How long a read may wait for its index before the service fetches missing entries itself. */
const lagCheckMs = 100

/**
 * Largest sum of response sizes in one range reply with several results (nats-server's
 * max_payload is 8 MiB); later results come back as `retry` and are asked for alone.
 */
const maxRangeReplyBytes = 4 * 1024 * 1024

/** About the encoded size of a Range response: its keys and values plus per-record overhead. */
const responseBytes = (response: { readonly kvs: ReadonlyArray<{ readonly key: Uint8Array; readonly value: Uint8Array }> }): number =>
  response.kvs.reduce((sum, kv) => sum + kv.key.length + kv.value.length + 48, 64)

/** The event stream's idle heartbeat period, in ms (how soon a watch replica notices a lost last frame). */
const eventHeartbeatMs = 500

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
    const pending = yield* Effect.promise(() => installPending(dbPath))
    if (pending === "installed") yield* Effect.logInfo("installed a snapshot received from the leader")
    else if (pending !== "none") yield* Effect.logWarning("a pending snapshot did not open; kept the current database").pipe(Effect.annotateLogs({ error: pending.rejected }))
    const snapshots = new SnapshotFiles(dir, dbPath)
    const backend = yield* Effect.acquireRelease(
      Effect.sync(() => LmdbBackend.open(dbPath)),
      (b) => Effect.promise(() => b.close())
    )
    // The lease table is restored first: the store asks it whether a put's lease exists.
    const leases = LeaseTable.restore(backend.read, unsafeReadConsistentIndex(backend.read))
    const store = KvStore.restore(backend.read, { leaseExists: (id) => leases.has(id) })
    const auth = AuthStore.restore(backend.read)
    const tokens = new AuthTokens(tokenKind, flags.authTokenTtl)
    // etcd's simple token TTL keeper runs every second.
    const sweep = setInterval(() => tokens.sweep(), 1000)
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
        return await callEndpoint(rpc, raftEntries, at, { from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: 2000 })
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
    yield* Queue.take(queue).pipe(
      Effect.flatMap((item) =>
        Effect.promise(() => (item === "catch-up" ? applier.catchUp(Number.MAX_SAFE_INTEGER) : applier.applyBatch(item))).pipe(
          Effect.catchCause((cause) => {
            const failed = Cause.squash(cause)
            if (!(failed instanceof ApplyFailed)) return Effect.logWarning("apply batch failed; will repair from raft", cause)
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
    let restarting = false
    let installing = false
    const endpoints = [
      serveEndpoint(nc, mvccApply, at, (req) => {
        // After fetching a snapshot this process only waits to restart on it.
        if (restarting) return
        const batch = req.traceparent === "" ? req.body : { ...req.body, receivedUs: nowUs() }
        if (!Queue.offerUnsafe(queue, batch)) droppedFrames++
      }, opts),
      serveEndpoint(nc, mvccRange, at, (req) => {
        const { requests } = req.body
        const minAppliedIndex = requests.reduce((max, r) => Math.max(max, r.minAppliedIndex), 0)
        // One reply for the batch, once the member applied what its most recent read needs.
        const serveRanges = () => {
          let bytes = 0
          const results = requests.map(({ request, authInfo }, i) => {
            // etcd doSerialize: the reader's READ permission on the range, at the auth revision it was authorised at.
            const denied = auth.checkRange(authInfo, request, "READ")
            if (denied !== undefined) return denied
            let r
            try {
              r = store.range(backend.read, request)
            } catch (e) {
              return { err: toErrorData(new MalformedFrame({ reason: `range failed: ${String(e)}` })) }
            }
            if ("err" in r) return { err: r.err }
            bytes += responseBytes(r.ok)
            if (i > 0 && bytes > maxRangeReplyBytes) return { retry: true as const }
            return { ok: { response: r.ok, revision: r.revision, term: applier.currentTerm() } }
          })
          req.reply({ ok: { results } })
        }
        const wait = applier.waitApplied(minAppliedIndex)
        if (wait === undefined) return serveRanges()
        wait.then((outcome) => {
          if (outcome === "applied") return serveRanges()
          // Each read of the batch fails alike.
          const err = waitError(outcome)
          req.reply({ ok: { results: requests.map(() => ({ err })) } })
        })
        // If the entries the read needs were lost in transit, fetch them rather than wait.
        setTimeout(() => {
          if (applier.appliedIndex() < minAppliedIndex) Queue.offerUnsafe(queue, "catch-up")
        }, lagCheckMs)
      }, opts),
      serveAuthEndpoint(nc, at, { auth, tokens, waitApplied: (index) => applier.waitApplied(index) }, opts),
      serveEndpoint(nc, mvccStatus, at, (req) => {
        // A process about to restart on a new backend does not answer: a caller waiting for the
        // mvcc service to serve again (the gateway after a defragment) waits for the new one.
        if (restarting) return
        const size = backend.size()
        const status: typeof MvccStatus.Type = {
          appliedIndex: applier.appliedIndex(),
          revision: store.currentRevision(),
          compactRevision: store.compactRevision(),
          dbSizeBytes: size.fileBytes,
          dbSizeInUseBytes: size.inUseBytes
        }
        req.reply(status)
      }, opts),
      serveEndpoint(nc, mvccAlarms, at, (req) => {
        req.reply({ alarms: store.activeAlarms() })
      }, opts),
      serveEndpoint(nc, mvccHashKv, at, (req) => {
        const current = store.currentRevision()
        const revision = req.body.revision <= 0 ? current : req.body.revision
        const compactRevision = store.compactRevision()
        if (revision > current) return req.reply({ err: { _tag: "FutureRevision", requestedRevision: revision, currentRevision: current } })
        if (revision < compactRevision) return req.reply({ err: { _tag: "Compacted", requestedRevision: revision, compactRevision } })
        const hash = hashKv(backend.read, revision, (k, v) => store.isLiveRecord(k, v))
        req.reply({ ok: { hash, compactRevision, hashRevision: revision, revision: current } })
      }, opts),
      serveEndpoint(nc, mvccSnapshot, at, (req) => {
        snapshots.create(() => applier.commit(), () => applier.appliedIndex(), (path) => backend.backup(path), flags.maxSnapshots).then(
          (info) => req.reply({ ok: info }),
          (e) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `snapshot failed: ${String(e)}` })) })
        )
      }, opts),
      serveEndpoint(nc, mvccChunk, at, (req) => {
        snapshots.readChunk(req.body.file, req.body.offset, req.body.length).then(
          (data) => req.reply({ ok: { data } }),
          (e) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `chunk failed: ${String(e)}` })) })
        )
      }, opts),
      serveEndpoint(nc, mvccDefragment, at, (req) => {
        // etcd rewrites the bbolt file; natcd writes a compacted LMDB copy (everything committed
        // first) and restarts on it, as after installing a snapshot. Entries applied meanwhile
        // are applied again from raft after the restart.
        if (restarting) return req.reply({ err: toErrorData(new MalformedFrame({ reason: "restarting" })) })
        // A compaction's dropped records still waiting for deletion would go into the copy.
        try {
          applier.finishCompaction()
        } catch (e) {
          return req.reply({ err: toErrorData(new MalformedFrame({ reason: `defragment failed: ${String(e)}` })) })
        }
        applier.commit()
        restarting = true
        backend.backup(`${dbPath}.install`, true).then(
          () => {
            req.reply({ ok: { sizeBytes: statSync(`${dbPath}.install`).size } })
            runDetached(Effect.logInfo("defragmented; restarting on the compacted copy"))
            setTimeout(() => process.kill(process.pid, "SIGTERM"), 100)
          },
          (e) => {
            restarting = false
            req.reply({ err: toErrorData(new MalformedFrame({ reason: `defragment failed: ${String(e)}` })) })
          }
        )
      }, opts),
      serveEndpoint(nc, mvccInstall, at, (req) => {
        const { fromMember, snapshot } = req.body
        const refuse = (reason: string) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `install refused: ${reason}` })) })
        if (restarting) return refuse("restarting")
        if (installing) return refuse("another install is under way")
        installing = true
        // Only a snapshot of a current member, above what is applied, is fetched (./snapshot.ts
        // installRefusal); the fetched file must match its size, SHA-256 and index before it is
        // put in place. On any failure the current database stays and the error is returned.
        const install = async () => {
          const { members, leader } = await callEndpoint(rpc, raftMembers, at, {}, { timeoutMs: 2000 })
          const refusal = installRefusal(fromMember, snapshot, { cluster: flags.cluster, members, leader, appliedIndex: applier.appliedIndex() })
          if (refusal !== undefined) throw new Error(refusal)
          const source = subjectOf(mvccChunk, { cluster: flags.cluster, member: fromMember })
          await snapshots.fetch(snapshot, async (offset, length) => {
            return okOf(await callEndpoint(rpc, mvccChunk, source, { file: snapshot.file, offset, length }, { timeoutMs: 30_000, retryAfterMs: 2000 })).data
          })
        }
        install().then(
          () => {
            // The fetched state is in place for the next start: answer, then restart on it.
            restarting = true
            req.reply({ ok: { appliedIndex: snapshot.index } })
            runDetached(Effect.logInfo("snapshot fetched; restarting on it").pipe(Effect.annotateLogs({ index: snapshot.index, sizeBytes: snapshot.sizeBytes, fromMember })))
            setTimeout(() => process.kill(process.pid, "SIGTERM"), 100)
          },
          (e) => {
            runDetached(Effect.logWarning("snapshot install refused or failed; kept the current database").pipe(Effect.annotateLogs({ fromMember, index: snapshot.index, error: String(e) })))
            refuse(String((e as Error)?.message ?? e))
          }
        ).finally(() => (installing = false))
      }, opts)
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
    // Metrics (etcd server/storage/mvcc/metrics.go, server/etcdserver/metrics.go) and readiness.
    gaugeFrom("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", () => applier.appliedIndex())
    gaugeFrom("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", () => backend.size().fileBytes)
    gaugeFrom("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", () => backend.size().inUseBytes)
    gaugeFrom("etcd_debugging_mvcc_keys_total", "Total number of keys.", () => store.unsafeIndex().size)
    gaugeFrom("etcd_mvcc_current_revision", "The current revision of the store.", () => store.currentRevision())
    gaugeFrom("etcd_mvcc_compact_revision", "The revision of the last compaction in store.", () => store.compactRevision())
    gaugeFrom("natcd_mvcc_apply_queue_depth", "Frames of committed entries waiting in the FIFO apply queue.", () => Queue.sizeUnsafe(queue))
    counterFrom("natcd_mvcc_apply_queue_dropped_total", "Apply frames dropped because the queue was full (repaired from raft).", () => droppedFrames)
    counterFrom("natcd_mvcc_apply_gaps_repaired_total", "Times missing committed entries were fetched from raft.", () => applier.counters.gapsRepaired)
    counterFrom("natcd_mvcc_duplicate_proposals_total", "Retried proposals skipped because their request id was applied before.", () => applier.counters.duplicates)
    counterFrom("natcd_mvcc_backend_commits_total", "LMDB transactions committed.", () => backend.commits)
    counterFrom("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted.", () => applier.counters.compactedKeys)
    gaugeFrom("natcd_mvcc_range_waiters", "Reads waiting for the applied index they need.", () => applier.waitingReaders())
    counterFrom("natcd_mvcc_range_wait_timeouts_total", "Reads that timed out waiting for their applied index (RequestTimeout).", () => applier.counters.waitTimeouts)
    counterFrom("natcd_mvcc_range_wait_refusals_total", "Reads refused because too many were waiting (TooManyRequests).", () => applier.counters.waitRefusals)
    addReadinessCheck("apply", () => (restarting ? "restarting on a new backend" : undefined))

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
