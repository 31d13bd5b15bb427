/**
 * The relay floor's publisher, in its two forms, neither of them measured for the floor: the
 * `publisher` child plays the watch replica for variants `grpc-js` and `http2`, one session per
 * stream on the floor's own subjects, paced by the relay's acks; the `replica` child speaks the
 * replica's side of the real protocol to the gateway's Watch service (variant `gateway`). Both
 * encode their responses with the replica's own encoder and publish the revisions up to the
 * last the parent told them (`{ publishUpTo }`).
 *
 * What it is not: the relay (./relay.ts) or the client (./client.ts); the benchmark as a whole
 * is described in ./main.ts.
 */
import { randomBytes } from "node:crypto"
import { connect as connectNats } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import {
  gatewayWatch, inboxPrefix, watchAck, watchCancel, watchClose, watchCreate, watchOpen, watchPing, watchProgress
} from "../../shared/endpoints.ts"
import { encodeFrame } from "../../shared/frame.ts"
import { FrameKinds } from "../../shared/schema.ts"
import type { WatchOpenBody } from "../../shared/schema.ts"
import { grpcPrefixBytes, packRelay } from "../../shared/watch-relay.ts"
import type { RelayedResponse } from "../../shared/watch-relay.ts"
import { makeStreamEncoder } from "../../services/watch/encode.ts"
import { defaultHubOptions } from "../../services/watch/core/hub-options.ts"
import { defaultStreamFormat } from "../../services/watch/core/messages.ts"
import { publishEndpoint, RpcClient, serveEndpoint } from "../../services/runtime/rpc.ts"
import type { WatchEvent } from "../../services/watch/core/watcher-group.ts"
import { answerCpuProbes } from "../proc.ts"
import { ackSubject, cluster, frameBody, natsServers, replicaName, sessionId, sessionSubject } from "./shared.ts"
import type { AckBody, FloorOptions } from "./shared.ts"

const isPublishUpTo = (m: unknown): m is { publishUpTo: number } => typeof (m as { publishUpTo?: unknown } | null)?.publishUpTo === "number"

/**
 * Once `nc`'s subscriptions reached the server: whenever the parent raises the last revision to
 * publish (`{ publishUpTo }`), `raise` records it and every session of `sessions` publishes what
 * its window allows; and CPU probes are answered from then on.
 */
const takeOrders = async (nc: NatsConnection, sessions: ReadonlyMap<string, { pump(): void }>, raise: (upTo: number) => void): Promise<void> => {
  await nc.flush()
  process.on("message", (m) => {
    if (!isPublishUpTo(m)) return
    raise(m.publishUpTo)
    for (const s of sessions.values()) s.pump()
  })
  answerCpuProbes()
}

/** The PUT of revision `revision`: one event object, so the encoder encodes it once per stream. */
const putEvent = (revision: number, value: Uint8Array): WatchEvent => ({
  type: "PUT",
  kv: { key: Buffer.from(`k/${String(revision).padStart(6, "0")}`), createRevision: revision, modRevision: revision, version: 1, value, lease: 0n }
})

type StreamEncoder = ReturnType<typeof makeStreamEncoder>

/**
 * One stream's events responses in the replica's order, revision by revision, watch by watch
 * (`watchIds`, read as it is at each call); undefined past revision `upTo()` or while there is
 * no watch.
 */
const responseFeed = (encoder: StreamEncoder, watchIds: ReadonlyArray<number>, upTo: () => number): (() => RelayedResponse | undefined) => {
  const value = new Uint8Array(256).fill(0x64)
  let revision = 1
  let watcher = 0
  let event = putEvent(revision, value)
  return () => {
    if (revision > upTo() || watchIds.length === 0) return undefined
    const [response] = encoder.encode({ watchId: watchIds[watcher]!, revision, events: [event] }, 1, false)
    if (++watcher === watchIds.length) {
      watcher = 0
      event = putEvent(++revision, value)
    }
    return response
  }
}

const framedBytes = (r: RelayedResponse) => grpcPrefixBytes + r.bytes.length

/**
 * A session at the publisher: numbered messages (1, 2, ...) of at most `messageBytes` of framed
 * responses (one response at least) taken from `next`, handed to `publish` while the
 * unacknowledged bytes stay within `windowBytes`.
 */
const windowedSession = (
  o: FloorOptions,
  next: () => RelayedResponse | undefined,
  publish: (seq: number, batch: ReadonlyArray<RelayedResponse>) => void,
  windowBytes: number
) => {
  const inflight: Array<{ readonly seq: number; readonly bytes: number }> = []
  let carry: RelayedResponse | undefined
  let seq = 0
  let unacked = 0
  let held: { readonly seq: number; readonly bytes: number; readonly batch: ReadonlyArray<RelayedResponse> } | undefined
  const build = () => {
    carry ??= next()
    if (carry === undefined) return undefined
    const batch = [carry]
    let bytes = framedBytes(carry)
    for (carry = next(); carry !== undefined && bytes + framedBytes(carry) <= o.messageBytes; carry = next()) {
      batch.push(carry)
      bytes += framedBytes(carry)
    }
    return { seq: ++seq, bytes, batch }
  }
  const pump = () => {
    for (;;) {
      held ??= build()
      if (held === undefined || (unacked > 0 && unacked + held.bytes > windowBytes)) return
      publish(held.seq, held.batch)
      inflight.push(held)
      unacked += held.bytes
      held = undefined
    }
  }
  const ack = (acked: number) => {
    while (inflight.length > 0 && inflight[0]!.seq <= acked) unacked -= inflight.shift()!.bytes
    pump()
  }
  return { pump, ack }
}

/** The floor's session of stream `index`: watches 0..watchersPerStream-1, messages on the stream's own subject. */
const publisherSession = (nc: NatsConnection, o: FloorOptions, index: number, upTo: () => number) => {
  const encoder = makeStreamEncoder({ clusterId: 1n, memberId: 1n, maxRequestBytes: defaultStreamFormat.maxRequestBytes })
  const watchIds = Array.from({ length: o.watchersPerStream }, (_, i) => i)
  return windowedSession(o, responseFeed(encoder, watchIds, upTo), (seq, batch) => {
    const body = { replica: replicaName, messages: [{ session: sessionId(index), seq, ...packRelay(batch) }] }
    nc.publish(sessionSubject(index), encodeFrame({ kind: "watch.responses", version: FrameKinds["watch.responses"], traceparent: "", id: 0, body }))
  }, defaultHubOptions.windowBytes)
}

/**
 * Publishes every stream's messages of the revisions up to the last it was told
 * (`{ publishUpTo }`), paced by the relay's acknowledgements.
 */
export const runPublisher = async (o: FloorOptions) => {
  const nc = await connectNats({ servers: natsServers })
  let upTo = 0
  const sessions = new Map(Array.from({ length: o.streams }, (_, i) => [sessionId(i), publisherSession(nc, o, i, () => upTo)] as const))
  nc.subscribe(ackSubject, {
    callback: (_err, msg) => {
      for (const { session, seq } of frameBody<AckBody>(msg.data).acks) sessions.get(session)?.ack(seq)
    }
  })
  await takeOrders(nc, sessions, (n) => (upTo = n))
}

/**
 * A session at the replica (variant `gateway`), opened by the gateway's watch.open: its watches
 * in creation order, their created responses (sent first, as they come), then per revision one
 * events response per watch, published as numbered gateway.watch messages to the gateway's
 * subject, encoded with the header ids and fragment limit the gateway asked for, within the
 * replica's default window (or the gateway's, when smaller).
 */
const replicaSession = (rpc: RpcClient, o: FloorOptions, open: typeof WatchOpenBody.Type, upTo: () => number) => {
  const encoder = makeStreamEncoder({
    clusterId: open.clusterId ?? defaultStreamFormat.clusterId,
    memberId: open.memberId ?? defaultStreamFormat.memberId,
    maxRequestBytes: open.maxRequestBytes ?? defaultStreamFormat.maxRequestBytes
  })
  const watchIds: number[] = []
  const created: RelayedResponse[] = []
  const events = responseFeed(encoder, watchIds, upTo)
  const windowBytes = Math.min(defaultHubOptions.windowBytes, open.windowBytes ?? Infinity)
  const session = windowedSession(o, () => created.shift() ?? events(), (seq, batch) => {
    publishEndpoint(rpc, gatewayWatch, open.gateway, { replica: replicaName, messages: [{ session: open.session, seq, ...packRelay(batch) }] })
  }, windowBytes)
  let pumpDue = false
  return {
    ...session,
    /** Watch `watchId` (idempotent, as the replica's): its created response is queued, sent after this event-loop turn. */
    create: (watchId: number) => {
      if (watchIds.includes(watchId)) return
      watchIds.push(watchId)
      // The replica's created response: header revision = its head (0: no revision yet).
      created.push(...encoder.encode({ watchId, revision: 0, created: true, events: [] }, 1, false))
      if (pumpDue) return
      pumpDue = true
      setImmediate(() => {
        pumpDue = false
        session.pump()
      })
    }
  }
}

/**
 * The replica's side of the real protocol (variant `gateway`), through the real endpoint
 * declarations and rpc helpers: serves watch.open (queue group; no watch.load reports, so the
 * gateway opens through it), watch.create, cancel, progress, ping, close and ack; publishes the
 * sessions' messages of the revisions up to the last it was told (`{ publishUpTo }`).
 */
export const runReplica = async (o: FloorOptions) => {
  const nc = await connectNats({ servers: natsServers })
  const rpc = new RpcClient(nc, `${inboxPrefix(cluster, { role: "watch", name: replicaName })}.${randomBytes(8).toString("hex")}`)
  let upTo = 0
  const sessions = new Map<string, ReturnType<typeof replicaSession>>()
  const at = { cluster, replica: replicaName }
  const known = (session: string) => ({ ok: { known: sessions.has(session) } })
  serveEndpoint(nc, watchOpen, { cluster }, (req) => {
    if (!sessions.has(req.body.session)) sessions.set(req.body.session, replicaSession(rpc, o, req.body, () => upTo))
    req.reply({ ok: { replica: replicaName, head: 0 } })
  })
  serveEndpoint(nc, watchCreate, at, (req) => {
    sessions.get(req.body.session)?.create(req.body.watchId)
    req.reply(known(req.body.session))
  })
  serveEndpoint(nc, watchCancel, at, (req) => req.reply(known(req.body.session)))
  serveEndpoint(nc, watchProgress, at, (req) => req.reply(known(req.body.session)))
  serveEndpoint(nc, watchPing, at, (req) => req.reply({ unknown: req.body.sessions.map((s) => s.session).filter((s) => !sessions.has(s)) }))
  serveEndpoint(nc, watchClose, at, (req) => {
    sessions.delete(req.body.session)
  })
  serveEndpoint(nc, watchAck, at, (req) => {
    for (const a of req.body.acks) sessions.get(a.session)?.ack(a.seq)
  })
  await takeOrders(nc, sessions, (n) => (upTo = n))
}
