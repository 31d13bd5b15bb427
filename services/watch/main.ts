/**
 * The watch process: one replica of the watch service, which fans the cluster's committed
 * events out to watch streams. Replicas belong to no member and share nothing: run one or many.
 *
 *   node services/watch/main.ts --replica=w1 [--progress-notify-interval=10m]
 *     [--window-bytes=4194304] [--unacked-budget-bytes=268435456] [--session-timeout-ms=15000]
 *     [--drain-timeout-ms=4000] (+ --cluster, --nats, --log-level)
 *
 * What it does (the pure part is ./core/hub.ts):
 * - follows `natcd.<cluster>.*.mvcc.events`, the committed event stream every member's mvcc
 *   service publishes, keeping the first copy of each revision; a revision it missed (a lost
 *   frame, or a heartbeat announcing a head beyond its own) is read from the `mvcc.history`
 *   endpoint of the member with the highest head it has heard of;
 * - once it knows the stream's head, takes new sessions: those gateways place on it
 *   (`watch.<replica>.place`) and those of the queue group `natcd.<cluster>.watch.open`; it
 *   publishes its load (`watch.<replica>.load`: sessions, unacknowledged bytes) every second
 *   and at once when it starts, so that gateways place new streams on the least-loaded replica
 *   and a replica started under load takes them at once;
 * - on SIGTERM drains: it stops taking sessions, says it is draining (a load report at once,
 *   and in every ping reply), keeps serving its sessions while the gateways move them to other
 *   replicas (from each watch's next revision: nothing lost or repeated), and stops once it
 *   holds none or after --drain-timeout-ms;
 * - serves each session's create / cancel / progress / ack / ping / close on
 *   `natcd.<cluster>.watch.<replica>.<endpoint>` and publishes its responses, in numbered
 *   messages, to the session's gateway, as the protobuf bytes the client's stream receives
 *   (./encode.ts: each event encoded once for all its watchers; the gateway relays the bytes);
 * - runs the hub's catch-up rounds every 100 ms and after each input (etcd watchResyncPeriod),
 *   the periodic progress notification (etcd --experimental-watch-progress-notify-interval,
 *   default 10 min), and drops sessions whose gateway went silent for --session-timeout-ms.
 *
 * `--member` is accepted (every service takes the common flags) but unused: a replica is not
 * part of a member.
 */
import { Option } from "commander"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import { describeError } from "../../shared/errors.ts"
import { unpackValue } from "../../shared/frame.ts"
import { PackedRevisions } from "../../shared/schema.ts"
import type { WatchOpenBody, WatchOpenReply } from "../../shared/schema.ts"
import {
  gatewayWatch, mvccEvents, mvccHistory, watchAck, watchCancel, watchClose, watchCreate, watchLoad, watchLoadEveryMs, watchOpen, watchPing,
  watchPlace, watchProgress
} from "../../shared/endpoints.ts"
import { checkToken } from "../../shared/subjects.ts"
import { durationMs, endpointOptions, launch, Nats, parseFlags, positiveInt, runDetached } from "../runtime/process.ts"
import { callEndpoint, okOf, publishEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import type { EndpointRequest } from "../runtime/rpc.ts"
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { WatchHub } from "./core/hub.ts"
import { defaultStreamFormat } from "./core/messages.ts"
import type { FetchRequest, FetchResult } from "./core/messages.ts"
import { gatewayFrames } from "./encode.ts"
import { defaultHubOptions } from "./core/hub-options.ts"
import type { RevisionEvents } from "./core/watcher-group.ts"
import { drainPollMs, historyTimeoutMs, resyncMs, sessionExpiryCheckMs, victimLogEveryMs } from "./timeouts.ts"

interface WatchFlags {
  readonly replica: string
  readonly progressNotifyInterval: number
  readonly windowBytes: number
  readonly unackedBudgetBytes: number
  readonly sessionTimeoutMs: number
  readonly drainTimeoutMs: number
}

const flags = parseFlags<WatchFlags>("watch", process.argv, (c) =>
  c
    .addOption(new Option("--replica <name>", "replica name (default: random)").env("NATCD_WATCH_REPLICA").default(""))
    .addOption(
      new Option("--progress-notify-interval <duration>", "periodic progress notification interval (Go duration or ms; etcd: 10m)")
        .env("NATCD_WATCH_PROGRESS_NOTIFY_INTERVAL").argParser(durationMs).default(10 * 60 * 1000)
    )
    .addOption(
      new Option("--window-bytes <n>", "unacknowledged response bytes per watch stream before its watchers become victims")
        .env("NATCD_WATCH_WINDOW_BYTES").argParser(positiveInt).default(4 * 1024 * 1024)
    )
    .addOption(
      new Option("--unacked-budget-bytes <n>", "unacknowledged response bytes of all streams on this replica, shared equally as their windows")
        .env("NATCD_WATCH_UNACKED_BUDGET_BYTES").argParser(positiveInt).default(256 * 1024 * 1024)
    )
    .addOption(
      new Option("--session-timeout-ms <ms>", "drop a watch stream whose gateway was silent this long")
        .env("NATCD_WATCH_SESSION_TIMEOUT_MS").argParser(positiveInt).default(15_000)
    )
    .addOption(
      new Option("--drain-timeout-ms <ms>", "on SIGTERM, how long to wait for gateways to move this replica's sessions elsewhere")
        .env("NATCD_WATCH_DRAIN_TIMEOUT_MS").argParser(positiveInt).default(4000)
    )
)
const replica = checkToken("watch replica", flags.replica === "" ? `w${randomBytes(4).toString("hex")}` : flags.replica)

const decodeRevisions = Schema.decodeUnknownSync(PackedRevisions)

const WatchLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc } = yield* Nats
    const cluster = flags.cluster
    // One set of bounds for the hub and the frames cut from its messages.
    const hubOptions = { ...defaultHubOptions, windowBytes: flags.windowBytes, budgetBytes: flags.unackedBudgetBytes }
    const hub = new WatchHub(hubOptions)
    // Through the process's JSON logger and level (runDetached), as every other log line.
    const log = (level: "info" | "warn", message: string, fields: Record<string, unknown>) =>
      runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(
        Effect.annotateLogs({ replica, ...fields })
      ))

    /** Members heard of on the event stream: their head and failed history reads. */
    const members = new Map<string, { head: number; failures: number }>()
    const pickMember = (): string | undefined => {
      let best: string | undefined
      let bestScore = -Infinity
      for (const [name, m] of members) {
        const score = m.head - m.failures * 1e6
        if (score > bestScore) {
          best = name
          bestScore = score
        }
      }
      return best
    }

    let scheduled = false
    let stopped = false
    /** Set on SIGTERM: no new sessions; gateways move the ones it holds. */
    let draining = false
    const publishLoad = () => {
      const st = hub.stats()
      publishEndpoint(rpc, watchLoad, { cluster, replica }, { replica, sessions: st.sessions, unackedBytes: st.unackedBytes, draining })
    }
    let pendingTrace = ""
    // Metrics (etcd's watcher gauges, server/storage/mvcc/metrics.go) and readiness.
    gaugeFrom("etcd_debugging_mvcc_watcher_total", "Total number of watchers (on this watch replica).", () => hub.stats().watchers)
    gaugeFrom("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers (on this watch replica).", () => hub.stats().unsynced)
    gaugeFrom("natcd_watch_victim_watchers", "Watchers whose stream is over its window (etcd's victims), on this replica.", () => hub.stats().victims)
    gaugeFrom("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams (sessions on this watch replica).", () => hub.stats().sessions)
    gaugeFrom("natcd_watch_unacked_bytes", "Watch response bytes sent or queued and not yet acknowledged by gateways, on this replica.", () => hub.stats().unackedBytes)
    gaugeFrom("natcd_watch_head_revision", "The newest revision this replica has of the event stream.", () => hub.stats().head)
    counterFrom("etcd_debugging_mvcc_events_total", "Total number of events sent by this replica.", () => hub.stats().eventsSent)
    counterFrom("natcd_watch_victim_moves_total", "Times watchers became victims.", () => hub.stats().victimMoves)
    counterFrom("natcd_watch_history_fetches_total", "History reads from an mvcc service.", () => hub.stats().historyFetches)
    addReadinessCheck("stream", () => (hub.initialized() ? undefined : "event stream head not known yet"))
    const schedule = () => {
      if (scheduled || stopped) return
      scheduled = true
      setImmediate(flush)
    }
    const flush = () => {
      scheduled = false
      if (stopped) return
      const more = hub.sync()
      for (const f of hub.fetches()) void runFetch(f)
      // Responses of this round carry the trace of the traced events frame received since the
      // last round, so the gateway's delivery joins that request's trace.
      const deliveryTrace = pendingTrace
      pendingTrace = ""
      // One frame per gateway for the round (up to the hub's message size), not one per session.
      for (const f of gatewayFrames(hub.takeOutgoing(), replica, hubOptions.maxMessageBytes)) {
        publishEndpoint(rpc, gatewayWatch, f.gateway, f.body, deliveryTrace)
      }
      if (more) schedule()
      if (hub.initialized() && openEndpoint === undefined && !draining) startOpenEndpoint()
      // Slow clients, at most one line per 10 s (etcd counts them in its slow_watcher gauge).
      const { victims, victimMoves } = hub.stats()
      if (victimMoves > loggedVictimMoves && Date.now() - lastVictimLogMs > victimLogEveryMs) {
        lastVictimLogMs = Date.now()
        loggedVictimMoves = victimMoves
        log("warn", "slow watch streams: watchers moved aside until their clients read", { victims, victimMoves })
      }
    }
    let loggedVictimMoves = 0
    let lastVictimLogMs = 0

    const runFetch = async (f: FetchRequest) => {
      const member = pickMember()
      let result: FetchResult = { failed: true }
      if (member !== undefined) {
        try {
          const ok = okOf(await callEndpoint(rpc, mvccHistory, { cluster, member }, {
            fromRev: f.fromRev,
            toRev: f.toRev,
            maxBytes: f.maxBytes,
            prevKv: f.prevKv
          }, { timeoutMs: historyTimeoutMs }))
          result = { revs: decodeRevisions(unpackValue(ok.revs)) as ReadonlyArray<RevisionEvents>, toRev: ok.toRev, head: ok.head, compactRev: ok.compactRev, term: ok.term }
          members.get(member)!.failures = 0
        } catch (e) {
          const err = e as { _tag?: string; compactRevision?: number }
          if (err._tag === "Compacted" && typeof err.compactRevision === "number") result = { compacted: err.compactRevision }
          else {
            const m = members.get(member)
            if (m !== undefined) m.failures++
            log("warn", "history read failed", { member, fromRev: f.fromRev, toRev: f.toRev, error: describeError(e) })
          }
        }
      }
      hub.fetched(f, result)
      schedule()
    }

    const opts = endpointOptions("watch")
    const endpoints: Array<{ stop: () => void }> = []
    // The committed stream from every member.
    endpoints.push(serveEndpoint(nc, mvccEvents, { cluster, member: "*" }, (req) => {
      const b = req.body
      const m = members.get(b.member)
      if (m === undefined) members.set(b.member, { head: b.head, failures: 0 })
      else m.head = Math.max(m.head, b.head)
      // Copies of revisions the hub has are not decoded, but their compact revision still counts.
      let revs: ReadonlyArray<RevisionEvents> = []
      if (hub.wants(b.head) && b.revs.length > 1) revs = decodeRevisions(unpackValue(b.revs)) as ReadonlyArray<RevisionEvents>
      if (revs.length > 0 && req.traceparent !== "" && pendingTrace === "") pendingTrace = req.traceparent
      // A frame whose revisions were too big to carry arrives empty: the gap read fetches them.
      hub.live({ fromRev: revs.length > 0 ? b.fromRev : b.head + 1, head: b.head, compactRev: b.compactRev, term: b.term, revs })
      schedule()
    }, opts))

    const at = { cluster, replica }
    endpoints.push(serveEndpoint(nc, watchCreate, at, (req) => {
      const { session, ...create } = req.body
      const known = hub.create(session, create)
      req.reply({ ok: { known } })
      schedule()
    }, opts))
    endpoints.push(serveEndpoint(nc, watchCancel, at, (req) => {
      req.reply({ ok: { known: hub.cancel(req.body.session, req.body.watchId) } })
      schedule()
    }, opts))
    endpoints.push(serveEndpoint(nc, watchProgress, at, (req) => {
      req.reply({ ok: { known: hub.progress(req.body.session) } })
      schedule()
    }, opts))
    endpoints.push(serveEndpoint(nc, watchAck, at, (req) => {
      const now = Date.now()
      for (const a of req.body.acks) hub.ack(a.session, a.seq, now)
      schedule()
    }, opts))
    endpoints.push(serveEndpoint(nc, watchPing, at, (req) => {
      req.reply({ unknown: hub.ping(req.body.sessions, Date.now()), ...(draining ? { draining } : {}) })
      schedule()
    }, opts))
    endpoints.push(serveEndpoint(nc, watchClose, at, (req) => {
      hub.closeSession(req.body.session)
    }, opts))

    // New sessions are taken only once the stream's head is known, and not while draining.
    // Refused (the gateway then tries another replica): Stopped.
    const open = (req: EndpointRequest<typeof WatchOpenBody.Type, typeof WatchOpenReply.Type>) => {
      if (draining || !hub.initialized()) return req.replyError({ _tag: "Stopped" })
      const b = req.body
      hub.openSession(b.session, b.gateway, Date.now(), b.windowBytes, {
        clusterId: b.clusterId ?? defaultStreamFormat.clusterId,
        memberId: b.memberId ?? defaultStreamFormat.memberId,
        maxRequestBytes: b.maxRequestBytes ?? defaultStreamFormat.maxRequestBytes
      })
      req.reply({ ok: { replica, head: hub.headRevision() } })
    }
    endpoints.push(serveEndpoint(nc, watchPlace, at, open, opts))
    let openEndpoint: { stop: () => void } | undefined
    const startOpenEndpoint = () => {
      // Joins the declared queue group ("watch").
      openEndpoint = serveEndpoint(nc, watchOpen, { cluster }, open, opts)
      endpoints.push(openEndpoint)
      publishLoad()
      log("info", "taking watch sessions", { head: hub.headRevision() })
    }

    const timers = [
      setInterval(schedule, resyncMs),
      setInterval(() => {
        hub.progressTick()
        schedule()
      }, flags.progressNotifyInterval),
      setInterval(() => {
        const gone = hub.expire(Date.now(), flags.sessionTimeoutMs)
        if (gone.length > 0) log("info", "dropped silent watch sessions", { sessions: gone.length })
      }, sessionExpiryCheckMs),
      setInterval(() => {
        if (openEndpoint !== undefined) publishLoad()
      }, watchLoadEveryMs)
    ]
    // SIGTERM: drain (see the module comment), then stop. The NATS connection closes after this.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        draining = true
        openEndpoint?.stop()
        const sessions = hub.stats().sessions
        const deadline = Date.now() + flags.drainTimeoutMs
        publishLoad()
        if (sessions > 0) {
          while (hub.stats().sessions > 0 && Date.now() < deadline) yield* Effect.sleep(drainPollMs)
          log("info", "watch replica drained", { handedOver: sessions - hub.stats().sessions, left: hub.stats().sessions })
        }
        stopped = true
        timers.forEach(clearInterval)
        endpoints.forEach((e) => e.stop())
        log("info", "watch replica stopping", { ...hub.stats() })
      })
    )
    yield* Effect.logInfo("watch replica started").pipe(Effect.annotateLogs({ replica, progressNotifyIntervalMs: flags.progressNotifyInterval }))
  })
)

launch("watch", flags, WatchLive, { member: replica })
