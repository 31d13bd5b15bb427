/**
 * Where the member's raft says the leader is, for the lease service: the last raft status
 * (pushed, polled or asked for), the leader's commit index, and the subject of the leader's lease
 * endpoints, found through `raft.status` and `raft.members`. A follower's lease service uses it
 * to forward keep-alives and TimeToLive to the leader's (./requests.ts); the leader's uses the
 * commit index to catch its view of the lease table up (./shell.ts).
 *
 * It holds no lease state and decides nothing about leases: it only answers "who leads, and how
 * to reach its lease service".
 */
import { leaseKeepAlive, leaseTimeToLive, raftMembers, raftStatus, subjectOf } from "../../shared/endpoints.ts"
import type { RaftStatus } from "../../shared/schema.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint } from "../runtime/rpc.ts"
import { raftCallTimeoutMs } from "./timeouts.ts"

/** A lease endpoint a follower forwards to the leader's lease service. */
export type ForwardedEndpoint = "keepalive" | "timetolive"

/**
 * The member's view of its raft leader. Invariant: `leaderName`, when set, names the member
 * whose id it carries (learned from `raft.members`).
 */
export class LeaderRoute {
  private status: typeof RaftStatus.Type | undefined
  private leaderName: { readonly id: bigint; readonly name: string } | undefined
  private readonly rpc: RpcClient
  private readonly cluster: string
  private readonly subjects: { readonly raftStatus: string; readonly raftMembers: string }

  constructor(rpc: RpcClient, at: { readonly cluster: string; readonly member: string }) {
    this.rpc = rpc
    this.cluster = at.cluster
    this.subjects = { raftStatus: subjectOf(raftStatus, at), raftMembers: subjectOf(raftMembers, at) }
  }

  /** Takes a raft status pushed or polled elsewhere. */
  observe(status: typeof RaftStatus.Type): void {
    this.status = status
  }

  /** Forgets the status (the leader it named did not take a request), so the next lookup asks raft. */
  forget(): void {
    this.status = undefined
  }

  /**
   * The leader's commit index, from a fresh raft status (kept for later lookups). Rejects as
   * the `raft.status` call does (RequestTimeout, Stopped) after {@link raftCallTimeoutMs}.
   */
  async commitIndex(): Promise<number> {
    const s = await callEndpoint(this.rpc, raftStatus, this.subjects.raftStatus, {}, { timeoutMs: raftCallTimeoutMs })
    this.status = s
    return s.commitIndex
  }

  /**
   * The subject of the leader's lease `endpoint`: "self" when this member leads, undefined when
   * no leader is known (raft does not answer, names none, or its name is not known yet). Never
   * rejects.
   */
  async leaderSubject(endpoint: ForwardedEndpoint): Promise<string | "self" | undefined> {
    if (this.status === undefined) {
      try {
        await this.commitIndex()
      } catch {
        return undefined
      }
    }
    const s = this.status!
    if (s.leader === 0n) return undefined
    if (s.leader === s.memberId) return "self"
    if (this.leaderName?.id !== s.leader) {
      try {
        const members = (await callEndpoint(this.rpc, raftMembers, this.subjects.raftMembers, {}, { timeoutMs: raftCallTimeoutMs })).members
        const m = members.find((x) => x.id === s.leader)
        if (m === undefined || m.name === "") return undefined
        this.leaderName = { id: m.id, name: m.name }
      } catch {
        return undefined
      }
    }
    const leader = { cluster: this.cluster, member: this.leaderName!.name }
    return endpoint === "keepalive" ? subjectOf(leaseKeepAlive, leader) : subjectOf(leaseTimeToLive, leader)
  }
}
