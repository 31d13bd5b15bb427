/**
 * etcd's corruption check (etcd 3.4 etcdserver/corrupt.go) as tables: the initial check's and
 * the leader's periodic check's decisions (services/mvcc/core/corrupt-check.ts), and what the
 * store refuses while CORRUPT is active (applierV3Corrupt).
 *
 * Picture for the periodic table: the leader L hashed h=100 at rev 10 with compact rev 5
 * before asking its followers for HashKV at rev 10, and hashed again (h2, rev2, crev2) after a
 * linearizable read. A follower answers with its hash at rev 10, its compact revision and its
 * own current revision.
 *
 *   leader:   rev 10, crev 5, hash 100   --HashKV(10)-->   follower: hash ?, crev ?, rev ?
 */
import { describe, expect, it } from "vitest"
import { Index, LeaseId } from "../../shared/ids.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"
import { KvStore } from "../../services/mvcc/core/store.ts"
import { initialCheck, type LocalHash, type PeerHash, periodicCheck } from "../../services/mvcc/core/corrupt-check.ts"
import { LeaseTable } from "../../services/lease/core/lease-table.ts"
import { applyWithLeases } from "../../services/lease/core/lease-apply.ts"

const L = 1n
const A = 0xaan
const B = 0xbbn
const local: LocalHash = { hash: 100, revision: 10, compactRevision: 5 }
const ok = (memberId: bigint, hash: number, compactRevision: number, revision: number): PeerHash => ({ memberId, ok: { hash, compactRevision, revision } })
const err = (memberId: bigint, e: "FutureRevision" | "Compacted" | "Unreachable"): PeerHash => ({ memberId, err: e })

describe("initial check (etcd CheckInitialHashKV)", () => {
  const table: ReadonlyArray<{ name: string; peers: PeerHash[]; ok: boolean; messages: string[]; checked: number }> = [
    { name: "no peers", peers: [], ok: true, messages: [], checked: 0 },
    { name: "equal hashes", peers: [ok(A, 100, 5, 12), ok(B, 100, 5, 10)], ok: true, messages: [], checked: 2 },
    {
      name: "different hash, same compact revision: mismatch",
      peers: [ok(A, 100, 5, 10), ok(B, 999, 5, 10)],
      ok: false,
      messages: ["found different hash values from remote peer"],
      checked: 2
    },
    {
      name: "different hash, different compact revision: logged, not a mismatch",
      peers: [ok(A, 999, 8, 12)],
      ok: true,
      messages: ["found different compact revision values from remote peer"],
      checked: 1
    },
    {
      name: "slow peer, compacted peer, unreachable peer: logged and skipped",
      peers: [err(A, "FutureRevision"), err(B, "Compacted"), err(7n, "Unreachable")],
      ok: true,
      messages: ["cannot fetch hash from slow remote peer", "cannot fetch hash from remote peer; local member is behind", "failed hash kv request"],
      checked: 0
    },
    {
      name: "one mismatch among skipped peers still fails",
      peers: [err(A, "Unreachable"), ok(B, 1, 5, 10)],
      ok: false,
      messages: ["failed hash kv request", "found different hash values from remote peer"],
      checked: 1
    }
  ]
  for (const t of table) {
    it(t.name, () => {
      const v = initialCheck(local, t.peers)
      expect(v.ok).toBe(t.ok)
      expect(v.findings.map((f) => f.message)).toEqual(t.messages)
      expect(v.checked).toBe(t.checked)
    })
  }
})

describe("periodic check on the leader (etcd checkHashKV)", () => {
  const table: ReadonlyArray<{ name: string; after?: LocalHash; peers: PeerHash[]; alarm: bigint | undefined; messages: string[] }> = [
    { name: "all agree", peers: [ok(A, 100, 5, 10), ok(B, 100, 5, 9)], alarm: undefined, messages: [] },
    { name: "leader moved on meanwhile: its later hash is not compared", after: { hash: 200, revision: 12, compactRevision: 5 }, peers: [ok(A, 100, 5, 11)], alarm: undefined, messages: [] },
    {
      name: "leader's own hash changed at the same revision: the leader is named",
      after: { hash: 101, revision: 10, compactRevision: 5 },
      peers: [ok(A, 100, 5, 10)],
      alarm: L,
      messages: ["found hash mismatch"]
    },
    {
      name: "follower with the same compact revision and another hash is named",
      peers: [ok(A, 100, 5, 10), ok(B, 7, 5, 10)],
      alarm: B,
      messages: ["same compact revision then hashes must match"]
    },
    {
      name: "follower ahead of the leader's revision is named",
      peers: [ok(A, 100, 5, 11)],
      alarm: A,
      messages: ["revision from follower must be less than or equal to leader's"]
    },
    {
      name: "follower compacted beyond the leader is named",
      peers: [ok(A, 3, 6, 10)],
      alarm: A,
      messages: ["compact revision from follower must be less than or equal to leader's"]
    },
    {
      name: "follower with an older compact revision: hashes not comparable, nothing named",
      peers: [ok(A, 3, 4, 10)],
      alarm: undefined,
      messages: []
    },
    {
      name: "only the first member named gets the alarm",
      peers: [ok(A, 1, 5, 10), ok(B, 2, 5, 10)],
      alarm: A,
      messages: ["same compact revision then hashes must match", "same compact revision then hashes must match"]
    },
    {
      name: "failed peers are skipped silently",
      peers: [err(A, "FutureRevision"), err(B, "Unreachable")],
      alarm: undefined,
      messages: []
    }
  ]
  for (const t of table) {
    it(t.name, () => {
      const v = periodicCheck(L, local, t.after ?? local, t.peers)
      expect(v.alarm).toBe(t.alarm)
      expect(v.findings.map((f) => f.message)).toEqual(t.messages)
    })
  }
})

describe("store under a CORRUPT alarm (etcd applierV3Corrupt)", () => {
  const enc = (s: string) => new TextEncoder().encode(s)
  const put = (k: string): WriteRequest => ({ put: { key: enc(k), value: enc("v") } })

  it("refuses writes, compactions, non-read-only txns and lease grants and revocations; lets alarms and read-only txns through", () => {
    let backend = new MemoryBackend()
    let store = KvStore.restore(backend)
    let leases = LeaseTable.restore(backend, 0)
    let index = 0
    const apply = (req: Parameters<typeof applyWithLeases>[4]) => {
      const r = applyWithLeases(store, leases, backend, Index(++index), req)
      return "err" in r ? r.err._tag : "ok" in r ? "ok" : "skipped"
    }
    expect(apply(put("a"))).toBe("ok")
    expect(apply({ leaseGrant: { id: LeaseId(5n), ttl: 60, minTtl: 2 } })).toBe("ok")
    expect(apply({ alarm: { action: "ACTIVATE", memberId: 9n, alarm: "CORRUPT" } })).toBe("ok")
    const table: ReadonlyArray<[string, Parameters<typeof applyWithLeases>[4], string]> = [
      ["put", put("b"), "Corrupt"],
      ["delete", { deleteRange: { key: enc("a") } }, "Corrupt"],
      ["txn with a put", { txn: { compare: [], success: [{ requestPut: { key: enc("b"), value: enc("v") } }], failure: [] } }, "Corrupt"],
      ["txn with a delete", { txn: { compare: [], success: [], failure: [{ requestDeleteRange: { key: enc("a") } }] } }, "Corrupt"],
      ["nested read-only txn (not read-only for etcd)", { txn: { compare: [], success: [{ requestTxn: { compare: [], success: [], failure: [] } }], failure: [] } }, "Corrupt"],
      ["read-only txn", { txn: { compare: [], success: [{ requestRange: { key: enc("a") } }], failure: [] } }, "ok"],
      ["compaction", { compaction: { revision: 2, physical: false } }, "Corrupt"],
      ["lease grant", { leaseGrant: { id: LeaseId(6n), ttl: 60, minTtl: 2 } }, "Corrupt"],
      ["lease revoke", { leaseRevoke: { id: LeaseId(5n) } }, "Corrupt"],
      ["lease checkpoint", { leaseCheckpoint: { checkpoints: [{ id: LeaseId(5n), remainingTtl: 30 }] } }, "ok"],
      ["alarm get", { alarm: { action: "GET", memberId: 0n, alarm: "NONE" } }, "ok"]
    ]
    for (const [name, req, want] of table) expect(`${name}: ${apply(req)}`).toBe(`${name}: ${want}`)
    // Nothing refused moved the revision; the refused entries still moved the consistent index.
    expect(store.currentRevision()).toBe(2)
    expect(store.consistentIndex()).toBe(index)
    // The alarm survives a restart, and so does the refusal.
    backend = backend.clone()
    store = KvStore.restore(backend)
    leases = LeaseTable.restore(backend, index)
    expect(store.activeAlarms("CORRUPT")).toEqual([{ memberId: 9n, alarm: "CORRUPT" }])
    expect(apply(put("b"))).toBe("Corrupt")
    // Disarming restores writes.
    expect(apply({ alarm: { action: "DEACTIVATE", memberId: 9n, alarm: "CORRUPT" } })).toBe("ok")
    expect(apply(put("b"))).toBe("ok")
    expect(store.currentRevision()).toBe(3)
  })
})
