/**
 * The frame codec and the schemas that normalise its numbers: round trips of every frame kind's
 * shape, 64-bit boundaries (0, 2^32, 2^53, 2^63-1), and malformed input that must come back as
 * an error value, never a throw.
 */
import * as Schema from "effect/Schema"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeFrame, encodeFrame, isFrameDecodeError, packValue } from "../../shared/frame.ts"
import { Int, Proposal, U64, WalAppendBody } from "../../shared/schema.ts"
import { formatTraceparent, parseTraceparent } from "../../shared/trace.ts"

/** Bytes as number arrays (Buffer vs Uint8Array aside), everything else as is. */
const plain = (v: unknown): unknown =>
  v instanceof Uint8Array
    ? [...v]
    : Array.isArray(v)
    ? v.map(plain)
    : v !== null && typeof v === "object"
    ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
    : v

const roundTrip = (body: unknown) => {
  const f = decodeFrame(encodeFrame({ kind: "k", version: 1, traceparent: "", id: 7, body }))
  if (isFrameDecodeError(f)) throw new Error(f.reason)
  return f.body
}

describe("frame codec", () => {
  it("round-trips the envelope", () => {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    const f = decodeFrame(encodeFrame({ kind: "wal.append", version: 3, traceparent: tp, id: 2 ** 40, body: { a: 1 } }))
    expect(f).toEqual({ kind: "wal.append", version: 3, traceparent: tp, id: 2 ** 40, body: { a: 1 } })
  })

  it.each([
    ["0", 0n],
    ["2^32", 2n ** 32n],
    ["2^53", 2n ** 53n],
    ["2^63-1", 2n ** 63n - 1n],
    ["2^64-1", 2n ** 64n - 1n]
  ])("U64 keeps %s exactly through msgpack and the schema", (_name, value) => {
    const decoded = Schema.decodeUnknownSync(U64)(roundTrip(value))
    expect(decoded).toBe(value)
  })

  it.each([0, 1, 2 ** 32, 2 ** 53 - 1])("Int keeps %d as a number", (value) => {
    expect(Schema.decodeUnknownSync(Int)(roundTrip(value))).toBe(value)
    expect(Schema.decodeUnknownSync(Int)(roundTrip(BigInt(value)))).toBe(value)
  })

  it("Int rejects values beyond 2^53", () => {
    expect(Schema.decodeUnknownExit(Int)(roundTrip(2n ** 60n))._tag).toBe("Failure")
  })

  it("round-trips a proposal with a nested txn through its schema", () => {
    const proposal = {
      requestId: 2n ** 63n + 5n,
      origin: "m1",
      replyTo: "natcd.c.m1.gateway.result.ab",
      deadlineMs: 1_800_000_000_000,
      traceparent: "",
      request: {
        txn: {
          compare: [{ result: "EQUAL", target: "MOD", key: new Uint8Array([1]), modRevision: 0 }],
          success: [{ requestPut: { key: new Uint8Array([1]), value: new Uint8Array([2]), lease: 2n ** 62n } }],
          failure: [{ requestTxn: { compare: [], success: [{ requestRange: { key: new Uint8Array([3]) } }], failure: [] } }]
        }
      }
    }
    const decoded = Schema.decodeUnknownSync(Proposal)(roundTrip(proposal))
    expect(decoded.requestId).toBe(proposal.requestId)
    expect(plain(decoded)).toEqual(plain(proposal))
  })

  it("decodes arbitrary bytes to a frame or an error value, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const f = decodeFrame(bytes)
        if (!isFrameDecodeError(f)) expect(typeof f.kind).toBe("string")
      }),
      { numRuns: 5000 }
    )
  })

  it("rejects well-formed msgpack that is not a frame", () => {
    for (const value of [null, 1, "x", [], ["k", 1, "", 0], ["", 1, "", 0, {}], ["k", 1.5, "", 0, {}], ["k", 1, 3, 0, {}], ["k", 1, "", -1, {}]]) {
      expect(isFrameDecodeError(decodeFrame(packValue(value)))).toBe(true)
    }
  })

  it("schemas reject bodies of the wrong shape", () => {
    const bad = [{}, { writer: "w", seq: 1, entries: [{ term: 1, index: 1, type: "Bogus", data: new Uint8Array() }] }, { writer: 1, seq: 1, entries: [] }]
    for (const body of bad) expect(Schema.decodeUnknownExit(WalAppendBody)(roundTrip(body))._tag).toBe("Failure")
  })
})

describe("traceparent", () => {
  it("parses and formats W3C trace context", () => {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    const ctx = parseTraceparent(tp)
    expect(ctx).toEqual({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", sampled: true })
    expect(formatTraceparent(ctx!)).toBe(tp)
  })

  it.each([
    "",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
    "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
    "00-xyz-b7ad6b7169203331-01"
  ])(
    "rejects %j",
    (tp) => expect(parseTraceparent(tp)).toBeUndefined()
  )
})
