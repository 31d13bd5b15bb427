/**
 * Requests that name a member by its URL. etcd's Go client sends the calls meant for one
 * endpoint (clientv3 Client.Dial: Maintenance.Status, HashKV, MoveLeader, Defragment; etcdctl
 * `endpoint status|hashkv|health`, with --endpoints=http://… or --cluster) on a connection whose
 * gRPC target is "passthrough:///http://127.0.0.1:2379", so every request's `:authority` is
 * "http://127.0.0.1:2379". Go's HTTP/2 server takes any authority; nghttp2, under node:http2 and
 * grpc-js, resets such a stream with PROTOCOL_ERROR. etcd publishes its client URLs with their
 * scheme, and so does natcd, so the client port must take them.
 *
 * This module is the pure part (bytes in, bytes out, no IO, no clock) of what the client port
 * does before the gRPC server sees an HTTP/2 connection (the shell: `routeGrpcConnection` in
 * ./client-tls.ts):
 *
 * 1. The port sends an empty SETTINGS frame first ({@link serverPreface}): Go's client waits for
 *    the server's preface before its first request. The client's ACK of that frame is taken out
 *    of the stream; the gRPC server sends its own SETTINGS when it gets the connection, a second
 *    SETTINGS frame, which HTTP/2 allows (RFC 9113 §6.5).
 * 2. {@link AuthorityRelay.receive} reads the client's frames until its first header block is
 *    complete and the ACK was seen. When the block's `:authority` has a scheme, the connection is
 *    relayed: every later header block is decoded with the client's HPACK state and encoded again
 *    with the server's (RFC 7541), `:authority` cut to host:port. Otherwise the bytes read go back
 *    to the connection, which the gRPC server then reads natively, untouched: only connections
 *    that need it pay for the relay. An idle client (no request yet) is handed over the same way
 *    after a short wait ({@link firstHeadersWaitMs}, the shell's timer calling
 *    {@link AuthorityRelay.idle}).
 *
 * Bounds: {@link maxHeldBytes} read before the decision, {@link maxHeaderBlockBytes} per header
 * block, frames up to HTTP/2's default maximum frame size ({@link maxFrameBytes}; the gRPC server
 * advertises no larger), a dynamic table of {@link headerTableBytes} each way (the default; the
 * gRPC server advertises no other). A connection that breaks them, or whose header block does not
 * decode, is {@link RelayStep Invalid}: the shell closes it (HTTP/2 calls these connection errors).
 */
import hpack, { type Compressor, type Decompressor, type HpackHeader } from "hpack.js"
import { firstHeadersWaitMs } from "./timeouts.ts"

/** The client connection preface (RFC 9113 §3.4), 24 bytes. */
export const clientPreface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1")

/** An empty SETTINGS frame: the port's server preface, sent before the gRPC server's own. */
export const serverPreface = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])

/** Frames larger than this (bytes of payload) are refused: HTTP/2's SETTINGS_MAX_FRAME_SIZE default. */
export const maxFrameBytes = 16_384

/** HPACK dynamic table size each way, bytes: SETTINGS_HEADER_TABLE_SIZE's default. */
export const headerTableBytes = 4096

/** Bytes a connection may send before the port decides where it goes. */
export const maxHeldBytes = 256 * 1024

/** Bytes of one header block (HEADERS plus CONTINUATION payloads) the relay decodes. */
export const maxHeaderBlockBytes = 64 * 1024

const frameHeaderBytes = 9
const type = { headers: 0x1, settings: 0x4, continuation: 0x9 } as const
const flag = { ack: 0x1, endStream: 0x1, endHeaders: 0x4, padded: 0x8, priority: 0x20 } as const

/** One HTTP/2 frame as read: its header fields and the whole frame's bytes. */
interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
  readonly raw: Buffer
}

/** What the shell does next with the connection. */
export type RelayStep =
  /** Keep reading (and, once {@link AuthorityRelay.ackSeen}, start the idle timer). */
  | { readonly _tag: "Wait" }
  /** Put `bytes` back and give the connection to the gRPC server as it is. */
  | { readonly _tag: "Native"; readonly bytes: Buffer }
  /** Relay: send `bytes` to the gRPC server now, then every chunk through {@link AuthorityRelay.relay}. */
  | { readonly _tag: "Relay"; readonly bytes: Buffer }
  /** Close the connection. */
  | { readonly _tag: "Invalid"; readonly reason: string }

/** Raised by {@link AuthorityRelay.relay} for a connection to close; `message` says why. */
export class RelayError extends Error {}

/** `value` when it is an authority with a scheme ("http://host:port/..."), as host:port; else undefined. */
export const authorityOfUrl = (value: string): string | undefined => {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(value)
  return m === null || m[1] === "" ? undefined : m[1]
}

/**
 * The client side of one HTTP/2 connection, as seen by the client port (see the module comment).
 * Feed every chunk the client sends to {@link receive} until it answers Native, Relay or
 * Invalid; after Relay, to {@link relay}.
 */
export class AuthorityRelay {
  private pending: Buffer = Buffer.alloc(0)
  private prefaceRead = false
  private held: Buffer[] = []
  private heldBytes = 0
  private block: { streamId: number; flags: number; priority: Buffer | undefined; fragments: Buffer[]; bytes: number; raw: Buffer[] } | undefined
  private decided: "native" | "relay" | undefined
  private readonly decoder: Decompressor = hpack.decompressor.create({ table: { maxSize: headerTableBytes } })
  private readonly encoder: Compressor = hpack.compressor.create({ table: { maxSize: headerTableBytes } })
  private decodeFailure: Error | undefined
  /** Whether the client acknowledged {@link serverPreface}. */
  ackSeen = false

  constructor() {
    this.decoder.on("error", (e) => {
      this.decodeFailure = e
    })
  }

  /** Reads `chunk` before the decision. */
  receive(chunk: Buffer): RelayStep {
    this.heldBytes += chunk.length
    if (this.heldBytes > maxHeldBytes) return { _tag: "Invalid", reason: "too many bytes before the first request" }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    if (!this.prefaceRead) {
      if (this.pending.length < clientPreface.length) return { _tag: "Wait" }
      // Not HTTP/2: the gRPC server answers it as it answers any bad preface.
      if (!this.pending.subarray(0, clientPreface.length).equals(clientPreface)) return this.native()
      this.prefaceRead = true
      this.held.push(this.pending.subarray(0, clientPreface.length))
      this.pending = this.pending.subarray(clientPreface.length)
    }
    try {
      for (let frame = this.next(); frame !== undefined; frame = this.next()) {
        if (this.block !== undefined && frame.type !== type.continuation) throw new RelayError("a header block was interrupted")
        if (this.takeAck(frame)) continue
        if (this.decided === "relay") {
          this.held.push(...this.relayFrame(frame))
          continue
        }
        if (this.decided === undefined && (frame.type === type.headers || frame.type === type.continuation)) {
          const headers = this.collect(frame)
          if (headers === undefined) continue
          if (headers.some((h) => h.name === ":authority" && authorityOfUrl(h.value) !== undefined)) {
            this.decided = "relay"
            this.held.push(this.encodeBlock(headers))
            this.block = undefined
          } else {
            this.decided = "native"
            this.held.push(...this.block!.raw)
            this.block = undefined
          }
          continue
        }
        this.held.push(frame.raw)
      }
    } catch (e) {
      return { _tag: "Invalid", reason: (e as Error).message }
    }
    if (!this.ackSeen || this.block !== undefined) return { _tag: "Wait" }
    if (this.decided === "native") return this.native()
    if (this.decided === "relay") {
      // A partial frame stays in `pending`, for relay() to complete.
      const bytes = Buffer.concat(this.held)
      this.held = []
      return { _tag: "Relay", bytes }
    }
    return { _tag: "Wait" }
  }

  /** The idle timer fired: a client that acknowledged the preface and sent no request goes native. */
  idle(): RelayStep {
    return this.ackSeen && this.decided === undefined && this.block === undefined ? this.native() : { _tag: "Wait" }
  }

  /** The relayed bytes for `chunk`, after Relay. Throws {@link RelayError} for a connection to close. */
  relay(chunk: Buffer): Buffer {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const out: Buffer[] = []
    for (let frame = this.next(); frame !== undefined; frame = this.next()) {
      if (this.block !== undefined && frame.type !== type.continuation) throw new RelayError("a header block was interrupted")
      if (this.takeAck(frame)) continue
      out.push(...this.relayFrame(frame))
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }

  private native(): RelayStep {
    const bytes = Buffer.concat([...this.held, this.pending])
    this.held = []
    this.pending = Buffer.alloc(0)
    this.decided = "native"
    return { _tag: "Native", bytes }
  }

  /** The first SETTINGS ACK answers {@link serverPreface}: the gRPC server never sent that frame. */
  private takeAck(frame: Frame): boolean {
    if (this.ackSeen || frame.type !== type.settings || (frame.flags & flag.ack) === 0) return false
    this.ackSeen = true
    return true
  }

  /** The next whole frame in `pending`, or undefined. */
  private next(): Frame | undefined {
    if (this.pending.length < frameHeaderBytes) return undefined
    const length = this.pending.readUIntBE(0, 3)
    if (length > maxFrameBytes) throw new RelayError(`frame of ${length} bytes exceeds ${maxFrameBytes}`)
    if (this.pending.length < frameHeaderBytes + length) return undefined
    const raw = this.pending.subarray(0, frameHeaderBytes + length)
    this.pending = this.pending.subarray(frameHeaderBytes + length)
    return { type: raw[3]!, flags: raw[4]!, streamId: raw.readUInt32BE(5) & 0x7fffffff, payload: raw.subarray(frameHeaderBytes), raw }
  }

  /** A relayed frame: header blocks re-encoded, every other frame as it came. */
  private relayFrame(frame: Frame): Buffer[] {
    if (frame.type !== type.headers && frame.type !== type.continuation) return [frame.raw]
    const headers = this.collect(frame)
    if (headers === undefined) return []
    const out = this.encodeBlock(headers)
    this.block = undefined
    return [out]
  }

  /** Adds a HEADERS or CONTINUATION frame to the current block; its headers once it is complete. */
  private collect(frame: Frame): HpackHeader[] | undefined {
    if (frame.type === type.headers) {
      if (this.block !== undefined) throw new RelayError("a header block was interrupted")
      let fragment = frame.payload
      let padding = 0
      if ((frame.flags & flag.padded) !== 0) {
        padding = fragment[0] ?? 0
        fragment = fragment.subarray(1)
      }
      const priority = (frame.flags & flag.priority) !== 0 ? fragment.subarray(0, 5) : undefined
      if (priority !== undefined) fragment = fragment.subarray(5)
      if (padding > fragment.length) throw new RelayError("HEADERS padding exceeds its payload")
      fragment = fragment.subarray(0, fragment.length - padding)
      this.block = { streamId: frame.streamId, flags: frame.flags, priority, fragments: [fragment], bytes: fragment.length, raw: [frame.raw] }
    } else {
      if (this.block === undefined || this.block.streamId !== frame.streamId) throw new RelayError("CONTINUATION without its HEADERS")
      this.block.fragments.push(frame.payload)
      this.block.bytes += frame.payload.length
      this.block.raw.push(frame.raw)
      if (this.block.bytes > maxHeaderBlockBytes) throw new RelayError(`header block exceeds ${maxHeaderBlockBytes} bytes`)
    }
    if ((frame.flags & flag.endHeaders) === 0) return undefined
    return this.decode(Buffer.concat(this.block.fragments))
  }

  private decode(block: Buffer): HpackHeader[] {
    this.decoder.write(block)
    this.decoder.execute()
    const headers: HpackHeader[] = []
    for (let h = this.decoder.read(); h !== null; h = this.decoder.read()) headers.push(h)
    if (this.decodeFailure !== undefined) throw new RelayError(`header block does not decode: ${this.decodeFailure.message}`)
    return headers
  }

  /** The current block's HEADERS (and CONTINUATION) frames with `headers` encoded for the gRPC server. */
  private encodeBlock(headers: ReadonlyArray<HpackHeader>): Buffer {
    const block = this.block!
    const rewritten = headers.map((h): HpackHeader => {
      const authority = h.name === ":authority" ? authorityOfUrl(h.value) : undefined
      return authority === undefined ? h : { ...h, value: authority }
    })
    this.encoder.write(rewritten)
    const chunks: Buffer[] = []
    for (let c = this.encoder.read(); c !== null; c = this.encoder.read()) chunks.push(c)
    let body = Buffer.concat(chunks)
    if (block.priority !== undefined) body = Buffer.concat([block.priority, body])
    const frames: Buffer[] = []
    for (let at = 0, first = true; first || at < body.length; first = false) {
      const payload = body.subarray(at, at + maxFrameBytes)
      at += payload.length
      const last = at >= body.length
      const flags = first
        ? (block.flags & (flag.endStream | flag.priority)) | (last ? flag.endHeaders : 0)
        : last ? flag.endHeaders : 0
      const header = Buffer.alloc(frameHeaderBytes)
      header.writeUIntBE(payload.length, 0, 3)
      header[3] = first ? type.headers : type.continuation
      header[4] = flags
      header.writeUInt32BE(block.streamId, 5)
      frames.push(header, payload)
    }
    return Buffer.concat(frames)
  }
}
