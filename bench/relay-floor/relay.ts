/**
 * The relay floor's relay, the process measured: it plays the gateway, taking the publisher's
 * numbered messages and writing their responses to the client's Watch streams, acknowledged
 * once HTTP/2 took them; through the gateway's own gRPC server (variant `grpc-js`), a bare
 * node:http2 server (variant `http2`), or the gateway's real Watch service (variant `gateway`).
 *
 * What it is not: the publisher or replica it relays for (./replica.ts), the client
 * (./client.ts), or the probes and report (./main.ts, where the benchmark as a whole is
 * described).
 */
import { randomBytes } from "node:crypto"
import * as http2 from "node:http2"
import { connect as connectNats } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { gatewayWatch, inboxPrefix, subjectOf } from "../../shared/endpoints.ts"
import { encodeFrame } from "../../shared/frame.ts"
import { FrameKinds } from "../../shared/schema.ts"
import type { WatchResponsesBody } from "../../shared/schema.ts"
import { unpackRelay } from "../../shared/watch-relay.ts"
import { defaultStreamFormat } from "../../services/watch/core/messages.ts"
import { RpcClient } from "../../services/runtime/rpc.ts"
import { answerCpuProbes } from "../proc.ts"
import { ackSubject, cluster, fail, frameBody, member, natsServers, noop, relayPort, sessionId, sessionSubject, watchPath } from "./shared.ts"
import type { AckBody, FloorOptions } from "./shared.ts"

/** The body of a gateway.watch frame, as its schema declares it. */
type ResponsesBody = typeof WatchResponsesBody.Type

/** Writes gRPC-framed responses to one client stream; `sent` once HTTP/2 took them. */
type FramedWrite = (bytes: Uint8Array, sent: () => void) => void

const encodeAck = (body: AckBody): Uint8Array => encodeFrame({ kind: "watch.ack", version: FrameKinds["watch.ack"], traceparent: "", id: 0, body })

/**
 * A stream's session at the relay: its messages, checked and numbered, written to the stream
 * `writer()` gives, and acknowledged once taken: one acknowledgement of the highest per
 * event-loop turn.
 */
const relaySession = (nc: NatsConnection, index: number, writer: () => FramedWrite) => {
  const session = sessionId(index)
  let expectedSeq = 1
  let acked = 0
  let ackDue = false
  const ack = (seq: number) => {
    acked = Math.max(acked, seq)
    if (ackDue) return
    ackDue = true
    setImmediate(() => {
      ackDue = false
      nc.publish(ackSubject, encodeAck({ acks: [{ session, seq: acked }] }))
    })
  }
  nc.subscribe(sessionSubject(index), {
    callback: (_err, msg) => {
      for (const m of frameBody<ResponsesBody>(msg.data).messages) {
        if (m.seq !== expectedSeq++) fail(`${session}: message ${m.seq} where ${expectedSeq - 1} was due`)
        const marks = unpackRelay(m.marks, m.responses)
        if (typeof marks === "string") fail(`${session}: ${marks}`)
        writer()(m.responses, () => ack(m.seq))
      }
    }
  })
}

/** The gateway's gRPC server serving Watch, each stream written through watch-sender.ts's pass-through. */
const serveGrpcJs = async (opened: (write: FramedWrite) => void) => {
  const { startGrpcServer } = await import("../../services/gateway/server.ts")
  const { bidiStream } = await import("../../services/gateway/call-handlers.ts")
  const { watchSender } = await import("../../services/gateway/watch-sender.ts")
  const handle = bidiStream((call) => {
    const framed = watchSender(call)?.framed ?? fail("grpc-js keeps no HTTP/2 stream where watch-sender.ts finds it")
    call.on("error", noop)
    call.once("data", () => opened(framed))
  })
  await startGrpcServer(`127.0.0.1:${relayPort}`, { Watch: { Watch: handle } }, { maxRequestBytes: defaultStreamFormat.maxRequestBytes, maxConcurrentStreams: 10000 })
}

/** A bare node:http2 server answering the Watch POST itself, writing with `stream.write`. */
const serveHttp2 = async (opened: (write: FramedWrite) => void) => {
  // As grpc-js's server: no session memory limit.
  const server = http2.createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER })
  server.on("stream", (stream, headers) => {
    stream.on("error", noop)
    if (headers[":path"] !== watchPath) return stream.respond({ ":status": 404 }, { endStream: true })
    stream.respond({ ":status": 200, "content-type": "application/grpc" })
    stream.once("data", () => opened((bytes, sent) => stream.write(bytes, (error) => error == null && sent())))
  })
  await new Promise<void>((resolve) => server.listen(relayPort, "127.0.0.1", resolve))
}

/** The gateway's counters (services/gateway/watch.ts stats and failovers), as the relay reports them. */
interface GatewayStats {
  readonly gatewayStats: Record<string, unknown>
}

export const isGatewayStats = (m: unknown): m is GatewayStats => typeof (m as { gatewayStats?: unknown } | null)?.gatewayStats === "object"

/**
 * Variant `gateway`: the gateway's Watch service (services/gateway/watch.ts makeWatchHandler)
 * as the gateway mounts it (etcd-services.ts: bidiStream; server.ts: the relayed-bytes Watch
 * definition and the call interceptor), with the WatchContext the gateway builds: its NATS
 * connection, its RpcClient on the gateway identity's inbox and a random instance token (as
 * services/runtime/process.ts Nats.layer makes them), its response subject
 * (gateway.watch.<instance>); fixed header ids, no auth check, warnings printed. Answers
 * "stats" with the service's counters.
 */
const runGatewayRelay = async () => {
  const nc = await connectNats({ servers: natsServers })
  const { makeWatchHandler } = await import("../../services/gateway/watch.ts")
  const { startGrpcServer } = await import("../../services/gateway/server.ts")
  const { bidiStream } = await import("../../services/gateway/call-handlers.ts")
  const instance = randomBytes(8).toString("hex")
  const rpc = new RpcClient(nc, `${inboxPrefix(cluster, { role: "gateway", name: member })}.${instance}`)
  const ids = Promise.resolve({ clusterId: 1n, memberId: 1n })
  const watch = makeWatchHandler({
    nc,
    rpc,
    cluster,
    instance,
    maxRequestBytes: defaultStreamFormat.maxRequestBytes,
    identity: () => ids,
    responseSubject: subjectOf(gatewayWatch, { cluster, member, instance }),
    log: (level, message, fields) => {
      if (level === "warn") console.error(`relay-floor gateway: ${message} ${JSON.stringify(fields)}`)
    }
  })
  await startGrpcServer(`127.0.0.1:${relayPort}`, { Watch: { Watch: bidiStream(watch.Watch) } }, { maxRequestBytes: defaultStreamFormat.maxRequestBytes, maxConcurrentStreams: 10000 })
  await nc.flush()
  process.on("message", (m) => {
    if (m === "stats") process.send!({ gatewayStats: { ...watch.stats, failoversByReason: watch.failovers } } satisfies GatewayStats)
  })
  answerCpuProbes()
}

/** Serves the client's streams (the i-th opened is session i) and tells "open" once all are. */
export const runRelay = async (o: FloorOptions, variant: string) => {
  // Profiled: the monotonic clock (µs, the clock of the CPU profile's timestamps) at each CPU
  // probe, so that the profile can be cut to the measured events.
  if (process.execArgv.includes("--cpu-prof")) {
    process.on("message", (m) => {
      if (m === "cpu") console.error(`relay-floor: relay ${process.pid} cpu probe at ${process.hrtime.bigint() / 1000n} µs`)
    })
  }
  if (variant === "gateway") return runGatewayRelay()
  const nc = await connectNats({ servers: natsServers })
  const writers: FramedWrite[] = []
  const opened = (write: FramedWrite) => {
    writers.push(write)
    if (writers.length === o.streams) process.send!("open")
  }
  await (variant === "grpc-js" ? serveGrpcJs(opened) : serveHttp2(opened))
  for (let i = 0; i < o.streams; i++) relaySession(nc, i, () => writers[i]!)
  await nc.flush()
  answerCpuProbes()
}
