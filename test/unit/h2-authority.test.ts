/**
 * The client port's reading of an HTTP/2 connection's first request (services/gateway/h2-authority.ts):
 * a connection whose `:authority` names the member by URL ("http://host:port", as etcd's Go
 * client sends for calls to one endpoint) is relayed with every header block re-encoded and the
 * authority cut to host:port; any other goes to the gRPC server byte for byte. Table tests for
 * each rule, and a property over random connections (headers, indexing, CONTINUATION, padding,
 * priority, DATA between requests, where the SETTINGS ACK falls and how the bytes are chunked):
 * what the gRPC server decodes equals what the client encoded, authorities cut when relayed.
 */
import fc from "fast-check"
import hpack, { type HpackHeader } from "hpack.js"
import { describe, expect, it } from "vitest"
import {
  AuthorityRelay,
  authorityOfUrl,
  clientPreface,
  maxFrameBytes,
  maxHeldBytes,
  type RelayStep
} from "../../services/gateway/h2-authority.ts"

const frame = (type: number, flags: number, streamId: number, payload: Buffer): Buffer => {
  const h = Buffer.alloc(9)
  h.writeUIntBE(payload.length, 0, 3)
  h[3] = type
  h[4] = flags
  h.writeUInt32BE(streamId, 5)
  return Buffer.concat([h, payload])
}
const settings = frame(4, 0, 0, Buffer.alloc(0))
const ack = frame(4, 1, 0, Buffer.alloc(0))
const data = (streamId: number, bytes: string) => frame(0, 1, streamId, Buffer.from(bytes))

/** The client's HPACK encoder (its state lives across requests, as on a connection). */
const clientEncoder = () => {
  const c = hpack.compressor.create({ table: { maxSize: 4096 } })
  return (headers: ReadonlyArray<HpackHeader>): Buffer => {
    c.write(headers)
    const out: Buffer[] = []
    for (let b = c.read(); b !== null; b = c.read()) out.push(b)
    return Buffer.concat(out)
  }
}

const request = (authority: string, path = "/etcdserverpb.Maintenance/Status"): HpackHeader[] => [
  { name: ":method", value: "POST" },
  { name: ":scheme", value: "http" },
  { name: ":path", value: path },
  { name: ":authority", value: authority },
  { name: "content-type", value: "application/grpc" },
  { name: "te", value: "trailers" }
]

type Event = { readonly kind: "headers"; readonly streamId: number; readonly endStream: boolean; readonly headers: HpackHeader[] } | { readonly kind: "frame"; readonly hex: string }

/** What the gRPC server reads from `bytes` (after the preface): header blocks decoded with its own HPACK state. */
const serverView = (bytes: Buffer): Event[] => {
  expect(bytes.subarray(0, 24).equals(clientPreface)).toBe(true)
  const dec = hpack.decompressor.create({ table: { maxSize: 4096 } })
  const events: Event[] = []
  let at = 24
  let block: { streamId: number; endStream: boolean; parts: Buffer[] } | undefined
  while (at < bytes.length) {
    const len = bytes.readUIntBE(at, 3)
    const type = bytes[at + 3]!
    const flags = bytes[at + 4]!
    const streamId = bytes.readUInt32BE(at + 5)
    let payload = bytes.subarray(at + 9, at + 9 + len)
    at += 9 + len
    if (type === 1 || type === 9) {
      if (type === 1) {
        const pad = (flags & 8) !== 0 ? payload[0]! : 0
        if ((flags & 8) !== 0) payload = payload.subarray(1)
        if ((flags & 0x20) !== 0) payload = payload.subarray(5)
        payload = payload.subarray(0, payload.length - pad)
        block = { streamId, endStream: (flags & 1) !== 0, parts: [] }
      }
      block!.parts.push(payload)
      if ((flags & 4) !== 0) {
        dec.write(Buffer.concat(block!.parts))
        dec.execute()
        const headers: HpackHeader[] = []
        for (let h = dec.read(); h !== null; h = dec.read()) headers.push({ name: h.name, value: h.value, neverIndex: h.neverIndex })
        events.push({ kind: "headers", streamId: block!.streamId, endStream: block!.endStream, headers })
        block = undefined
      }
    } else {
      events.push({ kind: "frame", hex: bytes.subarray(at - 9 - len, at).toString("hex") })
    }
  }
  return events
}

/** Feeds `chunks` as the shell does; the bytes the gRPC server gets, and how the connection was routed. */
const drive = (chunks: ReadonlyArray<Buffer>): { route: RelayStep["_tag"]; bytes: Buffer } => {
  const relay = new AuthorityRelay()
  let i = 0
  let step: RelayStep = { _tag: "Wait" }
  while (step._tag === "Wait" && i < chunks.length) step = relay.receive(chunks[i++]!)
  if (step._tag === "Wait") step = relay.idle()
  if (step._tag === "Native") return { route: "Native", bytes: Buffer.concat([step.bytes, ...chunks.slice(i)]) }
  if (step._tag === "Relay") return { route: "Relay", bytes: Buffer.concat([step.bytes, ...chunks.slice(i).map((c) => relay.relay(c))]) }
  return { route: step._tag, bytes: Buffer.alloc(0) }
}

const withoutNeverIndexFalse = (hs: ReadonlyArray<HpackHeader>) => hs.map((h) => ({ name: h.name, value: h.value, neverIndex: h.neverIndex === true }))

describe("authorityOfUrl", () => {
  it.each([
    ["http://127.0.0.1:2379", "127.0.0.1:2379"],
    ["https://m1.example:2379", "m1.example:2379"],
    ["HTTP://[::1]:2379/", "[::1]:2379"],
    ["http://h:1/path?q", "h:1"],
    ["127.0.0.1:2379", undefined],
    ["http://", undefined],
    ["", undefined]
  ])("%s -> %s", (value, want) => expect(authorityOfUrl(value)).toBe(want))
})

describe("AuthorityRelay", () => {
  it("hands a connection whose first request has a plain authority to the gRPC server unchanged, minus the ACK", () => {
    const enc = clientEncoder()
    const headers = frame(1, 4, 1, enc(request("127.0.0.1:2379")))
    const body = data(1, "x")
    const { route, bytes } = drive([clientPreface, settings, ack, headers, body])
    expect(route).toBe("Native")
    expect(bytes.equals(Buffer.concat([clientPreface, settings, headers, body]))).toBe(true)
  })

  it("relays a connection whose first request names the member by URL, with every authority cut to host:port", () => {
    const enc = clientEncoder()
    const first = frame(1, 4, 1, enc(request("http://127.0.0.1:2379")))
    // The second request refers to the authority through the client's dynamic table.
    const second = frame(1, 5, 3, enc(request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/HashKV")))
    const { route, bytes } = drive([Buffer.concat([clientPreface, settings, first, data(1, "a")]), ack, second])
    expect(route).toBe("Relay")
    const view = serverView(bytes)
    expect(view).toEqual([
      { kind: "frame", hex: settings.toString("hex") },
      { kind: "headers", streamId: 1, endStream: false, headers: withoutNeverIndexFalse(request("127.0.0.1:2379")) },
      { kind: "frame", hex: data(1, "a").toString("hex") },
      { kind: "headers", streamId: 3, endStream: true, headers: withoutNeverIndexFalse(request("127.0.0.1:2379", "/etcdserverpb.Maintenance/HashKV")) }
    ])
  })

  it("waits for the ACK of its SETTINGS before deciding, and for a whole header block", () => {
    const enc = clientEncoder()
    const block = enc(request("127.0.0.1:2379"))
    const relay = new AuthorityRelay()
    expect(relay.receive(Buffer.concat([clientPreface, settings]))._tag).toBe("Wait")
    expect(relay.receive(frame(1, 0, 1, block.subarray(0, 5)))._tag).toBe("Wait")
    expect(relay.receive(frame(9, 4, 1, block.subarray(5)))._tag).toBe("Wait")
    const step = relay.receive(ack)
    expect(step._tag).toBe("Native")
  })

  it("hands an idle connection over natively once it acknowledged the preface", () => {
    const relay = new AuthorityRelay()
    expect(relay.idle()._tag).toBe("Wait")
    expect(relay.receive(Buffer.concat([clientPreface, settings, ack]))._tag).toBe("Wait")
    const step = relay.idle()
    expect(step._tag).toBe("Native")
    expect(step._tag === "Native" && step.bytes.equals(Buffer.concat([clientPreface, settings]))).toBe(true)
  })

  it("leaves a connection that is not HTTP/2 to the gRPC server", () => {
    const step = new AuthorityRelay().receive(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    expect(step._tag).toBe("Native")
  })

  it.each<[string, () => Buffer[]]>([
    ["a frame over the maximum frame size", () => [clientPreface, frame(0, 0, 1, Buffer.alloc(maxFrameBytes + 1))]],
    ["a header block interrupted by another frame", () => [clientPreface, settings, ack, frame(1, 0, 1, Buffer.from([0x82])), data(1, "x")]],
    ["CONTINUATION without HEADERS", () => [clientPreface, settings, ack, frame(9, 4, 1, Buffer.from([0x82]))]],
    ["a header block that does not decode", () => [clientPreface, settings, ack, frame(1, 4, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]))]],
    ["more than the bytes held before a decision", () => [clientPreface, ...Array.from({ length: Math.ceil(maxHeldBytes / 16_000) + 1 }, () => data(1, "y".repeat(16_000)))]]
  ])("closes a connection with %s", (_, chunks) => {
    expect(drive(chunks()).route).toBe("Invalid")
  })

  it("closes a relayed connection that interrupts a later header block", () => {
    const enc = clientEncoder()
    const relay = new AuthorityRelay()
    const step = relay.receive(Buffer.concat([clientPreface, settings, ack, frame(1, 4, 1, enc(request("http://h:1")))]))
    expect(step._tag).toBe("Relay")
    expect(() => relay.relay(Buffer.concat([frame(1, 0, 3, enc(request("http://h:1")).subarray(0, 3)), data(3, "z")]))).toThrow(/interrupted/)
  })

  it("keeps never-indexed fields never indexed and splits a large block into CONTINUATION frames", () => {
    const enc = clientEncoder()
    const big: HpackHeader[] = [...request("https://h:2379"), { name: "token", value: "t".repeat(40_000), neverIndex: true }]
    const block = enc(big)
    const frames = [frame(1, 0x20, 1, Buffer.concat([Buffer.from([0, 0, 0, 0, 15]), block.subarray(0, 16_000)]))]
    for (let at = 16_000; at < block.length; at += 16_000) frames.push(frame(9, at + 16_000 >= block.length ? 4 : 0, 1, block.subarray(at, at + 16_000)))
    const { route, bytes } = drive([clientPreface, settings, ack, ...frames])
    expect(route).toBe("Relay")
    const [, headers] = serverView(bytes)
    expect(headers).toEqual({
      kind: "headers",
      streamId: 1,
      endStream: false,
      headers: withoutNeverIndexFalse([...request("h:2379"), { name: "token", value: "t".repeat(40_000), neverIndex: true }])
    })
  })
})

describe("AuthorityRelay, property: the gRPC server decodes what the client sent", () => {
  const header = fc.record({
    name: fc.constantFrom("x-a", "x-b", "grpc-timeout", "token", "user-agent"),
    value: fc.string({ minLength: 0, maxLength: 30 }).map((s) => Buffer.from(s, "utf8").toString("latin1")),
    neverIndex: fc.boolean()
  })
  const requestArb = fc.record({
    scheme: fc.boolean(),
    extra: fc.array(header, { maxLength: 4 }),
    split: fc.integer({ min: 0, max: 3 }),
    padded: fc.integer({ min: 0, max: 20 }),
    priority: fc.boolean(),
    endStream: fc.boolean(),
    data: fc.option(fc.string({ maxLength: 20 }))
  })

  it("for any requests, chunking and ACK position", () => {
    fc.assert(
      fc.property(fc.array(requestArb, { minLength: 1, maxLength: 6 }), fc.nat(), fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 30 }), (requests, ackAt, cuts) => {
        const enc = clientEncoder()
        const frames: Buffer[] = [settings]
        // Where the ACK may go: between frames, never inside a header block (RFC 9113 §6.10).
        const boundaries: number[] = [1]
        const sent: Array<{ streamId: number; endStream: boolean; headers: HpackHeader[] }> = []
        const others: string[] = []
        requests.forEach((r, i) => {
          const streamId = 2 * i + 1
          const headers = [...request(r.scheme ? "http://127.0.0.1:2379" : "127.0.0.1:2379"), ...r.extra]
          sent.push({ streamId, endStream: r.endStream, headers })
          const block = enc(headers)
          const size = Math.max(1, Math.ceil(block.length / (r.split + 1)))
          for (let at = 0, first = true; first || at < block.length; first = false, at += size) {
            const part = block.subarray(at, at + size)
            const last = at + size >= block.length
            if (first) {
              const prefix = Buffer.concat([r.padded > 0 ? Buffer.from([r.padded]) : Buffer.alloc(0), r.priority ? Buffer.from([0, 0, 0, 0, 7]) : Buffer.alloc(0)])
              const flags = (r.endStream ? 1 : 0) | (last ? 4 : 0) | (r.padded > 0 ? 8 : 0) | (r.priority ? 0x20 : 0)
              frames.push(frame(1, flags, streamId, Buffer.concat([prefix, part, Buffer.alloc(r.padded)])))
            } else {
              frames.push(frame(9, last ? 4 : 0, streamId, part))
            }
          }
          boundaries.push(frames.length)
          if (r.data !== null && !r.endStream) {
            const d = data(streamId, r.data)
            frames.push(d)
            others.push(d.toString("hex"))
            boundaries.push(frames.length)
          }
        })
        frames.splice(boundaries[ackAt % boundaries.length]!, 0, ack)
        const stream = Buffer.concat([clientPreface, ...frames])
        const chunks: Buffer[] = []
        for (let at = 0, k = 0; at < stream.length; k++) {
          const n = cuts[k % cuts.length]!
          chunks.push(stream.subarray(at, at + n))
          at += n
        }
        const { route, bytes } = drive(chunks)
        const relayed = requests[0]!.scheme
        expect(route).toBe(relayed ? "Relay" : "Native")
        if (!relayed) {
          expect(bytes.equals(Buffer.concat([clientPreface, ...frames.filter((f) => f !== ack)]))).toBe(true)
          return
        }
        const view = serverView(bytes)
        expect(view.filter((e) => e.kind === "frame").map((e) => (e as { hex: string }).hex)).toEqual([settings.toString("hex"), ...others])
        expect(view.filter((e) => e.kind === "headers")).toEqual(sent.map((s) => ({
          kind: "headers",
          streamId: s.streamId,
          endStream: s.endStream,
          headers: withoutNeverIndexFalse(s.headers.map((h) => (h.name === ":authority" ? { ...h, value: "127.0.0.1:2379" } : h)))
        })))
      }),
      { numRuns: 300 }
    )
  })
})
