/**
 * Frames of any size (shared/chunks.ts): splitting and putting back together, in any order,
 * with duplicates and losses, within the shared budget.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { chunkBytes, chunkProblem, Reassembler, splitFrame, wholeFrameBytes } from "../../shared/chunks.ts"
import type { Chunk, ReassemblyBudget } from "../../shared/chunks.ts"

const bytesOf = (size: number, seed: number): Uint8Array => {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i += 4093) b[i] = (i + seed) & 0xff
  b[size - 1] = seed & 0xff
  return b
}

const same = (a: Uint8Array | false | undefined, b: Uint8Array): boolean =>
  a !== undefined && a !== false && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))

const reassembler = (budget: ReassemblyBudget, maxPartials = 8, idleMs = 1000) => new Reassembler({ budget, idleMs, maxPartials })

describe("splitFrame", () => {
  it.each([
    ["just over one message", wholeFrameBytes + 1, 8],
    ["an exact multiple of the chunk size", 10 * chunkBytes, 10],
    ["200 MiB", 200 * 1024 * 1024, 200]
  ])("%s: %i bytes in %i chunks, each well-formed and a view of the input", (_name, size, count) => {
    const encoded = new Uint8Array(size)
    const chunks = splitFrame(encoded, 7)
    expect(chunks.length).toBe(count)
    expect(chunks.reduce((n, c) => n + c.bytes.length, 0)).toBe(size)
    for (const c of chunks) {
      expect(chunkProblem(c)).toBeUndefined()
      expect(c.bytes.buffer).toBe(encoded.buffer)
    }
  })
})

describe("chunkProblem", () => {
  const good: Chunk = { stream: 1, seq: 0, count: 8, size: wholeFrameBytes + 1, bytes: new Uint8Array(chunkBytes) }
  it.each<[string, Partial<Chunk>, string]>([
    ["a frame that fits one message", { size: 100, count: 1, bytes: new Uint8Array(100) }, "is not above"],
    ["a count that does not match the size", { count: 9 }, "does not match size"],
    ["seq beyond count", { seq: 8 }, "outside 0..7"],
    ["negative seq", { seq: -1 }, "outside 0..7"],
    ["a short middle piece", { bytes: new Uint8Array(10) }, "expected 1048576"],
    ["a last piece of the wrong length", { seq: 7, bytes: new Uint8Array(chunkBytes) }, "expected"],
    ["a huge claimed size", { size: Number.MAX_SAFE_INTEGER + 2, count: 1 }, "is not above"]
  ])("refuses %s", (_name, change, message) => {
    expect(chunkProblem({ ...good, ...change })).toContain(message)
  })
})

describe("Reassembler", () => {
  it("puts a frame back together from pieces in any order, with duplicates, and frees its budget", () => {
    fc.assert(
      fc.property(fc.integer({ min: wholeFrameBytes + 1, max: wholeFrameBytes + 5 * chunkBytes }), fc.integer(), fc.array(fc.nat(), { maxLength: 40 }), (size, seed, dupes) => {
        const encoded = bytesOf(size, seed)
        const chunks = [...splitFrame(encoded, seed >>> 0)]
        // A deterministic shuffle plus duplicates of some pieces.
        const order = chunks.map((c, i) => ({ c, k: (i * 7919 + seed) % 101 })).sort((a, b) => a.k - b.k).map((x) => x.c)
        for (const d of dupes) order.splice(d % (order.length + 1), 0, chunks[d % chunks.length]!)
        const budget: ReassemblyBudget = { maxBytes: 64 * 1024 * 1024, used: 0 }
        const r = reassembler(budget)
        const last = order.length - 1
        let done: Uint8Array | undefined
        order.forEach((c, i) => {
          const out = r.add("1", c, i)
          if (out._tag === "Complete") done = out.encoded
          else expect(out._tag).toBe("Pending")
          // Pieces after completion start a new partial of the same stream: only the last
          // arrival of the final missing piece completes, duplicates before it do not.
          if (i === last && done === undefined) throw new Error("never completed")
        })
        expect(same(done, encoded)).toBe(true)
        r.clear()
        expect(budget.used).toBe(0)
      }),
      { numRuns: 20 }
    )
  })

  it("keeps two attempts of the same id apart by their stream", () => {
    const budget: ReassemblyBudget = { maxBytes: 64 * 1024 * 1024, used: 0 }
    const r = reassembler(budget)
    const a = splitFrame(bytesOf(wholeFrameBytes + 10, 1), 1)
    const b = splitFrame(bytesOf(wholeFrameBytes + 10, 2), 2)
    for (let i = 0; i < a.length - 1; i++) {
      expect(r.add("5", a[i]!, 0)._tag).toBe("Pending")
      expect(r.add("5", b[i]!, 0)._tag).toBe("Pending")
    }
    const outB = r.add("5", b[b.length - 1]!, 0)
    expect(same(outB._tag === "Complete" && outB.encoded, bytesOf(wholeFrameBytes + 10, 2))).toBe(true)
    r.forget("5")
    expect(r.size).toBe(0)
    expect(budget.used).toBe(0)
  })

  it("refuses a frame larger than the whole budget at its first piece, and one that does not fit after evicting", () => {
    const budget: ReassemblyBudget = { maxBytes: wholeFrameBytes + 2 * chunkBytes, used: 0 }
    const big = splitFrame(new Uint8Array(wholeFrameBytes + 3 * chunkBytes), 1)
    const out = reassembler(budget).add("1", big[3]!, 0)
    expect(out).toMatchObject({ _tag: "Refused", tooLarge: true })
    expect(budget.used).toBe(0)

    // Another subscription's partial holds the budget: this one cannot evict it.
    const other = reassembler(budget)
    expect(other.add("1", splitFrame(new Uint8Array(wholeFrameBytes + 1), 1)[0]!, 0)._tag).toBe("Pending")
    const mine = reassembler(budget)
    expect(mine.add("2", splitFrame(new Uint8Array(wholeFrameBytes + 1), 2)[0]!, 0)).toMatchObject({ _tag: "Refused", tooLarge: true })
    other.clear()
    expect(budget.used).toBe(0)
  })

  it("evicts its least recently fed partial for a new one, and partials idle past idleMs", () => {
    const size = wholeFrameBytes + 1
    const budget: ReassemblyBudget = { maxBytes: 2 * size, used: 0 }
    const r = reassembler(budget, 8, 1000)
    const one = splitFrame(new Uint8Array(size), 1)
    const two = splitFrame(new Uint8Array(size), 2)
    const three = splitFrame(new Uint8Array(size), 3)
    r.add("1", one[0]!, 0)
    r.add("2", two[0]!, 10)
    r.add("1", one[1]!, 20) // "1" is now the most recently fed
    expect(r.add("3", three[0]!, 30)._tag).toBe("Pending") // evicts "2"
    expect(r.counters.evicted).toBe(1)
    expect(budget.used).toBe(2 * size)
    // "2" starts over: its earlier piece is gone.
    for (let i = 1; i < two.length; i++) r.add("2", two[i]!, 40 + i)
    expect(r.counters.completed).toBe(0)
    r.expire(5000)
    expect(r.size).toBe(0)
    expect(budget.used).toBe(0)
  })

  it("holds at most maxPartials partial frames", () => {
    const budget: ReassemblyBudget = { maxBytes: 1 << 30, used: 0 }
    const r = reassembler(budget, 3)
    for (let i = 0; i < 10; i++) r.add(String(i), splitFrame(new Uint8Array(wholeFrameBytes + 1), i)[0]!, i)
    expect(r.size).toBe(3)
    expect(budget.used).toBe(3 * (wholeFrameBytes + 1))
    r.clear()
  })

  it("refuses a piece whose size disagrees with its frame's earlier pieces", () => {
    const budget: ReassemblyBudget = { maxBytes: 1 << 30, used: 0 }
    const r = reassembler(budget)
    r.add("1", splitFrame(new Uint8Array(wholeFrameBytes + 1), 1)[0]!, 0)
    const liar = splitFrame(new Uint8Array(wholeFrameBytes + chunkBytes + 1), 1)[1]!
    expect(r.add("1", liar, 0)).toMatchObject({ _tag: "Refused", tooLarge: false })
    r.clear()
  })
})
