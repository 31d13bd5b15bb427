/**
 * Per-rule tests of the MVCC store (services/mvcc/core/store.ts) over the in-memory backend.
 * Each expectation marked "etcd 3.4.23" was checked against a real etcd 3.4.23 through its
 * JSON gateway with the same sequence of requests.
 */
import { describe, expect, it } from "vitest"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { Index, LeaseId } from "../../shared/ids.ts"
import type {
  Compare,
  KeyValue,
  PutRequest,
  RangeRequest,
  RequestOp,
  TxnRequest,
  WriteRequest
} from "../../shared/kv.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"
import { decodeKeyValue, encodeKeyValue } from "../../services/mvcc/core/kv-codec.ts"
import { bytesToRev, isTombstone, revToBytes } from "../../services/mvcc/core/revision.ts"
import {
  type ApplyResult,
  KvStore,
  type KvStoreOptions,
  unsafeReadEvents,
  validateRange,
  validateWrite
} from "../../services/mvcc/core/store.ts"

const b = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}
const s = (x: Uint8Array): string => String.fromCharCode(...x)
const ZERO = "\0"

/** A KeyValue rendered compactly: key=value@create/mod/vN, plus lease when set. */
const show = (kv: KeyValue): string =>
  `${s(kv.key)}=${s(kv.value)}@${kv.createRevision}/${kv.modRevision}/v${kv.version}` + (kv.lease !== 0n ? ` L${kv.lease}` : "")

const setup = (options?: KvStoreOptions) => {
  const backend = new MemoryBackend()
  let store = KvStore.restore(backend, options)
  let index = 0
  const apply = (req: WriteRequest): ApplyResult => store.apply(backend, Index(++index), req)
  const ok = (req: WriteRequest) => {
    const r = apply(req)
    if (!("ok" in r)) throw new Error(`expected ok, got ${JSON.stringify(r, (_k, v) => typeof v === "bigint" ? `${v}` : v)}`)
    return r
  }
  const err = (req: WriteRequest): EtcdErrorData => {
    const r = apply(req)
    if (!("err" in r)) throw new Error("expected an error")
    return r.err
  }
  const put = (key: string, value: string, extra: Partial<PutRequest> = {}) => ok({ put: { key: b(key), value: b(value), ...extra } })
  const del = (key: string, rangeEnd?: string) =>
    ok({ deleteRange: rangeEnd === undefined ? { key: b(key) } : { key: b(key), rangeEnd: b(rangeEnd) } })
  const get = (key: string, extra: Omit<Partial<RangeRequest>, "rangeEnd"> & { rangeEnd?: string } = {}) => {
    const { rangeEnd, ...rest } = extra
    const r = store.range(backend, { key: b(key), ...(rangeEnd === undefined ? {} : { rangeEnd: b(rangeEnd) }), ...rest })
    if ("err" in r) throw new Error(`range failed: ${r.err._tag}`)
    return { kvs: r.ok.kvs.map(show), more: r.ok.more, count: r.ok.count, revision: r.revision }
  }
  const getErr = (key: string, extra: Partial<RangeRequest> = {}): EtcdErrorData | undefined => {
    const r = store.range(backend, { key: b(key), ...extra })
    return "err" in r ? r.err : undefined
  }
  const reopen = () => {
    store = KvStore.restore(backend, options)
    return store
  }
  /** Runs the background deletion of the pending compaction to its end, `limit` records a batch. */
  const finishCompaction = (limit = 2) => {
    for (let i = 0; i < 10_000; i++) if (store.compactBatch(backend, limit).done) return
    throw new Error("compaction did not finish")
  }
  return { backend, store: () => store, apply, ok, err, put, del, get, getErr, reopen, finishCompaction, nextIndex: () => index + 1 }
}

const txn = (t: Partial<TxnRequest>): WriteRequest => ({ txn: { compare: [], success: [], failure: [], ...t } })
const opPut = (key: string, value: string, extra: Partial<PutRequest> = {}): RequestOp => ({
  requestPut: { key: b(key), value: b(value), ...extra }
})
const opDel = (key: string, rangeEnd?: string): RequestOp => ({
  requestDeleteRange: rangeEnd === undefined ? { key: b(key) } : { key: b(key), rangeEnd: b(rangeEnd) }
})
const opGet = (key: string, extra: Omit<Partial<RangeRequest>, "rangeEnd"> & { rangeEnd?: string } = {}): RequestOp => {
  const { rangeEnd, ...rest } = extra
  return { requestRange: { key: b(key), ...(rangeEnd === undefined ? {} : { rangeEnd: b(rangeEnd) }), ...rest } }
}
const opTxn = (t: Partial<TxnRequest>): RequestOp => ({ requestTxn: { compare: [], success: [], failure: [], ...t } })
const cmp = (key: string, target: Compare["target"], result: Compare["result"], v: number | string | bigint, rangeEnd?: string): Compare => ({
  key: b(key),
  ...(rangeEnd === undefined ? {} : { rangeEnd: b(rangeEnd) }),
  target,
  result,
  ...(target === "VALUE" ? { value: b(v as string) } : {}),
  ...(target === "VERSION" ? { version: v as number } : {}),
  ...(target === "CREATE" ? { createRevision: v as number } : {}),
  ...(target === "MOD" ? { modRevision: v as number } : {}),
  ...(target === "LEASE" ? { lease: LeaseId(v as bigint) } : {})
})

describe("revisions and versions", () => {
  it("an empty store is at revision 1 and each mutating request adds one", () => {
    const t = setup()
    expect(t.store().currentRevision()).toBe(1)
    expect(t.store().compactRevision()).toBe(-1)
    expect(t.get("a")).toEqual({ kvs: [], more: false, count: 0, revision: 1 })
    expect(t.put("a", "1").revision).toBe(2)
    expect(t.put("a", "2").revision).toBe(3)
    expect(t.get("a").kvs).toEqual(["a=2@2/3/v2"])
  })

  it("a delete writes a tombstone and resets the version; the next put starts a generation", () => {
    const t = setup()
    t.put("a", "1")
    t.put("a", "2")
    expect(t.del("a").ok).toEqual({ deleteRange: { deleted: 1, prevKvs: [] } })
    expect(t.get("a").kvs).toEqual([])
    t.put("a", "3")
    expect(t.get("a").kvs).toEqual(["a=3@5/5/v1"])
    expect(t.get("a", { revision: 3 }).kvs).toEqual(["a=2@2/3/v2"])
    expect(t.get("a", { revision: 4 }).kvs).toEqual([])
  })

  it("a delete of missing keys changes nothing and keeps the revision (etcd 3.4.23)", () => {
    const t = setup()
    const r = t.del("zz")
    expect(r.revision).toBe(1)
    expect(r.events).toEqual([])
    expect(t.store().currentRevision()).toBe(1)
    expect(t.backend.size("key")).toBe(0)
  })

  it("a txn takes one revision whatever it touches, with sub revisions inside", () => {
    const t = setup()
    const r = t.ok(txn({ success: [opPut("a", "1"), opPut("b", "2"), opPut("c", "3")] }))
    expect(r.revision).toBe(2)
    const keys = t.backend.range("key", new Uint8Array(), undefined).map((e) => bytesToRev(e.key))
    expect(keys).toEqual([{ main: 2, sub: 0 }, { main: 2, sub: 1 }, { main: 2, sub: 2 }])
    t.ok(txn({ success: [opDel("a"), opPut("d", "4")] }))
    const last = t.backend.range("key", revToBytes({ main: 3, sub: 0 }), undefined)
    expect(last.map((e) => [bytesToRev(e.key), isTombstone(e.key)])).toEqual([
      [{ main: 3, sub: 0 }, true],
      [{ main: 3, sub: 1 }, false]
    ])
  })
})

describe("range", () => {
  const filled = () => {
    const t = setup()
    t.put("a", "1") // 2
    t.put("b", "3") // 3
    t.put("c", "2") // 4
    t.put("c", "0") // 5
    t.put("d\xff", "x") // 6
    return t
  }

  it("single key, [key, end), from key, all keys, prefix", () => {
    const t = filled()
    expect(t.get("b").kvs).toEqual(["b=3@3/3/v1"])
    expect(t.get("b", { rangeEnd: "d" }).kvs).toEqual(["b=3@3/3/v1", "c=0@4/5/v2"])
    expect(t.get("c", { rangeEnd: ZERO }).kvs).toEqual(["c=0@4/5/v2", "d\xff=x@6/6/v1"])
    expect(t.get(ZERO, { rangeEnd: ZERO }).count).toBe(4)
    expect(t.get("d", { rangeEnd: "e" }).kvs).toEqual(["d\xff=x@6/6/v1"])
    // An end at or below the key is an empty range.
    expect(t.get("c", { rangeEnd: "b" }).kvs).toEqual([])
    // An empty range_end is the single key, not a from-key range.
    expect(t.get("a", { rangeEnd: "" }).kvs).toEqual(["a=1@2/2/v1"])
  })

  it("limit cuts, sets more, and count stays the total (etcd 3.4.23)", () => {
    const t = filled()
    const r = t.get("a", { rangeEnd: "z", limit: 2 })
    expect(r).toEqual({ kvs: ["a=1@2/2/v1", "b=3@3/3/v1"], more: true, count: 4, revision: 6 })
    expect(t.get("a", { rangeEnd: "z", limit: 4 }).more).toBe(false)
    expect(t.get("a", { rangeEnd: "z", limit: -1 }).kvs.length).toBe(4)
  })

  it("sort orders and targets, ties in key order (etcd 3.4.23)", () => {
    const t = setup()
    t.put("sa", "1")
    t.put("sa", "1")
    t.put("sa", "1") // sa v3
    t.put("sb", "1")
    t.put("sb", "1") // sb v2
    t.put("sc", "1") // sc v1
    const keys = (x: ReturnType<typeof t.get>) => x.kvs.map((k) => k.split("=")[0]).join(",")
    // With a target but order NONE the limit is applied first, then the order becomes ASCEND:
    // only the first limit + 1 keys are sorted.
    expect(keys(t.get("s", { rangeEnd: "t", limit: 1, sortTarget: "VERSION" }))).toBe("sb")
    expect(keys(t.get("s", { rangeEnd: "t", limit: 1, sortTarget: "VERSION", sortOrder: "ASCEND" }))).toBe("sc")
    expect(keys(t.get("s", { rangeEnd: "t", sortOrder: "DESCEND" }))).toBe("sc,sb,sa")
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "KEY", sortOrder: "ASCEND", limit: 2 }))).toBe("sa,sb")
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "VERSION", sortOrder: "DESCEND" }))).toBe("sa,sb,sc")
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "CREATE", sortOrder: "DESCEND" }))).toBe("sc,sb,sa")
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "MOD", sortOrder: "ASCEND" }))).toBe("sa,sb,sc")
    // Equal values keep ascending key order in both directions.
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "VALUE", sortOrder: "DESCEND", limit: 1 }))).toBe("sa")
    expect(keys(t.get("s", { rangeEnd: "t", sortTarget: "VALUE", sortOrder: "ASCEND" }))).toBe("sa,sb,sc")
  })

  it("revision filters prune after counting (etcd 3.4.23)", () => {
    const t = filled()
    expect(t.get("a", { rangeEnd: "z", limit: 1, minModRevision: 5 })).toEqual({
      kvs: ["c=0@4/5/v2"],
      more: true,
      count: 4,
      revision: 6
    })
    expect(t.get("a", { rangeEnd: "z", minModRevision: 6 }).kvs).toEqual(["d\xff=x@6/6/v1"])
    expect(t.get("a", { rangeEnd: "z", maxModRevision: 3 }).kvs).toEqual(["a=1@2/2/v1", "b=3@3/3/v1"])
    expect(t.get("a", { rangeEnd: "z", minCreateRevision: 4, maxCreateRevision: 4 }).kvs).toEqual(["c=0@4/5/v2"])
    // A negative bound is a bound too.
    expect(t.get("a", { rangeEnd: "z", maxModRevision: -1 })).toMatchObject({ kvs: [], count: 4 })
    // count_only ignores the filters.
    expect(t.get("a", { rangeEnd: "z", countOnly: true, minModRevision: 5 })).toEqual({ kvs: [], more: false, count: 4, revision: 6 })
  })

  it("keys_only clears values and keeps leases (etcd 3.4.23)", () => {
    const t = setup({ leaseExists: (id) => id === 0x1234n })
    t.put("l", "x", { lease: LeaseId(0x1234n) })
    expect(t.get("l", { keysOnly: true }).kvs).toEqual(["l=@2/2/v1 L4660"])
  })

  it("time travel, future and compacted revisions; revision <= 0 reads the current one", () => {
    const t = filled()
    expect(t.get("c", { revision: 4 }).kvs).toEqual(["c=2@4/4/v1"])
    expect(t.get("c", { revision: 3 }).kvs).toEqual([])
    expect(t.get("c", { revision: -1 }).kvs).toEqual(["c=0@4/5/v2"])
    expect(t.getErr("c", { revision: 7 })).toEqual({ _tag: "FutureRevision", requestedRevision: 7, currentRevision: 6 })
    t.ok({ compaction: { revision: 5 } })
    expect(t.get("c", { revision: 5 }).kvs).toEqual(["c=0@4/5/v2"])
    expect(t.getErr("c", { revision: 4 })).toEqual({ _tag: "Compacted", requestedRevision: 4, compactRevision: 5 })
  })
})

describe("put", () => {
  it("prev_kv returns the replaced version, none for a new key", () => {
    const t = setup()
    expect(t.put("a", "1", { prevKv: true }).ok).toEqual({ put: {} })
    const r = t.put("a", "2", { prevKv: true }).ok
    expect("put" in r && r.put.prevKv !== undefined ? show(r.put.prevKv) : "").toBe("a=1@2/2/v1")
  })

  it("ignore_value and ignore_lease keep the current value / lease (etcd 3.4.23)", () => {
    const t = setup({ leaseExists: (id) => id === 0x1234n })
    t.put("l", "x", { lease: LeaseId(0x1234n) })
    t.put("l", "y", { ignoreLease: true })
    expect(t.get("l").kvs).toEqual(["l=y@2/3/v2 L4660"])
    // A put without a lease detaches the key from its lease.
    t.put("l", "", { ignoreValue: true })
    expect(t.get("l").kvs).toEqual(["l=y@2/4/v3"])
  })

  it("ignore_value / ignore_lease on a missing key fail with KeyNotFound and change nothing", () => {
    const t = setup()
    expect(t.err({ put: { key: b("nokey"), value: b(""), ignoreValue: true } })).toEqual({ _tag: "KeyNotFound" })
    expect(t.err({ put: { key: b("nokey"), value: b(""), ignoreLease: true } })).toEqual({ _tag: "KeyNotFound" })
    expect(t.store().currentRevision()).toBe(1)
    // The failed entries are still applied: the consistent index moved.
    expect(t.store().consistentIndex()).toBe(2)
  })

  it("an unknown lease fails with LeaseNotFound; by default only lease 0 exists", () => {
    const t = setup()
    expect(t.err({ put: { key: b("k"), value: b("v"), lease: LeaseId(99n) } })).toEqual({ _tag: "LeaseNotFound", leaseId: 99n })
    expect(t.put("k", "v", { lease: LeaseId(0n) }).revision).toBe(2)
    let known = false
    const u = setup({ leaseExists: (id) => known && id === 7n })
    expect(u.err({ put: { key: b("k"), value: b("v"), lease: LeaseId(7n) } })._tag).toBe("LeaseNotFound")
    known = true
    expect(u.put("k", "v", { lease: LeaseId(7n) }).revision).toBe(2)
  })
})

describe("delete range", () => {
  it("deletes a range with prev_kvs and a deleted count", () => {
    const t = setup()
    t.put("a", "1")
    t.put("b", "2")
    t.put("c", "3")
    const r = t.ok({ deleteRange: { key: b("a"), rangeEnd: b("c"), prevKv: true } })
    expect(r.revision).toBe(5)
    expect("deleteRange" in r.ok && r.ok.deleteRange.deleted).toBe(2)
    expect("deleteRange" in r.ok && r.ok.deleteRange.prevKvs.map(show)).toEqual(["a=1@2/2/v1", "b=2@3/3/v1"])
    expect(t.del(ZERO, ZERO).ok).toEqual({ deleteRange: { deleted: 1, prevKvs: [] } })
    expect(t.get(ZERO, { rangeEnd: ZERO }).count).toBe(0)
  })

  it("reports events with the deleted version", () => {
    const t = setup()
    t.put("a", "1")
    const r = t.del("a")
    expect(r.events.map((e) => `${e.type} ${show(e.kv)} prev ${e.prevKv ? show(e.prevKv) : "-"}`)).toEqual([
      "DELETE a=@0/3/v0 prev a=1@2/2/v1"
    ])
  })
})

describe("txn", () => {
  it("compares on a missing key: VALUE is false, VERSION/CREATE/MOD/LEASE compare with 0 (etcd 3.4.23)", () => {
    const t = setup()
    const table: Array<[Compare, boolean]> = [
      [cmp("nokey", "VALUE", "EQUAL", ""), false],
      [cmp("nokey", "VALUE", "NOT_EQUAL", "x"), false],
      [cmp("nokey", "VERSION", "EQUAL", 0), true],
      [cmp("nokey", "CREATE", "EQUAL", 0), true],
      [cmp("nokey", "MOD", "EQUAL", 0), true],
      [cmp("nokey", "LEASE", "EQUAL", 0n), true],
      [cmp("nokey", "VERSION", "LESS", 1), true],
      [cmp("nokey", "VERSION", "GREATER", 0), false]
    ]
    for (const [c, want] of table) {
      const r = t.ok(txn({ compare: [c] }))
      expect("txn" in r.ok && r.ok.txn.succeeded, `${c.target} ${c.result}`).toBe(want)
    }
    expect(t.store().currentRevision()).toBe(1)
  })

  it("compares on an existing key, each target and result", () => {
    const t = setup({ leaseExists: () => true })
    t.put("k", "m", { lease: LeaseId(5n) }) // 2
    t.put("k", "m", { lease: LeaseId(5n) }) // 3: create 2, mod 3, version 2
    const table: Array<[Compare, boolean]> = [
      [cmp("k", "VALUE", "EQUAL", "m"), true],
      [cmp("k", "VALUE", "GREATER", "a"), true],
      [cmp("k", "VALUE", "LESS", "z"), true],
      [cmp("k", "VALUE", "NOT_EQUAL", "m"), false],
      [cmp("k", "VERSION", "EQUAL", 2), true],
      [cmp("k", "CREATE", "EQUAL", 2), true],
      [cmp("k", "MOD", "GREATER", 2), true],
      [cmp("k", "MOD", "LESS", 3), false],
      [cmp("k", "LEASE", "EQUAL", 5n), true],
      [cmp("k", "LEASE", "GREATER", 4n), true]
    ]
    for (const [c, want] of table) {
      const r = t.ok(txn({ compare: [c] }))
      expect("txn" in r.ok && r.ok.txn.succeeded, `${c.target} ${c.result}`).toBe(want)
    }
  })

  it("compares over a range need every key to match; an empty range compares zero values (etcd 3.4.23)", () => {
    const t = setup()
    t.put("sa", "1")
    t.put("sa", "1")
    t.put("sb", "1")
    const succeeded = (c: Compare) => {
      const r = t.ok(txn({ compare: [c] }))
      return "txn" in r.ok && r.ok.txn.succeeded
    }
    expect(succeeded(cmp("s", "VERSION", "GREATER", 0, "t"))).toBe(true)
    expect(succeeded(cmp("s", "VERSION", "GREATER", 1, "t"))).toBe(false)
    expect(succeeded(cmp("x", "VERSION", "LESS", 1, "y"))).toBe(true)
    expect(succeeded(cmp("s", "VALUE", "EQUAL", "1", ZERO))).toBe(true)
  })

  it("reads inside a txn see its earlier writes; the revision moves once (etcd 3.4.23)", () => {
    const t = setup()
    t.put("a", "1")
    const r = t.ok(txn({
      compare: [cmp("a", "VALUE", "EQUAL", "1")],
      success: [
        opPut("t1", "1", { prevKv: true }),
        opGet("t1"),
        opPut("t2", "2"),
        opGet("t", { rangeEnd: "u" }),
        opDel("t0", undefined),
        opGet("t", { rangeEnd: "u", revision: 2 })
      ]
    }))
    expect(r.revision).toBe(3)
    const resps = "txn" in r.ok ? r.ok.txn.responses : []
    expect(resps[0]).toEqual({ responsePut: {}, revision: 3 })
    expect("responseRange" in resps[1]! && resps[1].responseRange.kvs.map(show)).toEqual(["t1=1@3/3/v1"])
    expect("responseRange" in resps[3]! && resps[3].responseRange.kvs.map(show)).toEqual(["t1=1@3/3/v1", "t2=2@3/3/v1"])
    // Each op's own header revision, as etcd fills it.
    expect(resps.map((x) => ("revision" in x ? x.revision : undefined))).toEqual([3, 3, 3, 3, 3, 3])
    expect(resps[4]).toEqual({ responseDeleteRange: { deleted: 0, prevKvs: [] }, revision: 3 })
    expect("responseRange" in resps[5]! && resps[5].responseRange.count).toBe(0)
    expect(r.events.map((e) => show(e.kv))).toEqual(["t1=1@3/3/v1", "t2=2@3/3/v1"])
  })

  it("a txn that only reads, or whose compare fails into reads, keeps the revision", () => {
    const t = setup()
    t.put("a", "1")
    const r = t.ok(txn({ compare: [cmp("a", "VALUE", "EQUAL", "2")], success: [opPut("x", "1")], failure: [opGet("a")] }))
    expect(r.revision).toBe(2)
    expect("txn" in r.ok && r.ok.txn.succeeded).toBe(false)
    expect(t.store().currentRevision()).toBe(2)
    // A txn whose delete finds nothing changes nothing either (etcd 3.4.23).
    expect(t.ok(txn({ success: [opDel("zzz"), opGet("a")] })).revision).toBe(2)
  })

  it("nested txns follow their own compares, depth first", () => {
    const t = setup()
    t.put("a", "1")
    const r = t.ok(txn({
      success: [
        opTxn({ compare: [cmp("a", "VALUE", "EQUAL", "1")], success: [opPut("x", "then")], failure: [opPut("x", "else")] }),
        opTxn({
          compare: [cmp("a", "VALUE", "EQUAL", "no")],
          success: [opPut("y", "then")],
          failure: [opTxn({ success: [opPut("z", "deep")] }), opPut("y", "else")]
        }),
        opTxn({ compare: [cmp("x", "VERSION", "EQUAL", 0)], success: [opPut("w", "x was missing")] })
      ]
    }))
    expect(r.revision).toBe(3)
    expect(t.get("a", { rangeEnd: "z\xff" }).kvs).toEqual([
      "a=1@2/2/v1",
      "w=x was missing@3/3/v1",
      "x=then@3/3/v1",
      "y=else@3/3/v1",
      "z=deep@3/3/v1"
    ])
    const resps = "txn" in r.ok ? r.ok.txn.responses : []
    expect(resps.map((x) => "responseTxn" in x && x.responseTxn.succeeded)).toEqual([true, false, true])
  })

  it("checks ranges on the taken path against the store before the txn (etcd 3.4.23)", () => {
    const t = setup()
    t.put("a", "1")
    // Revision 3 is the txn's own revision: still a future revision for the check.
    expect(t.err(txn({ success: [opPut("t4", "1"), opGet("t4", { revision: 3 })] }))._tag).toBe("FutureRevision")
    // A negative revision below the compact revision (-1 before any compaction) is compacted.
    expect(t.err(txn({ success: [opGet("a", { revision: -5 })] }))).toEqual({
      _tag: "Compacted",
      requestedRevision: -5,
      compactRevision: -1
    })
    expect("ok" in t.apply(txn({ success: [opGet("a", { revision: -1 })] }))).toBe(true)
    t.ok({ compaction: { revision: 2 } })
    expect(t.err(txn({ success: [opGet("a", { revision: -1 })] }))._tag).toBe("Compacted")
    // The branch not taken is not checked.
    expect("ok" in t.apply(txn({ success: [opGet("a")], failure: [opGet("a", { revision: 99 })] }))).toBe(true)
    expect(t.store().currentRevision()).toBe(2)
  })

  it("checks puts on the taken path: lease and ignore_value before any write", () => {
    const t = setup()
    expect(t.err(txn({ success: [opPut("a", "1"), opPut("b", "1", { lease: LeaseId(9n) })] }))._tag).toBe("LeaseNotFound")
    expect(t.err(txn({ success: [opPut("a", "1"), opPut("b", "", { ignoreValue: true })] }))._tag).toBe("KeyNotFound")
    expect(t.store().currentRevision()).toBe(1)
    expect(t.backend.size("key")).toBe(0)
    expect("ok" in t.apply(txn({ compare: [cmp("a", "VERSION", "EQUAL", 1)], success: [opPut("b", "1", { lease: LeaseId(9n) })] })))
      .toBe(true)
  })

  it("fails and undoes a txn whose put ignores the value of a key it deleted (etcd 3.4.23 panics here)", () => {
    const t = setup()
    t.put("t1", "1")
    t.put("t2", "2")
    const before = t.backend.clone()
    // checkIntervals lets a delete with range_end "\0" pass next to a put.
    const req = txn({ success: [opDel("t", ZERO), opPut("t1", "", { ignoreValue: true })] })
    expect(validateWrite(req, 128)).toBeUndefined()
    expect(t.err(req)).toEqual({ _tag: "KeyNotFound" })
    expect(t.store().currentRevision()).toBe(3)
    expect(t.get("t", { rangeEnd: "u" }).kvs).toEqual(["t1=1@2/2/v1", "t2=2@3/3/v1"])
    expect(t.backend.range("key", new Uint8Array(), undefined)).toEqual(before.range("key", new Uint8Array(), undefined))
    // The same shape with a plain put works (etcd 3.4.23).
    t.ok(txn({ success: [opDel("t", ZERO), opPut("t1", "z")] }))
    expect(t.get("t", { rangeEnd: "u" }).kvs).toEqual(["t1=z@4/4/v1"])
  })
})

describe("validation before proposing (etcd v3rpc)", () => {
  const put = (key: string): RequestOp => opPut(key, "v")
  const table: Array<[string, WriteRequest, EtcdErrorData | undefined]> = [
    ["empty put key", { put: { key: b(""), value: b("x") } }, { _tag: "KeyNotProvided" }],
    ["empty delete key", { deleteRange: { key: b("") } }, { _tag: "KeyNotProvided" }],
    ["value with ignore_value", { put: { key: b("k"), value: b("v"), ignoreValue: true } }, {
      _tag: "InvalidRequest",
      message: "etcdserver: value is provided"
    }],
    ["lease with ignore_lease", { put: { key: b("k"), value: b(""), ignoreLease: true, lease: LeaseId(1n) } }, {
      _tag: "InvalidRequest",
      message: "etcdserver: lease is provided"
    }],
    ["empty compare key", txn({ compare: [cmp("", "VERSION", "EQUAL", 0)] }), { _tag: "KeyNotProvided" }],
    ["empty key in a nested range", txn({ success: [opTxn({ failure: [opGet("")] })] }), { _tag: "KeyNotProvided" }],
    ["129 ops", txn({ success: Array.from({ length: 129 }, (_, i) => put(`k${i}`)) }), { _tag: "TooManyOps", ops: 129, maxOps: 128 }],
    ["128 ops", txn({ success: Array.from({ length: 128 }, (_, i) => put(`k${i}`)) }), undefined],
    ["nested budget", txn({ success: [...Array.from({ length: 100 }, (_, i) => put(`k${i}`)), opTxn({ success: Array.from({ length: 29 }, (_, i) => put(`n${i}`)) })] }), {
      _tag: "TooManyOps",
      ops: 29,
      maxOps: 27
    }],
    ["put twice", txn({ success: [put("x"), put("x")] }), { _tag: "DuplicateKey" }],
    ["put and delete", txn({ success: [opDel("x"), put("x")] }), { _tag: "DuplicateKey" }],
    ["put inside a deleted range", txn({ success: [opDel("w", "y"), opTxn({ success: [put("x")] })] }), { _tag: "DuplicateKey" }],
    ["put then nested delete", txn({ success: [put("x"), opTxn({ success: [opDel("x")] })] }), { _tag: "DuplicateKey" }],
    ["nested delete then nested put", txn({ success: [opTxn({ success: [opDel("x")] }), opTxn({ success: [put("x")] })] }), {
      _tag: "DuplicateKey"
    }],
    ["nested put then nested delete", txn({ success: [opTxn({ success: [put("x")], failure: [put("x")] }), opTxn({ success: [opDel("x")] })] }), undefined],
    ["same key in then and else", txn({ success: [opTxn({ success: [put("x")], failure: [put("x")] })] }), undefined],
    ["put in success and in failure", txn({ success: [put("x")], failure: [put("x")] }), undefined],
    ["delete twice", txn({ success: [opDel("x"), opDel("x")] }), undefined],
    ["from-key delete and put", txn({ success: [opDel("t", ZERO), put("t1")] }), undefined],
    ["inverted range delete and put", txn({ success: [opDel("b", "a"), put("a")] }), undefined],
    ["put and get", txn({ success: [put("x"), opGet("x")] }), undefined],
    ["compaction", { compaction: { revision: 5 } }, undefined]
  ]
  it.each(table)("%s", (_name, req, want) => {
    expect(validateWrite(req, 128)).toEqual(want)
  })

  it("validateRange", () => {
    expect(validateRange({ key: b("") })).toEqual({ _tag: "KeyNotProvided" })
    expect(validateRange({ key: b("a"), sortOrder: "SIDEWAYS" as "NONE" })).toEqual({
      _tag: "InvalidRequest",
      message: "etcdserver: invalid sort option"
    })
    expect(validateRange({ key: b("a"), sortTarget: "VALUE", sortOrder: "DESCEND" })).toBeUndefined()
  })
})

describe("compaction", () => {
  it("compact 0 on a fresh store succeeds once (etcd 3.4.23)", () => {
    const t = setup()
    expect(t.ok({ compaction: { revision: 0 } }).revision).toBe(1)
    expect(t.err({ compaction: { revision: 0 } })).toEqual({ _tag: "Compacted", requestedRevision: 0, compactRevision: 0 })
  })

  it("fails at or below the compact revision and above the current one (etcd 3.4.23)", () => {
    const t = setup()
    t.put("a", "1")
    t.put("a", "2")
    expect(t.err({ compaction: { revision: 4 } })).toEqual({ _tag: "FutureRevision", requestedRevision: 4, currentRevision: 3 })
    expect(t.ok({ compaction: { revision: 3 } }).revision).toBe(3)
    expect(t.err({ compaction: { revision: 3 } })._tag).toBe("Compacted")
    expect(t.err({ compaction: { revision: 2 } })._tag).toBe("Compacted")
    expect(t.store().compactRevision()).toBe(3)
  })

  it("removes every record below the compact revision but each key's newest", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.put("a", "2") // 3
    t.put("b", "1") // 4
    t.del("b") // 5 (t)
    t.put("c", "1") // 6
    t.del("c") // 7 (t)
    t.put("a", "3") // 8
    t.ok({ compaction: { revision: 7 } })
    const revs = () => t.backend.range("key", new Uint8Array(), undefined).map((e) => bytesToRev(e.key).main + (isTombstone(e.key) ? "t" : ""))
    // The apply dropped them from the index only; the records go in background batches.
    expect(revs()).toEqual(["2", "3", "4", "5t", "6", "7t", "8"])
    expect(t.get("a", { revision: 7 }).kvs).toEqual(["a=2@2/3/v2"])
    expect(t.store().pendingCompaction()).toBe(7)
    t.finishCompaction()
    expect(t.store().pendingCompaction()).toBeUndefined()
    // a keeps 3 (newest <= 7) and 8; the tombstones 5 and 7 go (etcd 3.4/3.5: also the one
    // at the compact revision).
    expect(revs()).toEqual(["3", "8"])
    expect(t.get("a", { revision: 7 }).kvs).toEqual(["a=2@2/3/v2"])
    expect(t.get(ZERO, { rangeEnd: ZERO, revision: 7 }).kvs).toEqual(["a=2@2/3/v2"])
    t.ok({ compaction: { revision: 8 } })
    t.finishCompaction()
    expect(revs()).toEqual(["8"])
    expect(t.get("a").kvs).toEqual(["a=3@2/8/v3"])
    expect([...t.store().unsafeIndex().keyIndexes()].map((k) => k.key)).toEqual(["a"])
  })

  it("keeps a key deleted and put again in one txn when compacting at that revision", () => {
    // etcd 3.4.23 serves e after this sequence; etcd 3.6's tombstone rule would lose it.
    const t = setup()
    t.put("e", "1") // 2
    t.ok(txn({ success: [opDel("a", ZERO), opPut("e", "2")] })) // 3: e deleted (3.0), put (3.1)
    t.put("a", "") // 4
    t.put("a", "") // 5
    t.ok({ compaction: { revision: 3 } })
    expect(t.get("e").kvs).toEqual(["e=2@3/3/v1"])
    expect(t.reopen().currentRevision()).toBe(5)
    expect(t.get("e").kvs).toEqual(["e=2@3/3/v1"])
  })

  it("deletes in batches of the limit, oldest first; a later compaction restarts the scan with its revision", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.put("a", "2") // 3
    t.put("b", "1") // 4
    t.put("b", "2") // 5
    t.put("a", "3") // 6
    const revs = () => t.backend.range("key", new Uint8Array(), undefined).map((e) => bytesToRev(e.key).main)
    t.ok({ compaction: { revision: 5 } }) // keeps a@3 and b@5
    // The first batch reads 2, 3 and deletes 2; a full batch, so not done.
    expect(t.store().compactBatch(t.backend, 2)).toEqual({ revision: 5, scanned: 2, deleted: 1, done: false })
    expect(revs()).toEqual([3, 4, 5, 6])
    // A compaction at 6 while that one runs: a@6 and b@5 stay, a@3 goes; the scan starts over.
    t.ok({ compaction: { revision: 6 } })
    expect(t.store().pendingCompaction()).toBe(6)
    expect(t.store().compactBatch(t.backend, 2)).toEqual({ revision: 6, scanned: 2, deleted: 2, done: false })
    expect(t.store().compactBatch(t.backend, 2)).toEqual({ revision: 6, scanned: 2, deleted: 0, done: false })
    // Fewer records than the limit left (none): the last batch writes finishedCompactRev.
    expect(t.backend.get("meta", b("finishedCompactRev"))).toBeUndefined()
    expect(t.store().compactBatch(t.backend, 2)).toEqual({ revision: 6, scanned: 0, deleted: 0, done: true })
    expect(revs()).toEqual([5, 6])
    expect(t.store().compactBatch(t.backend, 2)).toEqual({ revision: undefined, scanned: 0, deleted: 0, done: true })
    expect(bytesToRev(t.backend.get("meta", b("finishedCompactRev"))!).main).toBe(6)
  })

  it("a restart with a compaction not finished compacts the rebuilt index again and resumes the deletion (etcd restore)", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.put("b", "1") // 3
    t.del("a") // 4 (t)
    t.put("a", "2") // 5: a new generation
    t.put("b", "2") // 6
    t.put("b", "3") // 7
    t.ok({ compaction: { revision: 6 } }) // keeps a@5 and b@6
    t.store().compactBatch(t.backend, 2) // deletes 2 and 3
    const before = [6, 7].map((rev) => t.get(ZERO, { rangeEnd: ZERO, revision: rev }).kvs)
    // The crash: the 4(t) of a is still there, its creating put 2 is gone.
    const restored = t.reopen()
    expect(restored.compactRevision()).toBe(6)
    expect(restored.pendingCompaction()).toBe(6)
    expect([6, 7].map((rev) => t.get(ZERO, { rangeEnd: ZERO, revision: rev }).kvs)).toEqual(before)
    expect(before[0]).toEqual(["a=2@5/5/v1", "b=2@3/6/v2"])
    expect(t.getErr("a", { revision: 5 })).toEqual({ _tag: "Compacted", requestedRevision: 5, compactRevision: 6 })
    t.finishCompaction(1)
    expect(t.backend.range("key", new Uint8Array(), undefined).map((e) => bytesToRev(e.key).main)).toEqual([5, 6, 7])
    // Versions and create revisions continue from the right generation.
    t.put("a", "3")
    expect(t.get("a").kvs).toEqual(["a=3@5/8/v2"])
  })

  it("reads of the key bucket leave out records waiting for deletion (watch history, HashKV)", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.ok(txn({ success: [opPut("b", "1"), opDel("a")] })) // 3: b put (3.0), a deleted (3.1)
    t.ok({ compaction: { revision: 3 } }) // drops a@2 and the tombstone 3.1
    const show1 = (evs: ReadonlyArray<{ type: string; kv: KeyValue }>) => evs.map((e) => `${e.type} ${show(e.kv)}`)
    // The raw bucket still holds the tombstone; the store's view is the finished one.
    expect(show1(unsafeReadEvents(t.backend, 3, 3))).toEqual(["PUT b=1@3/3/v1", "DELETE a=@0/3/v0"])
    expect(show1(t.store().unsafeReadEvents(t.backend, 3, 3))).toEqual(["PUT b=1@3/3/v1"])
    const live = () => t.backend.range("key", new Uint8Array(), undefined).filter((r) => t.store().isLiveRecord(r.key, r.value)).length
    expect(live()).toBe(1)
    t.finishCompaction()
    expect(show1(unsafeReadEvents(t.backend, 3, 3))).toEqual(["PUT b=1@3/3/v1"])
    expect(t.backend.size("key")).toBe(1)
    expect(live()).toBe(1)
  })

  it("persists the compact revision in meta: scheduled when applied, finished after the last batch (etcd)", () => {
    const t = setup()
    t.put("a", "1")
    t.ok({ compaction: { revision: 2 } })
    expect(bytesToRev(t.backend.get("meta", b("scheduledCompactRev"))!).main).toBe(2)
    expect(t.backend.get("meta", b("finishedCompactRev"))).toBeUndefined()
    t.finishCompaction()
    expect(bytesToRev(t.backend.get("meta", b("finishedCompactRev"))!).main).toBe(2)
    expect(bytesToRev(t.backend.get("meta", b("scheduledCompactRev"))!).main).toBe(2)
  })
})

describe("apply index and restore", () => {
  it("re-applying an index <= consistentIndex is a no-op", () => {
    const t = setup()
    t.put("a", "1")
    expect(t.store().consistentIndex()).toBe(1)
    const again = t.store().apply(t.backend, Index(1), { put: { key: b("a"), value: b("dup") } })
    expect(again).toEqual({ skipped: true })
    expect(t.store().apply(t.backend, Index(0), { compaction: { revision: 2 } })).toEqual({ skipped: true })
    expect(t.get("a").kvs).toEqual(["a=1@2/2/v1"])
    // Indexes may skip (entries for other services), never go back.
    expect("ok" in t.store().apply(t.backend, Index(10), { put: { key: b("a"), value: b("2") } })).toBe(true)
    expect(t.store().apply(t.backend, Index(9), { put: { key: b("a"), value: b("3") } })).toEqual({ skipped: true })
    expect(t.reopen().consistentIndex()).toBe(10)
    // Entries without a KV effect move the index too.
    expect(t.store().advanceConsistentIndex(t.backend, Index(12))).toBe(true)
    expect(t.store().advanceConsistentIndex(t.backend, Index(12))).toBe(false)
    expect(t.store().apply(t.backend, Index(11), { put: { key: b("a"), value: b("4") } })).toEqual({ skipped: true })
    expect(t.reopen().consistentIndex()).toBe(12)
    expect(t.get("a").kvs).toEqual(["a=2@2/3/v2"])
  })

  it("restore rebuilds the same store, with tombstones and generations", () => {
    const t = setup()
    t.put("a", "1")
    t.put("b", "1")
    t.del("a")
    t.put("a", "2")
    t.ok(txn({ success: [opPut("c", "1"), opDel("b"), opPut("d", "1")] }))
    const live = t.store()
    const all = (at: number) => t.get(ZERO, { rangeEnd: ZERO, revision: at })
    const before = [1, 2, 3, 4, 5, 6].map(all)
    const restored = t.reopen()
    expect(restored.currentRevision()).toBe(live.currentRevision())
    expect(restored.consistentIndex()).toBe(5)
    expect([1, 2, 3, 4, 5, 6].map(all)).toEqual(before)
    expect(t.put("b", "2").revision).toBe(7)
    expect(t.get("b").kvs).toEqual(["b=2@7/7/v1"])
  })

  it("restore after compaction keeps the compact revision, create revisions and versions", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.put("a", "2") // 3
    t.put("b", "1") // 4
    t.del("b") // 5
    t.put("a", "3") // 6
    t.ok({ compaction: { revision: 5 } })
    const restored = t.reopen()
    expect(restored.compactRevision()).toBe(5)
    expect(restored.currentRevision()).toBe(6)
    expect(t.get("a", { revision: 5 }).kvs).toEqual(["a=2@2/3/v2"])
    expect(t.get("a").kvs).toEqual(["a=3@2/6/v3"])
    expect(t.getErr("a", { revision: 4 })).toEqual({ _tag: "Compacted", requestedRevision: 4, compactRevision: 5 })
    expect(t.put("a", "4").ok).toEqual({ put: {} })
    expect(t.get("a").kvs).toEqual(["a=4@2/7/v4"])
    t.ok({ compaction: { revision: 7 } })
    expect(t.get(ZERO, { rangeEnd: ZERO }).kvs).toEqual(["a=4@2/7/v4"])
  })

  it("restore never moves the revision back when the newest records were compacted", () => {
    const t = setup()
    t.ok({ compaction: { revision: 0 } })
    expect(t.reopen().currentRevision()).toBe(1)
    const u = setup()
    u.put("a", "1")
    u.del("a") // 3 (t)
    u.ok({ compaction: { revision: 3 } })
    u.finishCompaction()
    u.put("b", "1") // 4
    u.del("b") // 5 (t)
    u.ok({ compaction: { revision: 5 } })
    u.finishCompaction()
    // No record is left at all; the revision stays 5.
    expect(u.backend.size("key")).toBe(0)
    expect(u.reopen().currentRevision()).toBe(5)
  })

  it("unsafeReadEvents replays the key bucket as events", () => {
    const t = setup()
    t.put("a", "1") // 2
    t.ok(txn({ success: [opPut("b", "1"), opDel("a")] })) // 3
    const evs = unsafeReadEvents(t.backend, 2, 3).map((e) => `${e.type} ${show(e.kv)}`)
    expect(evs).toEqual(["PUT a=1@2/2/v1", "PUT b=1@3/3/v1", "DELETE a=@0/3/v0"])
    expect(unsafeReadEvents(t.backend, 3, 3).length).toBe(2)
  })
})

describe("codecs", () => {
  it("kv-codec round-trips boundary values", () => {
    const leases = [0n, 1n, 127n, 128n, (1n << 32n), (1n << 53n), (1n << 63n) - 1n, -1n, -(1n << 63n)]
    const nums = [0, 1, 127, 128, 2 ** 32, Number.MAX_SAFE_INTEGER]
    for (const lease of leases) {
      for (const n of nums) {
        const kv: KeyValue = {
          key: b("k\0\xff"),
          value: b(n % 2 === 0 ? "" : "v\x80"),
          createRevision: n as KeyValue["createRevision"],
          modRevision: n as KeyValue["modRevision"],
          version: n,
          lease: LeaseId(lease)
        }
        expect(decodeKeyValue(encodeKeyValue(kv))).toEqual(kv)
      }
    }
    expect(encodeKeyValue({ key: b("k"), value: b("v"), createRevision: 2 as KeyValue["createRevision"], modRevision: 2 as KeyValue["modRevision"], version: 1, lease: LeaseId(0n) }).length).toBe(8)
  })

  it("revision keys sort as (main, sub) and mark tombstones", () => {
    const a = revToBytes({ main: 2 ** 40 + 1, sub: 3 })
    expect(a.length).toBe(17)
    expect(bytesToRev(a)).toEqual({ main: 2 ** 40 + 1, sub: 3 })
    const t = revToBytes({ main: 5, sub: 0 }, true)
    expect(t.length).toBe(18)
    expect(isTombstone(t)).toBe(true)
    expect(isTombstone(revToBytes({ main: 5, sub: 0 }))).toBe(false)
    expect(s(revToBytes({ main: 1, sub: 0 }))).toBe("\0\0\0\0\0\0\0\x01_\0\0\0\0\0\0\0\0")
  })
})
