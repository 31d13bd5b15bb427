/**
 * The wal process: a member's write-ahead log, served over NATS to its raft service.
 *
 *   node services/wal/main.ts --member=m1 [--wal-segment-bytes=67108864] [--max-snapshots=5]
 *     (+ the common flags)
 *
 * Endpoints (shared/subjects.ts): `wal.append` persists a Ready's hard state and entries and
 * replies only after fdatasync (concurrent appends share one sync: group commit in ./files.ts);
 * `wal.snapshot` saves a raft snapshot in etcd's order (snapshot file, then its marker in the
 * WAL, sync, then release the WAL segments and old snapshot files it makes unnecessary);
 * `wal.load` returns the newest snapshot and the log after it, page by page, so raft can restart
 * from them: the log is read back from the segment files when a load starts (raft's in-memory
 * log is the member's only in-memory copy). The log lives in <data-dir>/<member>/wal,
 * snapshots in <data-dir>/<member>/snap.
 */
import { Option } from "commander"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { MalformedFrame, toErrorData, Stopped } from "../../shared/errors.ts"
import { packValue } from "../../shared/frame.ts"
import { Index } from "../../shared/ids.ts"
import { walAppend, walLoad, walSnapshot } from "../../shared/endpoints.ts"
import { endpointOptions, launch, memberDir, Nats, parseFlags, positiveInt } from "../runtime/process.ts"
import { privateDirMode, touchPrivateDir } from "../runtime/private-files.ts"
import { serveEndpoint } from "../runtime/rpc.ts"
import { counter, diskBuckets, gaugeFrom, histogram } from "../runtime/metrics.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { endSpan, startSpan } from "../runtime/tracing.ts"
import { AppendDedup } from "./append-dedup.ts"
import { Wal, type WalLog } from "./files.ts"
import { LogBounds, pageOf } from "./log-bounds.ts"
import { loadSnap, purgeSnaps, saveSnap } from "./snap-files.ts"
import type { SnapFile } from "./snap-files.ts"

const flags = parseFlags<{ walSegmentBytes: number; maxSnapshots: number }>("wal", process.argv, (c) =>
  c
    .addOption(new Option("--wal-segment-bytes <n>", "WAL segment file size").env("NATCD_WAL_SEGMENT_BYTES").argParser(positiveInt).default(64 * 1024 * 1024))
    .addOption(new Option("--max-snapshots <n>", "raft snapshot files to keep (etcd --max-snapshots)").env("NATCD_MAX_SNAPSHOTS").argParser(positiveInt).default(5))
)

/** Writers (raft service instances) whose last appended seq is remembered (./append-dedup.ts). */
const maxWritersTracked = 1024

/**
 * How long `wal.load` keeps the log it read back for the pages after the first, in ms: a raft
 * service pages through its whole log at start, each page one call (retried on loss).
 */
const loadViewMs = 30_000

/** An append refused before anything was written (the caller's entries leave a hole). */
class AppendRejected extends Error {}

/** The WAL directory or the snapshot it starts from could not be read (`path`; `cause` as thrown): the process cannot start. */
class WalOpenFailed extends Data.TaggedError("WalOpenFailed")<{ readonly path: string; readonly cause: unknown }> {}

/**
 * Opens the WAL in `dir` (repairing a torn tail, logged) and reads the snapshot file it starts
 * from out of `snapDir` (created if missing; the file must be there and intact); the WAL is
 * closed when the scope closes. Fails with WalOpenFailed (e.g. the lock is held, a damaged
 * record or snapshot file).
 */
const openWal = Effect.fn("natcd/wal/open")(function*(dir: string, snapDir: string) {
  const { wal, contents } = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => Wal.open(dir, packValue({ cluster: flags.cluster, member: flags.member }), { segmentBytes: flags.walSegmentBytes }),
      catch: (cause) => new WalOpenFailed({ path: dir, cause })
    }),
    // Close finishes the calls already made and releases the lock; a failure there is a defect.
    ({ wal }) => Effect.promise(() => wal.close())
  )
  if (contents.repaired !== undefined) {
    yield* Effect.logWarning("repaired a torn WAL tail").pipe(Effect.annotateLogs({ ...contents.repaired }))
  }
  mkdirSync(snapDir, { recursive: true, mode: privateDirMode })
  const snap = contents.snapshot
  const snapshot: SnapFile | undefined = snap === undefined
    ? undefined
    : yield* Effect.tryPromise({ try: () => loadSnap(snapDir, snap.term, snap.index), catch: (cause) => new WalOpenFailed({ path: snapDir, cause }) })
  return { wal, contents, snapshot }
})

const WalLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc } = yield* Nats
    // The member directory is private (0700), as etcd's TouchDirAll checks at start.
    const tightened = touchPrivateDir(memberDir(flags))
    if (tightened.previousMode !== undefined) {
      yield* Effect.logWarning("member directory was not private; set it to 0700").pipe(
        Effect.annotateLogs({ dir: memberDir(flags), previousMode: tightened.previousMode.toString(8) })
      )
    }
    const dir = join(memberDir(flags), "wal")
    const snapDir = join(memberDir(flags), "snap")
    const { wal, contents, snapshot: opened } = yield* openWal(dir, snapDir)
    let snapshot: SnapFile | undefined = opened
    // Only the log's bounds stay in memory; wal.load reads the entries back from the files.
    const bounds = new LogBounds(contents.hardState, contents.entries)
    const replayedEntries = contents.entries.length
    // `contents` stays reachable until shutdown (openWal's release step keeps what was
    // acquired), so it must not keep the replayed entries alive.
    contents.entries = []
    yield* Effect.logInfo("WAL open").pipe(
      Effect.annotateLogs({ dir, entries: replayedEntries, lastIndex: bounds.lastIndex(), term: contents.hardState.term })
    )
    const at = { cluster: flags.cluster, member: flags.member, service: "wal" as const }
    let closing = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closing = true)))

    // Metrics (etcd server/storage/wal/metrics.go) and the group of the last commit, for spans.
    const fsyncSeconds = histogram({ name: "etcd_disk_wal_fsync_duration_seconds", help: "The latency distributions of fsync called by WAL.", buckets: diskBuckets })
    const writeBytes = counter({ name: "etcd_disk_wal_write_bytes_total", help: "Total number of bytes written in WAL." })
    const groupSize = histogram({ name: "natcd_wal_group_saves", help: "Appends committed together by one WAL group commit (one fsync).", buckets: [1, 2, 4, 8, 16, 32, 64, 128] })
    let lastGroup = { saves: 0, records: 0, bytes: 0, syncSeconds: 0 }
    wal.onGroup = (g) => {
      lastGroup = g
      fsyncSeconds.observe(g.syncSeconds)
      writeBytes.inc(g.bytes)
      groupSize.observe(g.saves)
    }
    gaugeFrom("natcd_wal_last_index", "The last raft index in the WAL.", () => bounds.lastIndex())
    gaugeFrom("natcd_wal_segments", "WAL segment files on disk.", () => wal.stats().segments)
    addReadinessCheck("wal", () => (closing ? "closing" : undefined))

    const fatal = (message: string) => (e: unknown): void => {
      // The log on disk is in an unknown state (a failed write or fsync) or cannot be read back
      // as written: stop, as etcd does (it panics on WAL errors); the supervisor restarts us
      // and open() repairs or refuses.
      console.error(JSON.stringify({ level: "FATAL", service: "wal", member: flags.member, message, error: String(e) }))
      process.exit(1)
    }

    // Duplicate detection of retried appends (./append-dedup.ts): a seq counts as written only
    // after its save and fdatasync succeeded; a retry during the write waits for it.
    const dedup = new AppendDedup(maxWritersTracked)
    // Settles after the newest save's fdatasync; saves settle in call order.
    let latestSave: Promise<void> = Promise.resolve()
    const opts = endpointOptions("wal")
    const append = serveEndpoint(nc, walAppend, at, (req) => {
      const { writer, seq, entries } = req.body
      if (closing) return req.reply({ err: toErrorData(new Stopped()) })
      let span: ReturnType<typeof startSpan> | undefined
      const write = (): Promise<void> => {
        // Decided at write time: a retry that waited for an earlier write sees its hard state.
        const hardState = req.body.hardState !== undefined && bounds.isStale(req.body.hardState) ? undefined : req.body.hardState
        try {
          bounds.save(hardState, entries)
        } catch (e) {
          // Nothing was written (a hole in the caller's log): refuse this append only.
          throw new AppendRejected(String(e))
        }
        // The write and fdatasync of this append's group commit (batch size in its attributes).
        span = req.traceparent === "" ? undefined : startSpan("wal.fsync", req.traceparent, { entries: entries.length })
        latestSave = wal.save(hardState, entries)
        return latestSave
      }
      dedup.append(writer, seq, write).then(
        (outcome) => {
          if (outcome === "written") endSpan(span, { batchSaves: lastGroup.saves, batchRecords: lastGroup.records, batchBytes: lastGroup.bytes, fsyncMs: Math.round(lastGroup.syncSeconds * 1e6) / 1000 })
          req.reply({ ok: { lastIndex: bounds.lastIndex() } })
        },
        (e) => {
          if (e instanceof AppendRejected) return req.reply({ err: toErrorData(new MalformedFrame({ reason: e.message })) })
          fatal("WAL write failed")(e)
        }
      )
    }, opts)
    // Snapshots are saved and the log read back one at a time, in arrival order: a read never
    // meets a segment being released, and sees the snapshot file its marker names.
    let fileChain: Promise<unknown> = Promise.resolve()

    /**
     * wal.load's copy of the log, read back from the files when a load starts (a page at or
     * before the copy's first entry, or no copy) and kept for the pages after it; dropped after
     * the last page or loadViewMs. Bound: one copy of the log after the last snapshot.
     */
    let view: { readonly log: WalLog; readonly snapshot: SnapFile | undefined; readonly timer: NodeJS.Timeout } | undefined
    const dropView = () => {
      if (view !== undefined) clearTimeout(view.timer)
      view = undefined
    }
    const readView = () => {
      const read = fileChain.then(async () => {
        // Every append received before the load is in the files once its group is synced.
        await latestSave
        const log = await wal.readBack()
        dropView()
        const timer = setTimeout(dropView, loadViewMs)
        timer.unref()
        view = { log, snapshot, timer }
        return view
      })
      fileChain = read.catch(fatal("reading the WAL back failed"))
      return read
    }
    const load = serveEndpoint(nc, walLoad, at, (req) => {
      const { fromIndex, maxBytes } = req.body
      const first = view?.log.entries[0]?.index
      const got = view !== undefined && first !== undefined && fromIndex > first ? Promise.resolve(view) : readView()
      got.then((v) => {
        const page = pageOf(v.log.entries, fromIndex, maxBytes)
        if (!page.more && view === v) dropView()
        req.reply({
          metadata: v.log.metadata, hardState: v.log.hardState, entries: page.entries, more: page.more,
          ...(v.snapshot === undefined ? {} : { snapshot: v.snapshot })
        })
      }, () => undefined)
    }, opts)
    const saveSnapshot = serveEndpoint(nc, walSnapshot, at, (req) => {
      const snap = req.body.snapshot
      fileChain = fileChain.then(async () => {
        if (snapshot !== undefined && snap.metadata.index <= snapshot.metadata.index) {
          return req.reply({ ok: { releasedSegments: 0 } })
        }
        await latestSave
        await saveSnap(snapDir, snap)
        await wal.saveSnapshot(snap.metadata)
        snapshot = snap
        bounds.compactTo(snap.metadata.index)
        const released = await wal.releaseTo(Index(snap.metadata.index))
        await purgeSnaps(snapDir, flags.maxSnapshots)
        req.reply({ ok: { releasedSegments: released.length } })
      }).catch(fatal("saving a snapshot failed"))
    }, opts)
    yield* Effect.addFinalizer(() => Effect.sync(() => { append.stop(); load.stop(); saveSnapshot.stop(); dropView() }))
  })
)

launch("wal", flags, WalLive)
