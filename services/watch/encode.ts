/**
 * Watch responses as the bytes a client's Watch stream receives: protobuf-encoded etcd
 * `etcdserverpb.WatchResponse` messages (shared/proto/etcdserverpb/rpc.proto), built by the
 * watch replica so that the gateway relays them to the client's HTTP/2 stream without decoding
 * or re-encoding them.
 *
 * Cost model. One event goes to many watchers: its `mvccpb.Event` encoding is made once per
 * event object (with and without its previous key-value, which are distinct objects, see
 * ./core/outbox.ts) and kept in a WeakMap for as long as the hub holds the event; a watcher's
 * response is then its header's bytes (made once per header revision and term), its watch id
 * and flags, and the events' bytes copied in as the length-delimited field 11. The encoding
 * equals protobufjs's encoding of the same response with only the non-default fields set,
 * which a table test checks.
 *
 * Fragments follow etcd server/etcdserver/api/v3rpc/watch.go sendFragments: a watch created
 * with `fragment` whose response of two or more events reaches the stream's max request size
 * (etcd --max-request-bytes) is cut into responses marked `fragment`, each holding events while
 * its size stays under that limit (at least one event each), the last one unmarked.
 *
 * Pure: no IO, no clock.
 */
import protobuf from "protobufjs"
import { loadProtoRoot } from "../../shared/protos.ts"
import type { OutgoingMessage, StreamFormat, WatchResponseData } from "./core/messages.ts"
import type { EventKeyValue, WatchEvent } from "./core/watcher-group.ts"
import { packRelay, RelayKind } from "../../shared/watch-relay.ts"
import type { WatchResponsesBody, WatchSessionMessage } from "../../shared/schema.ts"
import type { RelayedResponse } from "../../shared/watch-relay.ts"

const root = loadProtoRoot(["etcdserverpb/rpc.proto"])
const ResponseHeader = root.lookupType("etcdserverpb.ResponseHeader")
const WatchResponse = root.lookupType("etcdserverpb.WatchResponse")
const Event = root.lookupType("mvccpb.Event")

/** protobuf wire types (the protobuf encoding spec). */
const varint = 0
const lengthDelimited = 2
/** The key of field `name` of WatchResponse with wire type `wireType`, from the proto's field numbers. */
const fieldKey = (name: string, wireType: number): number => {
  const field = WatchResponse.fields[name]
  if (field === undefined) throw new Error(`WatchResponse has no field ${name}`)
  return (field.id << 3) | wireType
}
const keys = {
  header: fieldKey("header", lengthDelimited),
  watchId: fieldKey("watch_id", varint),
  created: fieldKey("created", varint),
  canceled: fieldKey("canceled", varint),
  compactRevision: fieldKey("compact_revision", varint),
  cancelReason: fieldKey("cancel_reason", lengthDelimited),
  fragment: fieldKey("fragment", varint),
  events: fieldKey("events", lengthDelimited)
}

/** Bytes of a varint holding `n` (0 <= n < 2^35), as protobuf writes lengths and keys. */
const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5)

/** Bytes an event of `n` encoded bytes takes in a WatchResponse (key, length, bytes). */
const eventFieldSize = (n: number): number => varintSize(keys.events) + varintSize(n) + n

/** A KeyValue as protobufjs encodes it, with only its non-default fields (as Go's encoder writes it). */
const kvMessage = (kv: EventKeyValue): Record<string, unknown> => {
  const m: Record<string, unknown> = {}
  if (kv.key.length > 0) m.key = kv.key
  if (kv.createRevision !== 0) m.create_revision = kv.createRevision
  if (kv.modRevision !== 0) m.mod_revision = kv.modRevision
  if (kv.version !== 0) m.version = kv.version
  if (kv.value.length > 0) m.value = kv.value
  if (kv.lease !== 0n) m.lease = kv.lease.toString()
  return m
}

/** An Event as protobufjs encodes it, with only its non-default fields. */
export const eventMessage = (e: WatchEvent): Record<string, unknown> => {
  const m: Record<string, unknown> = { kv: kvMessage(e.kv) }
  if (e.type === "DELETE") m.type = 1
  if (e.prevKv !== undefined) m.prev_kv = kvMessage(e.prevKv)
  return m
}

/** Encoded events, by event object: an event's bytes live as long as the hub holds the event. */
const eventCache = new WeakMap<WatchEvent, Uint8Array>()

/** The `mvccpb.Event` encoding of `e` (made once per event object). */
export const encodeEvent = (e: WatchEvent): Uint8Array => {
  let bytes = eventCache.get(e)
  if (bytes === undefined) {
    bytes = Event.encode(eventMessage(e)).finish()
    eventCache.set(e, bytes)
  }
  return bytes
}

/**
 * The encoder of one stream (session) with the header ids and fragment limit of its `format`:
 * `encode(r, term, fragment)` gives the response's encodings, several when `fragment` (the
 * watch asked for fragments) and the response reaches `format.maxRequestBytes`, each with what
 * the gateway tracks of it (shared/watch-relay.ts).
 */
export const makeStreamEncoder = (format: StreamFormat) => {
  const { maxRequestBytes } = format
  let headerKey = ""
  let headerBytes: Uint8Array = new Uint8Array()
  const header = (revision: number, term: number): Uint8Array => {
    const key = `${revision}/${term}`
    if (key !== headerKey) {
      const m: Record<string, unknown> = {}
      if (format.clusterId !== 0n) m.cluster_id = format.clusterId.toString()
      if (format.memberId !== 0n) m.member_id = format.memberId.toString()
      if (revision !== 0) m.revision = revision
      if (term !== 0) m.raft_term = term
      headerBytes = ResponseHeader.encode(m).finish()
      headerKey = key
    }
    return headerBytes
  }

  /** Everything of a response but its events. */
  const start = (r: WatchResponseData, term: number, fragment: boolean): protobuf.Writer => {
    const w = protobuf.Writer.create()
    w.uint32(keys.header).bytes(header(r.revision, term))
    if (r.watchId !== 0) w.uint32(keys.watchId).int64(r.watchId)
    if (r.created === true) w.uint32(keys.created).bool(true)
    if (r.canceled === true) w.uint32(keys.canceled).bool(true)
    if (r.compactRevision !== undefined && r.compactRevision !== 0) w.uint32(keys.compactRevision).int64(r.compactRevision)
    if (r.cancelReason !== undefined && r.cancelReason !== "") w.uint32(keys.cancelReason).string(r.cancelReason)
    if (fragment) w.uint32(keys.fragment).bool(true)
    return w
  }

  const encodeWith = (r: WatchResponseData, term: number, fragment: boolean, events: ReadonlyArray<Uint8Array>): Uint8Array => {
    const w = start(r, term, fragment)
    for (const e of events) w.uint32(keys.events).bytes(e)
    return w.finish()
  }

  return {
    /** `r`'s encodings (one, or etcd's fragments when `fragment` and the response is too big). */
    encode(r: WatchResponseData, term: number, fragment: boolean): RelayedResponse[] {
      const watchId = r.watchId
      if (r.created === true) return [{ watchId, kind: RelayKind.created, nextRev: r.revision + 1, bytes: encodeWith(r, term, false, []) }]
      if (r.canceled === true) return [{ watchId, kind: RelayKind.canceled, nextRev: 0, bytes: encodeWith(r, term, false, []) }]
      const events = r.events.map(encodeEvent)
      const nextRev = r.events.length === 0 ? r.revision + 1 : r.events[r.events.length - 1]!.kv.modRevision + 1
      const whole = (): RelayedResponse[] => [{ watchId, kind: RelayKind.events, nextRev, bytes: encodeWith(r, term, false, events) }]
      if (!fragment || events.length < 2) return whole()
      const base = start(r, term, false).len
      let total = base
      for (const e of events) total += eventFieldSize(e.length)
      if (total < maxRequestBytes) return whole()
      // etcd sendFragments: add events while the fragment stays under the limit (one at least).
      const fragmentBase = start(r, term, true).len
      const out: RelayedResponse[] = []
      let from = 0
      while (from < events.length) {
        let size = fragmentBase + eventFieldSize(events[from]!.length)
        let to = from + 1
        while (to < events.length && size + eventFieldSize(events[to]!.length) < maxRequestBytes) size += eventFieldSize(events[to++]!.length)
        const last = to === events.length
        out.push({ watchId, kind: RelayKind.events, nextRev, bytes: encodeWith(r, term, !last, events.slice(from, to)) })
        from = to
      }
      return out
    }
  }
}

/** etcd's WatchResponse message type, as loaded from shared/proto (tests compare encodings with it). */
export const watchResponseType: protobuf.Type = WatchResponse

/** A message's responses as a gateway.watch frame carries them (shared/watch-relay.ts). */
export const encodeMessage = (m: OutgoingMessage): { marks: Uint8Array; responses: Uint8Array } => {
  const encoder = makeStreamEncoder(m.format)
  return packRelay(m.responses.flatMap((r) => encoder.encode(r, m.term, r.fragment === true)))
}

/** One gateway.watch frame to send: its gateway's subject and the frame's body. */
export interface GatewayFrame {
  readonly gateway: string
  readonly body: typeof WatchResponsesBody.Type
}

/**
 * A delivery round's messages (in the order the hub gave them: each session's in sequence
 * order) as gateway.watch frames of replica `replica`: per gateway, consecutive runs of its
 * messages whose encoded bytes (marks and responses) add up to at most `maxBytes`, one frame
 * per run; a message bigger than `maxBytes` goes alone. So a revision delivered to several
 * streams of one gateway costs that gateway one NATS message, and every frame stays within the
 * hub's message size (./core/hub-options.ts maxMessageBytes), which the outbox already
 * cut each message to. Frames of one gateway keep the messages' order. Pure.
 */
export const gatewayFrames = (messages: ReadonlyArray<OutgoingMessage>, replica: string, maxBytes: number): GatewayFrame[] => {
  const open = new Map<string, { messages: Array<typeof WatchSessionMessage.Type>; bytes: number }>()
  const out: GatewayFrame[] = []
  const close = (gateway: string) => {
    const run = open.get(gateway)
    if (run === undefined) return
    out.push({ gateway, body: { replica, messages: run.messages } })
    open.delete(gateway)
  }
  for (const m of messages) {
    const { marks, responses } = encodeMessage(m)
    const bytes = marks.length + responses.length
    let run = open.get(m.gateway)
    if (run !== undefined && run.bytes + bytes > maxBytes) {
      close(m.gateway)
      run = undefined
    }
    if (run === undefined) open.set(m.gateway, (run = { messages: [], bytes: 0 }))
    run.messages.push({ session: m.session, seq: m.seq, marks, responses })
    run.bytes += bytes
  }
  for (const gateway of [...open.keys()]) close(gateway)
  return out
}
