/**
 * The payload of a `gateway.watch` message (shared/schema.ts WatchResponsesBody): a session's
 * watch responses as the client's stream receives them, packed so that the gateway reads them
 * at a few operations per response whatever their number.
 *
 * - `responses`: the responses (etcd WatchResponse messages, protobuf-encoded by the watch
 *   replica, services/watch/encode.ts) in gRPC's length-prefixed message framing (a zero byte,
 *   the length as 4 big-endian bytes, the message), one after the other: a run of them is what
 *   the gateway writes to the client's HTTP/2 stream as it is;
 * - `marks`: per response, four little-endian float64 (each a safe integer): the watch id (-1:
 *   progress of the whole stream), the kind ({@link RelayKind}), the first revision the client
 *   has not seen once it has the response (created: header revision + 1; canceled: 0), and the
 *   message's length in bytes (without its 5-byte prefix).
 *
 * {@link unpackRelay} checks the whole payload (whole marks, safe integers, known kinds,
 * prefixes agreeing with the marks, lengths adding up to the bytes) before anything is
 * relayed, so a malformed message is refused whole. Pure.
 */

/** What a response does to the gateway's view of its watch. */
export const RelayKind = { events: 0, created: 1, canceled: 2 } as const
export type RelayKind = (typeof RelayKind)[keyof typeof RelayKind]

/** One response to relay: its watch, kind, next revision (see the module note) and bytes. */
export interface RelayedResponse {
  readonly watchId: number
  readonly kind: RelayKind
  readonly nextRev: number
  readonly bytes: Uint8Array
}

/** Where a response lies in `responses`, with its marks: bytes start..end are its framed message. */
export interface RelayMark {
  readonly watchId: number
  readonly kind: RelayKind
  readonly nextRev: number
  readonly start: number
  readonly end: number
}

/** Bytes of one response's marks. */
const markBytes = 32
/** Bytes of gRPC's message prefix (compressed flag, big-endian length). */
export const grpcPrefixBytes = 5

/** Packs `responses` into the two byte fields of a gateway.watch body. */
export const packRelay = (responses: ReadonlyArray<RelayedResponse>): { marks: Uint8Array; responses: Uint8Array } => {
  const marks = new Uint8Array(responses.length * markBytes)
  const view = new DataView(marks.buffer)
  let total = 0
  for (const r of responses) total += grpcPrefixBytes + r.bytes.length
  const bytes = new Uint8Array(total)
  const prefixes = new DataView(bytes.buffer)
  let at = 0
  responses.forEach((r, i) => {
    const o = i * markBytes
    view.setFloat64(o, r.watchId, true)
    view.setFloat64(o + 8, r.kind, true)
    view.setFloat64(o + 16, r.nextRev, true)
    view.setFloat64(o + 24, r.bytes.length, true)
    prefixes.setUint8(at, 0)
    prefixes.setUint32(at + 1, r.bytes.length)
    bytes.set(r.bytes, at + grpcPrefixBytes)
    at += grpcPrefixBytes + r.bytes.length
  })
  return { marks, responses: bytes }
}

/**
 * The responses of a gateway.watch body, as marks and places in `responses`; a string saying
 * what is wrong when the payload is malformed.
 */
export const unpackRelay = (marks: Uint8Array, responses: Uint8Array): RelayMark[] | string => {
  if (marks.length % markBytes !== 0) return `marks of ${marks.length} bytes are not whole`
  const view = new DataView(marks.buffer, marks.byteOffset, marks.byteLength)
  const prefixes = new DataView(responses.buffer, responses.byteOffset, responses.byteLength)
  const out: RelayMark[] = []
  let at = 0
  for (let o = 0; o < marks.length; o += markBytes) {
    const watchId = view.getFloat64(o, true)
    const kind = view.getFloat64(o + 8, true)
    const nextRev = view.getFloat64(o + 16, true)
    const length = view.getFloat64(o + 24, true)
    if (!Number.isSafeInteger(watchId) || !Number.isSafeInteger(nextRev) || !Number.isSafeInteger(length) || length < 0) {
      return `response ${o / markBytes}: marks are not safe integers`
    }
    if (kind !== RelayKind.events && kind !== RelayKind.created && kind !== RelayKind.canceled) return `response ${o / markBytes}: unknown kind ${kind}`
    const end = at + grpcPrefixBytes + length
    if (end > responses.length) return `response ${o / markBytes} ends past the ${responses.length} bytes`
    if (prefixes.getUint8(at) !== 0 || prefixes.getUint32(at + 1) !== length) return `response ${o / markBytes}: its prefix disagrees with its marks`
    out.push({ watchId, kind, nextRev, start: at, end })
    at = end
  }
  if (at !== responses.length) return `${responses.length - at} bytes follow the last response`
  return out
}
