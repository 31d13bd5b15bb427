/**
 * Following a member's raft status, as the member's gateway (whether it has a leader, for
 * etcd's require-leader requests) and lease service (whether it leads, for lease expiry) need
 * it: the `raft.state` frames the member's raft service pushes within a tick of a change of
 * leader, role or term and every {@link raftStateEveryMs} ms (shared/endpoints.ts raftState),
 * and, as a backstop for a lost frame or a raft service that stopped, a `raft.status` poll every
 * {@link raftStatePollMs} ms while no frame arrived for {@link pushStaleFactor} × that. A poll
 * answer is dropped when a frame arrived while the poll was out: the frame is at least as new.
 * While frames arrive on time the follower sends nothing (an idle member's processes wake for
 * the frames alone).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import type { RaftStatus } from "../../shared/schema.ts"
import { raftState, raftStateEveryMs, raftStatus, subjectOf } from "../../shared/endpoints.ts"
import type { RpcClient, ServeOptions } from "./rpc.ts"
import { callEndpoint, serveEndpoint } from "./rpc.ts"
import { raftStatusPollTimeoutFloorMs } from "./timeouts.ts"

/** How often the follower asks raft.status besides the pushed frames, ms (one poll out at a time). */
export const raftStatePollMs = raftStateEveryMs

/**
 * A poll is skipped while the last pushed frame is younger than this many poll periods: the
 * frames come every {@link raftStateEveryMs} ms, so one frame lost or late by up to half a period
 * does not make the follower poll, and two lost in a row do.
 */
export const pushStaleFactor = 1.5

/** What a follower reports. */
export interface RaftStateHandlers {
  /** A status, pushed or polled, in arrival order (never one older than a frame already seen). */
  readonly onStatus: (status: typeof RaftStatus.Type) => void
  /** A poll that got no answer within its timeout (max(pollMs, 500) ms, retries included). */
  readonly onNoAnswer?: () => void
}

/**
 * Follows member `at.member`'s raft status: subscribes to its raft.state, polls its
 * raft.status at once, and then every `pollMs` (default {@link raftStatePollMs}) while no frame
 * came for {@link pushStaleFactor} × `pollMs`. Returns the function that stops both. A
 * malformed frame is counted and reported through `serveOptions`, as on any endpoint.
 */
export const followRaftState = (
  nc: NatsConnection,
  rpc: RpcClient,
  at: { readonly cluster: string; readonly member: string },
  handlers: RaftStateHandlers,
  options: { readonly pollMs?: number; readonly serveOptions?: ServeOptions } = {}
): { readonly stop: () => void } => {
  const pollMs = options.pollMs ?? raftStatePollMs
  let pushedAtMs = 0
  const frames = serveEndpoint(nc, raftState, at, (req) => {
    pushedAtMs = Date.now()
    handlers.onStatus(req.body)
  }, options.serveOptions)
  const statusSubject = subjectOf(raftStatus, at)
  let polling = false
  const poll = (backstop: boolean) => {
    if (polling || (backstop && Date.now() - pushedAtMs < pollMs * pushStaleFactor)) return
    polling = true
    const askedAtMs = Date.now()
    callEndpoint(rpc, raftStatus, statusSubject, {}, { timeoutMs: Math.max(pollMs, raftStatusPollTimeoutFloorMs), traceparent: "" }).then(
      (status) => {
        if (pushedAtMs < askedAtMs) handlers.onStatus(status)
      },
      () => handlers.onNoAnswer?.()
    ).finally(() => (polling = false))
  }
  poll(false)
  const timer = setInterval(() => poll(true), pollMs)
  timer.unref?.()
  return {
    stop: () => {
      frames.stop()
      clearInterval(timer)
    }
  }
}
