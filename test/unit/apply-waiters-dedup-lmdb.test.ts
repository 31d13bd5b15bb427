/**
 * Two bounds of the Applier on a real LMDB file.
 *
 * Reads waiting for an applied index (Applier.waitApplied, used by mvcc.range and the lease
 * endpoints): each waits at most its timeout, then resolves "timedOut" and leaves the waiter
 * list (the handler answers etcd's "request timed out"); beyond waitersMax waiting reads a new
 * one resolves "tooMany" at once ("too many requests"); a retried read adds a waiter only until
 * the cap.
 *
 * Dedup (services/mvcc/core/dedup.ts through the Applier): a proposal with a far-future
 * deadline no longer prunes the records of recent requests, so their retries are skipped; the
 * table stays within its cap; the clock and the table survive a restart, and a restarted member
 * prunes exactly like one that kept running.
 */
import { describe, expect, it } from "vitest"
import { packValue } from "../../shared/frame.ts"
import type { Index, Term } from "../../shared/ids.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import type { Entry } from "../../shared/raft-types.ts"
import type { ApplierOptions, WaitOutcome } from "../../services/mvcc/apply.ts"
import { applyWaitersMax } from "../../services/mvcc/apply.ts"
import { applyWaitTimeoutMs } from "../../services/mvcc/timeouts.ts"
import { decodeUint64 } from "../../services/mvcc/core/backend.ts"
import { metaDedupClockKey } from "../../services/mvcc/core/dedup.ts"
import { enc, openApplier, put, withLmdbFile } from "./apply-fixtures.ts"

const T = 1_700_000_000_000
const day = 24 * 60 * 60 * 1000

const noop = (index: number): Entry => ({ term: 2 as Term, index: index as Index, type: "Normal", data: new Uint8Array() })

/** A proposal at `index` with request id `id` and proposer deadline `deadlineMs`. */
const proposalAt = (index: number, id: bigint, deadlineMs: number, request: WriteRequest): Entry => ({
  term: 2 as Term,
  index: index as Index,
  type: "Normal",
  data: packValue({ requestId: id, origin: "m1", replyTo: "to.m1", deadlineMs, traceparent: "", request })
})

const open = (file: string, options?: Partial<ApplierOptions>) => openApplier(file, [], { batchIntervalMs: 10, ...options })

const versionOf = (s: ReturnType<typeof open>, key: string): number => {
  const r = s.store.range(s.backend.read, { key: enc(key) })
  if ("err" in r) throw new Error(r.err._tag)
  return r.ok.kvs[0]?.version ?? 0
}

describe("waiting reads", () => {
  it("names its bounds: 5 s and 10000 waiters", () => {
    expect({ applyWaitTimeoutMs, applyWaitersMax }).toEqual({ applyWaitTimeoutMs: 5000, applyWaitersMax: 10_000 })
  })

  it("a wait times out, resolves timedOut and leaves the waiter list; the others still wake when applied", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file)
      const outcomes: Array<[number, WaitOutcome]> = []
      const waits = [
        s.applier.waitApplied(2, 20)!.then((o) => outcomes.push([2, o])),
        s.applier.waitApplied(3, 60_000)!.then((o) => outcomes.push([3, o])),
        s.applier.waitApplied(3)!.then((o) => outcomes.push([3, o])),
        s.applier.waitApplied(4, 60_000)!.then((o) => outcomes.push([4, o]))
      ]
      expect(s.applier.waitingReaders()).toBe(4)
      await waits[0]
      expect(outcomes).toEqual([[2, "timedOut"]])
      expect(s.applier.waitingReaders()).toBe(3)
      expect(s.applier.counters.waitTimeouts).toBe(1)
      await s.applier.applyBatch({ entries: [noop(1), noop(2), noop(3)], commitIndex: 3, term: 2 })
      await Promise.all(waits.slice(1, 3))
      expect(outcomes).toEqual([[2, "timedOut"], [3, "applied"], [3, "applied"]])
      expect(s.applier.waitingReaders()).toBe(1)
      await s.applier.applyBatch({ entries: [noop(4)], commitIndex: 4, term: 2 })
      await waits[3]
      expect(s.applier.waitingReaders()).toBe(0)
      // A woken waiter's timer is gone: no late timeout.
      expect(s.applier.counters.waitTimeouts).toBe(1)
      expect(s.applier.waitApplied(4, 1)).toBeUndefined()
      s.applier.close()
      await s.backend.close()
    })
  })

  it("beyond waitersMax a read is refused at once; retries do not grow the list, timeouts empty it", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file, { waitersMax: 50, waitTimeoutMs: 30 })
      // A client retrying the same read 200 times while the member lags.
      const outcomes = await Promise.all(Array.from({ length: 200 }, () => s.applier.waitApplied(10)!))
      expect(outcomes.filter((o) => o === "tooMany")).toHaveLength(150)
      expect(outcomes.filter((o) => o === "timedOut")).toHaveLength(50)
      expect(s.applier.counters.waitRefusals).toBe(150)
      expect(s.applier.waitingReaders()).toBe(0)
      // Room again once they left.
      const again = s.applier.waitApplied(1)!
      await s.applier.applyBatch({ entries: [noop(1)], commitIndex: 1, term: 2 })
      expect(await again).toBe("applied")
      s.applier.close()
      await s.backend.close()
    })
  })
})

describe("dedup pruning on LMDB", () => {
  it("a far-future deadline does not prune recent records: a retry after it is still skipped", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file)
      await s.applier.applyBatch({ entries: [proposalAt(1, 1n, T, put("a", "1"))], commitIndex: 1, term: 2 })
      // A gateway whose clock is ten days fast.
      await s.applier.applyBatch({ entries: [proposalAt(2, 2n, T + 10 * day, put("b", "1"))], commitIndex: 2, term: 2 })
      // The retry of request 1 (its result frame was lost).
      await s.applier.applyBatch({ entries: [proposalAt(3, 1n, T, put("a", "1"))], commitIndex: 3, term: 2 })
      expect(s.applier.counters.duplicates).toBe(1)
      expect(versionOf(s, "a")).toBe(1)
      expect(s.backend.dedupEntries()).toHaveLength(2)
      s.applier.commit()
      expect(decodeUint64(s.backend.read.get("meta", metaDedupClockKey)!)).toBe(T + 1000)
      s.applier.close()
      await s.backend.close()
    })
  })

  it("keeps at most recordsMax request ids, in the table as in memory, across a restart", async () => {
    await withLmdbFile(async (file) => {
      const s = open(file, { dedup: { recordsMax: 50 } })
      const entries = Array.from({ length: 200 }, (_, i) => proposalAt(i + 1, BigInt(i + 1), T + i, put(`k${i}`, "v")))
      await s.applier.applyBatch({ entries, commitIndex: 200, term: 2 })
      expect(s.backend.dedupEntries()).toHaveLength(50)
      s.applier.close()
      await s.backend.close()
      const again = open(file, { dedup: { recordsMax: 50 } })
      expect(again.backend.dedupEntries()).toHaveLength(50)
      // Request 151 is among the newest 50: its retry is skipped. Request 150 is not: applied.
      await again.applier.applyBatch({ entries: [proposalAt(201, 151n, T, put("k150", "again"))], commitIndex: 201, term: 2 })
      expect(again.applier.counters.duplicates).toBe(1)
      expect(versionOf(again, "k150")).toBe(1)
      await again.applier.applyBatch({ entries: [proposalAt(202, 150n, T, put("k149", "again"))], commitIndex: 202, term: 2 })
      expect(versionOf(again, "k149")).toBe(2)
      expect(again.backend.dedupEntries()).toHaveLength(50)
      again.applier.close()
      await again.backend.close()
    })
  })

  it("a member that restarts prunes exactly like one that kept running", async () => {
    const bounds = { retentionMs: 2000, retentionEntriesMin: 20, recordsMax: 80, clockStepMsMax: 500 }
    const deadline = (i: number) => T + 100 * i + (i % 17 === 0 ? 30 * day : 0)
    const log = Array.from({ length: 400 }, (_, i) => {
      const index = i + 1
      // Every fifth proposal retries the one ten entries earlier.
      const id = index % 5 === 0 && index > 10 ? BigInt(index - 10) : BigInt(index)
      return proposalAt(index, id, deadline(index), put(`k${index % 30}`, `v${index}`))
    })
    const ids = (s: ReturnType<typeof open>) => s.backend.dedupEntries().map((e) => Buffer.from(e.key).toString("hex") + Buffer.from(e.value).toString("hex"))
    await withLmdbFile(async (a) => {
      await withLmdbFile(async (b) => {
        const kept = open(a, { dedup: bounds })
        let restarted = open(b, { dedup: bounds })
        for (let i = 0; i < log.length; i += 40) {
          const entries = log.slice(i, i + 40)
          const frame = { entries, commitIndex: entries[entries.length - 1]!.index, term: 2 }
          await kept.applier.applyBatch(frame)
          await restarted.applier.applyBatch(frame)
          restarted.applier.close()
          await restarted.backend.close()
          restarted = open(b, { dedup: bounds })
          expect(ids(restarted)).toEqual(ids(kept))
        }
        expect(kept.applier.counters.duplicates).toBeGreaterThan(0)
        expect(ids(kept).length).toBeLessThanOrEqual(80)
        for (const s of [kept, restarted]) {
          s.applier.close()
          await s.backend.close()
        }
      })
    })
  })
})
