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
import type { ConfChangeBody, MemberInfo } from "../../shared/schema.ts"
import { raftConfChange, raftMembers, raftTransfer } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import * as Convert from "./convert.ts"
import type { Wire } from "./convert.ts"
import { retryPromise } from "../runtime/retry.ts"

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


/** Makes the Cluster handlers and MoveLeader as promise-returning functions of wire objects. */
export const makeClusterHandlers = (ctx: ClusterContext) => {
  const own = { cluster: ctx.cluster, member: ctx.member }

  const members = () => callEndpoint(ctx.rpc, raftMembers, own, {}, { timeoutMs: ctx.requestTimeoutMs })

  const header = async (raftTerm: number): Promise<Wire> => {
    const id = await ctx.identity()
    return { cluster_id: id.clusterId.toString(), member_id: id.memberId.toString(), raft_term: raftTerm }
  }

  /**
   * Sends a membership change to the member's own raft service (which forwards it to the
   * leader's), retrying every 100 ms while raft answers NotLeader or NoLeader (a leader is being
   * elected or learned), until `requestTimeoutMs`; then fails with that last answer. Other
   * failures (e.g. MemberExists, RequestTimeout) end it at once.
   */
  const confChange = (body: typeof ConfChangeBody.Type) => {
    const deadline = Date.now() + ctx.requestTimeoutMs
    return retryPromise({
      name: "membership change",
      deadlineMs: ctx.requestTimeoutMs,
      backoff: { initialMs: 100 },
      retryable: (e) => {
        const tag = (e as EtcdErrorData | undefined)?._tag
        return tag === "NotLeader" || tag === "NoLeader"
      },
      atBound: (last) => last,
      logLevel: "Info",
      logFields: { action: body.action }
    }, async () => okOf(await callEndpoint(ctx.rpc, raftConfChange, own, body, { timeoutMs: Math.max(1, deadline - Date.now()) })))
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
      const r = okOf(await callEndpoint(ctx.rpc, raftTransfer, own, { target: Convert.wireBig(w.targetID) }, {
        timeoutMs: ctx.requestTimeoutMs
      }))
      return { header: await header(r.term) }
    }
  }
}
