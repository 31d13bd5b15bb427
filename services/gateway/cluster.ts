/**
 * etcd's Cluster service (MemberList, MemberAdd, MemberRemove, MemberUpdate, MemberPromote) and
 * Maintenance.MoveLeader, served by the gateway.
 *
 * The membership lives in the raft services (services/raft/membership.ts). MemberList asks the
 * member's own raft service. Changes must be proposed by the leader (etcd server.go
 * AddMember/RemoveMember/PromoteMember), so the gateway sends them to the raft service of the
 * member its own raft names as leader, retrying once the leader is known if it changed.
 * MoveLeader is served only when this member leads, as etcd's (etcdctl sends it to the leader's
 * endpoint); elsewhere it fails with "etcdserver: not leader".
 */
import type { EtcdErrorData } from "../../shared/errors.ts"
import { ConfChangeReply, MembersReply, TransferReply } from "../../shared/schema.ts"
import type { MemberInfo } from "../../shared/schema.ts"
import { subject } from "../../shared/subjects.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { okOrError } from "../runtime/rpc.ts"
import * as Schema from "effect/Schema"
import { nameFromPeerUrl } from "../raft/membership.ts"
import * as Convert from "./convert.ts"
import type { Wire } from "./convert.ts"

/** What the cluster handlers need. */
export interface ClusterContext {
  readonly rpc: RpcClient
  readonly cluster: string
  readonly member: string
  readonly requestTimeoutMs: number
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
}

const memberToWire = (m: MemberInfo): Wire => ({
  ID: m.id.toString(),
  name: m.name,
  peerURLs: m.peerUrls,
  clientURLs: m.clientUrls,
  isLearner: m.isLearner
})

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Makes the Cluster handlers and MoveLeader as promise-returning functions of wire objects. */
export const makeClusterHandlers = (ctx: ClusterContext) => {
  const raftSubject = (member: string, endpoint: "members" | "confchange" | "transfer") =>
    subject({ cluster: ctx.cluster, member, service: "raft", endpoint })

  const members = async () => {
    const frame = await ctx.rpc.call(raftSubject(ctx.member, "members"), "raft.members", {}, { timeoutMs: ctx.requestTimeoutMs })
    return Schema.decodeUnknownSync(MembersReply)(frame.body)
  }

  const header = async (raftTerm: number): Promise<Wire> => {
    const id = await ctx.identity()
    return { cluster_id: id.clusterId.toString(), member_id: id.memberId.toString(), raft_term: raftTerm }
  }

  /** Sends a membership change to the leader's raft service, following leader changes until the deadline. */
  const confChange = async (body: { action: string; memberId: bigint; peerUrls: ReadonlyArray<string> }) => {
    const deadline = Date.now() + ctx.requestTimeoutMs
    let last: EtcdErrorData = { _tag: "NoLeader" }
    while (Date.now() < deadline) {
      const view = await members()
      const leader = view.members.find((m) => m.id === view.leader)
      const leaderName = leader === undefined ? undefined : leader.name !== "" ? leader.name : nameFromPeerUrl(leader.peerUrls[0] ?? "")
      if (leaderName !== undefined) {
        try {
          const frame = await ctx.rpc.call(raftSubject(leaderName, "confchange"), "confchange", body, { timeoutMs: Math.max(1, deadline - Date.now()) })
          return okOrError(frame, ConfChangeReply)
        } catch (e) {
          last = e as EtcdErrorData
          if (last._tag !== "NotLeader" && last._tag !== "NoLeader") throw e
        }
      }
      await sleep(100)
    }
    throw last
  }

  return {
    MemberList: async (_w: Wire) => {
      const view = await members()
      return { header: await header(view.term), members: view.members.map(memberToWire) }
    },
    MemberAdd: async (w: Wire) => {
      const r = await confChange({ action: w.isLearner === true ? "addLearner" : "add", memberId: 0n, peerUrls: (w.peerURLs ?? []) as string[] })
      return { header: await header(r.term), ...(r.member === undefined ? {} : { member: memberToWire(r.member) }), members: r.members.map(memberToWire) }
    },
    MemberRemove: async (w: Wire) => {
      const r = await confChange({ action: "remove", memberId: Convert.wireBig(w.ID), peerUrls: [] })
      return { header: await header(r.term), members: r.members.map(memberToWire) }
    },
    MemberUpdate: async (w: Wire) => {
      const r = await confChange({ action: "update", memberId: Convert.wireBig(w.ID), peerUrls: (w.peerURLs ?? []) as string[] })
      return { header: await header(r.term), members: r.members.map(memberToWire) }
    },
    MemberPromote: async (w: Wire) => {
      const r = await confChange({ action: "promote", memberId: Convert.wireBig(w.ID), peerUrls: [] })
      return { header: await header(r.term), members: r.members.map(memberToWire) }
    },
    MoveLeader: async (w: Wire) => {
      const frame = await ctx.rpc.call(raftSubject(ctx.member, "transfer"), "transfer", { target: Convert.wireBig(w.targetID) }, {
        timeoutMs: ctx.requestTimeoutMs
      })
      const r = okOrError(frame, TransferReply)
      return { header: await header(r.term) }
    }
  }
}
