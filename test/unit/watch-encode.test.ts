/**
 * The watch replica's response encoder (services/watch/encode.ts): the bytes it builds from
 * cached event encodings equal protobufjs's encoding of the whole WatchResponse (table), and its
 * fragments are etcd's sendFragments cuts (property, against a model that re-implements
 * sendFragments over protobufjs's encoded sizes); a delivery round's messages go to their gateways
 * in frames that keep each gateway's order and stay within the message size (property, against
 * the order and sizes of the messages themselves).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { OutgoingMessage, WatchResponseData } from "../../services/watch/core/messages.ts"
import type { EventKeyValue, WatchEvent } from "../../services/watch/core/watcher-group.ts"
import { encodeEvent, encodeMessage, eventMessage, gatewayFrames, makeStreamEncoder, watchResponseType } from "../../services/watch/encode.ts"
import { RelayKind } from "../../shared/watch-relay.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const ids = { clusterId: 14841639068965178418n, memberId: 10276657743932975437n }
const format = (maxRequestBytes: number) => ({ ...ids, maxRequestBytes })

/** protobufjs's own encoding of a whole response with only its non-default fields (the reference). */
const referenceEncoding = (r: WatchResponseData, term: number, fragment: boolean): Uint8Array => {
  const header: Record<string, unknown> = { cluster_id: ids.clusterId.toString(), member_id: ids.memberId.toString() }
  if (r.revision !== 0) header.revision = r.revision
  if (term !== 0) header.raft_term = term
  const m: Record<string, unknown> = { header }
  if (r.watchId !== 0) m.watch_id = r.watchId
  if (r.created === true) m.created = true
  if (r.canceled === true) m.canceled = true
  if (r.compactRevision !== undefined && r.compactRevision !== 0) m.compact_revision = r.compactRevision
  if (r.cancelReason !== undefined && r.cancelReason !== "") m.cancel_reason = r.cancelReason
  if (fragment) m.fragment = true
  if (r.events.length > 0) m.events = r.events.map(eventMessage)
  return watchResponseType.encode(m).finish()
}

const decodeWatchResponse = (bytes: Uint8Array): Record<string, any> =>
  watchResponseType.toObject(watchResponseType.decode(bytes), { longs: String, defaults: true, arrays: true })

const kv = (key: string, value: string, mod: number, extra: Partial<EventKeyValue> = {}): EventKeyValue => ({
  key: enc(key), value: enc(value), createRevision: mod, modRevision: mod, version: 1, lease: 0n, ...extra
})
const put = (key: string, value: string, mod: number, prev?: EventKeyValue): WatchEvent =>
  prev === undefined ? { type: "PUT", kv: kv(key, value, mod) } : { type: "PUT", kv: kv(key, value, mod), prevKv: prev }
const del = (key: string, mod: number, prev?: EventKeyValue): WatchEvent => {
  const k: EventKeyValue = { key: enc(key), value: new Uint8Array(), createRevision: 0, modRevision: mod, version: 0, lease: 0n }
  return prev === undefined ? { type: "DELETE", kv: k } : { type: "DELETE", kv: k, prevKv: prev }
}

describe("watch response encoding", () => {
  const cases: ReadonlyArray<[string, WatchResponseData, number]> = [
    ["created, watch id 0", { watchId: 0, revision: 5, created: true, events: [] }, 2],
    ["created, watch id 7, revision 0, term 0", { watchId: 7, revision: 0, created: true, events: [] }, 0],
    ["canceled as compacted", { watchId: 3, revision: 0, canceled: true, compactRevision: 17, events: [] }, 4],
    ["canceled with a reason", { watchId: 3, revision: 9, canceled: true, cancelReason: "etcdserver: permission denied", events: [] }, 4],
    ["progress of the stream", { watchId: -1, revision: 1234567, events: [] }, 3],
    ["progress of one watch", { watchId: 2, revision: 12, events: [] }, 3],
    ["events: put, delete, leases, prev_kv", {
      watchId: 1,
      revision: 8,
      events: [
        put("a", "1", 6),
        { type: "PUT", kv: kv("b", "", 7, { createRevision: 3, version: 4, lease: 7587869542385719058n }), prevKv: kv("b", "x", 3) },
        del("c", 8, kv("c", "old", 2)),
        del("d", 8)
      ]
    }, 2],
    ["a key of 0xff bytes and a large value", { watchId: 2 ** 40, revision: 2 ** 40 + 1, events: [put("\u00ff".repeat(300), "v".repeat(70000), 2 ** 40)] }, 2 ** 33]
  ]
  it.each(cases)("%s: equals protobufjs's encoding of the whole response", (_name, r, term) => {
    const [out, ...rest] = makeStreamEncoder(format(1.5 * 1024 * 1024)).encode(r, term, false)
    expect(rest).toEqual([])
    expect(Buffer.from(out!.bytes).toString("hex")).toBe(Buffer.from(referenceEncoding(r, term, false)).toString("hex"))
  })

  it("marks: kind and the first revision the client has not seen", () => {
    const e = makeStreamEncoder(format(1 << 20))
    const mark = (r: WatchResponseData) => e.encode(r, 1, false).map(({ watchId, kind, nextRev }) => [watchId, kind, nextRev])
    expect(mark({ watchId: 4, revision: 10, created: true, events: [] })).toEqual([[4, RelayKind.created, 11]])
    expect(mark({ watchId: 4, revision: 0, canceled: true, compactRevision: 3, events: [] })).toEqual([[4, RelayKind.canceled, 0]])
    expect(mark({ watchId: -1, revision: 10, events: [] })).toEqual([[-1, RelayKind.events, 11]])
    expect(mark({ watchId: 4, revision: 20, events: [put("a", "1", 12), put("b", "1", 15)] })).toEqual([[4, RelayKind.events, 16]])
  })

  it("header ids and fields decode as etcd's", () => {
    const [out] = makeStreamEncoder(format(1 << 20)).encode({ watchId: 1, revision: 8, events: [del("c", 8, kv("c", "old", 2))] }, 5, false)
    const d = decodeWatchResponse(out!.bytes)
    expect(d.header).toEqual({ cluster_id: "14841639068965178418", member_id: "10276657743932975437", revision: "8", raft_term: "5" })
    expect(d.watch_id).toBe("1")
    expect(d.events[0].type).toBe(1)
    expect(Buffer.from(d.events[0].prev_kv.value).toString()).toBe("old")
  })

  it("an event is encoded once per event object", () => {
    const e = put("k", "v", 3)
    expect(encodeEvent(e)).toBe(encodeEvent(e))
  })

  /** etcd sendFragments over protobufjs's encoded sizes (the model). */
  const modelFragments = (r: WatchResponseData, term: number, max: number): Uint8Array[] => {
    const size = (events: ReadonlyArray<WatchEvent>, fragment: boolean) => referenceEncoding({ ...r, events }, term, fragment).length
    if (size(r.events, false) < max || r.events.length < 2) return [referenceEncoding(r, term, false)]
    const out: Uint8Array[] = []
    let idx = 0
    for (;;) {
      const cur: WatchEvent[] = []
      for (const ev of r.events.slice(idx)) {
        cur.push(ev)
        if (cur.length > 1 && size(cur, true) >= max) {
          cur.pop()
          break
        }
        idx++
      }
      const last = idx === r.events.length
      out.push(referenceEncoding({ ...r, events: cur }, term, !last))
      if (last) return out
    }
  }

  it("fragments are etcd's sendFragments cuts", () => {
    const event = fc.record({ key: fc.string({ minLength: 1, maxLength: 20 }), value: fc.string({ maxLength: 300 }), del: fc.boolean() })
    fc.assert(fc.property(fc.array(event, { maxLength: 12 }), fc.integer({ min: 40, max: 2000 }), fc.boolean(), (evs, max, fragment) => {
      const events = evs.map((e, i) => (e.del ? del(e.key, 10 + i) : put(e.key, e.value, 10 + i)))
      const r: WatchResponseData = { watchId: 5, revision: 30, events }
      const got = makeStreamEncoder(format(max)).encode(r, 2, fragment).map((o) => Buffer.from(o.bytes).toString("hex"))
      const want = (fragment ? modelFragments(r, 2, max) : [referenceEncoding(r, 2, false)]).map((b) => Buffer.from(b).toString("hex"))
      expect(got).toEqual(want)
    }), { numRuns: 300 })
  })
})

describe("gateway.watch frames of a delivery round", () => {
  const message = (gateway: string, session: string, seq: number, values: ReadonlyArray<number>): OutgoingMessage => ({
    session,
    gateway,
    format: format(1.5 * 1024 * 1024),
    seq,
    term: 2,
    responses: values.map((n, i) => ({ watchId: i, revision: 10 + seq, events: [put(`k${seq}`, "v".repeat(n), 10 + seq)] }))
  })
  const bytesOf = (m: { marks: Uint8Array; responses: Uint8Array }) => m.marks.length + m.responses.length

  it("one frame per gateway when the round's messages fit", () => {
    const round = [message("g1", "s1", 1, [10]), message("g2", "s2", 1, [10]), message("g1", "s3", 1, [10, 20]), message("g1", "s1", 2, [5])]
    const frames = gatewayFrames(round, "w1", 64 * 1024)
    expect(frames.map((f) => [f.gateway, f.body.replica, f.body.messages.map((m) => `${m.session}#${m.seq}`)])).toEqual([
      ["g1", "w1", ["s1#1", "s3#1", "s1#2"]],
      ["g2", "w1", ["s2#1"]]
    ])
    const encoded = encodeMessage(round[2]!)
    expect(Buffer.from(frames[0]!.body.messages[1]!.responses).equals(Buffer.from(encoded.responses))).toBe(true)
    expect(Buffer.from(frames[0]!.body.messages[1]!.marks).equals(Buffer.from(encoded.marks))).toBe(true)
  })

  it("a message larger than the limit goes alone; the rest stay within it", () => {
    const round = [message("g1", "s1", 1, [50]), message("g1", "s2", 1, [5000]), message("g1", "s1", 2, [50])]
    const frames = gatewayFrames(round, "w1", 1000)
    expect(frames.map((f) => f.body.messages.map((m) => `${m.session}#${m.seq}`))).toEqual([["s1#1"], ["s2#1"], ["s1#2"]])
  })

  it("every message once, each gateway's in order, frames within the limit and full", () => {
    const msg = fc.record({ gateway: fc.constantFrom("g1", "g2", "g3"), session: fc.constantFrom("a", "b", "c"), values: fc.array(fc.nat(400), { minLength: 1, maxLength: 4 }) })
    fc.assert(fc.property(fc.array(msg, { maxLength: 30 }), fc.integer({ min: 50, max: 3000 }), (specs, maxBytes) => {
      const seqs = new Map<string, number>()
      const round = specs.map((m) => {
        const key = `${m.gateway}/${m.session}`
        const seq = (seqs.get(key) ?? 0) + 1
        seqs.set(key, seq)
        return message(m.gateway, key, seq, m.values)
      })
      const frames = gatewayFrames(round, "w9", maxBytes)
      for (const gateway of ["g1", "g2", "g3"]) {
        const mine = frames.filter((f) => f.gateway === gateway)
        // The gateway's messages, once each, in the round's order.
        expect(mine.flatMap((f) => f.body.messages.map((m) => `${m.session}#${m.seq}`))).toEqual(
          round.filter((m) => m.gateway === gateway).map((m) => `${m.session}#${m.seq}`)
        )
        mine.forEach((f, i) => {
          const total = f.body.messages.reduce((n, m) => n + bytesOf(m), 0)
          expect(f.body.messages.length).toBeGreaterThan(0)
          if (f.body.messages.length > 1) expect(total).toBeLessThanOrEqual(maxBytes)
          // A frame ends only where the gateway's next message would not fit.
          if (i + 1 < mine.length) expect(total + bytesOf(mine[i + 1]!.body.messages[0]!)).toBeGreaterThan(maxBytes)
        })
      }
    }), { numRuns: 200 })
  })
})
