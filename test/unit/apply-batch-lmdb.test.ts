/**
 * Batched apply on a real LMDB file: writes buffered until the batch limit or interval, reads
 * seeing the buffer before it is committed (etcd's buffered read tx), the consistent index
 * committed with the writes it covers, a crash in the middle of a batch (acknowledged writes
 * present once, not twice, after raft re-delivers the entries), and the buffered view checked
 * against an in-memory backend on random operation sequences.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import type { Entry } from "../../shared/raft-types.ts"
import type { ApplierOptions, ResultBody } from "../../services/mvcc/apply.ts"
import { ApplyFailed } from "../../services/mvcc/apply.ts"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"
import { unsafeReadConsistentIndex } from "../../services/mvcc/core/backend.ts"
import { enc, openApplier, proposal, put, withLmdbFile } from "./apply-fixtures.ts"

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** An Applier whose batches commit only at the limit or interval set here (tests commit by hand). */
const open = (file: string, log: Entry[] = [], options?: Partial<ApplierOptions>) =>
  openApplier(file, log, { batchLimit: 10_000, batchIntervalMs: 60_000, ...options })

const withFile = withLmdbFile

const get = (s: ReturnType<typeof open>, key: string) => {
  const r = s.store.range(s.backend.read, { key: enc(key) })
  if ("err" in r) throw new Error(r.err._tag)
  return r.ok.kvs.map((kv) => ({ value: dec(kv.value), version: kv.version, mod: kv.modRevision, create: kv.createRevision }))
}

/** The revision each published put result reported, by request id. */
const revisions = (sent: ReadonlyArray<{ body: ResultBody }>) =>
  new Map(sent.map(({ body }) => [body.requestId, "ok" in body ? body.ok.revision : -1]))

describe("batched apply on LMDB", () => {
  it("a failed apply rejects with ApplyFailed, publishes nothing of the batch and leaves the backend as before it; a restart re-applies it", async () => {
    await withFile(async (file) => {
      const log = [proposal(1, 1n, put("a", "1")), proposal(2, 2n, put("b", "2")), proposal(3, 3n, put("a", "3"))]
      let failing = true
      const s = open(file, log, { injectFailure: (index) => failing && index === 3 })
      await s.applier.applyBatch({ entries: [log[0]!], commitIndex: 1, term: 2 })
      const sentBefore = s.sent.length
      const failed = await s.applier.applyBatch({ entries: [log[1]!, log[2]!], commitIndex: 3, term: 2 }).then(() => undefined, (e: unknown) => e)
      expect(failed).toBeInstanceOf(ApplyFailed)
      expect((failed as ApplyFailed).index).toBe(3)
      expect(s.sent).toHaveLength(sentBefore)
      // The buffered writes of the failed batch are undone: the buffered view is entry 1's.
      expect(unsafeReadConsistentIndex(s.backend.read)).toBe(1)
      // The process would exit here; what is on disk is what a restart sees.
      s.applier.commit()
      await s.backend.close()
      failing = false
      const again = open(file, log)
      await again.applier.catchUp(3)
      expect(get(again, "a")).toEqual([{ value: "3", version: 2, mod: 4, create: 2 }])
      expect(get(again, "b")).toEqual([{ value: "2", version: 1, mod: 3, create: 3 }])
      expect(again.sent.map(({ body }) => body.requestId)).toEqual([2n, 3n])
      await again.backend.close()
    })
  })

  it("serves reads from the uncommitted batch and commits the consistent index with it", async () => {
    await withFile(async (file) => {
      const s = open(file)
      await s.applier.applyBatch({ entries: [proposal(1, 1n, put("a", "1")), proposal(2, 2n, put("b", "2"))], commitIndex: 2, term: 2 })
      // Applied and readable, but nothing committed yet.
      expect(s.backend.commits).toBe(0)
      expect(s.backend.pendingWrites()).toBeGreaterThan(0)
      expect(get(s, "a")).toEqual([{ value: "1", version: 1, mod: 2, create: 2 }])
      expect(unsafeReadConsistentIndex(s.backend.read)).toBe(2)
      expect(s.sent).toHaveLength(2)
      s.applier.commit()
      expect(s.backend.commits).toBe(1)
      expect(s.backend.pendingWrites()).toBe(0)
      expect(get(s, "b")).toEqual([{ value: "2", version: 1, mod: 3, create: 3 }])
      await s.backend.close()
    })
  })

  it("commits when the batch limit is reached", async () => {
    await withFile(async (file) => {
      const s = open(file, [], { batchLimit: 10 })
      const entries = Array.from({ length: 20 }, (_, i) => proposal(i + 1, BigInt(i + 1), put(`k${i}`, "v")))
      for (const e of entries) await s.applier.applyBatch({ entries: [e], commitIndex: e.index, term: 2 })
      // Each put buffers a key record, the dedup record and the consistent index: about three writes.
      expect(s.backend.commits).toBeGreaterThanOrEqual(4)
      expect(s.backend.pendingWrites()).toBeLessThan(10)
      await s.backend.close()
    })
  })

  it("commits within the batch interval", async () => {
    await withFile(async (file) => {
      const s = open(file, [], { batchIntervalMs: 20 })
      await s.applier.applyBatch({ entries: [proposal(1, 1n, put("a", "1"))], commitIndex: 1, term: 2 })
      expect(s.backend.commits).toBe(0)
      await new Promise((r) => setTimeout(r, 80))
      expect(s.backend.commits).toBe(1)
      expect(s.backend.pendingWrites()).toBe(0)
      await s.backend.close()
    })
  })

  it("restart in the middle of a batch: acknowledged writes are present once, not twice", async () => {
    await withFile(async (file) => {
      const log = [
        proposal(1, 1n, put("a", "1")),
        proposal(2, 2n, put("b", "1")),
        proposal(3, 3n, put("a", "2")),
        proposal(4, 4n, put("c", "1")),
        proposal(5, 5n, put("a", "3")),
        proposal(6, 6n, { txn: { compare: [], success: [{ requestPut: { key: enc("d"), value: enc("1") } }], failure: [] } })
      ]
      let s = open(file, log)
      await s.applier.applyBatch({ entries: log.slice(0, 3), commitIndex: 3, term: 2 })
      s.applier.commit()
      await s.applier.applyBatch({ entries: log.slice(3), commitIndex: 6, term: 2 })
      // All six results were published (acknowledged to clients) before the second commit.
      const acknowledged = revisions(s.sent)
      expect([...acknowledged.values()]).toEqual([2, 3, 4, 5, 6, 7])
      // Crash: the uncommitted batch is lost.
      s.backend.unsafeDiscardBuffer()
      await s.backend.close()

      s = open(file, log)
      expect(s.applier.appliedIndex()).toBe(3)
      expect(s.store.currentRevision()).toBe(4)
      // Raft re-delivers what is above the stored consistent index.
      await s.applier.catchUp(6)
      expect(s.applier.appliedIndex()).toBe(6)
      expect(get(s, "a")).toEqual([{ value: "3", version: 3, mod: 6, create: 2 }])
      expect(get(s, "c")).toEqual([{ value: "1", version: 1, mod: 5, create: 5 }])
      expect(get(s, "d")).toEqual([{ value: "1", version: 1, mod: 7, create: 7 }])
      expect(s.store.currentRevision()).toBe(7)
      // The re-applied entries produced the acknowledged revisions again.
      expect(revisions(s.sent)).toEqual(new Map([[4n, 5], [5n, 6], [6n, 7]]))
      // A late duplicate delivery changes nothing.
      await s.applier.applyBatch({ entries: log, commitIndex: 6, term: 2 })
      expect(s.store.currentRevision()).toBe(7)
      s.applier.commit()
      await s.backend.close()

      s = open(file, log)
      expect(s.applier.appliedIndex()).toBe(6)
      expect(get(s, "a")).toEqual([{ value: "3", version: 3, mod: 6, create: 2 }])
      await s.backend.close()
    })
  })

  it("undoes the buffered writes of a write transaction that throws", async () => {
    await withFile(async (file) => {
      const b = LmdbBackend.open(file)
      b.write((tx) => tx.put("meta", enc("x"), enc("1")))
      expect(() => b.write((tx) => {
        tx.put("meta", enc("x"), enc("2"))
        tx.put("meta", enc("y"), enc("2"))
        throw new Error("boom")
      })).toThrow("boom")
      expect(dec(b.read.get("meta", enc("x"))!)).toBe("1")
      expect(b.read.get("meta", enc("y"))).toBeUndefined()
      await b.close()
    })
  })

  it("buffered view equals an in-memory backend on random puts, deletes, commits and ranges", async () => {
    await withFile(async (file) => {
      const b = LmdbBackend.open(file)
      const key = fc.integer({ min: 0, max: 40 }).map((n) => new Uint8Array([n % 5, n]))
      const op = fc.oneof(
        fc.record({ t: fc.constant("put" as const), k: key, v: fc.uint8Array({ maxLength: 4 }) }),
        fc.record({ t: fc.constant("del" as const), k: key }),
        fc.record({ t: fc.constant("commit" as const) }),
        fc.record({ t: fc.constant("range" as const), s: key, e: fc.option(key, { nil: undefined }), l: fc.integer({ min: 0, max: 6 }) })
      )
      let runs = 0
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
          runs++
          // Start each run from an empty committed state.
          b.write((tx) => {
            for (const { key: k } of b.read.range("key", new Uint8Array(), undefined)) tx.delete("key", k)
          })
          b.commit()
          const model = new MemoryBackend()
          for (const o of ops) {
            if (o.t === "put") {
              b.write((tx) => tx.put("key", o.k, o.v))
              model.put("key", o.k, o.v)
            } else if (o.t === "del") {
              b.write((tx) => tx.delete("key", o.k))
              model.delete("key", o.k)
            } else if (o.t === "commit") {
              b.commit()
            } else {
              expect(b.read.range("key", o.s, o.e, o.l)).toEqual(model.range("key", o.s, o.e, o.l))
            }
          }
          expect(b.read.range("key", new Uint8Array(), undefined)).toEqual(model.range("key", new Uint8Array(), undefined))
        }),
        { numRuns: 300, seed: 5 }
      )
      expect(runs).toBe(300)
      await b.close()
    })
  })
})
