/**
 * Whether the member has a leader, for etcd's require-leader requests (the `hasleader` gRPC
 * metadata that clientv3.WithRequireLeader sends; Kubernetes sets it on its watches), as etcd's
 * v3rpc interceptors do (server/etcdserver/api/v3rpc/interceptor.go):
 * - a unary call or a new stream with the metadata is refused "etcdserver: no leader" at once
 *   while the member has no leader;
 * - streams opened with it are cancelled with that error once the member has had no leader for
 *   {@link noLeaderChecks} election timeouts in a row (etcd monitorLeader's maxNoLeaderCnt).
 *
 * The state comes from the member's raft service: the `raft.state` frames it publishes when the
 * leader changes (and every second), and a slower poll of `raft.status` every
 * {@link LeaderMonitorOptions.pollMs}. Until the first news the member is taken to have a
 * leader; a poll that gets no answer counts as no leader (the raft service is down or wedged).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import type { RpcClient, ServeOptions } from "../runtime/rpc.ts"
import { callEndpoint, serveEndpoint } from "../runtime/rpc.ts"
import { raftState, raftStatus } from "../../shared/endpoints.ts"

/** The gRPC metadata key and value of a require-leader request (etcd rpctypes.MetadataRequireLeaderKey / MetadataHasLeader). */
export const requireLeaderKey = "hasleader"
export const requireLeaderValue = "true"

/** Election timeouts in a row without a leader after which require-leader streams are cancelled (etcd maxNoLeaderCnt). */
export const noLeaderChecks = 3

/** Settings of a {@link LeaderMonitor}. */
export interface LeaderMonitorOptions {
  /** The member's `raft.status` subject. */
  readonly raftStatusSubject: string
  /** The member whose `raft.state` frames are followed. */
  readonly at: { readonly cluster: string; readonly member: string }
  /** The member's election timeout, ms: the period of etcd's monitorLeader check. */
  readonly electionTimeoutMs: number
  /** How often the raft service is asked, ms. */
  readonly pollMs: number
}

/** Follows the member's leader; see the module note. */
export class LeaderMonitor {
  private leaderKnown = true
  private readonly streams = new Set<() => void>()
  private readonly pollTimer: ReturnType<typeof setInterval>
  private readonly checkTimer: ReturnType<typeof setInterval>
  private polling = false
  private failedChecks = 0
  private readonly stateFrames: { readonly stop: () => void }
  /** When the last raft.state frame arrived (ms since the epoch): older poll answers are dropped. */
  private statePushedAtMs = 0

  constructor(nc: NatsConnection, rpc: RpcClient, options: LeaderMonitorOptions, serveOptions: ServeOptions = {}) {
    this.stateFrames = serveEndpoint(nc, raftState, options.at, (req) => {
      this.statePushedAtMs = Date.now()
      this.observe(req.body.leader !== 0n)
    }, serveOptions)
    const poll = () => {
      if (this.polling) return
      this.polling = true
      const askedAtMs = Date.now()
      callEndpoint(rpc, raftStatus, options.raftStatusSubject, {}, { timeoutMs: Math.max(options.pollMs, 500), traceparent: "" }).then(
        (s) => {
          // A raft.state frame that came while this poll was out is at least as new.
          if (this.statePushedAtMs < askedAtMs) this.observe(s.leader !== 0n)
        },
        () => this.observe(false)
      ).finally(() => (this.polling = false))
    }
    poll()
    this.pollTimer = setInterval(poll, options.pollMs)
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
    this.pollTimer.unref?.()
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
    this.stateFrames.stop()
    clearInterval(this.pollTimer)
    clearInterval(this.checkTimer)
    this.streams.clear()
  }
}
