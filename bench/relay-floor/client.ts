/**
 * The relay floor's client: it opens the Watch streams over its HTTP/2 connections (node:http2,
 * with the flow-control window it is told), sends the create requests, checks each stream's
 * first response and counts the responses as they arrive, telling the parent when the watches
 * are created, when the warm-up's events arrived and when all did; it answers the parent's CPU
 * probes with the events delivered so far.
 *
 * What it is not: the relay it reads from (./relay.ts) or the publisher (./replica.ts); the
 * benchmark as a whole is described in ./main.ts.
 */
import * as http2 from "node:http2"
import { loadProtoRoot } from "../../shared/protos.ts"
import { grpcPrefixBytes } from "../../shared/watch-relay.ts"
import { watchResponseType } from "../../services/watch/encode.ts"
import { fail, noop, relayPort, warmRevisions, watchPath } from "./shared.ts"
import type { FloorOptions } from "./shared.ts"

/** A WatchRequest creating a watch on prefix `k/`, in gRPC's framing. */
const framedCreateRequest = (): Uint8Array => {
  const WatchRequest = loadProtoRoot(["etcdserverpb/rpc.proto"]).lookupType("etcdserverpb.WatchRequest")
  const bytes = WatchRequest.encode({ create_request: { key: Buffer.from("k/"), range_end: Buffer.from("k0") } }).finish()
  const framed = Buffer.alloc(grpcPrefixBytes + bytes.length)
  framed.writeUInt32BE(bytes.length, 1)
  framed.set(bytes, grpcPrefixBytes)
  return framed
}

/** Counts the gRPC messages completed by each chunk of a stream (a prefix or a message may span chunks). */
const messageCounter = (): ((chunk: Uint8Array) => number) => {
  let prefixRead = 0
  let length = 0
  let bodyLeft = 0
  return (chunk) => {
    let completed = 0
    let i = 0
    while (i < chunk.length) {
      if (prefixRead < grpcPrefixBytes) {
        // Byte 0 is the compressed flag, bytes 1-4 the length.
        if (prefixRead > 0) length = length * 256 + chunk[i]!
        i++
        if (++prefixRead < grpcPrefixBytes) continue
        bodyLeft = length
      } else {
        const take = Math.min(bodyLeft, chunk.length - i)
        i += take
        bodyLeft -= take
      }
      if (prefixRead === grpcPrefixBytes && bodyLeft === 0) {
        completed++
        prefixRead = 0
        length = 0
      }
    }
    return completed
  }
}

/**
 * A check of a stream's first response, fed the stream's chunks until it holds it: a
 * WatchResponse of one PUT event under `k/` or, with `created`, the created response of watch 0.
 */
const firstResponseCheck = (created: boolean): ((chunk: Buffer) => void) => {
  let head = Buffer.alloc(0)
  let checked = false
  return (chunk) => {
    if (checked) return
    head = Buffer.concat([head, chunk])
    const length = head.length < grpcPrefixBytes ? Infinity : head.readUInt32BE(1)
    if (head.length < grpcPrefixBytes + length) return
    checked = true
    const r = watchResponseType.toObject(watchResponseType.decode(head.subarray(grpcPrefixBytes, grpcPrefixBytes + length)), { longs: Number }) as {
      created?: boolean
      watch_id?: number
      events?: Array<{ kv?: { key?: Uint8Array } }>
    }
    const key = Buffer.from(r.events?.[0]?.kv?.key ?? []).toString()
    const ok = created ? r.created === true && (r.watch_id ?? 0) === 0 && (r.events?.length ?? 0) === 0 : r.events?.length === 1 && key.startsWith("k/")
    if (!ok) fail(`unexpected first response: ${JSON.stringify(r)}`)
  }
}

/**
 * Opens the Watch streams and counts the responses. Variant `gateway`: sends one create request
 * per watcher on each stream and says "created" once all created responses arrived (the
 * first watchersPerStream responses of each stream: no event is published before); the others:
 * one create request per stream. Then says "warm" once the warm-up's events arrived and "done"
 * once all did.
 */
export const runClient = (o: FloorOptions, variant: string) => {
  const creates = variant === "gateway" ? o.watchersPerStream : 1
  const createdResponses = variant === "gateway" ? o.streams * o.watchersPerStream : 0
  const total = createdResponses + o.revisions * o.streams * o.watchersPerStream
  const warm = createdResponses + warmRevisions(o) * o.streams * o.watchersPerStream
  const one = framedCreateRequest()
  const create = Buffer.concat(Array.from({ length: creates }, () => one))
  let received = 0
  const count = (n: number) => {
    const before = received
    received += n
    const crossed = (mark: number) => before < mark && received >= mark
    if (createdResponses > 0 && crossed(createdResponses)) process.send!({ phase: "created" })
    if (crossed(warm)) process.send!({ phase: "warm" })
    if (crossed(total)) process.send!({ phase: "done" })
  }
  const connections = Array.from({ length: Math.min(o.conns, o.streams) }, () => {
    const c = http2.connect(`http://127.0.0.1:${relayPort}`, { settings: { initialWindowSize: o.clientWindow }, maxSessionMemory: Number.MAX_SAFE_INTEGER })
    c.on("error", noop)
    c.once("connect", () => c.setLocalWindowSize(o.clientWindow))
    return c
  })
  for (let i = 0; i < o.streams; i++) {
    const stream = connections[i % connections.length]!.request({ ":method": "POST", ":path": watchPath, "content-type": "application/grpc", te: "trailers" })
    const counter = messageCounter()
    const check = firstResponseCheck(createdResponses > 0)
    stream.on("error", noop)
    stream.on("data", (chunk: Buffer) => {
      check(chunk)
      count(counter(chunk))
    })
    stream.write(create)
  }
  process.on("message", (m) => {
    if (m === "cpu") process.send!({ cpu: process.cpuUsage(), delivered: Math.max(0, received - createdResponses) })
    if (m === "exit") process.exit(0)
  })
  process.send!("ready")
}
