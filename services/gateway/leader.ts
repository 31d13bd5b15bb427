/**
 * Whether the member has a leader, for etcd's require-leader requests (the `hasleader` gRPC
 * metadata that clientv3.WithRequireLeader sends; Kubernetes sets it on its watches), as etcd's
 * v3rpc interceptors do (server/etcdserver/api/v3rpc/interceptor.go):
 * - a unary call or a new stream with the metadata is refused "etcdserver: no leader" at once
 *   while the member has no leader;
 * - streams opened with it are cancelled with that error once the member has had no leader for
 *   {@link noLeaderChecks} election timeouts in a row (etcd monitorLeader's maxNoLeaderCnt).
 *
 * The state comes from the member's raft service, followed as ../runtime/raft-state.ts does it
 * (pushed `raft.state` frames, and a `raft.status` poll as a backstop). Until the first news the
 * member is taken to have a leader; a poll that gets no answer counts as no leader (the raft
 * service is down or wedged).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { followRaftState } from "../runtime/raft-state.ts"
import type { RpcClient, ServeOptions } from "../runtime/rpc.ts"

/** The gRPC metadata key and value of a require-leader request (etcd rpctypes.MetadataRequireLeaderKey / MetadataHasLeader). */
export const requireLeaderKey = "hasleader"
export const requireLeaderValue = "true"

/** Election timeouts in a row without a leader after which require-leader streams are cancelled (etcd maxNoLeaderCnt). */
export const noLeaderChecks = 3

/** Settings of a {@link LeaderMonitor}. */
export interface LeaderMonitorOptions {
  /** The member whose raft service is followed. */
  readonly at: { readonly cluster: string; readonly member: string }
  /** The member's election timeout, ms: the period of etcd's monitorLeader check. */
  readonly electionTimeoutMs: number
}

/** Follows the member's leader; see the module note. */
export class LeaderMonitor {
  private leaderKnown = true
  private readonly streams = new Set<() => void>()
  private readonly checkTimer: ReturnType<typeof setInterval>
  private failedChecks = 0
  private readonly raft: { readonly stop: () => void }

  constructor(nc: NatsConnection, rpc: RpcClient, options: LeaderMonitorOptions, serveOptions: ServeOptions = {}) {
    this.raft = followRaftState(nc, rpc, options.at, {
      onStatus: (s) => this.observe(s.leader !== 0n),
      onNoAnswer: () => this.observe(false)
    }, { serveOptions })
    // etcd monitorLeader: every election timeout, count checks without a leader.
    this.checkTimer = setInterval(() => {
      if (this.leaderKnown) {
        this.failedChecks = 0
        return
      }
      this.failedChecks++
      if (this.failedChecks < noLeaderChecks) return
      const cancels = [...this.streams]
      this.streams.clear()
      for (const cancel of cancels) cancel()
    }, options.electionTimeoutMs)
    this.checkTimer.unref?.()
  }

  /** Takes a leader state seen elsewhere (e.g. by Maintenance.Status's own raft.status call). */
  observe(hasLeader: boolean): void {
    this.leaderKnown = hasLeader
  }

  /** False while the member has no leader (as last seen). */
  hasLeader(): boolean {
    return this.leaderKnown
  }

  /**
   * Registers a require-leader stream: `cancel` is called (once) when the leader has been lost
   * for {@link noLeaderChecks} election timeouts. Returns the function that unregisters it
   * (call it when the stream ends). Bound: one entry per open require-leader stream.
   */
  watchStream(cancel: () => void): () => void {
    this.streams.add(cancel)
    return () => this.streams.delete(cancel)
  }

  /** Stops following the raft service. */
  stop(): void {
    this.raft.stop()
    clearInterval(this.checkTimer)
    this.streams.clear()
  }
}
