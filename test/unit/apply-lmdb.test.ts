/**
 * The mvcc service's apply path on a real LMDB file: entries applied once in index order,
 * retried proposals (same request id) applied once with their result re-sent, no-op entries
 * moving only the consistent index, gap repair from the raft log, and everything surviving a
 * reopen (the state a restarted mvcc process sees).
 */
import { describe, expect, it } from "vitest"
import type { Index, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import type { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import type { KvStore } from "../../services/mvcc/core/store.ts"
import { enc, openApplier as open, proposal, put, withLmdbFile } from "./apply-fixtures.ts"

const noop = (index: number): Entry => ({ term: 2 as Term, index: index as Index, type: "Normal", data: new Uint8Array() })

const value = (store: KvStore, backend: LmdbBackend, key: string) => {
  const r = store.range(backend.read, { key: enc(key) })
  if ("err" in r) throw new Error(r.err._tag)
  return r.ok.kvs.map((kv) => ({ value: new TextDecoder().decode(kv.value), version: kv.version, mod: kv.modRevision }))
}

describe("apply path on LMDB", () => {
  it("applies a retried proposal once, re-sends its result, and keeps that across a reopen", async () => {
    await withLmdbFile(async (file) => {
      let s = open(file)
      await s.applier.applyBatch({ entries: [noop(1), proposal(2, 7n, put("a", "1")), proposal(3, 7n, put("a", "1"))], commitIndex: 3, term: 2 })
      expect(s.applier.appliedIndex()).toBe(3)
      expect(value(s.store, s.backend, "a")).toEqual([{ value: "1", version: 1, mod: 2 }])
      expect(s.store.currentRevision()).toBe(2)
      // The duplicate re-sends the first result to the proposer.
      expect(s.sent.map((x) => x.subject)).toEqual(["to.m1", "to.m1"])
      expect(s.sent[1]!.body).toEqual(s.sent[0]!.body)
      expect(s.applier.counters.duplicates).toBe(1)
      await s.backend.close()

      // Reopen: the dedup table and consistent index survived; a later duplicate is still skipped
      // and a re-delivered old entry is not applied again.
      s = open(file)
      expect(s.applier.appliedIndex()).toBe(3)
      await s.applier.applyBatch({ entries: [proposal(2, 7n, put("a", "1")), proposal(4, 7n, put("a", "1")), proposal(5, 8n, put("a", "2"))], commitIndex: 5, term: 3 })
      expect(value(s.store, s.backend, "a")).toEqual([{ value: "2", version: 2, mod: 3 }])
      expect(s.applier.currentTerm()).toBe(3)
      await s.backend.close()
    })
  })

  it("re-sends the results of the newest 4096 proposals to their retries, not older ones", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file)
      // 4100 proposals (ids 1..4100) in frames of 100, then retries of ids 1..5 and 4096..4100.
      const total = 4100
      let index = 0
      for (let first = 1; first <= total; first += 100) {
        const entries = Array.from({ length: 100 }, (_, i) => proposal(++index, BigInt(first + i), put(`k${first + i}`, "v")))
        await s.applier.applyBatch({ entries, commitIndex: index, term: 2 })
      }
      const sentBefore = s.sent.length
      const retried = [1n, 2n, 3n, 4n, 5n, 4096n, 4097n, 4098n, 4099n, 4100n]
      const retries = retried.map((id) => proposal(++index, id, put(`k${id}`, "v")))
      await s.applier.applyBatch({ entries: retries, commitIndex: index, term: 2 })
      // Every retry is a duplicate (applied once); only the newest 4096 still have a result to
      // re-send, so ids 1..4 (the oldest) get none, 5 and later get theirs.
      expect(s.applier.counters.duplicates).toBe(retried.length)
      const resent = s.sent.slice(sentBefore).map((x) => x.body.requestId)
      expect(resent).toEqual([5n, 4096n, 4097n, 4098n, 4099n, 4100n])
      expect(s.store.currentRevision()).toBe(total + 1)
      await s.backend.close()
    })
  })

  it("repairs a gap from the raft log before applying a later batch", async () => {
    await withLmdbFile(async (file) => {
      const log = [noop(1), proposal(2, 1n, put("k", "a")), proposal(3, 2n, put("k", "b")), proposal(4, 3n, put("k", "c"))]
      const s = open(file, log)
      // Frames for 1..3 were lost: the batch holding 4 arrives first.
      await s.applier.applyBatch({ entries: [log[3]!], commitIndex: 4, term: 2 })
      expect(s.applier.appliedIndex()).toBe(4)
      expect(value(s.store, s.backend, "k")).toEqual([{ value: "c", version: 3, mod: 4 }])
      expect(s.applier.counters.gapsRepaired).toBeGreaterThan(0)
      await s.backend.close()
    })
  })

  it("counts an undecodable entry, skips it on every member alike, and moves on", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file)
      const garbage: Entry = { term: 2 as Term, index: 1 as Index, type: "Normal", data: new Uint8Array([0xc1, 0xff, 0x00]) }
      await s.applier.applyBatch({ entries: [garbage, proposal(2, 9n, put("x", "y"))], commitIndex: 2, term: 2 })
      expect(s.applier.counters.undecodable).toBe(1)
      expect(value(s.store, s.backend, "x")).toEqual([{ value: "y", version: 1, mod: 2 }])
      await s.backend.close()
    })
  })

  it("answers readers once their index is applied", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file)
      expect(s.applier.waitApplied(0)).toBeUndefined()
      const waiting = s.applier.waitApplied(2)
      let done = false
      waiting!.then(() => (done = true))
      await s.applier.applyBatch({ entries: [noop(1)], commitIndex: 1, term: 2 })
      await Promise.resolve()
      expect(done).toBe(false)
      await s.applier.applyBatch({ entries: [noop(2)], commitIndex: 2, term: 2 })
      await waiting
      expect(done).toBe(true)
      await s.backend.close()
    })
  })
})
