/**
 * Model-based property test of the MVCC store: random sequences of put / delete / txn /
 * compaction / range / restart run against KvStore (over the in-memory backend) and against
 * a deliberately naive model that keeps a full copy of the key space for every revision.
 *
 * The model knows nothing of generations, tombstones or indexes; it encodes etcd's rules as
 * directly as possible (as documented in store.ts, range.ts and txn.ts), so a disagreement
 * points at the store. After every run the whole history still readable is
 * compared, and a store restored from the backend must equal the live one.
 *
 * A compaction's dropped records leave the backend in batches (KvStore.compactBatch), so the
 * sequences also hold "compact-batch" steps with small limits, interleaved with writes, reads
 * and restarts: a restart in the middle of that deletion must resume it and lose nothing (no
 * key comes back, no version or create revision changes), and the records the store counts as
 * live must always be exactly those the model says a finished compaction keeps.
 *
 * Runs: MVCC_PROP_RUNS (default 5000, about 4 s) sequences of up to 40 operations;
 * MVCC_PROP_SEED replays the seed a failure printed.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { Index, LeaseId } from "../../shared/ids.ts"
import type {
  Compare,
  KeyValue,
  RangeRequest,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  WriteRequest,
  WriteResponse
} from "../../shared/kv.ts"
import { MemoryBackend } from "../../services/mvcc/core/backend-memory.ts"
import { KvStore, type MvccEvent, validateRange, validateWrite } from "../../services/mvcc/core/store.ts"

const RUNS = Number(process.env.MVCC_PROP_RUNS ?? 5000)

const b = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}
const str = (x: Uint8Array): string => String.fromCharCode(...x)

// ---------------------------------------------------------------------------------------------
// The model: a map per revision.

interface MKv {
  readonly key: string
  readonly value: string
  readonly create: number
  readonly mod: number
  readonly version: number
  readonly lease: bigint
}
type State = Map<string, MKv>
type MErr = { err: string }

const existingLeases = new Set([1n, 2n])

const inRange = (k: string, key: string, end: string | undefined): boolean => {
  if (end === undefined || end === "") return k === key
  if (end === "\0") return k >= key
  return k >= key && k < end
}

const keysIn = (st: State, key: string, end: string | undefined): MKv[] =>
  [...st.values()].filter((kv) => inRange(kv.key, key, end)).sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0))

interface MRangeResp {
  kvs: MKv[]
  more: boolean
  count: number
}

class Model {
  /** history[r] is the key space at revision r (history[0] unused, history[1] empty). */
  history: State[] = [new Map(), new Map()]
  /** changes[r]: how many key changes (backend records) revision r wrote. */
  changes: number[] = [0, 0]
  compactRev = -1

  get rev(): number {
    return this.history.length - 1
  }

  current(): State {
    return this.history[this.rev]!
  }

  /** etcd range rules, spelled out on plain arrays. */
  range(r: MRange, curRev: number, cur: State): MRangeResp | MErr {
    let rev = r.revision
    if (rev > curRev) return { err: "FutureRevision" }
    if (rev <= 0) rev = curRev
    if (rev < this.compactRev) return { err: "Compacted" }
    const st = rev === curRev ? cur : this.history[rev]!
    const all = keysIn(st, r.key, r.rangeEnd)
    if (r.countOnly) return { kvs: [], more: false, count: all.length }
    const hasFilters = r.minMod !== 0 || r.maxMod !== 0 || r.minCreate !== 0 || r.maxCreate !== 0
    const defaultOrder = r.sortOrder === "NONE" || (r.sortTarget === "KEY" && r.sortOrder === "ASCEND")
    // etcd reads only limit + 1 keys when it will not re-sort or filter.
    let kvs = r.limit > 0 && defaultOrder && !hasFilters ? all.slice(0, r.limit + 1) : all
    kvs = kvs.filter((kv) =>
      !(r.maxMod !== 0 && kv.mod > r.maxMod) && !(r.minMod !== 0 && kv.mod < r.minMod) &&
      !(r.maxCreate !== 0 && kv.create > r.maxCreate) && !(r.minCreate !== 0 && kv.create < r.minCreate)
    )
    const order = r.sortTarget !== "KEY" && r.sortOrder === "NONE" ? "ASCEND" : r.sortOrder
    if (!(order === "NONE" || (r.sortTarget === "KEY" && order === "ASCEND"))) {
      const field = (kv: MKv): number | string =>
        r.sortTarget === "KEY" ? kv.key : r.sortTarget === "VERSION" ? kv.version : r.sortTarget === "CREATE" ? kv.create
        : r.sortTarget === "MOD" ? kv.mod : kv.value
      const cmp = (x: MKv, y: MKv) => (field(x) < field(y) ? -1 : field(x) > field(y) ? 1 : 0)
      kvs = [...kvs].sort(order === "ASCEND" ? cmp : (x, y) => cmp(y, x))
    }
    let more = false
    if (r.limit > 0 && kvs.length > r.limit) {
      kvs = kvs.slice(0, r.limit)
      more = true
    }
    if (r.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: "" }))
    return { kvs, more, count: all.length }
  }

  compare(c: MCompare, st: State): boolean {
    const kvs = keysIn(st, c.key, c.rangeEnd)
    const test = (kv: MKv | undefined): boolean => {
      let res: number
      if (c.target === "VALUE") {
        if (kv === undefined) return false
        res = kv.value < c.value ? -1 : kv.value > c.value ? 1 : 0
      } else if (c.target === "LEASE") {
        const l = kv?.lease ?? 0n
        res = l < BigInt(c.num) ? -1 : l > BigInt(c.num) ? 1 : 0
      } else {
        const v = kv === undefined ? 0 : c.target === "VERSION" ? kv.version : c.target === "CREATE" ? kv.create : kv.mod
        res = Math.sign(v - c.num)
      }
      return c.result === "EQUAL" ? res === 0 : c.result === "NOT_EQUAL" ? res !== 0 : c.result === "GREATER" ? res > 0 : res < 0
    }
    return kvs.length === 0 ? test(undefined) : kvs.every(test)
  }

  /** Applies one write; returns the response (in model terms) and the events. */
  apply(w: MWrite): { resp: unknown; events: string[] } | MErr {
    if (w.kind === "compact") {
      if (w.revision <= this.compactRev) return { err: "Compacted" }
      if (w.revision > this.rev) return { err: "FutureRevision" }
      this.compactRev = w.revision
      return { resp: "compacted", events: [] }
    }
    const work: State = new Map(this.current())
    const next = this.rev + 1
    const events: string[] = []
    const pre = this.current()
    const exec = (op: MOp): unknown | MErr => {
      switch (op.kind) {
        case "put": {
          const prev = work.get(op.key)
          if ((op.ignoreValue || op.ignoreLease) && prev === undefined) return { err: "KeyNotFound" }
          const kv: MKv = {
            key: op.key,
            value: op.ignoreValue ? prev!.value : op.value,
            lease: op.ignoreLease ? prev!.lease : op.lease,
            create: prev?.create ?? next,
            mod: next,
            version: (prev?.version ?? 0) + 1
          }
          work.set(op.key, kv)
          events.push(`PUT ${fmt(kv)} prev ${prev ? fmt(prev) : "-"}`)
          return { put: op.prevKv && prev ? fmt(prev) : null }
        }
        case "del": {
          const gone = keysIn(work, op.key, op.rangeEnd)
          for (const kv of gone) {
            work.delete(kv.key)
            events.push(`DELETE ${kv.key}@${next} prev ${fmt(kv)}`)
          }
          return { deleted: gone.length, prev: op.prevKv ? gone.map(fmt) : [] }
        }
        case "get": {
          const readRev = events.length > 0 ? next : this.rev
          const r = this.range(op.range, readRev, work)
          if ("err" in r) throw new Error("model: range inside txn failed after checks")
          return showRange(r)
        }
        case "txn":
          return execTxn(op)
      }
    }
    // Phase 1: the path of compares, on the store before the request.
    const path = (t: MTxn): boolean[] => {
      const ok = t.compares.every((c) => this.compare(c, pre))
      return [ok, ...(ok ? t.success : t.failure).flatMap((op) => (op.kind === "txn" ? path(op) : []))]
    }
    // Phase 2: checks on the path, on the store before the request.
    const check = (t: MTxn, taken: boolean): string | undefined => {
      for (const op of taken ? t.success : t.failure) {
        if (op.kind === "get") {
          const rv = op.range.revision
          if (rv !== 0 && rv > this.rev) return "FutureRevision"
          if (rv !== 0 && rv < this.compactRev) return "Compacted"
        } else if (op.kind === "put") {
          if (op.lease !== 0n && !existingLeases.has(op.lease)) return "LeaseNotFound"
          if ((op.ignoreValue || op.ignoreLease) && !pre.has(op.key)) return "KeyNotFound"
        } else if (op.kind === "txn") {
          const e = check(op, op.compares.every((c) => this.compare(c, pre)))
          if (e !== undefined) return e
        }
      }
      return undefined
    }
    const execTxn = (t: MTxn): unknown | MErr => {
      const taken = t.compares.every((c) => this.compare(c, pre))
      const out: unknown[] = []
      for (const op of taken ? t.success : t.failure) {
        const r = exec(op)
        if (r !== null && typeof r === "object" && "err" in r) return r
        out.push(r)
      }
      return { succeeded: taken, responses: out }
    }

    let resp: unknown
    if (w.kind === "txn") {
      void path(w)
      const e = check(w, w.compares.every((c) => this.compare(c, pre)))
      if (e !== undefined) return { err: e }
      resp = execTxn(w)
    } else {
      if (w.kind === "put") {
        if (w.lease !== 0n && !existingLeases.has(w.lease)) return { err: "LeaseNotFound" }
      }
      resp = exec(w)
    }
    if (resp !== null && typeof resp === "object" && "err" in resp) return resp as MErr
    if (events.length > 0) {
      this.history.push(work)
      this.changes.push(events.length)
    }
    return { resp, events }
  }
}

const fmt = (kv: MKv): string => `${kv.key}=${kv.value}@${kv.create}/${kv.mod}/v${kv.version}` + (kv.lease !== 0n ? `L${kv.lease}` : "")
const fmtKv = (kv: KeyValue): string =>
  `${str(kv.key)}=${str(kv.value)}@${kv.createRevision}/${kv.modRevision}/v${kv.version}` + (kv.lease !== 0n ? `L${kv.lease}` : "")
const showRange = (r: MRangeResp) => ({ kvs: r.kvs.map(fmt), more: r.more, count: r.count })

// ---------------------------------------------------------------------------------------------
// Operations, as generated, and their translation into requests.

interface MRange {
  key: string
  rangeEnd: string | undefined
  revision: number
  limit: number
  sortOrder: SortOrder
  sortTarget: SortTarget
  keysOnly: boolean
  countOnly: boolean
  minMod: number
  maxMod: number
  minCreate: number
  maxCreate: number
}
interface MCompare {
  key: string
  rangeEnd: string | undefined
  target: Compare["target"]
  result: Compare["result"]
  value: string
  num: number
}
type MOp =
  | { kind: "put"; key: string; value: string; lease: bigint; prevKv: boolean; ignoreValue: boolean; ignoreLease: boolean }
  | { kind: "del"; key: string; rangeEnd: string | undefined; prevKv: boolean }
  | { kind: "get"; range: MRange }
  | MTxn
interface MTxn {
  kind: "txn"
  compares: MCompare[]
  success: MOp[]
  failure: MOp[]
}
type MWrite = Exclude<MOp, { kind: "get" }> | { kind: "compact"; revision: number }
type Step = { kind: "write"; w: MWrite } | { kind: "range"; r: MRange } | { kind: "restart" } | { kind: "compact-batch"; limit: number }

const toRange = (r: MRange): RangeRequest => ({
  key: b(r.key),
  ...(r.rangeEnd === undefined ? {} : { rangeEnd: b(r.rangeEnd) }),
  revision: r.revision,
  limit: r.limit,
  sortOrder: r.sortOrder,
  sortTarget: r.sortTarget,
  keysOnly: r.keysOnly,
  countOnly: r.countOnly,
  minModRevision: r.minMod,
  maxModRevision: r.maxMod,
  minCreateRevision: r.minCreate,
  maxCreateRevision: r.maxCreate
})
const toCompare = (c: MCompare): Compare => ({
  key: b(c.key),
  ...(c.rangeEnd === undefined ? {} : { rangeEnd: b(c.rangeEnd) }),
  target: c.target,
  result: c.result,
  value: b(c.value),
  version: c.num,
  createRevision: c.num,
  modRevision: c.num,
  lease: LeaseId(BigInt(c.num))
})
const toTxn = (t: MTxn): TxnRequest => ({
  compare: t.compares.map(toCompare),
  success: t.success.map(toOp),
  failure: t.failure.map(toOp)
})
const toOp = (op: MOp): RequestOp => {
  switch (op.kind) {
    case "put":
      return { requestPut: { key: b(op.key), value: b(op.value), lease: LeaseId(op.lease), prevKv: op.prevKv, ignoreValue: op.ignoreValue, ignoreLease: op.ignoreLease } }
    case "del":
      return { requestDeleteRange: { key: b(op.key), ...(op.rangeEnd === undefined ? {} : { rangeEnd: b(op.rangeEnd) }), prevKv: op.prevKv } }
    case "get":
      return { requestRange: toRange(op.range) }
    case "txn":
      return { requestTxn: toTxn(op) }
  }
}
const toWrite = (w: MWrite): WriteRequest => {
  switch (w.kind) {
    case "compact":
      return { compaction: { revision: w.revision } }
    case "put": {
      const op = toOp(w)
      return { put: "requestPut" in op ? op.requestPut : (undefined as never) }
    }
    case "del": {
      const op = toOp(w)
      return { deleteRange: "requestDeleteRange" in op ? op.requestDeleteRange : (undefined as never) }
    }
    case "txn":
      return { txn: toTxn(w) }
  }
}

/** Store responses in the model's terms. */
const showResponseOp = (r: ResponseOp): unknown => {
  if ("responseRange" in r) return { kvs: r.responseRange.kvs.map(fmtKv), more: r.responseRange.more, count: r.responseRange.count }
  if ("responsePut" in r) return { put: r.responsePut.prevKv ? fmtKv(r.responsePut.prevKv) : null }
  if ("responseDeleteRange" in r) return { deleted: r.responseDeleteRange.deleted, prev: r.responseDeleteRange.prevKvs.map(fmtKv) }
  return { succeeded: r.responseTxn.succeeded, responses: r.responseTxn.responses.map(showResponseOp) }
}
const showWriteResponse = (r: WriteResponse): unknown => {
  if ("compaction" in r) return "compacted"
  if ("put" in r) return showResponseOp({ responsePut: r.put })
  if ("deleteRange" in r) return showResponseOp({ responseDeleteRange: r.deleteRange })
  if ("alarm" in r) return "alarm"
  return showResponseOp({ responseTxn: r.txn })
}
const showEvent = (e: MvccEvent): string =>
  e.type === "PUT"
    ? `PUT ${fmtKv(e.kv)} prev ${e.prevKv ? fmtKv(e.prevKv) : "-"}`
    : `DELETE ${str(e.kv.key)}@${e.kv.modRevision} prev ${e.prevKv ? fmtKv(e.prevKv) : "-"}`

// ---------------------------------------------------------------------------------------------
// Generators. A small key space makes collisions, generations and range overlaps common.

/**
 * Revisions at or above RELATIVE stand for "current revision - (r - RELATIVE)", resolved when
 * the step runs, so that reads and compactions often land on revisions that exist.
 */
const RELATIVE = 1_000_000
const resolveRev = (r: number, cur: number): number => (r >= RELATIVE ? cur - (r - RELATIVE) : r)
const resolveOp = (op: MOp, cur: number): MOp =>
  op.kind === "get" ? { ...op, range: { ...op.range, revision: resolveRev(op.range.revision, cur) } }
  : op.kind === "txn" ? { ...op, success: op.success.map((o) => resolveOp(o, cur)), failure: op.failure.map((o) => resolveOp(o, cur)) }
  : op
const resolveStep = (step: Step, cur: number): Step =>
  step.kind === "range" ? { kind: "range", r: { ...step.r, revision: resolveRev(step.r.revision, cur) } }
  : step.kind === "write" && step.w.kind === "compact" ? { kind: "write", w: { kind: "compact", revision: resolveRev(step.w.revision, cur) } }
  : step.kind === "write" ? { kind: "write", w: resolveOp(step.w as MOp, cur) as MWrite }
  : step

const keyArb = fc.constantFrom("a", "b", "c", "d", "e")
const startArb = fc.constantFrom("a", "b", "c", "d", "e", "\0", "b\0")
const endArb = fc.constantFrom<string | undefined>(undefined, undefined, "", "\0", "\0", "c", "d", "f", "f", "a", "c\0")
const valueArb = fc.constantFrom("", "x", "y", "z", "\xff")
const leaseArb = fc.constantFrom(0n, 0n, 0n, 1n, 2n, 3n)

const rangeArb: fc.Arbitrary<MRange> = fc.record({
  key: startArb,
  rangeEnd: endArb,
  revision: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 6 }).map((back) => RELATIVE + back) },
    { weight: 1, arbitrary: fc.integer({ min: -2, max: 22 }) }
  ),
  limit: fc.constantFrom(0, 0, -1, 1, 1, 2, 2, 3),
  sortOrder: fc.constantFrom<SortOrder>("NONE", "NONE", "ASCEND", "DESCEND"),
  sortTarget: fc.constantFrom<SortTarget>("KEY", "KEY", "VERSION", "CREATE", "MOD", "VALUE"),
  keysOnly: fc.boolean(),
  countOnly: fc.constantFrom(false, false, false, true),
  minMod: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -1, max: 20 }) }),
  maxMod: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -1, max: 20 }) }),
  minCreate: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 20 }) }),
  maxCreate: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 30 }))
})

const compareArb: fc.Arbitrary<MCompare> = fc.record({
  key: keyArb,
  rangeEnd: fc.constantFrom<string | undefined>(undefined, undefined, undefined, "\0", "d"),
  target: fc.constantFrom<Compare["target"]>("VALUE", "VERSION", "CREATE", "MOD", "LEASE"),
  result: fc.constantFrom<Compare["result"]>("EQUAL", "NOT_EQUAL", "GREATER", "LESS"),
  value: valueArb,
  num: fc.integer({ min: 0, max: 6 })
})

// ignore_value comes without a value and ignore_lease without a lease, or validation drops them.
const putArb = fc.record({
  key: keyArb,
  value: valueArb,
  lease: leaseArb,
  prevKv: fc.boolean(),
  mode: fc.constantFrom("plain", "plain", "plain", "plain", "plain", "plain", "ignoreValue", "ignoreLease")
}).map(({ mode, ...p }) => ({
  kind: "put" as const,
  ...p,
  value: mode === "ignoreValue" ? "" : p.value,
  lease: mode === "ignoreLease" ? 0n : p.lease,
  ignoreValue: mode === "ignoreValue",
  ignoreLease: mode === "ignoreLease"
}))
// Deletes are mostly of single keys, so the key space does not empty too often.
const delEndArb = fc.constantFrom<string | undefined>(undefined, undefined, undefined, undefined, undefined, "", "\0", "c", "d", "c\0")
const delArb = fc.record({ kind: fc.constant("del" as const), key: startArb, rangeEnd: delEndArb, prevKv: fc.boolean() })
const getArb = rangeArb.map((range) => ({ kind: "get" as const, range }))

const { txnArb } = fc.letrec<{ txnArb: MTxn; opArb: MOp }>((tie) => ({
  txnArb: fc.record({
    kind: fc.constant("txn" as const),
    compares: fc.array(compareArb, { maxLength: 2 }),
    success: fc.array(tie("opArb"), { maxLength: 4 }),
    failure: fc.array(tie("opArb"), { maxLength: 3 })
  }),
  opArb: fc.oneof({ depthSize: "small", maxDepth: 2, withCrossShrink: true }, putArb, delArb, getArb, tie("txnArb"))
}))

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: putArb.map((w) => ({ kind: "write" as const, w })) },
  { weight: 2, arbitrary: delArb.map((w) => ({ kind: "write" as const, w })) },
  { weight: 3, arbitrary: (txnArb as fc.Arbitrary<MTxn>).map((w) => ({ kind: "write" as const, w })) },
  {
    weight: 1,
    arbitrary: fc.oneof(fc.integer({ min: -1, max: 20 }), fc.integer({ min: -1, max: 5 }).map((back) => RELATIVE + back))
      .map((revision) => ({ kind: "write" as const, w: { kind: "compact" as const, revision } }))
  },
  { weight: 3, arbitrary: rangeArb.map((r) => ({ kind: "range" as const, r })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }).map((limit) => ({ kind: "compact-batch" as const, limit })) },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) }
)

// ---------------------------------------------------------------------------------------------

const errTag = (e: EtcdErrorData): string => e._tag

/** Every key at every readable revision, via the store and via the model. */
const checkHistory = (store: KvStore, backend: MemoryBackend, model: Model) => {
  expect(store.currentRevision()).toBe(model.rev)
  expect(store.compactRevision()).toBe(model.compactRev)
  for (let rev = Math.max(1, model.compactRev); rev <= model.rev; rev++) {
    const r = store.range(backend, { key: b("\0"), rangeEnd: b("\0"), revision: rev })
    if ("err" in r) throw new Error(`history read at ${rev} failed: ${r.err._tag}`)
    expect(r.ok.kvs.map(fmtKv), `revision ${rev}`).toEqual(keysIn(model.history[rev]!, "\0", "\0").map(fmt))
  }
  // The key space holds every record above the compact revision and, at or below it, only the
  // version of each key alive at the compact revision (etcd 3.4/3.5: no tombstones). The
  // backend holds exactly that once the compaction's deletion finished; before, the store
  // counts only those as live.
  const c = model.compactRev
  let records = c >= 1 ? model.history[c]!.size : 0
  for (let rev = Math.max(c + 1, 1); rev <= model.rev; rev++) records += model.changes[rev]!
  const all = backend.range("key", new Uint8Array(), undefined)
  expect(all.filter((r) => store.isLiveRecord(r.key, r.value)).length).toBe(records)
  if (store.pendingCompaction() === undefined) expect(backend.size("key")).toBe(records)
  else expect(store.pendingCompaction()).toBe(c)
}

/** Runs the pending compaction's deletion to its end, `limit` records a batch. */
const finishCompaction = (store: KvStore, backend: MemoryBackend, limit: number) => {
  for (let i = 0; i < 100_000; i++) if (store.compactBatch(backend, limit).done) return
  throw new Error("compaction did not finish")
}

const run = (steps: Step[]) => {
  const backend = new MemoryBackend()
  const leaseExists = (id: bigint) => existingLeases.has(id)
  let store = KvStore.restore(backend, { leaseExists })
  const model = new Model()
  let index = 0
  for (const generated of steps) {
    const step = resolveStep(generated, model.rev)
    if (step.kind === "restart") {
      const restored = KvStore.restore(backend.clone(), { leaseExists })
      expect(restored.consistentIndex()).toBe(store.consistentIndex())
      expect(restored.pendingCompaction()).toBe(store.pendingCompaction())
      store = KvStore.restore(backend, { leaseExists })
      checkHistory(store, backend, model)
      continue
    }
    if (step.kind === "compact-batch") {
      const r = store.compactBatch(backend, step.limit)
      expect(r.scanned).toBeLessThanOrEqual(step.limit)
      expect(r.done).toBe(store.pendingCompaction() === undefined)
      continue
    }
    if (step.kind === "range") {
      const req = toRange(step.r)
      if (validateRange(req) !== undefined) continue
      const got = store.range(backend, req)
      const want = model.range(step.r, model.rev, model.current())
      if ("err" in want) {
        expect("err" in got ? errTag(got.err) : "ok").toBe(want.err)
      } else {
        if ("err" in got) throw new Error(`range failed: ${got.err._tag}, model: ${JSON.stringify(showRange(want))}`)
        expect({ kvs: got.ok.kvs.map(fmtKv), more: got.ok.more, count: got.ok.count }).toEqual(showRange(want))
        expect(got.revision).toBe(model.rev)
      }
      continue
    }
    const req = toWrite(step.w)
    // Requests etcd rejects before proposing never reach the store.
    if (validateWrite(req, 128) !== undefined) continue
    const got = store.apply(backend, Index(++index), req)
    const want = model.apply(step.w)
    if ("skipped" in got) throw new Error("unexpected skip")
    if ("err" in want) {
      expect("err" in got ? errTag(got.err) : `ok ${JSON.stringify(showWriteResponse((got as { ok: WriteResponse }).ok))}`).toBe(want.err)
    } else {
      if ("err" in got) throw new Error(`apply failed: ${got.err._tag}, model: ${JSON.stringify(want.resp)}`)
      expect(showWriteResponse(got.ok)).toEqual(want.resp)
      expect(got.events.map(showEvent)).toEqual(want.events)
      expect(got.revision).toBe(model.rev)
    }
    expect(store.consistentIndex()).toBe(index)
  }
  checkHistory(store, backend, model)
  // A store rebuilt from the backend answers exactly like the live one, also while a
  // compaction's deletion is pending (the restored store resumes it).
  const restored = KvStore.restore(backend.clone(), { leaseExists })
  checkHistory(restored, backend, model)
  expect(restored.consistentIndex()).toBe(index)
  // Once the deletion finished, the backend holds exactly the key space.
  finishCompaction(store, backend, 3)
  checkHistory(store, backend, model)
  expect(backend.size("key")).toBe(backend.range("key", new Uint8Array(), undefined).filter((r) => store.isLiveRecord(r.key, r.value)).length)
  // And keeps going like it: one more write on each, on independent backend copies.
  const liveCopy = backend.clone()
  const restoredCopy = backend.clone()
  const w: WriteRequest = { txn: { compare: [], success: [{ requestPut: { key: b("a"), value: b("end") } }, { requestDeleteRange: { key: b("b"), rangeEnd: b("\0") } }], failure: [] } }
  const r1 = store.apply(liveCopy, Index(index + 1), w)
  const r2 = restored.apply(restoredCopy, Index(index + 1), w)
  expect(JSON.stringify(r2, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? str(v) : v)))
    .toBe(JSON.stringify(r1, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? str(v) : v)))
}

describe("KvStore against a naive model", () => {
  it(`agrees on ${RUNS} random histories`, () => {
    fc.assert(fc.property(fc.array(stepArb, { minLength: 1, maxLength: 40, size: "max" }), (steps) => run(steps)), {
      numRuns: RUNS,
      // A failure prints its seed; MVCC_PROP_SEED replays it.
      ...(process.env.MVCC_PROP_SEED === undefined ? {} : { seed: Number(process.env.MVCC_PROP_SEED) })
    })
  }, Math.max(30_000, RUNS * 5))
})
