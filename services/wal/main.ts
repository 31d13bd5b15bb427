/**
 * The wal process: a member's write-ahead log, served over NATS to its raft service.
 *
 *   node services/wal/main.ts --member=m1 [--wal-segment-bytes=67108864] (+ the common flags)
 *
 * Endpoints (shared/subjects.ts): `wal.append` persists a Ready's hard state and entries and
 * replies only after fdatasync (concurrent appends share one sync: group commit in ./files.ts);
 * `wal.load` returns the log's contents page by page so raft can restart from it. The log lives
 * in <data-dir>/<member>/wal.
 */
import { Option } from "commander"
import { Effect, Layer } from "effect"
import { join } from "node:path"
import { toErrorData, Stopped } from "../../shared/errors.ts"
import { packValue } from "../../shared/frame.ts"
import { WalAppendBody, WalLoadBody } from "../../shared/schema.ts"
import { subject } from "../../shared/subjects.ts"
import { endpointOptions, launch, memberDir, Nats, parseFlags, positiveInt } from "../runtime/process.ts"
import { serve } from "../runtime/rpc.ts"
import { Wal } from "./files.ts"
import { LogMirror } from "./log-mirror.ts"

const flags = parseFlags<{ walSegmentBytes: number }>("wal", process.argv, (c) =>
  c.addOption(new Option("--wal-segment-bytes <n>", "WAL segment file size").argParser(positiveInt).default(64 * 1024 * 1024))
)

const WalLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc } = yield* Nats
    const dir = join(memberDir(flags), "wal")
    const { wal, contents } = yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        Wal.open(dir, packValue({ cluster: flags.cluster, member: flags.member }), { segmentBytes: flags.walSegmentBytes })
      ).pipe(Effect.orDie),
      ({ wal }) => Effect.promise(() => wal.close())
    )
    if (contents.repaired !== undefined) {
      yield* Effect.logWarning("repaired a torn WAL tail").pipe(Effect.annotateLogs({ ...contents.repaired }))
    }
    const mirror = new LogMirror(contents.hardState, contents.entries, contents.metadata)
    yield* Effect.logInfo("WAL open").pipe(
      Effect.annotateLogs({ dir, entries: contents.entries.length, lastIndex: mirror.lastIndex(), term: contents.hardState.term })
    )
    const at = { cluster: flags.cluster, member: flags.member, service: "wal" as const }
    let closing = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closing = true)))

    const lastSeq = new Map<string, number>()
    // Settles after the newest save's fdatasync; saves settle in call order.
    let latestSave: Promise<void> = Promise.resolve()
    const opts = endpointOptions("wal")
    const append = serve(nc, subject({ ...at, endpoint: "append" }), "wal.append", WalAppendBody, (req) => {
      const { writer, seq, hardState, entries } = req.body
      if (closing) return req.reply("wal.append.reply", { err: toErrorData(new Stopped()) })
      if (seq <= (lastSeq.get(writer) ?? 0)) {
        // A duplicate or late retry of an append already written: write nothing, acknowledge
        // once everything written so far is synced (the original may still be in its fsync).
        latestSave.then(() => req.reply("wal.append.reply", { ok: { lastIndex: mirror.lastIndex() } }))
        return
      }
      lastSeq.set(writer, seq)
      mirror.save(hardState, entries)
      latestSave = wal.save(hardState, entries)
      latestSave.then(
        () => req.reply("wal.append.reply", { ok: { lastIndex: mirror.lastIndex() } }),
        (e) => {
          // A failed write or fsync leaves the log in an unknown state: stop, as etcd does
          // (it panics on WAL write errors); the supervisor restarts us and open() repairs.
          console.error(JSON.stringify({ level: "FATAL", service: "wal", member: flags.member, message: "WAL write failed", error: String(e) }))
          process.exit(1)
        }
      )
    }, opts)
    const load = serve(nc, subject({ ...at, endpoint: "load" }), "wal.load", WalLoadBody, (req) => {
      req.reply("wal.load.reply", mirror.page(req.body.fromIndex, req.body.maxBytes))
    }, opts)
    yield* Effect.addFinalizer(() => Effect.sync(() => { append.stop(); load.stop() }))
  })
)

launch("wal", flags, WalLive)
