/**
 * What the member's raft tells about itself: its status as raft.status answers it, the
 * raft.state frames it publishes when the leader, role or term changes (and at least every
 * raftStateEveryMs), and its metrics and readiness (etcd server/etcdserver/metrics.go names).
 *
 * It only reads the core's state and counts leader changes; it changes nothing.
 */
import type { RaftStatus } from "../../shared/schema.ts"
import { raftState, raftStateEveryMs, subjectOf } from "../../shared/endpoints.ts"
import type { ClusterId, MemberId } from "../../shared/ids.ts"
import { addReadinessCheck } from "../runtime/health.ts"
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import { publishEndpoint } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import type { RawNode } from "./core/raw-node.ts"
import type { SoftState } from "./core/types.ts"
import type { Membership } from "./membership.ts"
import type { PeerCounters } from "./peers.ts"

/** The member's raft status, as raft.status answers and raft.state publishes it. */
export type RaftStatusBody = typeof RaftStatus.Type

export class RaftStatusReport {
  /** Leaders seen since the start (a new non-zero leader counts once). */
  private leaderChanges = 0
  private lastLeader = 0n
  /** What raft.state last said, and when (ms since the epoch). */
  private stateTold = { leader: -1n, raftState: "", term: -1, atMs: 0 }
  private readonly rpc: RpcClient
  private readonly stateSubject: string
  private readonly self: { readonly id: MemberId; readonly name: string; readonly clusterId: ClusterId }
  private readonly node: RawNode
  /** The highest index handed to the mvcc service (`RaftDriver.applied`). */
  private readonly applied: () => number
  private readonly counters: PeerCounters
  private readonly membership: Membership

  constructor(deps: {
    readonly rpc: RpcClient
    readonly at: { readonly cluster: string; readonly member: string }
    readonly self: { readonly id: MemberId; readonly name: string; readonly clusterId: ClusterId }
    readonly node: RawNode
    readonly applied: () => number
    readonly counters: PeerCounters
    readonly membership: Membership
  }) {
    this.rpc = deps.rpc
    this.stateSubject = subjectOf(raftState, deps.at)
    this.self = deps.self
    this.node = deps.node
    this.applied = deps.applied
    this.counters = deps.counters
    this.membership = deps.membership
  }

  /** The member's raft status now. */
  now(): RaftStatusBody {
    const s = this.node.status()
    const memberId = this.self.id
    return {
      memberId,
      clusterId: this.self.clusterId,
      leader: s.softState.lead,
      term: s.hardState.term,
      commitIndex: s.commit,
      appliedIndex: this.applied(),
      raftState: s.softState.raftState,
      isLearner: s.confState.learners.includes(memberId),
      peers: { ...this.counters },
      published: this.membership.get(memberId)?.name === this.self.name
    }
  }

  /**
   * Once per tick: publishes raft.state when the leader, role or term changed since the last
   * one, or raftStateEveryMs passed (a lost frame is repaired by the next; the followers poll
   * raft.status slowly besides, to notice a raft service that stopped).
   */
  tellState(): void {
    const status = this.now()
    const now = Date.now()
    const told = this.stateTold
    if (status.leader === told.leader && status.raftState === told.raftState && status.term === told.term && now - told.atMs < raftStateEveryMs) return
    this.stateTold = { leader: status.leader, raftState: status.raftState, term: status.term, atMs: now }
    publishEndpoint(this.rpc, raftState, this.stateSubject, status)
  }

  /** The core's soft state changed: counts a new leader. */
  softState(soft: SoftState): void {
    if (soft.lead !== 0n && soft.lead !== this.lastLeader) this.leaderChanges++
    if (soft.lead !== 0n) this.lastLeader = soft.lead
  }

  /** Registers the raft metrics and the "leader" readiness check; `removed` tells whether this member was removed. */
  register(removed: () => boolean): void {
    const node = this.node
    const memberId = this.self.id
    gaugeFrom("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", () => (node.status().softState.lead === 0n ? 0 : 1))
    gaugeFrom("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", () => (node.status().softState.raftState === "StateLeader" ? 1 : 0))
    gaugeFrom("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", () => (node.status().confState.learners.includes(memberId) ? 1 : 0))
    counterFrom("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", () => this.leaderChanges)
    gaugeFrom("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", () => node.status().commit)
    gaugeFrom("natcd_raft_applied_index", "The highest raft index handed to the mvcc service.", () => this.applied())
    gaugeFrom("natcd_raft_term", "The member's current raft term.", () => node.status().hardState.term)
    counterFrom("natcd_raft_snapshots_installed_total", "Snapshots received from the leader and installed.", () => this.counters.snapshotsInstalled)
    addReadinessCheck("leader", () => (removed() ? "removed from the cluster" : node.status().softState.lead === 0n ? "no leader" : undefined))
  }
}
