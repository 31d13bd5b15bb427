/**
 * The gateway.watch payload (shared/watch-relay.ts): what the replica packs the gateway unpacks,
 * each response a gRPC-framed message at its place; malformed payloads are refused whole.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { grpcPrefixBytes, packRelay, RelayKind, unpackRelay } from "../../shared/watch-relay.ts"
import type { RelayedResponse } from "../../shared/watch-relay.ts"

const response = fc.record({
  watchId: fc.integer({ min: -1, max: 2 ** 40 }),
  kind: fc.constantFrom(RelayKind.events, RelayKind.created, RelayKind.canceled),
  nextRev: fc.maxSafeInteger().filter((n) => n >= 0),
  bytes: fc.uint8Array({ maxLength: 300 })
}) as fc.Arbitrary<RelayedResponse>

describe("gateway.watch payload", () => {
  it("unpacks what was packed: marks, and each message framed as gRPC frames it", () => {
    fc.assert(fc.property(fc.array(response, { maxLength: 20 }), (responses) => {
      const { marks, responses: bytes } = packRelay(responses)
      const got = unpackRelay(marks, bytes)
      if (typeof got === "string") throw new Error(got)
      expect(got.map(({ watchId, kind, nextRev }) => ({ watchId, kind, nextRev }))).toEqual(
        responses.map(({ watchId, kind, nextRev }) => ({ watchId, kind, nextRev }))
      )
      got.forEach((m, i) => {
        const framed = bytes.subarray(m.start, m.end)
        expect(framed[0]).toBe(0)
        expect(Buffer.from(framed).readUInt32BE(1)).toBe(responses[i]!.bytes.length)
        expect([...framed.subarray(grpcPrefixBytes)]).toEqual([...responses[i]!.bytes])
        if (i > 0) expect(m.start).toBe(got[i - 1]!.end)
      })
      expect(got.length === 0 ? 0 : got[got.length - 1]!.end).toBe(bytes.length)
    }))
  })

  const one = packRelay([{ watchId: 3, kind: RelayKind.events, nextRev: 9, bytes: new Uint8Array([1, 2, 3]) }])
  const withMark = (index: number, value: number) => {
    const marks = one.marks.slice()
    new DataView(marks.buffer).setFloat64(index * 8, value, true)
    return marks
  }
  it.each([
    ["marks cut short", one.marks.subarray(0, 31), one.responses, /not whole/],
    ["a watch id that is not an integer", withMark(0, 1.5), one.responses, /safe integers/],
    ["an unknown kind", withMark(1, 7), one.responses, /unknown kind/],
    ["a negative length", withMark(3, -1), one.responses, /safe integers/],
    ["a message longer than the bytes", withMark(3, 4), one.responses, /ends past/],
    ["bytes after the last message", one.marks, new Uint8Array([...one.responses, 0]), /follow the last/],
    ["a prefix that disagrees", one.marks, new Uint8Array([0, 0, 0, 0, 2, 1, 2, 3]), /disagrees/],
    ["a compressed flag", one.marks, new Uint8Array([1, 0, 0, 0, 3, 1, 2, 3]), /disagrees/]
  ])("refuses %s", (_name, marks, bytes, error) => {
    expect(unpackRelay(marks, bytes)).toMatch(error)
  })
})
