/**
 * The raft service's composition: it builds one member's raft from its pieces, wires them
 * through the driver's IO and runs the ticks. It holds no logic of its own beyond the wiring
 * and the one fact every piece reads: whether this member's own removal applied.
 *
 * Where a change goes:
 * - ./bootstrap.ts: the start (log loaded from the wal service, or bootstrapped; mvcc's applied index);
 * - ./wal-client.ts: every call to the wal service, with its bounded, logged retry;
 * - ./driver.ts: the Ready/Advance loop (persist before send, apply in order);
 * - ./peers.ts: raft messages to and from the other members;
 * - ./mvcc-feed.ts: committed entries handed to the mvcc service;
 * - ./membership.ts: the membership table; ./change-waiters.ts: changes awaiting their apply;
 * - ./snapshotter.ts: this member's snapshots and log compaction;
 * - ./snapshot-transfer.ts: snapshots sent by the leader and installed by followers;
 * - ./serve-endpoints.ts: the raft.* endpoints; ./status.ts: status, raft.state, metrics;
 * - ./proposal-spans.ts: trace spans of proposals; ./ticker.ts: what runs every heartbeat.
 *
 * The pieces refer to each other through closures that run only once the loop does (after
 * the endpoints and the ticks start, at the end of this layer), so they can be built in any
 * order.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { randomInt } from "node:crypto"
import { raftMsg, subjectOf } from "../../shared/endpoints.ts"
import { Index } from "../../shared/ids.ts"
import { clusterIdFor, memberIdFor } from "../../shared/membership.ts"
import type { CommonFlags } from "../runtime/process.ts"
import { Nats } from "../runtime/process.ts"
import { publishEndpoint } from "../runtime/rpc.ts"
import { RawNode } from "./core/raw-node.ts"
import { startFromWal } from "./bootstrap.ts"
import { ChangeWaiters } from "./change-waiters.ts"
import { RaftDriver } from "./driver.ts"
import { decodeSnapshotData, Membership, nameFromPeerUrl } from "./membership.ts"
import { MvccFeed } from "./mvcc-feed.ts"
import { Peers } from "./peers.ts"
import { ProposalSpans } from "./proposal-spans.ts"
import { serveRaftEndpoints } from "./serve-endpoints.ts"
import { SnapshotTransfer } from "./snapshot-transfer.ts"
import { Snapshotter } from "./snapshotter.ts"
import { RaftStatusReport } from "./status.ts"
import { Ticker } from "./ticker.ts"
import { WalClient } from "./wal-client.ts"
import { requestTimeoutBaseMs } from "./timeouts.ts"

/** The raft process's own flags (besides the common ones). */
export interface RaftFlags {
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

/**
 * The wal service answered the log's load or the bootstrap write with an error (`cause`, as
 * ./bootstrap.ts startFromWal rejected): the process cannot start (the supervisor starts it again).
 */
class LogLoadFailed extends Data.TaggedError("LogLoadFailed")<{ readonly cause: unknown }> {}

/** One member's raft, running until the layer is released; fails with LogLoadFailed at start. */
export const raftLayer = (flags: CommonFlags & RaftFlags) => Layer.effectDiscard(
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
    const requestTimeoutMs = requestTimeoutBaseMs + 2 * flags.electionTimeout
    /** This member's standing. Invariant: `removed` turns true once, when its own RemoveNode applies. */
    const standing = { removed: false }
    const removed = () => standing.removed

    // 1-2. The log from the wal service (or the bootstrap entries), and mvcc's applied index.
    // Only traced proposals read the role, and they arrive once `node` exists.
    const spans = new ProposalSpans(() => (node.status().softState.raftState === "StateLeader" ? "leader" : "follower"))
    const wal = new WalClient(rpc, instance, at, spans)
    const start = yield* Effect.tryPromise({
      try: () => startFromWal(wal, rpc, { cluster: flags.cluster, member: flags.member, initialNames, initialClusterState: flags.initialClusterState }),
      catch: (cause) => new LogLoadFailed({ cause })
    })
    const { storage, skipApplyUpTo } = start
    const startIndex: number = start.snapshot?.metadata.index ?? 0
    const node: RawNode = new RawNode({
      id: memberId,
      electionTick: Math.max(2, Math.round(flags.electionTimeout / flags.heartbeatInterval)),
      heartbeatTick: 1,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 512,
      preVote: true,
      checkQuorum: true,
      applied: Index(startIndex),
      randomInt: (n) => randomInt(n)
    }, storage)

    // 3. Membership, peers, snapshots, and the Ready loop.
    const membership = new Membership(flags.cluster)
    if (start.snapshotData !== undefined) membership.restore(start.snapshotData.members)
    const startMembers = membership.list()
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
      step: (m) => (m.type === "MsgSnap" ? transfer.installThenStep(m) : driver.step(m)),
      term: () => node.status().hardState.term
    })
    const feed = new MvccFeed(rpc, at, skipApplyUpTo, () => node.status().hardState.term)
    const driver: RaftDriver = new RaftDriver(node, storage, {
      persist: (hardState, entries, traceparent) => wal.append(hardState, entries, traceparent),
      send: (messages) => {
        for (const m of messages) if (m.type === "MsgSnap") transfer.watchSend(m.to)
        peers.send(messages)
      },
      apply: (committed, commitIndex) => {
        for (const e of committed) {
          const change = membership.apply(e)
          if (change === undefined) continue
          snapshotter.membershipChanged(e.index, membership.list())
          if (change.kind === "conf") {
            waiters.confApplied(change.requestId, membership.list())
            if (change.change.type === "RemoveNode" && change.change.nodeId === memberId) standing.removed = true
          }
        }
        feed.publish(committed, commitIndex, spans.commit(committed, commitIndex))
        snapshotter.applied(committed)
      },
      persistSnapshot: async (snapshot) => {
        await wal.saveReceivedSnapshot(snapshot)
        const data = decodeSnapshotData(snapshot.data)
        if (data !== undefined) membership.restore(data.members)
        snapshotter.restored(snapshot.metadata.index, membership.list())
      },
      onSoftState: (soft) => {
        status.softState(soft)
        waiters.softState(soft)
      }
    }, (e) => {
      console.error(JSON.stringify({ level: "FATAL", service: "raft", member: flags.member, message: "raft loop failed", error: String((e as Error)?.stack ?? e) }))
      process.exit(1)
    })
    const snapshotter = new Snapshotter({ raft: driver, storage, wal, rpc, at, policy: flags }, startIndex, startMembers)
    const transfer = new SnapshotTransfer({ rpc, at, storage, node, step: (m) => driver.step(m), counters: peers.counters })
    const waiters = new ChangeWaiters(driver, requestTimeoutMs)
    const status = new RaftStatusReport({
      rpc, at, self: { id: memberId, name: flags.member, clusterId }, node, applied: () => driver.applied(), counters: peers.counters, membership
    })

    // 4. Endpoints, metrics and readiness.
    const endpoints = serveRaftEndpoints({ nc, rpc, at, memberId, driver, node, storage, peers, membership, waiters, status, removed })
    yield* Effect.addFinalizer(() => Effect.sync(() => endpoints.forEach((e) => e.stop())))
    status.register(removed)

    // 5. Ticks.
    const ticker = new Ticker({ self: { id: memberId, name: flags.member, clientUrls }, node, driver, membership, feed, status, removed })
    const stopTicks = ticker.start(flags.heartbeatInterval)
    yield* Effect.addFinalizer(() => Effect.sync(stopTicks))
    yield* Effect.logInfo("raft started").pipe(
      Effect.annotateLogs({ memberId: memberId.toString(16), fresh: start.fresh, state: flags.initialClusterState, lastIndex: storage.lastIndex(), commit: start.commit, skipApplyUpTo })
    )
  })
)
