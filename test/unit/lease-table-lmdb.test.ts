/**
 * The lease table of the mvcc service (services/lease/core/lease-table.ts, lease-apply.ts) on a real
 * LMDB file through the applier: grants and their errors as etcd's lessor returns them, keys
 * attached by a put with a lease and detached by a put without one or a delete (etcd
 * storeTxnWrite), a revoke deleting every attached key in one revision, checkpoints, the
 * incremental change log the lease service follows, and everything surviving a reopen.
 */
import { describe, expect, it } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { packValue } from "../../shared/frame.ts"
import type { Index, Term } from "../../shared/ids.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { LeaseWriteRequest, WriteRequest } from "../../shared/kv.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Applier } from "../../services/mvcc/apply.ts"
import type { ResultBody } from "../../services/mvcc/apply.ts"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { unsafeReadConsistentIndex } from "../../services/mvcc/core/backend.ts"
import { KvStore } from "../../services/mvcc/core/store.ts"
import { LeaseTable } from "../../services/lease/core/lease-table.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)

const open = (file: string) => {
  const backend = LmdbBackend.open(file)
  const leases = LeaseTable.restore(backend.read, unsafeReadConsistentIndex(backend.read))
  const store = KvStore.restore(backend.read, { leaseExists: (id) => leases.has(id) })
  const sent: ResultBody[] = []
  const applier = new Applier(backend, store, "m1", {
    publish: (_subject, bodies) => sent.push(...bodies),
    fetchEntries: async () => ({ entries: [], commitIndex: 0 }),
    log: () => undefined
  }, undefined, leases)
  let index = store.consistentIndex() as number
  const apply = async (request: WriteRequest | LeaseWriteRequest): Promise<ResultBody> => {
    index++
    const entry: Entry = {
      term: 2 as Term,
      index: index as Index,
      type: "Normal",
      data: packValue({ requestId: BigInt(index) + 1000n, origin: "m1", replyTo: "to", deadlineMs: 1_000_000 + index, traceparent: "", request })
    }
    await applier.applyBatch({ entries: [entry], commitIndex: index, term: 2 })
    return sent[sent.length - 1]!
  }
  return { backend, leases, store, applier, apply }
}

describe("lease table on LMDB", () => {
  it("grants, attaches, detaches, revokes in one revision, and survives a reopen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "natcd-lease-table-"))
    const file = join(dir, "kv.mdb")
    try {
      const a = open(file)
      expect(await a.apply({ leaseGrant: { id: LeaseId(7n), ttl: 1, minTtl: 2 } })).toMatchObject({ ok: { response: { leaseGrant: { id: 7n, ttl: 2 } }, revision: 1 } })
      expect(await a.apply({ leaseGrant: { id: LeaseId(7n), ttl: 5, minTtl: 2 } })).toMatchObject({ err: { _tag: "LeaseExists" } })
      expect(await a.apply({ leaseGrant: { id: LeaseId(8n), ttl: 9_000_000_001, minTtl: 2 } })).toMatchObject({ err: { _tag: "LeaseTtlTooLarge" } })
      expect(await a.apply({ leaseGrant: { id: LeaseId(9n), ttl: 60, minTtl: 2 } })).toMatchObject({ ok: { response: { leaseGrant: { id: 9n, ttl: 60 } } } })
      expect(await a.apply({ put: { key: enc("x"), value: enc("1"), lease: LeaseId(99n) } })).toMatchObject({ err: { _tag: "LeaseNotFound" } })
      await a.apply({ put: { key: enc("a"), value: enc("1"), lease: LeaseId(7n) } })
      await a.apply({ put: { key: enc("b"), value: enc("1"), lease: LeaseId(7n) } })
      await a.apply({ put: { key: enc("c"), value: enc("1"), lease: LeaseId(7n) } })
      await a.apply({ put: { key: enc("b"), value: enc("2") } }) // detached by a put without lease
      await a.apply({ put: { key: enc("d"), value: enc("1"), lease: LeaseId(7n) } })
      await a.apply({ put: { key: enc("d"), value: enc("2"), lease: LeaseId(9n) } }) // moved to lease 9
      await a.apply({ deleteRange: { key: enc("c") } }) // detached by a delete
      await a.apply({ put: { key: enc("e"), value: enc("1"), lease: LeaseId(7n) } })
      expect(a.leases.keys(7n).map(dec)).toEqual(["a", "e"])
      expect(a.leases.keys(9n).map(dec)).toEqual(["d"])
      a.applier.commit()
      await a.backend.close()

      const b = open(file)
      expect(b.leases.keys(7n).map(dec)).toEqual(["a", "e"])
      expect(b.leases.get(7n)).toMatchObject({ ttl: 2, remainingTtl: 0 })
      const before = b.store.currentRevision()
      const r = await b.apply({ leaseRevoke: { id: LeaseId(7n) } })
      expect(r).toMatchObject({ ok: { response: { leaseRevoke: {} }, revision: before + 1 } })
      const left = b.store.range(b.backend.read, { key: enc("a"), rangeEnd: enc("z") })
      expect("ok" in left && left.ok.kvs.map((kv) => dec(kv.key))).toEqual(["b", "d"])
      expect(b.leases.has(7n)).toBe(false)
      expect(await b.apply({ leaseRevoke: { id: LeaseId(7n) } })).toMatchObject({ err: { _tag: "LeaseNotFound" } })
      // A revoke of a lease without keys changes no revision.
      await b.apply({ leaseGrant: { id: LeaseId(11n), ttl: 10, minTtl: 2 } })
      expect(await b.apply({ leaseRevoke: { id: LeaseId(11n) } })).toMatchObject({ ok: { revision: before + 1 } })
      await b.apply({ leaseCheckpoint: { checkpoints: [{ id: LeaseId(9n), remainingTtl: 42 }, { id: LeaseId(123n), remainingTtl: 1 }] } })
      expect(b.leases.get(9n)).toMatchObject({ ttl: 60, remainingTtl: 42 })
      // The change log: everything since index 0 is the full table; since the last revoke, only the checkpoint.
      expect(b.leases.changesSince(0)).toMatchObject({ full: true, leases: [{ id: 9n }] })
      const since = b.store.consistentIndex() - 1
      expect(b.leases.changesSince(since)).toMatchObject({ full: false, leases: [{ id: 9n, remainingTtl: 42 }], removed: [] })
      b.applier.commit()
      await b.backend.close()

      const c = open(file)
      expect(c.leases.ids()).toEqual([9n])
      expect(c.leases.get(9n)).toMatchObject({ ttl: 60, remainingTtl: 42 })
      expect(c.leases.keys(9n).map(dec)).toEqual(["d"])
      await c.backend.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
