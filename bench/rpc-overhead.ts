/**
 * Per-call CPU cost of natcd's own RPC layer versus Effect's `effect/rpc`, transport excluded.
 *
 *   node bench/rpc-overhead.ts [--calls=N]        (N calls per variant and mode, default 50000)
 *
 * One process, one hot-path-shaped call: `raft.propose` (shared/endpoints.ts) with one proposal
 * of ~300 bytes built like the gateway's (services/runtime/proposer.ts: a packed Proposal of a
 * Put), replied `{ ok: { leader } }`. The "transport" in every variant is an in-memory hand-over
 * that copies each message's bytes once (as NATS hands every message a fresh buffer); no
 * sockets, no nats-server. Variants:
 *
 *  natcd bare      the steps of services/runtime/rpc.ts only: encodeFrame (endpoint kind/version)
 *                  → decodeFrame + kind/version check + Schema.decodeUnknownExit(ProposeBody) →
 *                  handler → encodeFrame(reply) → decodeFrame + decodeReply(raftPropose).
 *  natcd full      the real serveEndpoint / callEndpoint / RpcClient over a stub NatsConnection
 *                  delivering by microtask: adds the pending map, retry timer, metrics
 *                  histograms and hop spans (unsampled traceparent, as the gateway sends);
 *                  "-notrace": no traceparent, so no hop span.
 *  effect RpcTest  effect/rpc RpcTest.makeClient: RpcClient/RpcServer machinery, schema encode and
 *                  decode on both sides, fibers; no serialization at all.
 *  effect msgpack  RpcServer.make / RpcClient.make over an in-memory Protocol pair with a msgpack
 *                  RpcSerialization (effect 4.1 ships none: this one uses natcd's own Packr from
 *                  shared/frame.ts, holes encoded with Schema.toCodecIso so bytes and bigints
 *                  travel natively); "-notrace" disables the client and server spans.
 *  effect binary   the same protocol with effect's built-in RpcSerialization.layerSchemaBinary.
 *
 * Each variant runs sequentially (one call in flight) and with 64 calls in flight (64 loops
 * sharing N calls), after a warm-up of min(N, 10000) calls. Reported: CPU µs per call
 * (process.cpuUsage, user+system, whole process, so GC included), wall µs per call, the CPU
 * ratio to "natcd full", and request/reply bytes per call. Effect variants are driven from inside
 * one Effect program (their best case: no runPromise per call).
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer, RpcTest } from "effect/rpc"
import type { NatsConnection } from "@nats-io/transport-node"
import { callEndpoint, decodeReply, okOf, serveEndpoint, RpcClient as NatcdRpcClient } from "../services/runtime/rpc.ts"
import { raftPropose } from "../shared/endpoints.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError, packValue, unpackValue } from "../shared/frame.ts"
import { FrameKinds, U64 } from "../shared/schema.ts"

const callsArg = process.argv.find((a) => a.startsWith("--calls="))
const N = callsArg === undefined ? 50000 : Number(callsArg.slice("--calls=".length))
if (!Number.isInteger(N) || N < 64) throw new Error("--calls must be an integer >= 64")
const WARMUP = Math.min(N, 10000)
const INFLIGHT = 64

// ---------------------------------------------------------------------------------------------
// The call: one ~300-byte proposal, as the gateway packs it.

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" // unsampled
const proposal = packValue({
  requestId: 0x1234_5678_0000_0042n,
  origin: "m1",
  replyTo: "natcd.bench.m1.gateway.result.k3Jd9aQz",
  deadlineMs: Date.now() + 5000,
  traceparent: TRACEPARENT,
  request: { put: { key: new TextEncoder().encode("bench/key/000000001234"), value: new Uint8Array(84).fill(0x61) } }
})
const body = { proposals: [proposal] }
const LEADER = 0x2n

/** The same handler everywhere: hand each proposal to "raft", answer with the leader. */
let proposed = 0
const handle = (proposals: ReadonlyArray<Uint8Array>): bigint => {
  for (const p of proposals) proposed += p.length
  return LEADER
}

let reqBytes = 0
let repBytes = 0
/** The in-memory transport: a fresh copy of every message, its size counted. */
const carry = (bytes: Uint8Array, counter: "req" | "rep"): Uint8Array => {
  if (counter === "req") reqBytes += bytes.length
  else repBytes += bytes.length
  return bytes.slice()
}

// ---------------------------------------------------------------------------------------------
// (a) natcd, bare steps

const decodeRequest = Schema.decodeUnknownExit(raftPropose.request)
const replyKind = raftPropose.reply!.kind

const serverSide = (bytes: Uint8Array): Uint8Array => {
  const frame = decodeFrame(bytes)
  if (isFrameDecodeError(frame)) throw new Error(frame.reason)
  if (frame.kind !== raftPropose.kind || frame.version !== FrameKinds[raftPropose.kind]) throw new Error("bad frame")
  const decoded = decodeRequest(frame.body)
  if (decoded._tag === "Failure") throw new Error("bad body")
  const leader = handle(decoded.value.proposals)
  return encodeFrame({ kind: replyKind, version: FrameKinds[replyKind], traceparent: TRACEPARENT, id: frame.id, body: { ok: { leader } } })
}

const callerEncode = (id: number): Uint8Array =>
  encodeFrame({ kind: raftPropose.kind, version: FrameKinds[raftPropose.kind], traceparent: TRACEPARENT, id, body })

const callerDecode = (bytes: Uint8Array): bigint => {
  const frame = decodeFrame(bytes)
  if (isFrameDecodeError(frame)) throw new Error(frame.reason)
  return okOf(decodeReply(raftPropose, frame)).leader
}

let nextId = 1
const bareCall = (): bigint => callerDecode(carry(serverSide(carry(callerEncode(nextId++), "req")), "rep"))

/** 64 in flight: each hop is a microtask, so calls interleave as they would on a connection. */
const bareCallAsync = async (): Promise<bigint> => {
  const req = carry(callerEncode(nextId++), "req")
  await undefined
  const rep = carry(serverSide(req), "rep")
  await undefined
  return callerDecode(rep)
}

// ---------------------------------------------------------------------------------------------
// (a) natcd, full: serveEndpoint / callEndpoint over a stub NatsConnection

type Callback = (err: Error | null, msg: unknown) => void
class MemoryNats {
  private readonly subs = new Map<string, Callback>()
  subscribe(subject: string, opts: { callback: Callback }) {
    this.subs.set(subject, opts.callback)
    return { unsubscribe: () => void this.subs.delete(subject) }
  }
  publish(subject: string, data: Uint8Array, opts?: { reply?: string; headers?: unknown }) {
    const cb = this.subs.get(subject)
    if (cb === undefined) return
    const msg = { subject, reply: opts?.reply ?? "", data: carry(data, subject.includes("._INBOX.") ? "rep" : "req"), headers: opts?.headers }
    queueMicrotask(() => cb(null, msg))
  }
}
const nats = new MemoryNats()
const nc = nats as unknown as NatsConnection
const proposeSubject = "natcd.bench.m1.raft.propose"
serveEndpoint(nc, raftPropose, { cluster: "bench", member: "m1" }, (req) => req.reply({ ok: { leader: handle(req.body.proposals) } }))
const natcdClient = new NatcdRpcClient(nc, "natcd.bench._INBOX.gw1")
const fullCall = async (): Promise<bigint> =>
  okOf(await callEndpoint(natcdClient, raftPropose, proposeSubject, body, { timeoutMs: 5000, traceparent: TRACEPARENT })).leader
/** The same without trace context (no hop span), to compare with effect's "-notrace". */
const fullCallNoTrace = async (): Promise<bigint> =>
  okOf(await callEndpoint(natcdClient, raftPropose, proposeSubject, body, { timeoutMs: 5000 })).leader

// ---------------------------------------------------------------------------------------------
// (b) effect/rpc

class Propose extends Rpc.make("propose", {
  payload: { proposals: Schema.Array(Schema.Uint8Array) },
  success: Schema.Struct({ leader: U64 }),
  error: Schema.Struct({ _tag: Schema.String })
}) {}
const Group = RpcGroup.make(Propose)
const HandlersLive = Group.toLayer({ propose: (payload) => Effect.succeed({ leader: handle(payload.proposals) }) })

/** msgpack with natcd's Packr (shared/frame.ts options); one message per transport message. */
const msgpack = RpcSerialization.RpcSerialization.of({
  contentType: "application/msgpack",
  includesFraming: false,
  codecFor: Schema.toCodecIso as RpcSerialization.CodecFor,
  makeUnsafe: () => ({
    decode: (data) => {
      const value = unpackValue(data as Uint8Array)
      return Array.isArray(value) ? value : [value]
    },
    encode: (message) => packValue(message)
  })
})

/** A client and a server Protocol joined in memory; every message is serialized and copied. */
const memoryProtocols = (serialization: RpcSerialization.RpcSerialization["Service"]) =>
  Effect.gen(function*() {
    let toServer: ((clientId: number, message: any) => Effect.Effect<void>) | undefined
    let toClient: ((clientId: number, message: any) => Effect.Effect<void>) | undefined
    const serverParser = serialization.makeUnsafe()
    const clientParser = serialization.makeUnsafe()
    const deliver = (
      bytes: Uint8Array | string | undefined,
      parser: RpcSerialization.Parser,
      to: ((clientId: number, message: any) => Effect.Effect<void>) | undefined,
      clientId: number,
      counter: "req" | "rep"
    ): Effect.Effect<void> => {
      if (bytes === undefined || to === undefined) return Effect.void
      const messages = parser.decode(typeof bytes === "string" ? bytes : carry(bytes, counter))
      if (messages.length === 1) return to(clientId, messages[0])
      return Effect.forEach(messages, (m) => to(clientId, m), { discard: true })
    }
    const server = yield* RpcServer.Protocol.make((writeRequest) =>
      Effect.gen(function*() {
        toServer = writeRequest
        return {
          disconnects: yield* Queue.make<number>(),
          send: (clientId, response) => deliver(serverParser.encode(response), clientParser, toClient, clientId, "rep"),
          end: () => Effect.void,
          clientIds: Effect.sync(() => new Set([0])),
          initialMessage: Effect.succeedNone,
          supportsAck: true,
          supportsTransferables: false,
          supportsSpanPropagation: true,
          supportsNotifications: false,
          codecFor: serialization.codecFor
        }
      })
    )
    const client = yield* RpcClient.Protocol.make((writeResponse) => {
      toClient = writeResponse
      return Effect.succeed({
        send: (clientId, request) => deliver(clientParser.encode(request), serverParser, toServer, clientId, "req"),
        supportsAck: true,
        supportsTransferables: false,
        codecFor: serialization.codecFor
      })
    })
    return { server, client }
  })

type ProposeClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof Group>>

const serializedClient = (serialization: RpcSerialization.RpcSerialization["Service"], disableTracing: boolean) =>
  Effect.gen(function*() {
    const { client, server } = yield* memoryProtocols(serialization)
    yield* RpcServer.make(Group, { disableTracing }).pipe(
      Effect.provideService(RpcServer.Protocol, server),
      Effect.forkScoped
    )
    return yield* RpcClient.make(Group, { disableTracing }).pipe(Effect.provideService(RpcClient.Protocol, client))
  })

const effectCall = (client: ProposeClient) =>
  client.propose(body).pipe(Effect.map((r) => r.leader), Effect.orDie)

// ---------------------------------------------------------------------------------------------
// Measurement

interface Row {
  readonly variant: string
  readonly mode: string
  readonly cpuUs: number
  readonly wallUs: number
  readonly reqBytes: number
  readonly repBytes: number
}
const rows: Array<Row> = []

interface Mark {
  readonly cpu: NodeJS.CpuUsage
  readonly wall: number
}
const mark = (): Mark => {
  reqBytes = 0
  repBytes = 0
  return { cpu: process.cpuUsage(), wall: performance.now() }
}
const record = (variant: string, mode: string, start: Mark, calls: number): void => {
  const cpu = process.cpuUsage(start.cpu)
  const wall = performance.now() - start.wall
  rows.push({
    variant,
    mode,
    cpuUs: (cpu.user + cpu.system) / calls,
    wallUs: (wall * 1000) / calls,
    reqBytes: reqBytes / calls,
    repBytes: repBytes / calls
  })
}

const check = (leader: bigint): void => {
  if (leader !== LEADER) throw new Error(`wrong reply ${leader}`)
}

const runSeq = async (calls: number, call: () => bigint | Promise<bigint>): Promise<void> => {
  for (let i = 0; i < calls; i++) check(await call())
}
const runConcurrent = async (calls: number, call: () => Promise<bigint>): Promise<void> => {
  let left = calls
  const loop = async () => {
    while (left > 0) {
      left--
      check(await call())
    }
  }
  await Promise.all(Array.from({ length: INFLIGHT }, loop))
}

const measurePromise = async (variant: string, call: () => Promise<bigint>, syncCall?: () => bigint): Promise<void> => {
  const seq = syncCall ?? call
  await runSeq(WARMUP, seq)
  await runConcurrent(WARMUP, call)
  let m = mark()
  await runSeq(N, seq)
  record(variant, "seq", m, N)
  m = mark()
  await runConcurrent(N, call)
  record(variant, `${INFLIGHT} in flight`, m, N)
}

const effectSeq = (calls: number, call: Effect.Effect<bigint>) =>
  Effect.gen(function*() {
    for (let i = 0; i < calls; i++) check(yield* call)
  })
const effectConcurrent = (calls: number, call: Effect.Effect<bigint>) =>
  Effect.suspend(() => {
    let left = calls
    const loop = Effect.gen(function*() {
      while (left > 0) {
        left--
        check(yield* call)
      }
    })
    return Effect.forEach(Array.from({ length: INFLIGHT }), () => loop, { concurrency: "unbounded", discard: true })
  })

const measureEffect = (variant: string, call: Effect.Effect<bigint>) =>
  Effect.gen(function*() {
    yield* effectSeq(WARMUP, call)
    yield* effectConcurrent(WARMUP, call)
    let m = yield* Effect.sync(mark)
    yield* effectSeq(N, call)
    yield* Effect.sync(() => record(variant, "seq", m, N))
    m = yield* Effect.sync(mark)
    yield* effectConcurrent(N, call)
    yield* Effect.sync(() => record(variant, `${INFLIGHT} in flight`, m, N))
  })

const effectVariants = Effect.gen(function*() {
  const testClient = yield* RpcTest.makeClient(Group)
  yield* measureEffect("effect RpcTest (no serialization)", effectCall(testClient))
  const mp = yield* serializedClient(msgpack, false)
  yield* measureEffect("effect RpcServer/Client msgpack", effectCall(mp))
  const mpNoTrace = yield* serializedClient(msgpack, true)
  yield* measureEffect("effect msgpack -notrace", effectCall(mpNoTrace))
  const binary = yield* RpcSerialization.RpcSerialization.pipe(Effect.provide(RpcSerialization.layerSchemaBinary()))
  const bin = yield* serializedClient(binary, false)
  yield* measureEffect("effect RpcServer/Client SchemaBinary", effectCall(bin))
}).pipe(Effect.scoped, Effect.provide(HandlersLive))

// ---------------------------------------------------------------------------------------------

console.log(`rpc-overhead: raft.propose, 1 proposal of ${proposal.length} bytes, ${N} calls per row, warm-up ${WARMUP}, node ${process.version}`)
await measurePromise("natcd bare (frame+schema)", bareCallAsync, bareCall)
await measurePromise("natcd full (serve/callEndpoint)", fullCall)
await measurePromise("natcd full -notrace", fullCallNoTrace)
await Effect.runPromise(effectVariants)
natcdClient.close()

const base = new Map(rows.filter((r) => r.variant === "natcd full (serve/callEndpoint)").map((r) => [r.mode, r.cpuUs]))
const pad = (s: string, n: number) => s.padEnd(n)
const num = (x: number, n: number, d = 2) => x.toFixed(d).padStart(n)
console.log("")
console.log(`${pad("variant", 38)}${pad("mode", 14)}${"CPU µs".padStart(9)}${"wall µs".padStart(9)}${"CPU ×full".padStart(11)}${"req B".padStart(7)}${"rep B".padStart(7)}`)
for (const r of rows) {
  console.log(
    `${pad(r.variant, 38)}${pad(r.mode, 14)}${num(r.cpuUs, 9)}${num(r.wallUs, 9)}${num(r.cpuUs / base.get(r.mode)!, 11)}${num(r.reqBytes, 7, 0)}${num(r.repBytes, 7, 0)}`
  )
}
console.log(JSON.stringify({ calls: N, warmup: WARMUP, proposalBytes: proposal.length, proposedBytes: proposed, rows }))
