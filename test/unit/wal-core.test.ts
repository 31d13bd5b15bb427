/**
 * Table and property tests of the pure WAL core (services/wal/core): CRC-32C, payload and
 * frame encoding, segment names, release selection, the append planner's cut rule, replay
 * semantics and the torn-tail-versus-corruption decision. No files are touched here; see
 * wal-files.test.ts for the node:fs layer.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { crc32c } from "../../services/wal/core/crc32c.ts"
import { decodePayload, encodePayload, RecordType, typeCode, type WalRecord } from "../../services/wal/core/payload.ts"
import { encodeRecord, HEADER_BYTES, readFrame, recordFrameBytes } from "../../services/wal/core/record.ts"
import { orderSegments, parseSegmentName, releasableCount, segmentName } from "../../services/wal/core/segment.ts"
import { planAppend, planCreate, type EncoderState } from "../../services/wal/core/encoder.ts"
import { WalReplay } from "../../services/wal/core/replay.ts"
import { classifyTail, dirtyEndOf, hasZeroedSector } from "../../services/wal/core/repair.ts"
import { decodeSegment } from "../../services/wal/core/decoder.ts"
import { WalCorruptError } from "../../services/wal/core/wal-error.ts"
import type { Entry, HardState, SnapshotMetadata } from "../../shared/raft-types.ts"
import { Index, MemberId, Term } from "../../shared/ids.ts"

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const entry = (index: number, term: number, data = `e${index}t${term}`): Entry => ({
  index: Index(index),
  term: Term(term),
  type: "Normal",
  data: bytes(data)
})
const hs = (term: number, vote: bigint, commit: number): HardState => ({ term: Term(term), vote: MemberId(vote), commit: Index(commit) })
const snap = (index: number, term: number): SnapshotMetadata => ({
  index: Index(index),
  term: Term(term),
  confState: { voters: [MemberId(1n), MemberId(0xffff_ffff_ffff_ffffn)], learners: [MemberId(7n)] }
})

describe("crc32c", () => {
  it.each([
    ["", 0x00000000],
    ["a", 0xc1d04330],
    ["123456789", 0xe3069283],
    ["The quick brown fox jumps over the lazy dog", 0x22620404]
  ])("crc32c(%j) = %i", (s, want) => {
    expect(crc32c(0, bytes(s))).toBe(want)
  })

  it("chains: crc(crc(a), b) == crc(a ++ b) at every split", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat(), (data, at) => {
        const split = data.length === 0 ? 0 : at % (data.length + 1)
        expect(crc32c(crc32c(0, data, 0, split), data, split)).toBe(crc32c(0, data))
      })
    )
  })
})

describe("payload encoding", () => {
  const u53 = fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.maxSafeNat())
  const u64 = fc.oneof(fc.constantFrom(0n, 2n ** 32n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
  const record: fc.Arbitrary<WalRecord> = fc.oneof(
    fc.record({ type: fc.constant("metadata" as const), data: fc.uint8Array({ maxLength: 40 }) }),
    fc.record({
      type: fc.constant("entry" as const),
      entry: fc.record({
        index: u53.map(Index),
        term: u53.map(Term),
        type: fc.constantFrom("Normal" as const, "ConfChange" as const),
        data: fc.uint8Array({ maxLength: 40 })
      })
    }),
    fc.record({
      type: fc.constant("state" as const),
      hardState: fc.record({ term: u53.map(Term), vote: u64.map(MemberId), commit: u53.map(Index) })
    }),
    fc.constant({ type: "crc" as const }),
    fc.record({
      type: fc.constant("snapshot" as const),
      snapshot: fc.record({
        index: u53.map(Index),
        term: u53.map(Term),
        confState: fc.record({ voters: fc.array(u64.map(MemberId), { maxLength: 5 }), learners: fc.array(u64.map(MemberId), { maxLength: 3 }) })
      })
    })
  )

  it("round-trips every record kind, including 0, 2^32, 2^53-1 and 2^64-1", () => {
    fc.assert(
      fc.property(record, (r) => {
        expect(decodePayload(typeCode(r), encodePayload(r))).toEqual(r)
      })
    )
  })

  it("round-trips framed records and chains their CRCs", () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 8 }), fc.nat({ max: 0xffff_ffff }), (records, seed) => {
        const buf = new Uint8Array(records.reduce((n, r) => n + recordFrameBytes(r), 0) + 8)
        let off = 0
        let crc = seed
        for (const r of records) {
          const next = encodeRecord(buf, off, r, crc)
          const frame = readFrame(buf, off)
          expect(frame.kind).toBe("record")
          if (frame.kind !== "record") return
          expect(frame.prevCrc).toBe(crc)
          expect(frame.crc).toBe(next)
          expect(frame.end % 8).toBe(0)
          expect(decodePayload(frame.type, buf.subarray(frame.dataStart, frame.dataEnd))).toEqual(r)
          crc = next
          off = frame.end
        }
        expect(readFrame(buf, off)).toEqual({ kind: "end" })
      })
    )
  })

  it("rejects out-of-range numbers at encode time", () => {
    expect(() => encodePayload({ type: "entry", entry: entry(2 ** 53, 1) })).toThrow(RangeError)
    expect(() => encodePayload({ type: "entry", entry: entry(-1, 1) })).toThrow(RangeError)
    expect(() => encodePayload({ type: "state", hardState: hs(1, 2n ** 64n, 1) })).toThrow(RangeError)
  })

  it("keeps etcd's record type numbers", () => {
    expect(RecordType).toEqual({ metadata: 1, entry: 2, state: 3, crc: 4, snapshot: 5 })
  })
})

describe("readFrame", () => {
  const framed = (): Uint8Array => {
    const r: WalRecord = { type: "entry", entry: entry(5, 2, "hello") }
    const buf = new Uint8Array(recordFrameBytes(r) + 16)
    encodeRecord(buf, 0, r, 0x1234)
    return buf
  }
  it("detects a flipped bit anywhere in the frame, header included", () => {
    const good = framed()
    const frameLen = recordFrameBytes({ type: "entry", entry: entry(5, 2, "hello") })
    for (let byte = 0; byte < frameLen; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = good.slice()
        bad[byte]! ^= 1 << bit
        const r = readFrame(bad, 0)
        expect(r.kind, `byte ${byte} bit ${bit}`).not.toBe("record")
      }
    }
  })
  it.each([
    ["zero header", (b: Uint8Array) => b.fill(0, 0, 8), "end"],
    ["end of buffer", (b: Uint8Array) => b.subarray(0, 0), "end"],
    ["truncated header", (b: Uint8Array) => b.subarray(0, 10), "bad"],
    ["truncated payload", (b: Uint8Array) => b.subarray(0, HEADER_BYTES + 3), "bad"]
  ])("%s reads as %s", (_name, mutate, kind) => {
    expect(readFrame(mutate(framed()), 0).kind).toBe(kind)
  })
})

describe("segment names", () => {
  it.each([
    [0, 0, "0000000000000000-0000000000000000.wal"],
    [1, 0x20, "0000000000000001-0000000000000020.wal"],
    [255, Number.MAX_SAFE_INTEGER, "00000000000000ff-001fffffffffffff.wal"]
  ])("segmentName(%i, %i) = %s", (seq, index, name) => {
    expect(segmentName(seq, index)).toBe(name)
    expect(parseSegmentName(name)).toEqual({ name, seq, index })
  })

  it.each(["wal.lock", "0.tmp", "0000000000000000-0000000000000000.wal.broken", "0000000000000000-000000000000000G.wal"])(
    "ignores %s",
    (name) => expect(parseSegmentName(name)).toBeUndefined()
  )

  it("orders by sequence and rejects a gap", () => {
    const names = [segmentName(1, 10), "wal.lock", segmentName(0, 0), segmentName(2, 20)]
    expect(orderSegments(names).map((s) => s.seq)).toEqual([0, 1, 2])
    expect(() => orderSegments([segmentName(0, 0), segmentName(2, 20)])).toThrow(WalCorruptError)
  })
})

describe("releasableCount", () => {
  // Segments named by first index; the last is never released.
  it.each([
    [[0, 10, 20, 30], 5, 0],
    [[0, 10, 20, 30], 10, 1],
    [[0, 10, 20, 30], 25, 2],
    [[0, 10, 20, 30], 99, 3],
    [[0], 99, 0],
    // Segment 2 truncated back to 5: segments 0 and 1 hold only entries below 5.
    [[0, 10, 5, 30], 5, 2],
    [[0, 10, 5, 30], 4, 0]
  ])("firsts %j, index %i → %i", (firsts, index, want) => {
    expect(releasableCount(firsts.map((i) => ({ index: i })), index)).toBe(want)
  })
})

/** Writes a plan's chunks into in-memory files, as files.ts does on disk. */
const perform = (files: Map<string, Uint8Array>, chunks: ReturnType<typeof planAppend>["chunks"]): void => {
  for (const [i, c] of chunks.entries()) {
    const old = files.get(c.name) ?? new Uint8Array(0)
    const next = new Uint8Array(Math.max(old.length, c.end))
    next.set(old.subarray(0, Math.min(old.length, c.offset)))
    next.set(c.bytes, c.offset)
    files.set(c.name, i < chunks.length - 1 ? next.subarray(0, c.end) : next)
  }
}

const replayAll = (files: Map<string, Uint8Array>) => {
  const segments = orderSegments([...files.keys()])
  const replay = new WalReplay()
  for (const [i, s] of segments.entries()) replay.add(s, files.get(s.name)!, i === segments.length - 1)
  return replay.finish()
}

describe("planAppend", () => {
  const meta = bytes("cluster-1")
  it("cuts before a record that would overflow, with crc, metadata, snapshot and state in the new header", () => {
    const files = new Map<string, Uint8Array>()
    const created = planCreate(meta)
    perform(files, created.chunks)
    let state: EncoderState = created.state
    const records: WalRecord[] = [
      { type: "snapshot", snapshot: snap(0, 0) },
      ...[1, 2, 3, 4, 5, 6].map((i): WalRecord => ({ type: "entry", entry: entry(i, 1, "x".repeat(40)) })),
      { type: "state", hardState: hs(1, 1n, 6) }
    ]
    const plan = planAppend(state, records, 256)
    perform(files, plan.chunks)
    state = plan.state
    expect(plan.chunks.length).toBeGreaterThan(1)
    for (const c of plan.chunks.slice(0, -1)) expect(c.end).toBeLessThanOrEqual(256)
    const second = plan.chunks[1]!
    expect(second.fresh).toBe(true)
    expect(parseSegmentName(second.name)?.seq).toBe(1)
    const decoded = decodeSegment(second.name, files.get(second.name)!, undefined)
    expect(decoded.records.slice(0, 3).map((r) => r.record.type)).toEqual(["crc", "metadata", "snapshot"])
    const back = replayAll(files)
    expect(back.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6])
    expect(back.hardState).toEqual(hs(1, 1n, 6))
    expect(back.encoder).toEqual(state)
  })

  it("gives a record larger than a segment a segment of its own", () => {
    const created = planCreate(meta)
    const big = (i: number): WalRecord => ({ type: "entry", entry: entry(i, 1, "y".repeat(500)) })
    // Segment 0 holds only its header, so the first big record goes in without a cut.
    const plan = planAppend(created.state, [big(1), big(2), { type: "entry", entry: entry(3, 1) }], 128)
    expect(plan.chunks.map((c) => [c.fresh, c.end > 128])).toEqual([
      [false, true],
      [true, true],
      [true, false]
    ])
    expect(plan.chunks.map((c) => parseSegmentName(c.name)?.index)).toEqual([0, 2, 3])
  })

  it("plans nothing for an empty batch", () => {
    const created = planCreate(meta)
    expect(planAppend(created.state, [], 1024)).toEqual({ chunks: [], state: created.state })
  })
})

describe("WalReplay", () => {
  const run = (records: WalRecord[]) => {
    const files = new Map<string, Uint8Array>()
    const created = planCreate(bytes("m"))
    perform(files, created.chunks)
    perform(files, planAppend(created.state, records, 1 << 20).chunks)
    return replayAll(files)
  }
  const E = (i: number, t: number): WalRecord => ({ type: "entry", entry: entry(i, t) })

  it("follows the worked example of replay.ts", () => {
    const r = run([E(1, 1), E(2, 1), E(3, 1), E(4, 1), { type: "state", hardState: hs(1, 0n, 2) }, E(3, 2), E(4, 2), E(5, 2), { type: "snapshot", snapshot: snap(3, 2) }, E(6, 2)])
    expect(r.snapshot).toEqual(snap(3, 2))
    expect(r.hardState).toEqual(hs(1, 0n, 2))
    expect(r.entries.map((e) => [e.index, e.term])).toEqual([
      [4, 2],
      [5, 2],
      [6, 2]
    ])
    expect(r.repair).toBeUndefined()
  })

  it.each([
    ["appends", [E(1, 1), E(2, 1), E(3, 1)], [[1, 1], [2, 1], [3, 1]]],
    ["truncates a suffix", [E(1, 1), E(2, 1), E(3, 1), E(2, 2)], [[1, 1], [2, 2]]],
    ["truncates everything", [E(1, 1), E(2, 1), E(1, 3)], [[1, 3]]],
    ["rewrites the last", [E(1, 1), E(2, 1), E(2, 2), E(3, 2)], [[1, 1], [2, 2], [3, 2]]],
    ["accepts a jump that a later snapshot covers", [E(1, 1), E(2, 1), E(9, 2), { type: "snapshot", snapshot: snap(8, 2) } as WalRecord, E(10, 2)], [[9, 2], [10, 2]]],
    ["skips to after a snapshot", [E(1, 1), { type: "snapshot", snapshot: snap(10, 2) } as WalRecord, E(11, 2)], [[11, 2]]],
    ["ignores entries at or below the snapshot", [{ type: "snapshot", snapshot: snap(10, 2) } as WalRecord, E(9, 2), E(11, 2)], [[11, 2]]]
  ])("%s", (_name, records, want) => {
    expect(run(records).entries.map((e) => [e.index, e.term])).toEqual(want)
  })

  it.each([
    ["a jump ahead", [E(1, 1), E(3, 1)], /entries resume at index 3 after a gap, but there is no snapshot marker: entries 1..2 are missing/],
    ["a log not starting at 1", [E(7, 1), E(8, 1)], /entries resume at index 7/],
    ["a jump beyond the snapshot", [{ type: "snapshot", snapshot: snap(5, 1) } as WalRecord, E(6, 1), E(9, 1)], /latest snapshot marker is at 5: entries 6..8 are missing/]
  ])("refuses %s, naming file and offset", (_name, records, message) => {
    expect(() => run(records)).toThrow(/0000000000000000-0000000000000000\.wal at byte offset \d+: /)
    expect(() => run(records)).toThrow(message)
  })
})

describe("classifyTail", () => {
  // A segment: header records then three entries, laid out as
  //   [crc][metadata][e1][e2][e3][zeros…]
  const build = () => {
    const created = planCreate(bytes("meta"))
    const recs: WalRecord[] = [1, 2, 3].map((i) => ({ type: "entry", entry: entry(i, 1, "z".repeat(30)) }))
    const plan = planAppend(created.state, recs, 1 << 20)
    const buf = new Uint8Array(2048)
    buf.set(created.chunks[0]!.bytes, 0)
    buf.set(plan.chunks[0]!.bytes, plan.chunks[0]!.offset)
    const offsets = decodeSegment("s", buf, undefined).records.map((r) => r.offset)
    return { buf, e1: offsets[2]!, e2: offsets[3]!, e3: offsets[4]!, end: plan.state.offset }
  }
  const decide = (buf: Uint8Array, isLast = true) => classifyTail(buf, decodeSegment("s", buf, undefined).stop, isLast)

  it("clean log: zeros after the last record", () => {
    const { buf } = build()
    expect(decide(buf)).toEqual({ kind: "clean" })
  })

  it.each([
    ["bit flip in the last record", (b: Uint8Array, o: { e3: number }) => (b[o.e3 + 20]! ^= 4), "e3", "truncate"],
    ["garbage after the last record", (b: Uint8Array, o: { end: number }) => b.fill(0xab, o.end, o.end + 13), "end", "truncate"],
    ["bit flip in the second-to-last record", (b: Uint8Array, o: { e2: number }) => (b[o.e2 + 20]! ^= 4), "e2", "corrupt"],
    ["bit flip in a header of a middle record", (b: Uint8Array, o: { e2: number }) => (b[o.e2 + 5]! ^= 1), "e2", "corrupt"]
  ] as const)("%s → %s", (_name, mutate, at, kind) => {
    const o = build()
    mutate(o.buf, o as never)
    const d = decide(o.buf)
    expect(d.kind).toBe(kind)
    if (d.kind !== "clean") expect(d.offset).toBe(o[at])
  })

  it("a non-last segment with damage is corrupt even at its end", () => {
    const o = build()
    o.buf[o.e3 + 20]! ^= 4
    expect(decide(o.buf, false).kind).toBe("corrupt")
  })

  it("a zeroed sector between damage and a later valid record is a torn write", () => {
    // Records spanning three sectors; the middle sector never reached the disk.
    const created = planCreate(bytes("meta"))
    const recs: WalRecord[] = Array.from({ length: 30 }, (_, i) => ({ type: "entry", entry: entry(i + 1, 1, "w".repeat(40)) }))
    const plan = planAppend(created.state, recs, 1 << 20)
    const buf = new Uint8Array(4096)
    buf.set(created.chunks[0]!.bytes, 0)
    buf.set(plan.chunks[0]!.bytes, plan.chunks[0]!.offset)
    buf.fill(0, 512, 1024)
    const d = decide(buf)
    expect(d.kind).toBe("truncate")
    expect(hasZeroedSector(buf, 496, 1100)).toBe(true)
    expect(hasZeroedSector(buf, 1024, 1100)).toBe(false)
  })
})

describe("dirtyEndOf", () => {
  it("agrees with a byte-by-byte scan at every alignment", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 40 }), { maxLength: 4 }), fc.nat({ max: 64 }), fc.nat({ max: 7 }), (set, from, shift) => {
        const backing = new Uint8Array(72)
        const bytes = backing.subarray(shift, shift + 64)
        for (const i of set) if (i < 64) bytes[i] = 1 + (i % 200)
        let want = from
        for (let i = bytes.length - 1; i >= from; i--) if (bytes[i] !== 0) { want = i + 1; break }
        expect(dirtyEndOf(bytes, Math.min(from, 64))).toBe(Math.max(want, Math.min(from, 64)))
      })
    )
  })
})
