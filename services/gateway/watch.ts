/**
 * etcd's Watch service on the gateway: one bidirectional gRPC stream per client stream, each
 * relayed to a watch session on some replica of the watch service (services/watch).
 *
 * The gateway does what etcd's v3rpc watch server does at the stream's edge
 * (server/etcdserver/api/v3rpc/watch.go recvLoop): it validates create requests (empty key,
 * empty range, duplicate watch id), assigns watch ids (client-chosen, or the stream's next free
 * id from 0) and turns filters into flags. Everything about events is the replica's, down to
 * the bytes: the replica sends each response protobuf-encoded as the client receives it, with
 * the header of this gateway's member and etcd's fragments (sendLoop, sendFragments;
 * services/watch/encode.ts) and already in gRPC's message framing, and the gateway writes a
 * message's responses to the client's HTTP/2 stream as they are, one write per run of them
 * (./watch-sender.ts watchSender), reading only the marks that say how each watch moved
 * (shared/watch-relay.ts).
 *
 * Sessions and failover. A stream opens its session on the least-loaded replica the gateway
 * knows of (`watch.place`, ./watch-placement.ts, from the replicas' `watch.load` reports), or,
 * knowing none, through the queue group `watch.open`, which NATS hands to one replica. The
 * replica's responses come back in messages numbered 1, 2, ...;
 * the gateway writes them to the client in order and acknowledges each message once all its
 * responses were sent on the client's HTTP/2 stream (within the client's flow-control
 * window), which is the replica's flow control. For every watch the gateway remembers the next
 * revision its client has not seen (after the last event, or after a progress notification's
 * revision). When the
 * session breaks — the replica stops answering pings, does not know the session, or a message
 * number is skipped (a lost NATS message) — the gateway opens a new session, placed as a new
 * one is (a replica that did not answer is left out until it reports again), and re-creates
 * each watch from that revision with the same id;
 * the client sees nothing but a pause: no event lost, none repeated. A replica that is stopping
 * (SIGTERM) says it is draining, in its load report and in ping replies: the gateway moves its
 * sessions the same way at once, so a drained replica hands its streams over without a loss or
 * a duplicate, and without waiting for pings to time out.
 *
 * Memory. Each session asks its replica for a window (the unacknowledged bytes it may have in
 * flight): the gateway's budget {@link WatchContext.unackedBudgetBytes} shared equally by its
 * sessions, never below minSessionWindowBytes (./watch-sessions.ts); the window is sent at open and with every
 * ping, so it shrinks as streams are added. What a gateway holds for clients that do not read
 * is thus about max(budget, sessions x 64 KiB), plus one revision per stream.
 *
 * Where things are: this file composes the service and declares what it needs
 * ({@link WatchContext}); ./watch-sessions.ts holds the table of sessions, the load reports, the
 * response subscription and the pings; ./watch-stream.ts serves one client stream (requests,
 * session open and failover, delivery and acks); ./watch-create.ts reads a create request;
 * ./watch-placement.ts picks a replica; ./watch-sender.ts writes the relayed bytes.
 */
import type * as grpc from "@grpc/grpc-js"
import type { NatsConnection } from "@nats-io/transport-node"
import type { RpcClient } from "../runtime/rpc.ts"
import type { Wire } from "./convert.ts"
import { makeWatchSessions } from "./watch-sessions.ts"
import type { FailoverReason } from "./watch-sessions.ts"
import { WatchStream } from "./watch-stream.ts"

/** What the Watch handler needs from the gateway. */
export interface WatchContext {
  readonly nc: NatsConnection
  readonly rpc: RpcClient
  readonly cluster: string
  /** This gateway process's subject for watch responses (gateway.watch.<instance>). */
  readonly responseSubject: string
  /** A session id prefix unique to this gateway process. */
  readonly instance: string
  /** Largest request etcd accepts; also the fragment size (etcd sws.maxRequestBytes). */
  readonly maxRequestBytes: number
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
  /**
   * etcd isWatchPermitted: rejects with the auth store's error unless the stream's caller (the
   * current auth info when the stream opened) may read the range; the watch is then refused
   * with etcd's cancel reason. Absent: every watch is permitted (tests without auth).
   */
  readonly checkRead?: (ranges: ReadonlyArray<{ readonly key: Uint8Array; readonly rangeEnd?: Uint8Array }>) => Promise<void>
  readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void
  /** Ping period, in ms (default 1000); a replica silent for 3 periods is presumed dead. */
  readonly pingMs?: number
  /**
   * Watch response bytes this gateway lets replicas have in flight to it, over all its streams
   * (default defaultUnackedBudgetBytes, 128 MiB, ./watch-sessions.ts); shared equally as the
   * sessions' windows.
   */
  readonly unackedBudgetBytes?: number
}

/**
 * Makes the Watch service handler. `Watch` serves one gRPC stream; `close` stops pings and
 * closes every session (at gateway shutdown); `stats` counts for tests and logs.
 */
export const makeWatchHandler = (ctx: WatchContext) => {
  const table = makeWatchSessions(ctx)
  const { stats, failovers, placement } = table
  return {
    /** Serves one Watch stream (grpc bidi handler). */
    Watch: (call: grpc.ServerDuplexStream<Wire, Wire>): void => {
      stats.streams++
      new WatchStream(call, ctx, table)
    },
    /** Stops pinging and closes every session. */
    close: (): void => table.close(),
    stats,
    /** Failovers by reason, for natcd_gateway_watch_failovers_total. */
    failovers: failovers as Readonly<Record<FailoverReason, number>>,
    /** Replicas this gateway tracks for placement. */
    trackedReplicas: () => placement.size
  }
}
