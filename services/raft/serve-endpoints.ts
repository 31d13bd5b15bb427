/**
 * The raft service's bus endpoints (declared in shared/endpoints.ts): raft.propose,
 * raft.readindex, raft.status, raft.entries (for mvcc gap repair), raft.msg (peers),
 * raft.members, and the leader-only raft.confchange and raft.transfer. Each handler turns a
 * request into a call on the driver, the peers or the membership table and replies; a
 * follower forwards a membership change to the leader's raft and relays its answer.
 *
 * Membership changes are validated here as etcd's cluster.ValidateConfigurationChange and
 * server.mayAddMember/mayPromoteMember do (known ids, peer URLs, at most one learner, a
 * learner promoted only once caught up); proposing and waiting is ./change-waiters.ts. A member
 * removed from the cluster refuses proposals and drops peer messages.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import {
  BadLeaderTransferee, MemberBadUrls, MemberExists, MemberNotFound, MemberNotLearner, LearnerNotReady, NoLeader, NotLeader, PeerUrlExists,
  RequestTimeout, TooManyLearners, toErrorData
} from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { raftConfChange, raftEntries, raftMembers, raftMsg, raftPropose, raftReadIndex, raftStatus, raftTransfer, tokensOf } from "../../shared/endpoints.ts"
import { Index } from "../../shared/ids.ts"
import type { MemberId } from "../../shared/ids.ts"
import type { ConfChangeBody, ConfChangeReply, MemberInfo } from "../../shared/schema.ts"
import { endpointOptions } from "../runtime/process.ts"
import { callEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import type { EndpointRequest, RpcClient } from "../runtime/rpc.ts"
import { nowUs, recordSpan } from "../runtime/tracing.ts"
import type { RawNode } from "./core/raw-node.ts"
import type { MemoryStorage } from "./core/storage.ts"
import type { RaftDriver } from "./driver.ts"
import type { ChangeWaiters } from "./change-waiters.ts"
import { nameFromPeerUrl } from "./membership.ts"
import type { Membership } from "./membership.ts"
import { toMvcc } from "./mvcc-feed.ts"
import type { Peers } from "./peers.ts"
import type { RaftStatusReport } from "./status.ts"
import { confChangeForwardTimeoutMs } from "./timeouts.ts"

/** etcd's maximum number of learners (membership.maxLearners). */
const maxLearners = 1
/** A learner is ready for promotion when its match index is this share of the leader's (etcd). */
const learnerReadyPercent = 0.9

/** What the endpoints act on. */
export interface RaftEndpointDeps {
  readonly nc: NatsConnection
  readonly rpc: RpcClient
  readonly at: { readonly cluster: string; readonly member: string }
  readonly memberId: MemberId
  readonly driver: Pick<RaftDriver, "propose" | "leader" | "readIndex" | "applied">
  readonly node: RawNode
  readonly storage: MemoryStorage
  readonly peers: Peers
  readonly membership: Membership
  readonly waiters: ChangeWaiters
  readonly status: RaftStatusReport
  /** True once this member's own removal applied. */
  readonly removed: () => boolean
}

const fail = (error: EtcdError) => ({ err: toErrorData(error) })

/** Serves every raft endpoint; returns them, to stop at shutdown. */
export const serveRaftEndpoints = (d: RaftEndpointDeps): ReadonlyArray<{ readonly stop: () => void }> => {
  const { nc, at, memberId, driver, node, storage, peers, membership } = d
  const opts = endpointOptions("raft")
  return [
    serveEndpoint(nc, raftPropose, at, (req) => {
      let err: string | undefined = d.removed() ? "removed" : undefined
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
    serveEndpoint(nc, raftStatus, at, (req) => req.reply(d.status.now()), opts),
    serveEndpoint(nc, raftEntries, at, (req) => {
      const commitIndex = node.status().commit
      const hi = Math.min(commitIndex, driver.applied(), storage.lastIndex()) + 1
      const from = Math.max(req.body.from, storage.firstIndex())
      const entries = from >= hi ? [] : storage.entries(Index(from), Index(hi), req.body.maxBytes)
      req.reply({ entries: typeof entries === "string" ? [] : entries.map(toMvcc), commitIndex })
    }, opts),
    serveEndpoint(nc, raftMsg, { ...at, from: "*" }, (req) => {
      const sender = tokensOf(raftMsg, req.subject)?.from
      if (!d.removed() && sender !== undefined) peers.receive(req.body, sender)
    }, opts),
    serveEndpoint(nc, raftMembers, at, (req) => {
      const s = node.status()
      req.reply({ members: membership.list(), leader: s.softState.lead, term: s.hardState.term })
    }, opts),
    serveEndpoint(nc, raftConfChange, at, (req) => confChange(d, req), opts),
    serveEndpoint(nc, raftTransfer, at, (req) => {
      const notLeader = leaderOnly(node)
      if (notLeader !== undefined) return req.reply(fail(notLeader))
      const target = req.body.target as MemberId
      const s = node.status()
      if (target === memberId) return req.reply({ ok: { term: s.hardState.term } })
      if (!s.confState.voters.includes(target)) return req.reply(fail(new BadLeaderTransferee({ memberId: target })))
      d.waiters.transferLeader(target).then((ok) =>
        ok
          ? req.reply({ ok: { term: node.status().hardState.term } })
          : req.reply(fail(new RequestTimeout()))
      )
    }, opts)
  ]
}

/** NotLeader or NoLeader unless this member leads. */
const leaderOnly = (node: RawNode): EtcdError | undefined => {
  const s = node.status()
  if (s.softState.raftState === "StateLeader") return undefined
  return s.softState.lead === 0n ? new NoLeader() : new NotLeader()
}

type ConfChangeRequest = EndpointRequest<typeof ConfChangeBody.Type, typeof ConfChangeReply.Type>

/** raft.confchange: validates the change and proposes it (leader), or forwards it to the leader (follower). */
const confChange = (d: RaftEndpointDeps, req: ConfChangeRequest): void => {
  const { node, membership, memberId } = d
  const reply = (r: MemberInfo[] | EtcdError, member?: MemberInfo) =>
    Array.isArray(r)
      ? req.reply({ ok: { ...(member === undefined ? {} : { member }), members: r, term: node.status().hardState.term } })
      : req.reply(fail(r))
  const notLeader = leaderOnly(node)
  if (notLeader !== undefined) {
    // The gateway may reach only its own member's raft: a follower forwards the change
    // to the leader's raft (raft.confchange's declared callers) and relays its answer.
    const lead = node.status().softState.lead
    const leader = lead === 0n ? undefined : membership.get(lead as MemberId)
    const leaderName = leader === undefined ? undefined : leader.name !== "" ? leader.name : nameFromPeerUrl(leader.peerUrls[0] ?? "")
    if (leaderName === undefined || leaderName === d.at.member) return reply(notLeader)
    callEndpoint(d.rpc, raftConfChange, { cluster: d.at.cluster, member: leaderName }, req.body, { timeoutMs: confChangeForwardTimeoutMs }).then(
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
    d.waiters.proposeConfChange(action === "add" ? "AddNode" : "AddLearnerNode", id, peerUrls).then((r) => reply(r, member))
    return
  }
  const id = req.body.memberId as MemberId
  const target = membership.get(id)
  if (target === undefined) return reply(new MemberNotFound({ memberId: id }))
  if (action === "remove") {
    d.waiters.proposeConfChange("RemoveNode", id, []).then((r) => reply(r))
  } else if (action === "update") {
    d.waiters.proposeConfChange("UpdateNode", id, peerUrls).then((r) => reply(r))
  } else {
    if (!target.isLearner) return reply(new MemberNotLearner({ memberId: id }))
    const progress = node.status().progress
    const learnerMatch = progress.get(id)?.match ?? 0
    const leaderMatch = progress.get(memberId)?.match ?? 0
    if (learnerMatch < leaderMatch * learnerReadyPercent) return reply(new LearnerNotReady({ memberId: id }))
    d.waiters.proposeConfChange("AddNode", id, target.peerUrls).then((r) => reply(r))
  }
}
