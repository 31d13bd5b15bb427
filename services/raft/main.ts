/**
 * The raft process: one member's consensus, around the pure core in ./core.
 *
 *   node services/raft/main.ts --member=m1 [--initial-cluster=m1,m2,m3]
 *     [--initial-cluster-state=new|existing] [--advertise-client-urls=http://127.0.0.1:2379]
 *     [--heartbeat-interval=100] [--election-timeout=1000] (+ the common flags)
 *
 * On start it loads its log from the member's wal service (`wal.load`, page by page). An empty
 * log with `--initial-cluster-state=new` bootstraps the `--initial-cluster` members (the same
 * entries on every member, as etcd); with `existing` the member starts empty and the leader
 * brings it up to date after `etcdctl member add`. It asks the mvcc service how far it applied,
 * so committed entries already applied are not handed over again. Once a member of a cluster
 * with a leader, it publishes its name and client URLs through raft (etcd's publish).
 *
 * Endpoints (shared/subjects.ts): raft.propose, raft.readindex, raft.status, raft.entries (for
 * mvcc gap repair), raft.msg (peers), raft.members, and the leader-only raft.confchange and
 * raft.transfer. Committed entries go to the mvcc service on `mvcc.apply` in index order;
 * ConfChange and member-attribute entries reach it as no-ops, since only raft acts on them.
 */
import { Option } from "commander"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import { randomBytes, randomInt } from "node:crypto"
import {
  BadLeaderTransferee,
  MemberBadUrls,
  MemberExists,
  MemberNotFound,
  MemberNotLearner,
  LearnerNotReady,
  NoLeader,
  NotLeader,
  PeerUrlExists,
  RequestTimeout,
  Stopped,
  TooManyLearners,
  toErrorData
} from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import { clusterIdFor, memberIdFor } from "../../shared/membership.ts"
import type { ConfChangeType, Entry } from "../../shared/raft-types.ts"
import type { MemberInfo, RaftStatus } from "../../shared/schema.ts"
import {
  mvccApply, mvccInstall, mvccSnapshot, mvccStatus, raftConfChange, raftEntries, raftMembers, raftPropose, raftReadIndex, raftState, raftStateEveryMs, raftStatus,
  raftTransfer, walAppend, walLoad, walSnapshot
} from "../../shared/endpoints.ts"
import { clientUrlList, endpointOptions, launch, Nats, parseFlags, positiveInt, runDetached } from "../runtime/process.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { endSpan, nowUs, proposalTraceparent, recordSpan, spanTraceparent, startSpan } from "../runtime/tracing.ts"
import type { ActiveSpan } from "../runtime/tracing.ts"
import { encodeConfChange } from "./core/conf-change.ts"
import { RawNode } from "./core/raw-node.ts"
import { catchUpCompactIndex } from "./core/catch-up.ts"
import { MemoryStorage } from "./core/storage.ts"
import { RaftDriver } from "./driver.ts"
import {
  decodeSnapshotData,
  encodeAttributes,
  encodeConfChangeContext,
  encodeSnapshotData,
  isInternalEntry,
  Membership,
  nameFromPeerUrl,
  peerUrlFor
} from "./membership.ts"
import type { Message } from "./core/types.ts"
import { Peers } from "./peers.ts"
import { raftMsg, subjectOf, tokensOf } from "../../shared/endpoints.ts"
import { publishEndpoint, serveEndpoint } from "../runtime/rpc.ts"

interface RaftFlags {
  /** Applied entries between snapshots (etcd --snapshot-count). */
  readonly snapshotCount: number
  /**
   * Bytes of entry data (the sum of `data.byteLength`) applied between snapshots, next to the
   * count: a snapshot is taken when either is reached. natcd's own flag: etcd bounds only the
   * count, and 100000 entries of up to 1.5 MiB (etcd's request limit) is up to about 150 GiB of
   * log held in memory by raft and again by the wal service until the next snapshot.
   */
  readonly snapshotBytes: number
  /** Entries kept before a snapshot for slow followers (etcd SnapshotCatchUpEntries). */
  readonly snapshotCatchupEntries: number
  /**
   * Bytes of entry data kept before a snapshot for slow followers, next to the count: the log is
   * compacted so that both hold (./core/catch-up.ts). natcd's own flag, for the same reason as
   * `snapshotBytes`; a follower further behind gets a snapshot, as in etcd.
   */
  readonly snapshotCatchupBytes: number
  readonly initialCluster?: string
  readonly initialClusterState: "new" | "existing"
  readonly advertiseClientUrls: ReadonlyArray<string>
  readonly heartbeatInterval: number
  readonly electionTimeout: number
}

const flags = parseFlags<RaftFlags>("raft", process.argv, (c) =>
  c
    .addOption(new Option("--initial-cluster <names>", "comma-separated member names of a new cluster (default: this member alone)"))
    .addOption(new Option("--initial-cluster-state <state>", "new: bootstrap; existing: join a running cluster").choices(["new", "existing"]).default("new"))
    .addOption(new Option("--advertise-client-urls <urls>", "client URLs this member publishes (http:// or https://)").argParser(clientUrlList).default([]))
    .addOption(new Option("--heartbeat-interval <ms>", "raft heartbeat interval (etcd default 100)").argParser(positiveInt).default(100))
    .addOption(new Option("--election-timeout <ms>", "raft election timeout (etcd default 1000)").argParser(positiveInt).default(1000))
    .addOption(new Option("--snapshot-count <n>", "applied entries between snapshots (etcd --snapshot-count)").env("NATCD_SNAPSHOT_COUNT").argParser(positiveInt).default(100000))
    .addOption(new Option("--snapshot-catchup-entries <n>", "entries kept before a snapshot for slow followers (etcd SnapshotCatchUpEntries)").env("NATCD_SNAPSHOT_CATCHUP_ENTRIES").argParser(positiveInt).default(5000))
    .addOption(new Option("--snapshot-bytes <n>", "bytes of entry data applied between snapshots, next to --snapshot-count (natcd's own)").env("NATCD_SNAPSHOT_BYTES").argParser(positiveInt).default(64 * 1024 * 1024))
    .addOption(new Option("--snapshot-catchup-bytes <n>", "bytes of entry data kept before a snapshot for slow followers, next to --snapshot-catchup-entries (natcd's own)").env("NATCD_SNAPSHOT_CATCHUP_BYTES").argParser(positiveInt).default(16 * 1024 * 1024))
)

/** Largest batch of committed entries in one mvcc.apply frame (entry data bytes). */
const maxApplyFrameBytes = 1024 * 1024
/** etcd's maximum number of learners (membership.maxLearners). */
const maxLearners = 1
/** A learner is ready for promotion when its match index is this share of the leader's (etcd). */
const learnerReadyPercent = 0.9
/**
 * Most traced entries (count) awaiting their raft.commit span. An entry overwritten before it
 * committed never ends its span; past the bound the oldest are forgotten (their commit span is
 * not recorded).
 */
const maxAppendSpansKept = 10_000
/**
 * Most membership changes (count of history records) kept since the last snapshot; reaching it
 * takes a snapshot, which drops the records below the snapshot index. Without it the history is
 * bounded only by --snapshot-count (one record per applied membership or attribute entry).
 */
const maxMembershipHistory = 1000
/**
 * How long raft waits for the mvcc service's copy of its state (mvcc.snapshot), in ms. The
 * request is not re-sent meanwhile: the copy of a large LMDB file takes seconds, and each
 * re-sent request would start another copy of the same file in the mvcc service.
 */
const mvccSnapshotTimeoutMs = 120_000
/**
 * After a snapshot attempt that took none (an error, or an mvcc service with nothing applied
 * since the last one), the next attempt waits at least this long, in ms. Without it every
 * applied batch past the trigger would ask for another copy of the whole state.
 */
const snapshotRetryDelayMs = 5000

const RaftLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc, instance } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const initialNames = (flags.initialCluster ?? flags.member).split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    const memberId = memberIdFor(flags.cluster, flags.member)
    const clusterId = clusterIdFor(initialNames.map((n) => memberIdFor(flags.cluster, n)))
    // Client URLs are published as given, scheme included, as etcd's MemberList shows them
    // (the client port takes the `http://host:port` authority etcdctl's --cluster calls send:
    // gateway/h2-authority.ts).
    const clientUrls = flags.advertiseClientUrls
    const walAppendSubject = subjectOf(walAppend, at)
    const walLoadSubject = subjectOf(walLoad, at)
    const mvccApplySubject = subjectOf(mvccApply, at)
    const mvccSnapshotSubject = subjectOf(mvccSnapshot, at)
    const mvccInstallSubject = subjectOf(mvccInstall, at)
    const walSnapshotSubject = subjectOf(walSnapshot, at)
    const requestTimeoutMs = 5000 + 2 * flags.electionTimeout

    // Appends to the wal service are numbered from 1 for this process run (see WalAppendBody).
    let seq = 0
    // Tracing (../runtime/tracing.ts): each traced proposal's entry gets a raft.append span
    // (its persist through the wal service, whose wal.append hop is its child) and, once
    // committed, a raft.commit span (appended to committed), on every member.
    const appended = new Map<number, { traceparent: string; appendedUs: number }>()
    const persist = async (hardState: Parameters<MemoryStorage["setHardState"]>[0] | undefined, entries: ReadonlyArray<Entry>, traceparent: string) => {
      const body = { writer: instance, seq: ++seq, ...(hardState === undefined ? {} : { hardState }), entries }
      const spans: Array<{ span: ActiveSpan; index: number; traceparent: string }> = []
      for (const e of entries) {
        if (e.type !== "Normal" || e.data.length === 0) continue
        const tp = proposalTraceparent(e.data)
        // Only proposals carry traces; the bootstrap entries (persisted before `node` exists) do not.
        const role = () => (node.status().softState.raftState === "StateLeader" ? "leader" : "follower")
        const span = tp === "" ? undefined : startSpan("raft.append", tp, { index: e.index, term: e.term, entries: entries.length, role: role() })
        if (span !== undefined) spans.push({ span, index: e.index, traceparent: tp })
      }
      const walTrace = spans.length > 0 ? spanTraceparent(spans[0]!.span) : traceparent
      okOf(await callWal("wal.append", () => callEndpoint(rpc, walAppend, walAppendSubject, body, { timeoutMs: 5000, retryAfterMs: 500, traceparent: walTrace })))
      const now = nowUs()
      for (const s of spans) {
        endSpan(s.span, undefined, undefined, now)
        appended.set(s.index, { traceparent: s.traceparent, appendedUs: now })
      }
      // Entries overwritten before they committed never end their commit span; bound the map.
      while (appended.size > maxAppendSpansKept) appended.delete(appended.keys().next().value!)
    }

    // 1. Load the log from the wal service (retrying until it answers).
    const storage = new MemoryStorage()
    const loaded = yield* Effect.promise(async () => {
      let from = 1
      const entries: Entry[] = []
      for (;;) {
        const page = await callWal("wal.load", () => callEndpoint(rpc, walLoad, walLoadSubject, { fromIndex: from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: 5000 }))
        for (const e of page.entries) entries.push(e)
        if (!page.more || page.entries.length === 0) return { hardState: page.hardState, entries, snapshot: page.snapshot }
        from = page.entries[page.entries.length - 1]!.index + 1
      }
    })
    const fresh = loaded.entries.length === 0 && loaded.hardState.term === 0 && loaded.snapshot === undefined
    if (fresh && flags.initialClusterState === "new") {
      // Bootstrap as etcd's RawNode.Bootstrap does, with each member's peer URL in the
      // ConfChange context: identical entries on every initial member. Durable before use.
      const entries: Entry[] = initialNames.map((name, i) => ({
        term: Term(1),
        index: Index(i + 1),
        type: "ConfChange",
        data: encodeConfChange({
          type: "AddNode",
          nodeId: memberIdFor(flags.cluster, name),
          context: encodeConfChangeContext({ peerUrls: [peerUrlFor(name)], requestId: "" })
        })
      }))
      const hardState = { term: Term(1), vote: MemberId(0n), commit: Index(entries.length) }
      yield* Effect.promise(() => persist(hardState, entries, ""))
      storage.append(entries)
      storage.setHardState(hardState)
    } else if (!fresh) {
      if (loaded.snapshot !== undefined) storage.applySnapshot(loaded.snapshot)
      storage.append(loaded.entries)
      // A snapshot holds only committed entries: a crash between writing a snapshot received
      // from the leader and the hard state after it leaves a lower commit, which the core
      // would refuse to load.
      const snapshotIndex = loaded.snapshot?.metadata.index ?? 0
      storage.setHardState(loaded.hardState.commit >= snapshotIndex ? loaded.hardState : { ...loaded.hardState, commit: Index(snapshotIndex) })
    }
    const startSnapshot = loaded.snapshot
    const startSnapshotData = startSnapshot === undefined ? undefined : decodeSnapshotData(startSnapshot.data)

    // 2. Ask mvcc how far it applied (best effort: it may not be up yet).
    const mvccApplied = yield* Effect.promise(() =>
      callEndpoint(rpc, mvccStatus, at, {}, { timeoutMs: 2000 }).then(
        (s) => s.appliedIndex,
        () => 0
      )
    )
    const commit = storage.initialState().hardState.commit
    // Raft re-delivers every committed entry after its snapshot (none yet), so ConfChange
    // entries reach the core and the membership table again, as etcd's restart does; the mvcc
    // service is only handed entries above what it already applied.
    const skipApplyUpTo = Math.min(mvccApplied, commit)
    const node = new RawNode({
      id: memberId,
      electionTick: Math.max(2, Math.round(flags.electionTimeout / flags.heartbeatInterval)),
      heartbeatTick: 1,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 512,
      preVote: true,
      checkQuorum: true,
      applied: Index(startSnapshot?.metadata.index ?? 0),
      randomInt: (n) => randomInt(n)
    }, storage)

    // 3. Membership, peers, snapshots, and the Ready loop.
    const membership = new Membership(flags.cluster)
    if (startSnapshotData !== undefined) membership.restore(startSnapshotData.members)
    /** The membership after each change at or above the last snapshot, to snapshot it as of any index. */
    let history: Array<{ index: number; members: MemberInfo[] }> = [{ index: startSnapshot?.metadata.index ?? 0, members: membership.list() }]
    const membershipAt = (index: number) => [...history].reverse().find((h) => h.index <= index)?.members ?? []
    let lastSnapshotIndex = startSnapshot?.metadata.index ?? 0
    /**
     * Bytes of entry data applied since the last snapshot started (or since the start): the
     * --snapshot-bytes trigger. Reset when a snapshot starts, not when it ends at its index, so
     * an mvcc service that lags raft by more than --snapshot-bytes does not make every snapshot
     * start the next one at once; given back when the snapshot fails.
     */
    let appliedBytesSinceSnapshot = 0
    let snapshotting = false
    /** No snapshot attempt before this time (ms since the epoch); see snapshotRetryDelayMs. */
    let snapshotRetryAtMs = 0
    const confWaiters = new Map<string, (members: MemberInfo[]) => void>()
    const transferWaiters: Array<{ target: MemberId; resolve: (ok: boolean) => void }> = []
    let removed = false
    let leaderChanges = 0
    let lastLeader = 0n
    // raft.msg subjects by recipient (built once per peer: one publish per Ready and peer).
    const msgSubjects = new Map<string, string>()
    const msgSubjectTo = (name: string): string => {
      let s = msgSubjects.get(name)
      if (s === undefined) {
        s = subjectOf(raftMsg, { cluster: flags.cluster, member: name, from: flags.member })
        if (msgSubjects.size < 1024) msgSubjects.set(name, s)
      }
      return s
    }
    const peers: Peers = new Peers(flags.cluster, { id: memberId, name: flags.member }, {
      publish: (name, body) => publishEndpoint(rpc, raftMsg, msgSubjectTo(name), body),
      nameOf: (id) => {
        const name = membership.get(id)?.name
        if (name !== undefined && name !== "") return name
        const url = membership.get(id)?.peerUrls[0]
        return url === undefined ? undefined : nameFromPeerUrl(url)
      },
      isRemoved: (id) => membership.isRemoved(id),
      step: (m) => (m.type === "MsgSnap" ? installThenStep(m) : driver.step(m)),
      term: () => node.status().hardState.term
    })
    const toMvcc = (e: Entry): Entry => (e.type === "ConfChange" || isInternalEntry(e) ? { ...e, type: "Normal", data: new Uint8Array(0) } : e)
    const publishApply = (entries: ReadonlyArray<Entry>, commitIndex: number, traceparent: string) => {
      const term = node.status().hardState.term
      let start = 0
      let bytes = 0
      for (let i = 0; i < entries.length; i++) {
        bytes += entries[i]!.data.length
        if (bytes > maxApplyFrameBytes && i > start) {
          publishEndpoint(rpc, mvccApply, mvccApplySubject, { entries: entries.slice(start, i), commitIndex, term }, start === 0 ? traceparent : "")
          start = i
          bytes = entries[i]!.data.length
        }
      }
      publishEndpoint(rpc, mvccApply, mvccApplySubject, { entries: entries.slice(start), commitIndex, term }, start === 0 ? traceparent : "")
    }
    const driver: RaftDriver = new RaftDriver(node, storage, {
      persist,
      send: (messages) => {
        for (const m of messages) if (m.type === "MsgSnap") watchSnapshotSend(m.to)
        peers.send(messages)
      },
      apply: (committed, commitIndex) => {
        for (const e of committed) {
          const change = membership.apply(e)
          if (change === undefined) continue
          history.push({ index: e.index, members: membership.list() })
          if (change.kind === "conf") {
            confWaiters.get(change.requestId)?.(membership.list())
            confWaiters.delete(change.requestId)
            if (change.change.type === "RemoveNode" && change.change.nodeId === memberId) removed = true
          }
        }
        let applyTrace = ""
        if (appended.size > 0) {
          const now = nowUs()
          for (const e of committed) {
            const a = appended.get(e.index)
            if (a === undefined) continue
            appended.delete(e.index)
            const span = recordSpan("raft.commit", a.traceparent, a.appendedUs, now, { index: e.index, term: e.term, commitIndex })
            if (applyTrace === "") applyTrace = spanTraceparent(span)
          }
        }
        const entries = committed.filter((e) => e.index > skipApplyUpTo).map(toMvcc)
        if (entries.length > 0) publishApply(entries, commitIndex, applyTrace)
        for (const e of committed) appliedBytesSinceSnapshot += e.data.byteLength
        if (
          driver.applied() - lastSnapshotIndex >= flags.snapshotCount ||
          appliedBytesSinceSnapshot >= flags.snapshotBytes ||
          history.length > maxMembershipHistory
        ) void takeSnapshot()
      },
      persistSnapshot: async (snapshot) => {
        okOf(await callWal("wal.snapshot", () => callEndpoint(rpc, walSnapshot, walSnapshotSubject, { snapshot }, { timeoutMs: 30_000 })))
        const data = decodeSnapshotData(snapshot.data)
        if (data !== undefined) membership.restore(data.members)
        history = [{ index: snapshot.metadata.index, members: membership.list() }]
        lastSnapshotIndex = snapshot.metadata.index
        appliedBytesSinceSnapshot = 0
      },
      onSoftState: (soft) => {
        if (soft.lead !== 0n && soft.lead !== lastLeader) leaderChanges++
        if (soft.lead !== 0n) lastLeader = soft.lead
        for (let i = transferWaiters.length - 1; i >= 0; i--) {
          const w = transferWaiters[i]!
          if (soft.lead === w.target) {
            w.resolve(true)
            transferWaiters.splice(i, 1)
          }
        }
      }
    }, (e) => {
      console.error(JSON.stringify({ level: "FATAL", service: "raft", member: flags.member, message: "raft loop failed", error: String((e as Error)?.stack ?? e) }))
      process.exit(1)
    })

    /**
     * Takes a snapshot (etcd's triggerSnapshot): the mvcc service copies its state at its applied
     * index I; the raft snapshot at I (membership as of I, and the mvcc file) is saved through
     * the wal service (file, WAL marker, sync, release); then the in-memory log keeps only the
     * last --snapshot-catchup-entries entries before I for slow followers, and no more than
     * --snapshot-catchup-bytes of entry data (./core/catch-up.ts).
     */
    const takeSnapshot = async () => {
      if (snapshotting || Date.now() < snapshotRetryAtMs) return
      snapshotting = true
      const bytesCounted = appliedBytesSinceSnapshot
      appliedBytesSinceSnapshot = 0
      let taken = false
      try {
        const info = okOf(await callEndpoint(rpc, mvccSnapshot, mvccSnapshotSubject, { minIndex: 0 }, { timeoutMs: mvccSnapshotTimeoutMs, retryAfterMs: mvccSnapshotTimeoutMs }))
        const index = Math.min(info.index, driver.applied())
        if (index <= lastSnapshotIndex || info.index > driver.applied()) return
        const term = storage.term(Index(index))
        if (typeof term === "string") return
        const members = membershipAt(index)
        const probe = new Membership(flags.cluster)
        probe.restore(members)
        const confState = probe.confState()
        const data = encodeSnapshotData({ members, mvcc: info, source: flags.member })
        const snapshot = { metadata: { index: Index(index), term, confState }, data }
        // The WAL's hard state must commit at least up to the snapshot before its record.
        await driver.flushHardState()
        okOf(await callEndpoint(rpc, walSnapshot, walSnapshotSubject, { snapshot }, { timeoutMs: 30_000 }))
        taken = true
        // A newer snapshot from the leader may have been installed meanwhile: it replaced the log.
        if (typeof storage.createSnapshot(Index(index), confState, data) === "string") return
        const upToSnapshot = storage.entries(storage.firstIndex(), Index(index + 1), Number.POSITIVE_INFINITY)
        const compactIndex = typeof upToSnapshot === "string"
          ? undefined
          : catchUpCompactIndex(upToSnapshot, { entries: flags.snapshotCatchupEntries, bytes: flags.snapshotCatchupBytes })
        if (compactIndex !== undefined) storage.compact(Index(compactIndex))
        lastSnapshotIndex = index
        history = [...history.filter((h) => h.index > index), { index, members }].sort((a, b) => a.index - b.index)
        runDetached(Effect.logInfo("snapshot taken").pipe(Effect.annotateLogs({ index, term, mvccFile: info.file, sizeBytes: info.sizeBytes, firstIndex: storage.firstIndex() })))
      } catch (e) {
        const reason = (e as { reason?: unknown })?.reason
        runDetached(Effect.logWarning("snapshot failed; will retry").pipe(
          Effect.annotateLogs({ error: String((e as { _tag?: string })?._tag ?? e), ...(typeof reason === "string" ? { reason } : {}), retryInMs: snapshotRetryDelayMs })
        ))
      } finally {
        snapshotting = false
        if (!taken) {
          appliedBytesSinceSnapshot += bytesCounted
          snapshotRetryAtMs = Date.now() + snapshotRetryDelayMs
        }
      }
    }

    /**
     * A follower given a snapshot by the leader first installs the leader's mvcc state file in
     * its own mvcc service (fetched in chunks over NATS, checksum verified), then steps the
     * MsgSnap into raft, which restores from it. Meanwhile heartbeats keep flowing, so the
     * transfer does not trigger elections. One install at a time; a MsgSnap arriving during an
     * install is dropped (the leader retries).
     */
    let installing = false
    const installThenStep = (m: Message): string | undefined => {
      const data = m.snapshot === undefined ? undefined : decodeSnapshotData(m.snapshot.data)
      if (data === undefined || installing) return undefined
      if (m.snapshot!.metadata.index <= storage.lastIndex() && storage.term(m.snapshot!.metadata.index) === m.snapshot!.metadata.term) {
        return driver.step(m)
      }
      installing = true
      callEndpoint(rpc, mvccInstall, mvccInstallSubject, { fromMember: data.source, snapshot: data.mvcc }, { timeoutMs: 600_000, retryAfterMs: 600_000 })
        .then((reply) => {
          okOf(reply)
          peers.counters.snapshotsInstalled++
          driver.step(m)
          runDetached(Effect.logInfo("installed snapshot from leader").pipe(Effect.annotateLogs({ index: m.snapshot!.metadata.index, source: data.source })))
        })
        .catch((e) => runDetached(Effect.logWarning("snapshot install failed").pipe(Effect.annotateLogs({ error: String((e as { _tag?: string })?._tag ?? e) }))))
        .finally(() => (installing = false))
      return undefined
    }

    /** After sending a snapshot, report failure if the follower has not left snapshot state in time, so the leader retries. */
    const watchSnapshotSend = (to: MemberId) => {
      setTimeout(() => {
        if (node.status().progress.get(to)?.state === "StateSnapshot") node.reportSnapshot(to, "Failure")
      }, 60_000)
    }

    // 4. Endpoints.
    /** The member's raft status, as raft.status answers and raft.state publishes it. */
    const statusNow = (): typeof RaftStatus.Type => {
      const s = node.status()
      return {
        memberId,
        clusterId,
        leader: s.softState.lead,
        term: s.hardState.term,
        commitIndex: s.commit,
        appliedIndex: driver.applied(),
        raftState: s.softState.raftState,
        isLearner: s.confState.learners.includes(memberId),
        peers: { ...peers.counters },
        published: membership.get(memberId)?.name === flags.member
      }
    }
    const opts = endpointOptions("raft")
    const fail = (error: EtcdError) => ({ err: toErrorData(error) })
    /** How long a follower waits for the leader's raft to answer a forwarded membership change. */
    const confChangeForwardTimeoutMs = 5000
    const leaderOnly = (): EtcdError | undefined => {
      const s = node.status()
      if (s.softState.raftState === "StateLeader") return undefined
      return s.softState.lead === 0n ? new NoLeader() : new NotLeader()
    }
    const proposeConfChange = (type: ConfChangeType, nodeId: MemberId, peerUrls: ReadonlyArray<string>) =>
      new Promise<MemberInfo[] | EtcdError>((resolve) => {
        const requestId = randomBytes(8).toString("hex")
        const timer = setTimeout(() => {
          confWaiters.delete(requestId)
          resolve(new RequestTimeout())
        }, requestTimeoutMs)
        confWaiters.set(requestId, (members) => {
          clearTimeout(timer)
          resolve(members)
        })
        const err = driver.proposeConfChange({ type, nodeId, context: encodeConfChangeContext({ peerUrls, requestId }) })
        if (err !== undefined) {
          clearTimeout(timer)
          confWaiters.delete(requestId)
          resolve(new NoLeader())
        }
      })
    const endpoints = [
      serveEndpoint(nc, raftPropose, at, (req) => {
        let err: string | undefined = removed ? "removed" : undefined
        for (const data of req.body.proposals) {
          if (err !== undefined) break
          err = driver.propose(data, req.traceparent)
        }
        if (err !== undefined) req.reply(fail(new NoLeader()))
        else {
          const leader = driver.leader()
          // A follower's core forwards the proposals to the leader (MsgProp over raft.msg).
          if (leader !== memberId && req.traceparent !== "") {
            const now = nowUs()
            recordSpan("raft.forward", req.traceparent, now, now, { leader: leader.toString(16), proposals: req.body.proposals.length })
          }
          req.reply({ ok: { leader } })
        }
      }, opts),
      serveEndpoint(nc, raftReadIndex, at, (req) => {
        driver.readIndex().then((index) => {
          if (index === "NoLeader") req.reply(fail(new NoLeader()))
          else req.reply({ ok: { index } })
        })
      }, opts),
      serveEndpoint(nc, raftStatus, at, (req) => req.reply(statusNow()), opts),
      serveEndpoint(nc, raftEntries, at, (req) => {
        const commitIndex = node.status().commit
        const hi = Math.min(commitIndex, driver.applied(), storage.lastIndex()) + 1
        const from = Math.max(req.body.from, storage.firstIndex())
        const entries = from >= hi ? [] : storage.entries(Index(from), Index(hi), req.body.maxBytes)
        req.reply({ entries: typeof entries === "string" ? [] : entries.map(toMvcc), commitIndex })
      }, opts),
      serveEndpoint(nc, raftMsg, { ...at, from: "*" }, (req) => {
        const sender = tokensOf(raftMsg, req.subject)?.from
        if (!removed && sender !== undefined) peers.receive(req.body, sender)
      }, opts),
      serveEndpoint(nc, raftMembers, at, (req) => {
        const s = node.status()
        req.reply({ members: membership.list(), leader: s.softState.lead, term: s.hardState.term })
      }, opts),
      serveEndpoint(nc, raftConfChange, at, (req) => {
        const reply = (r: MemberInfo[] | EtcdError, member?: MemberInfo) =>
          Array.isArray(r)
            ? req.reply({ ok: { ...(member === undefined ? {} : { member }), members: r, term: node.status().hardState.term } })
            : req.reply(fail(r))
        const notLeader = leaderOnly()
        if (notLeader !== undefined) {
          // The gateway may reach only its own member's raft: a follower forwards the change
          // to the leader's raft (raft.confchange's declared callers) and relays its answer.
          const lead = node.status().softState.lead
          const leader = lead === 0n ? undefined : membership.get(lead as MemberId)
          const leaderName = leader === undefined ? undefined : leader.name !== "" ? leader.name : nameFromPeerUrl(leader.peerUrls[0] ?? "")
          if (leaderName === undefined || leaderName === flags.member) return reply(notLeader)
          callEndpoint(rpc, raftConfChange, { cluster: flags.cluster, member: leaderName }, req.body, { timeoutMs: confChangeForwardTimeoutMs }).then(
            (r) => req.reply(r),
            (e: EtcdErrorData | undefined) => req.reply(typeof e?._tag === "string" ? { err: e } : fail(new NotLeader()))
          )
          return
        }
        const { action, peerUrls } = req.body
        if (action === "add" || action === "addLearner") {
          const name = peerUrls.length === 1 ? nameFromPeerUrl(peerUrls[0]!) : undefined
          if (name === undefined) return reply(new MemberBadUrls({ url: peerUrls.join(",") }))
          const id = membership.idFor(name)
          if (membership.get(id) !== undefined || membership.isRemoved(id)) return reply(new MemberExists({ memberId: id }))
          if (membership.byPeerUrl(peerUrls[0]!) !== undefined) return reply(new PeerUrlExists({ url: peerUrls[0]! }))
          if (action === "addLearner" && membership.list().filter((m) => m.isLearner).length >= maxLearners) return reply(new TooManyLearners())
          const member: MemberInfo = { id, name: "", peerUrls: [...peerUrls], clientUrls: [], isLearner: action === "addLearner" }
          proposeConfChange(action === "add" ? "AddNode" : "AddLearnerNode", id, peerUrls).then((r) => reply(r, member))
          return
        }
        const id = req.body.memberId as MemberId
        const target = membership.get(id)
        if (target === undefined) return reply(new MemberNotFound({ memberId: id }))
        if (action === "remove") {
          proposeConfChange("RemoveNode", id, []).then((r) => reply(r))
        } else if (action === "update") {
          proposeConfChange("UpdateNode", id, peerUrls).then((r) => reply(r))
        } else {
          if (!target.isLearner) return reply(new MemberNotLearner({ memberId: id }))
          const progress = node.status().progress
          const learnerMatch = progress.get(id)?.match ?? 0
          const leaderMatch = progress.get(memberId)?.match ?? 0
          if (learnerMatch < leaderMatch * learnerReadyPercent) return reply(new LearnerNotReady({ memberId: id }))
          proposeConfChange("AddNode", id, target.peerUrls).then((r) => reply(r))
        }
      }, opts),
      serveEndpoint(nc, raftTransfer, at, (req) => {
        const notLeader = leaderOnly()
        if (notLeader !== undefined) return req.reply(fail(notLeader))
        const target = req.body.target as MemberId
        const s = node.status()
        if (target === memberId) return req.reply({ ok: { term: s.hardState.term } })
        if (!s.confState.voters.includes(target)) return req.reply(fail(new BadLeaderTransferee({ memberId: target })))
        new Promise<boolean>((resolve) => {
          const waiter = { target, resolve }
          transferWaiters.push(waiter)
          setTimeout(() => {
            // A transfer that never happened leaves no waiter behind.
            const i = transferWaiters.indexOf(waiter)
            if (i >= 0) transferWaiters.splice(i, 1)
            resolve(false)
          }, requestTimeoutMs)
          driver.transferLeader(target)
        }).then((ok) =>
          ok
            ? req.reply({ ok: { term: node.status().hardState.term } })
            : req.reply(fail(new RequestTimeout()))
        )
      }, opts)
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => endpoints.forEach((e) => e.stop())))

    // Metrics and readiness (etcd server/etcdserver/metrics.go names).
    gaugeFrom("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", () => (node.status().softState.lead === 0n ? 0 : 1))
    gaugeFrom("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", () => (node.status().softState.raftState === "StateLeader" ? 1 : 0))
    gaugeFrom("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", () => (node.status().confState.learners.includes(memberId) ? 1 : 0))
    counterFrom("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", () => leaderChanges)
    gaugeFrom("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", () => node.status().commit)
    gaugeFrom("natcd_raft_applied_index", "The highest raft index handed to the mvcc service.", () => driver.applied())
    gaugeFrom("natcd_raft_term", "The member's current raft term.", () => node.status().hardState.term)
    counterFrom("natcd_raft_snapshots_installed_total", "Snapshots received from the leader and installed.", () => peers.counters.snapshotsInstalled)
    addReadinessCheck("leader", () => (removed ? "removed from the cluster" : node.status().softState.lead === 0n ? "no leader" : undefined))

    // 5. Ticks. A member that is the only voter campaigns at once rather than waiting out an
    // election timeout (etcd fast-forwards its election ticks for the same reason). Once per
    // second, a member whose published attributes are stale publishes them (etcd's publish).
    let lastPublishMs = 0
    // Once per tick after entries were applied, an empty apply frame repeats the applied index,
    // so the mvcc service notices a lost last frame (and fetches it) within a tick.
    let lastAppliedTold = 0
    // raft.state goes out at the first tick after the leader, role or term changed, and at least
    // every raftStateEveryMs (a lost frame is repaired by the next; the followers poll raft.status
    // slowly besides, to notice a raft service that stopped).
    const stateSubject = subjectOf(raftState, at)
    let stateTold = { leader: -1n, raftState: "", term: -1, atMs: 0 }
    const tellState = () => {
      const status = statusNow()
      const now = Date.now()
      const told = stateTold
      if (status.leader === told.leader && status.raftState === told.raftState && status.term === told.term && now - told.atMs < raftStateEveryMs) return
      stateTold = { leader: status.leader, raftState: status.raftState, term: status.term, atMs: now }
      publishEndpoint(rpc, raftState, stateSubject, status)
    }
    const everyTick = () => {
      if (removed) return
      const applied = driver.applied()
      if (applied > lastAppliedTold && applied > skipApplyUpTo) {
        lastAppliedTold = applied
        publishEndpoint(rpc, mvccApply, mvccApplySubject, { entries: [], commitIndex: applied, term: node.status().hardState.term })
      }
      const s = node.status()
      const voters = s.confState.voters
      if (voters.length === 1 && voters[0] === memberId && s.softState.raftState === "StateFollower") driver.campaign()
      const me = membership.get(memberId)
      const now = Date.now()
      if (me !== undefined && s.softState.lead !== 0n && now - lastPublishMs > 1000 &&
        (me.name !== flags.member || me.clientUrls.join(",") !== clientUrls.join(","))) {
        lastPublishMs = now
        driver.propose(encodeAttributes({ id: memberId, name: flags.member, clientUrls }))
      }
      driver.tick()
      tellState()
    }
    const timer = setInterval(everyTick, flags.heartbeatInterval)
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
    yield* Effect.logInfo("raft started").pipe(
      Effect.annotateLogs({ memberId: memberId.toString(16), fresh, state: flags.initialClusterState, lastIndex: storage.lastIndex(), commit, skipApplyUpTo })
    )
  })
)

/**
 * How long raft keeps calling its wal service when calls get no reply, ms. Raft can do nothing
 * without its log: past this bound the process stops (fail-stop, as etcd panics when its WAL
 * cannot be written) and the supervisor starts it again.
 */
export const walRetryBoundMs = 60_000

/** The pauses between wal calls that got no reply: 100 ms doubling to at most 2 s, for {@link walRetryBoundMs}. */
const walRetry = Schedule.min([Schedule.exponential(Duration.millis(100)), Schedule.spaced(Duration.seconds(2))]).pipe(
  Schedule.upTo({ duration: Duration.millis(walRetryBoundMs) })
)

const noReply = (e: unknown): boolean => e instanceof RequestTimeout || e instanceof Stopped

/**
 * Calls the wal service (`what` names the call in the log): a call that got no reply
 * (RequestTimeout, Stopped: the wal service is restarting or a frame was lost) is retried by
 * {@link walRetry}, each retry logged; a reply that is an error frame or malformed is thrown at
 * once. When the wal service stays silent for {@link walRetryBoundMs}, the process exits.
 */
const callWal = async <A>(what: string, call: () => Promise<A>): Promise<A> => {
  // The first attempt runs as a plain call: this is the path of every persisted Ready.
  try {
    return await call()
  } catch (e) {
    if (!noReply(e)) throw e
  }
  const exit = await Effect.runPromiseExit(
    Effect.sync(() => runDetached(Effect.logWarning(`${what}: no reply from the wal service; retrying`))).pipe(
      Effect.andThen(Effect.sleep(Duration.millis(100))),
      Effect.andThen(Effect.tryPromise({ try: call, catch: (e) => e })),
      // Each attempt after a silent one logs, pauses 100 ms, calls; the schedule adds its pause.
      Effect.retry({ schedule: walRetry, while: noReply }),
      Effect.catch((e) => {
        if (!noReply(e)) return Effect.fail(e)
        runDetached(Effect.logError(`${what}: the wal service did not answer for ${walRetryBoundMs} ms; exiting to start again`))
        return Effect.sync(() => setTimeout(() => process.exit(1), 100)).pipe(Effect.andThen(Effect.never))
      })
    )
  )
  // A reply that is an error frame or malformed is thrown as itself, as on the first attempt.
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

launch("raft", flags, RaftLive)
