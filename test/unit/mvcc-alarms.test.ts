/**
 * Alarms in the mvcc store (etcd apply.go applierV3backend.Alarm and applierV3Capped), the
 * gateway's quota cost (etcd quota.go), and the auto compactor's decisions (etcd
 * v3compactor revision.go / periodic.go), as tables.
 */
import { describe, expect, it } from "vitest"
import { Index } from "../../shared/ids.ts"
import type { AlarmRequest, WriteRequest } from "../../shared/kv.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"
import { KvStore } from "../../services/mvcc/core/store.ts"
import {
  parseCompactionRetention,
  parseGoDurationMs,
  PeriodicCompactor,
  RevisionCompactor
} from "../../services/mvcc/core/compactor.ts"
import { quotaBytes, quotaCost } from "../../services/gateway/maintenance.ts"

const enc = (s: string) => new TextEncoder().encode(s)

const setup = () => {
  let backend = new MemoryBackend()
  let store = KvStore.restore(backend)
  let index = 0
  const apply = (req: WriteRequest) => store.apply(backend, Index(++index), req)
  const alarm = (action: AlarmRequest["action"], memberId: bigint, type: AlarmRequest["alarm"]) => {
    const r = apply({ alarm: { action, memberId, alarm: type } })
    if (!("ok" in r) || !("alarm" in r.ok)) throw new Error("alarm failed")
    return r.ok.alarm.alarms.map((m) => `${m.memberId}:${m.alarm}`)
  }
  const reopen = () => {
    backend = backend.clone()
    store = KvStore.restore(backend)
  }
  return { apply, alarm, reopen, store: () => store }
}

const put = (k: string): WriteRequest => ({ put: { key: enc(k), value: enc("v") } })
const tag = (r: ReturnType<ReturnType<typeof setup>["apply"]>) => ("err" in r ? r.err._tag : "ok" in r ? `rev ${r.revision}` : "skipped")

describe("alarm store", () => {
  it("activates, lists, deactivates and survives a restart (etcd AlarmStore)", () => {
    const t = setup()
    expect(t.alarm("GET", 0n, "NONE")).toEqual([])
    expect(t.alarm("ACTIVATE", 7n, "NOSPACE")).toEqual(["7:NOSPACE"])
    // Activating again returns the recorded alarm.
    expect(t.alarm("ACTIVATE", 7n, "NOSPACE")).toEqual(["7:NOSPACE"])
    expect(t.alarm("ACTIVATE", 3n, "NOSPACE")).toEqual(["3:NOSPACE"])
    expect(t.alarm("ACTIVATE", 3n, "CORRUPT")).toEqual(["3:CORRUPT"])
    expect(t.alarm("GET", 0n, "NONE")).toEqual(["3:NOSPACE", "7:NOSPACE", "3:CORRUPT"])
    expect(t.alarm("GET", 0n, "CORRUPT")).toEqual(["3:CORRUPT"])
    t.reopen()
    expect(t.alarm("GET", 0n, "NONE")).toEqual(["3:NOSPACE", "7:NOSPACE", "3:CORRUPT"])
    // Deactivating an alarm that is not active returns nothing.
    expect(t.alarm("DEACTIVATE", 9n, "NOSPACE")).toEqual([])
    expect(t.alarm("DEACTIVATE", 7n, "NOSPACE")).toEqual(["7:NOSPACE"])
    t.reopen()
    expect(t.alarm("GET", 0n, "NOSPACE")).toEqual(["3:NOSPACE"])
    // Alarm requests never move the revision.
    expect(t.store().currentRevision()).toBe(1)
  })

  it("rejects what etcd's capped applier rejects while NOSPACE is active", () => {
    const t = setup()
    expect(tag(t.apply(put("a")))).toBe("rev 2")
    t.alarm("ACTIVATE", 1n, "NOSPACE")
    const txn = (success: any[], failure: any[] = []): WriteRequest =>
      ({ txn: { compare: [], success, failure } })
    const rows: Array<[string, WriteRequest, string]> = [
      ["put", put("b"), "NoSpace"],
      ["txn with a put in success", txn([{ requestPut: { key: enc("b"), value: enc("") } }]), "NoSpace"],
      ["txn with a put in failure only", txn([], [{ requestPut: { key: enc("b"), value: enc("") } }]), "NoSpace"],
      ["read-only txn", txn([{ requestRange: { key: enc("a") } }]), "rev 2"],
      // costTxn counts top-level puts only, so a nested put passes (etcd 3.4).
      ["txn with a put in a nested txn", txn([{ requestTxn: { compare: [], success: [{ requestPut: { key: enc("n"), value: enc("") } }], failure: [] } }]), "rev 3"],
      ["delete", { deleteRange: { key: enc("a") } }, "rev 4"],
      ["txn with a delete", txn([{ requestDeleteRange: { key: enc("n") } }]), "rev 5"],
      ["compaction", { compaction: { revision: 4 } }, "rev 5"]
    ]
    for (const [name, req, want] of rows) expect([name, tag(t.apply(req))]).toEqual([name, want])
    t.alarm("DEACTIVATE", 1n, "NOSPACE")
    expect(tag(t.apply(put("b")))).toBe("rev 6")
  })
})

describe("quota (etcd quota.go)", () => {
  it("charges 256 bytes plus key and value per put; a txn costs its larger branch's top-level puts", () => {
    const p = (k: string, v: string) => ({ requestPut: { key: enc(k), value: enc(v) } })
    expect(quotaCost(put("abc"))).toBe(256 + 3 + 1)
    expect(quotaCost({ deleteRange: { key: enc("a") } })).toBe(0)
    expect(quotaCost({ txn: { compare: [], success: [p("a", "1"), p("b", "22")], failure: [p("c", "")] } })).toBe(512 + 5)
    expect(quotaCost({ txn: { compare: [], success: [{ requestTxn: { compare: [], success: [p("a", "1")], failure: [] } }], failure: [] } })).toBe(0)
    expect(quotaBytes(0)).toBe(2 * 1024 ** 3)
    expect(quotaBytes(-1)).toBeUndefined()
    expect(quotaBytes(4096)).toBe(4096)
  })
})

describe("auto compaction decisions (etcd v3compactor)", () => {
  it("revision mode compacts at rev - retention, skipping <= 0, repeats, and non-leaders", () => {
    const c = new RevisionCompactor(10)
    expect(c.due(5, true)).toBeUndefined()
    expect(c.due(10, true)).toBeUndefined()
    expect(c.due(30, false)).toBeUndefined()
    expect(c.due(30, true)).toBe(20)
    c.done(20, "failed")
    expect(c.due(30, true)).toBe(20)
    c.done(20, "compacted")
    expect(c.due(30, true)).toBeUndefined()
    expect(c.due(31, true)).toBe(21)
  })

  it("periodic mode compacts at the revision of one period ago, then every min(period, 1h)", () => {
    // Period 10 s: a check every 1 s, a window of 11 revisions.
    const c = new PeriodicCompactor(10_000, 0)
    expect(c.checkIntervalMs()).toBe(1000)
    const decisions: Array<number | undefined> = []
    for (let t = 1; t <= 13; t++) {
      c.record(100 + t)
      const rev = c.due(t * 1000, true)
      decisions.push(rev)
      if (rev !== undefined) c.done(t * 1000, "ok")
    }
    // Nothing before 10 s; at 10 s the oldest recorded revision; then again after 10 s more.
    expect(decisions).toEqual([...Array(9).fill(undefined), 101, undefined, undefined, undefined])
    const long = new PeriodicCompactor(24 * 3600_000, 0)
    expect(long.checkIntervalMs()).toBe(360_000)
  })

  it("parses retention as etcd: hours or a Go duration (periodic), revisions (revision), 0 = off", () => {
    expect(parseCompactionRetention("periodic", "1")).toEqual({ mode: "periodic", periodMs: 3600_000 })
    expect(parseCompactionRetention("periodic", "30m")).toEqual({ mode: "periodic", periodMs: 1800_000 })
    expect(parseCompactionRetention("periodic", "0")).toBeUndefined()
    expect(parseCompactionRetention("revision", "1000")).toEqual({ mode: "revision", retention: 1000 })
    expect(parseCompactionRetention("revision", "0")).toBeUndefined()
    expect(parseCompactionRetention("periodic", "x")).toHaveProperty("error")
    expect(parseCompactionRetention("hourly", "1")).toHaveProperty("error")
    expect(parseGoDurationMs("1h30m")).toBe(5400_000)
    expect(parseGoDurationMs("100ms")).toBe(100)
    expect(parseGoDurationMs("1.5s")).toBe(1500)
    expect(parseGoDurationMs("5")).toBeUndefined()
  })
})
