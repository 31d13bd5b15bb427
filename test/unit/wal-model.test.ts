/**
 * Model-based property test of the WAL (services/wal/files.ts): random bursts of concurrent
 * saves (with raft truncations), snapshot markers, releases, reopens and torn tails, checked
 * after every reopen against a model that is just an array of entries, a hard state and the
 * highest snapshot marker. Segments are tiny so that group commits span segment cuts.
 *
 * Abstract operations carry random numbers that are turned into valid raft-like operations
 * against the model at run time (an overwrite starts after the snapshot and at most one past
 * the last index, as raft guarantees), so shrinking keeps working.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Wal, type WalContents, type WalOptions } from "../../services/wal/files.ts"
import { decodeSegment } from "../../services/wal/core/decoder.ts"
import { emptyHardState, type Entry, type HardState, type SnapshotMetadata } from "../../shared/raft-types.ts"
import { Index, MemberId, Term } from "../../shared/ids.ts"

type SaveOp = { kind: "save"; startPick: number; count: number; withHardState: boolean; commitPick: number; vote: bigint; size: number }
type SnapOp = { kind: "snapshot"; pick: number }
type Op =
  | { kind: "burst"; calls: Array<SaveOp | SnapOp> }
  | { kind: "reopen" }
  | { kind: "tear"; garbage: Uint8Array }
  | { kind: "release" }

const saveOp: fc.Arbitrary<SaveOp> = fc.record({
  kind: fc.constant("save" as const),
  startPick: fc.nat(),
  count: fc.nat({ max: 4 }),
  withHardState: fc.boolean(),
  commitPick: fc.nat(),
  vote: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  size: fc.nat({ max: 120 })
})
const snapOp: fc.Arbitrary<SnapOp> = fc.record({ kind: fc.constant("snapshot" as const), pick: fc.nat() })
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("burst" as const), calls: fc.array(fc.oneof({ weight: 5, arbitrary: saveOp }, { weight: 1, arbitrary: snapOp }), { minLength: 1, maxLength: 5 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("tear" as const), garbage: fc.uint8Array({ minLength: 1, maxLength: 300 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "release" as const }) }
)

/** The model: what a reopen must return. */
class Model {
  log: Entry[] = []
  hardState: HardState = emptyHardState
  snapshot: SnapshotMetadata | undefined
  private saves = 0

  private get floor(): number {
    return this.snapshot?.index ?? 0
  }
  private get last(): number {
    return Math.max(this.log[this.log.length - 1]?.index ?? 0, this.floor)
  }

  /** Turns an abstract save into concrete arguments and applies it. */
  save(op: SaveOp): [HardState | undefined, Entry[]] {
    const term = ++this.saves
    const start = this.floor + 1 + (op.startPick % (this.last - this.floor + 1))
    const entries = Array.from({ length: op.count }, (_, i): Entry => ({
      index: Index(start + i),
      term: Term(term),
      type: (start + i) % 5 === 0 ? "ConfChange" : "Normal",
      data: new Uint8Array(op.size).fill((start + i + term) % 251)
    }))
    for (const e of entries) this.log = [...this.log.filter((x) => x.index < e.index), e]
    const hardState = op.withHardState ? { term: Term(term), vote: MemberId(op.vote), commit: Index(op.commitPick % (this.last + 1)) } : undefined
    if (hardState !== undefined) this.hardState = hardState
    return [hardState, entries]
  }

  snap(op: SnapOp): SnapshotMetadata {
    const index = this.floor + 1 + (op.pick % (this.last - this.floor + 3))
    const s: SnapshotMetadata = { index: Index(index), term: Term(this.saves), confState: { voters: [MemberId(1n)], learners: [MemberId(BigInt(index))] } }
    this.snapshot = s
    return s
  }

  releaseIndex(): number {
    return this.floor
  }

  expected(): Omit<WalContents, "repaired"> {
    const c: Omit<WalContents, "repaired"> = {
      metadata: META,
      hardState: this.hardState,
      entries: this.log.filter((e) => e.index > this.floor)
    }
    if (this.snapshot !== undefined) c.snapshot = this.snapshot
    return c
  }
}

const META = new TextEncoder().encode("model")
const root = await mkdtemp(join(tmpdir(), "natcd-wal-model-"))
afterAll(() => rm(root, { recursive: true, force: true }))
let runs = 0

const strip = ({ repaired: _r, ...rest }: WalContents) => rest

describe("WAL against a model", () => {
  it("reopens to what the model says after any sequence of operations", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(256, 512, 2048),
        fc.boolean(),
        fc.array(op, { minLength: 1, maxLength: 12 }),
        async (segmentBytes, preallocate, ops) => {
          const dir = join(root, `run-${runs++}`)
          const options: WalOptions = { segmentBytes, preallocate }
          const model = new Model()
          let { wal } = await Wal.open(dir, META, options)
          try {
            for (const o of ops) {
              switch (o.kind) {
                case "burst":
                  await Promise.all(
                    o.calls.map((c) => (c.kind === "save" ? wal.save(...model.save(c)) : wal.saveSnapshot(model.snap(c))))
                  )
                  break
                case "release":
                  await wal.releaseTo(Index(model.releaseIndex()))
                  break
                case "reopen": {
                  await wal.close()
                  const r = await Wal.open(dir, META, options)
                  wal = r.wal
                  expect(r.contents.repaired).toBeUndefined()
                  expect(r.contents).toEqual(model.expected())
                  break
                }
                case "tear": {
                  await wal.close()
                  const files = (await readdir(dir)).filter((n) => n.endsWith(".wal")).sort()
                  const last = files[files.length - 1]!
                  const bytes = new Uint8Array(await readFile(join(dir, last)))
                  const end = decodeSegment(last, bytes, undefined).stop.offset
                  const garbage = o.garbage.slice()
                  garbage[0] = garbage[0]! | 1
                  const fh = await open(join(dir, last), "r+")
                  await fh.write(garbage, 0, garbage.length, end)
                  await fh.close()
                  const r = await Wal.open(dir, META, options)
                  wal = r.wal
                  expect(r.contents.repaired?.file).toBe(last)
                  expect(r.contents.repaired?.offset).toBe(end)
                  expect(r.contents.repaired?.bytesDropped).toBeGreaterThan(0)
                  expect(r.contents.repaired?.bytesDropped).toBeLessThanOrEqual(garbage.length)
                  expect(strip(r.contents)).toEqual(model.expected())
                  break
                }
              }
            }
            await wal.close()
            const final = await Wal.open(dir, META, options)
            await final.wal.close()
            expect(final.contents.repaired).toBeUndefined()
            expect(final.contents).toEqual(model.expected())
          } finally {
            await wal.close()
            await rm(dir, { recursive: true, force: true })
          }
        }
      ),
      { numRuns: 40 }
    )
  })
})
