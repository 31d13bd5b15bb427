/**
 * Compaction in background batches on real LMDB files (etcd 3.4 kvstore_compaction.go
 * scheduleCompaction, --experimental-compaction-batch-limit): the apply of a compaction records
 * it and compacts the index; the Applier deletes the dropped records afterwards, a batch of
 * `compactionBatchLimit` records per LMDB transaction, between applies.
 *
 * The history used throughout: 5000 keys put three times each (revisions 2..15001), every
 * seventh key deleted (revisions 15002..15716), a compaction in the middle of the deletes
 * (revision 15358), then a few more puts. Checked:
 * - batches of 100 and one batch of everything end with the same backend (every record and the
 *   compact revisions) and the same range answers;
 * - HashKV agrees between the two at every point of the batched deletion (etcd HashByRev skips
 *   the records scheduled for deletion);
 * - a put applied while the deletion runs is visible at once and survives;
 * - a crash (the write buffer lost, no shutdown) in the middle of the deletion loses nothing,
 *   and the restart resumes and finishes it;
 * - a copy of the database taken in the middle (a snapshot) restores to the same state;
 * - a `physical` compaction is answered once the deletion finished, and defragmenting finishes
 *   a pending deletion before copying.
 */
import { describe, expect, it } from "vitest"
import type { Entry } from "../../shared/raft-types.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import type { ApplierOptions } from "../../services/mvcc/apply.ts"
import { hashKv } from "../../services/mvcc/hash.ts"
import type { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import type { KvStore } from "../../services/mvcc/core/store.ts"
import { tempDir } from "../e2e/harness.ts"
import { enc, openApplier, proposal, put } from "./apply-fixtures.ts"

const keys = 5000
const rounds = 3
const compactAt = 15_358
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const key = (k: number) => `k${String(k).padStart(5, "0")}`

/** The log described in the module comment; the compaction's entry is at `compactionIndex`. */
const history = (): { log: Entry[]; compactionIndex: number } => {
  const requests: WriteRequest[] = []
  for (let r = 0; r < rounds; r++) for (let k = 0; k < keys; k++) requests.push(put(key(k), `v${r}-${k}`))
  const deletes: WriteRequest[] = []
  for (let k = 0; k < keys; k += 7) deletes.push({ deleteRange: { key: enc(key(k)) } })
  // The first put is revision 2: the compaction lands after (compactAt - 1 - 15000) deletes.
  const before = compactAt - 1 - keys * rounds
  requests.push(...deletes.slice(0, before))
  requests.push({ compaction: { revision: compactAt } })
  const compactionIndex = requests.length
  requests.push(...deletes.slice(before))
  for (let k = 0; k < keys; k += 500) requests.push(put(key(k), `after-${k}`))
  return { log: requests.map((req, i) => proposal(i + 1, BigInt(i + 1), req)), compactionIndex }
}

const { log, compactionIndex } = history()

type Opened = ReturnType<typeof openApplier>

/** Applies log entries from..to (inclusive) in frames of 1000. */
const applyRange = async (s: Opened, from: number, to: number) => {
  for (let i = from; i <= to; i += 1000) {
    const entries = log.slice(i - 1, Math.min(to, i + 999))
    await s.applier.applyBatch({ entries, commitIndex: entries[entries.length - 1]!.index, term: 2 })
  }
}

const until = async (cond: () => boolean, what: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

const finished = (s: Opened) => until(() => s.store.pendingCompaction() === undefined, "the compaction to finish")

/** Every record of the key bucket and the compaction state: what must not depend on batching. */
const dump = (backend: LmdbBackend) => ({
  records: backend.read.range("key", new Uint8Array(), undefined).map((r) => `${hex(r.key)}=${hex(r.value)}`),
  scheduled: hex(backend.read.get("meta", enc("scheduledCompactRev")) ?? new Uint8Array()),
  finished: hex(backend.read.get("meta", enc("finishedCompactRev")) ?? new Uint8Array())
})

/** Everything readable at `revision`, rendered. */
const all = (store: KvStore, backend: LmdbBackend, revision: number) => {
  const r = store.range(backend.read, { key: enc("\0"), rangeEnd: enc("\0"), revision })
  if ("err" in r) return r.err._tag
  return r.ok.kvs.map((kv) => `${hex(kv.key)}:${hex(kv.value)}@${kv.createRevision}/${kv.modRevision}/v${kv.version}`)
}

const hashOf = (s: Opened, revision: number) => hashKv(s.backend.read, revision, (k, v) => s.store.isLiveRecord(k, v))

const withDir = async (f: (dir: string) => Promise<void>) => {
  const t = tempDir("compaction")
  try {
    await f(t.dir)
  } finally {
    t.remove()
  }
}

const open = (file: string, options?: Partial<ApplierOptions>) => openApplier(file, log, { batchIntervalMs: 20, ...options })

/**
 * The reference: the whole log applied with one compaction batch (the old, unbatched
 * behaviour), its dump, range answers and hashes.
 */
const reference = async (dir: string) => {
  const s = open(`${dir}/reference.mdb`, { compactionBatchLimit: 1_000_000_000 })
  await applyRange(s, 1, compactionIndex)
  await finished(s)
  const hashAtCompact = hashOf(s, compactAt)
  const hashAtCompactionApply = hashOf(s, s.store.currentRevision())
  await applyRange(s, compactionIndex + 1, log.length)
  const result = {
    dump: dump(s.backend),
    reads: [compactAt, compactAt + 100, s.store.currentRevision()].map((rev) => all(s.store, s.backend, rev)),
    hashAtCompact,
    hashAtCompactionApply,
    hashAtEnd: hashOf(s, s.store.currentRevision()),
    revision: s.store.currentRevision()
  }
  s.applier.close()
  await s.backend.close()
  return result
}

describe("compaction in background batches on LMDB", () => {
  it("batches of 100 end with the same backend, answers and hashes as one batch; HashKV agrees at every step", async () => {
    await withDir(async (dir) => {
      const ref = await reference(dir)
      const s = open(`${dir}/batched.mdb`, { compactionBatchLimit: 100 })
      await applyRange(s, 1, compactionIndex)
      // Applied: reads below the compact revision fail at once, nothing deleted yet.
      expect(s.store.pendingCompaction()).toBe(compactAt)
      expect(all(s.store, s.backend, compactAt - 1)).toBe("Compacted")
      let checks = 0
      const commitsBefore = s.backend.commits
      while (s.store.pendingCompaction() !== undefined) {
        expect(hashOf(s, compactAt)).toBe(ref.hashAtCompact)
        expect(hashOf(s, s.store.currentRevision())).toBe(ref.hashAtCompactionApply)
        checks++
        await new Promise((r) => setTimeout(r, 150))
      }
      expect(checks).toBeGreaterThan(2)
      // Each batch of 100 records that deleted something was its own LMDB transaction: the
      // first two rounds (10000 records) are all dropped, so at least 100 commits.
      expect(s.backend.commits - commitsBefore).toBeGreaterThanOrEqual(100)
      expect(s.applier.counters.compactedKeys).toBeGreaterThan(10_000)
      await applyRange(s, compactionIndex + 1, log.length)
      s.applier.commit()
      expect(dump(s.backend)).toEqual(ref.dump)
      expect([compactAt, compactAt + 100, s.store.currentRevision()].map((rev) => all(s.store, s.backend, rev))).toEqual(ref.reads)
      expect(hashOf(s, s.store.currentRevision())).toBe(ref.hashAtEnd)
      s.applier.close()
      await s.backend.close()
    })
  }, 120_000)

  it("a put applied while the deletion runs is visible at once and survives; applies interleave between batches", async () => {
    await withDir(async (dir) => {
      const ref = await reference(dir)
      const s = open(`${dir}/batched.mdb`, { compactionBatchLimit: 100 })
      await applyRange(s, 1, compactionIndex)
      await until(() => s.applier.counters.compactedKeys > 0, "a first batch")
      const deletedBefore = s.applier.counters.compactedKeys
      expect(s.store.pendingCompaction()).toBe(compactAt)
      // The rest of the log, applied between batches.
      await applyRange(s, compactionIndex + 1, log.length)
      const got = s.store.range(s.backend.read, { key: enc(key(500)) })
      expect("ok" in got && got.ok.kvs.map((kv) => new TextDecoder().decode(kv.value))).toEqual(["after-500"])
      expect(s.store.pendingCompaction()).toBe(compactAt)
      await finished(s)
      expect(s.applier.counters.compactedKeys).toBeGreaterThan(deletedBefore)
      expect(dump(s.backend)).toEqual(ref.dump)
      s.applier.close()
      await s.backend.close()
      const again = open(`${dir}/batched.mdb`, { compactionBatchLimit: 100 })
      expect(again.store.currentRevision()).toBe(ref.revision)
      expect(again.applier.appliedIndex()).toBe(log.length)
      expect(all(again.store, again.backend, again.store.currentRevision())).toEqual(ref.reads[2])
      again.applier.close()
      await again.backend.close()
    })
  }, 120_000)

  it("a crash in the middle of the deletion loses nothing; the restart resumes and finishes it", async () => {
    await withDir(async (dir) => {
      const ref = await reference(dir)
      const file = `${dir}/crashed.mdb`
      const s = open(file, { compactionBatchLimit: 100 })
      await applyRange(s, 1, compactionIndex)
      await until(() => s.applier.counters.compactedKeys > 1000, "some batches")
      expect(s.store.pendingCompaction()).toBe(compactAt)
      // kill -9: the write buffer is lost, nothing more is committed.
      s.backend.unsafeDiscardBuffer()
      s.applier.close()
      await s.backend.close()
      const again = open(file, { compactionBatchLimit: 100 })
      expect(again.store.pendingCompaction()).toBe(compactAt)
      expect(again.store.compactRevision()).toBe(compactAt)
      expect(hashOf(again, compactAt)).toBe(ref.hashAtCompact)
      // Raft hands over the entries after the consistent index again.
      await again.applier.catchUp(log.length)
      expect(again.applier.appliedIndex()).toBe(log.length)
      expect([compactAt, compactAt + 100, again.store.currentRevision()].map((rev) => all(again.store, again.backend, rev))).toEqual(ref.reads)
      await finished(again)
      again.applier.commit()
      expect(dump(again.backend)).toEqual(ref.dump)
      again.applier.close()
      await again.backend.close()
    })
  }, 120_000)

  it("a copy of the database taken in the middle of the deletion (a snapshot) restores to the same state", async () => {
    await withDir(async (dir) => {
      const ref = await reference(dir)
      const s = open(`${dir}/source.mdb`, { compactionBatchLimit: 100 })
      await applyRange(s, 1, compactionIndex)
      await until(() => s.applier.counters.compactedKeys > 0, "a first batch")
      s.applier.commit()
      await s.backend.backup(`${dir}/copy.mdb`)
      s.applier.close()
      await s.backend.close()
      const copy = open(`${dir}/copy.mdb`, { compactionBatchLimit: 100 })
      expect(copy.store.pendingCompaction()).toBe(compactAt)
      await copy.applier.catchUp(log.length)
      await finished(copy)
      copy.applier.commit()
      expect(dump(copy.backend)).toEqual(ref.dump)
      copy.applier.close()
      await copy.backend.close()
    })
  }, 120_000)

  it("answers a physical compaction once the deletion finished (etcd Compact with physical)", async () => {
    await withDir(async (dir) => {
      const s = openApplier(`${dir}/physical.mdb`, [], { compactionBatchLimit: 10 })
      const puts = Array.from({ length: 200 }, (_, i) => proposal(i + 1, BigInt(i + 1), put(`k${i % 20}`, `v${i}`)))
      await s.applier.applyBatch({ entries: puts, commitIndex: 200, term: 2 })
      const physical = proposal(201, 201n, { compaction: { revision: 150, physical: true } })
      const plain = proposal(202, 202n, put("x", "y"))
      await s.applier.applyBatch({ entries: [physical, plain], commitIndex: 202, term: 2 })
      const answered = () => s.sent.some(({ body }) => body.requestId === 201n)
      expect(s.sent.some(({ body }) => body.requestId === 202n)).toBe(true)
      expect(answered()).toBe(false)
      expect(s.store.pendingCompaction()).toBe(150)
      await finished(s)
      expect(answered()).toBe(true)
      const body = s.sent.find(({ body }) => body.requestId === 201n)!.body
      expect("ok" in body && body.ok.revision).toBe(201)
      // Defragmenting finishes a pending deletion at once, before copying.
      await s.applier.applyBatch({ entries: [proposal(203, 203n, { compaction: { revision: 202, physical: true } })], commitIndex: 203, term: 2 })
      expect(s.store.pendingCompaction()).toBe(202)
      s.applier.finishCompaction()
      expect(s.store.pendingCompaction()).toBeUndefined()
      expect(s.sent.some(({ body }) => body.requestId === 203n)).toBe(true)
      // Left: each of the 20 keys once, and x.
      expect(s.backend.read.range("key", new Uint8Array(), undefined)).toHaveLength(21)
      s.applier.close()
      await s.backend.close()
    })
  })
})
