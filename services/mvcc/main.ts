/**
 * The mvcc process: a member's key-value state machine on LMDB.
 *
 *   node services/mvcc/main.ts --member=m1 [--apply-queue=1024] (+ the common flags)
 *
 * Committed entries arrive on `mvcc.apply` and go into a bounded FIFO queue; exactly one fiber
 * takes from it and applies batches in raft index order (./apply.ts), as etcd's FIFO scheduler
 * does. A full queue drops the frame (counted): the gap is repaired from the raft service, so
 * the bound costs a re-fetch, never a lost entry. `mvcc.range` serves reads once the applied
 * index reaches the request's `minAppliedIndex` (the ReadIndex of a linearizable read);
 * `mvcc.status` reports applied index, revision and db size.
 */
import { Option } from "commander"
import { Effect, Layer, Queue, Schema } from "effect"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { toErrorData, MalformedFrame } from "../../shared/errors.ts"
import { ApplyBody, EntriesReply, RangeBody } from "../../shared/schema.ts"
import type { MvccStatus } from "../../shared/schema.ts"
import { subject } from "../../shared/subjects.ts"
import { endpointOptions, launch, memberDir, Nats, parseFlags, positiveInt } from "../runtime/process.ts"
import { serve } from "../runtime/rpc.ts"
import { Applier } from "./apply.ts"
import type { ApplyBatch } from "./apply.ts"
import { LmdbBackend } from "./backend-lmdb.ts"
import { KvStore } from "./core/store.ts"

const flags = parseFlags<{ applyQueue: number }>("mvcc", process.argv, (c) =>
  c.addOption(new Option("--apply-queue <frames>", "bound of the apply queue, in frames").argParser(positiveInt).default(1024))
)

/** How long a read may wait for its index before the service fetches missing entries itself. */
const lagCheckMs = 100

const MvccLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const dir = join(memberDir(flags), "mvcc")
    mkdirSync(dir, { recursive: true })
    const backend = yield* Effect.acquireRelease(
      Effect.sync(() => LmdbBackend.open(join(dir, "kv.mdb"))),
      (b) => Effect.promise(() => b.close())
    )
    const store = KvStore.restore(backend.read)
    const raftEntries = subject({ ...at, service: "raft", endpoint: "entries" })
    const applier = new Applier(backend, store, flags.member, {
      publish: (to, body, traceparent) => rpc.publish(to, "apply.result", body, traceparent),
      fetchEntries: async (from) => {
        const frame = await rpc.call(raftEntries, "entries", { from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: 2000 })
        return Schema.decodeUnknownSync(EntriesReply)(frame.body)
      },
      log: (level, message, fields) =>
        Effect.runFork((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields)))
    })
    yield* Effect.logInfo("mvcc open").pipe(
      Effect.annotateLogs({ revision: store.currentRevision(), appliedIndex: applier.appliedIndex(), compactRevision: store.compactRevision() })
    )

    // The FIFO apply scheduler: a bounded queue and one fiber applying in order.
    const queue = yield* Queue.bounded<ApplyBatch | "catch-up">(flags.applyQueue)
    // Frames dropped because the queue was full (repaired from raft); logged at shutdown.
    let droppedFrames = 0
    yield* Effect.addFinalizer(() =>
      Effect.logInfo("mvcc stopping").pipe(Effect.annotateLogs({ ...applier.counters, droppedFrames }))
    )
    yield* Queue.take(queue).pipe(
      Effect.flatMap((item) =>
        Effect.promise(() => (item === "catch-up" ? applier.catchUp(Number.MAX_SAFE_INTEGER) : applier.applyBatch(item))).pipe(
          Effect.catchCause((cause) => Effect.logWarning("apply batch failed; will repair from raft", cause))
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )

    const opts = endpointOptions("mvcc")
    const endpoints = [
      serve(nc, subject({ ...at, service: "mvcc", endpoint: "apply" }), "apply", ApplyBody, (req) => {
        if (!Queue.offerUnsafe(queue, req.body)) droppedFrames++
      }, opts),
      serve(nc, subject({ ...at, service: "mvcc", endpoint: "range" }), "range", RangeBody, (req) => {
        const { request, minAppliedIndex } = req.body
        const serveRange = () => {
          let r
          try {
            r = store.range(backend.read, request)
          } catch (e) {
            return req.reply("range.reply", { err: toErrorData(new MalformedFrame({ reason: `range failed: ${String(e)}` })) })
          }
          if ("err" in r) req.reply("range.reply", { err: r.err })
          else req.reply("range.reply", { ok: { response: r.ok, revision: r.revision, term: applier.currentTerm() } })
        }
        const wait = applier.waitApplied(minAppliedIndex)
        if (wait === undefined) return serveRange()
        wait.then(serveRange)
        // If the entries the read needs were lost in transit, fetch them rather than wait.
        setTimeout(() => {
          if (applier.appliedIndex() < minAppliedIndex) Queue.offerUnsafe(queue, "catch-up")
        }, lagCheckMs)
      }, opts),
      serve(nc, subject({ ...at, service: "mvcc", endpoint: "status" }), "mvcc.status", Schema.Struct({}), (req) => {
        const size = backend.size()
        const status: typeof MvccStatus.Encoded = {
          appliedIndex: applier.appliedIndex(),
          revision: store.currentRevision(),
          compactRevision: store.compactRevision(),
          dbSizeBytes: size.fileBytes,
          dbSizeInUseBytes: size.inUseBytes
        }
        req.reply("mvcc.status.reply", status)
      }, opts)
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => endpoints.forEach((e) => e.stop())))
    // Catch up at start: entries committed while this process was down.
    Queue.offerUnsafe(queue, "catch-up")

  })
)

launch("mvcc", flags, MvccLive)
