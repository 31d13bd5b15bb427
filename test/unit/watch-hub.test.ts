/**
 * The watch hub (services/watch/core/hub.ts): table tests of each rule, then a property test of
 * etcd's watch guarantees against a model.
 *
 * The model is deliberately naive: the whole history as a list of revisions, and for each
 * watcher the events it must see = every event of every revision >= its start that matches its
 * key range and filters, in order. The hub is driven through a tiny harness that plays the
 * shell: it delivers live frames (possibly dropping or repeating them), answers history reads
 * from the same list, and acknowledges messages (or not, for a stalled client).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { WatchHub } from "../../services/watch/core/hub.ts"
import type { HubOptions } from "../../services/watch/core/hub-options.ts"
import type { CreateRequest, FetchRequest, OutgoingMessage, WatchResponseData } from "../../services/watch/core/messages.ts"
import type { RevisionEvents, WatchEvent } from "../../services/watch/core/watcher-group.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** A tiny store: the history of revisions with events (prevKv filled), starting at revision 1. */
class History {
  readonly revs: RevisionEvents[] = []
  head = 1
  compactRev = -1
  private readonly live = new Map<string, { createRevision: number; version: number; value: string; modRevision: number }>()

  /** Applies one txn of puts/deletes (distinct keys) as one revision; returns it (undefined: no change). */
  txn(ops: ReadonlyArray<{ key: string; value?: string }>): RevisionEvents | undefined {
    const rev = this.head + 1
    const events: WatchEvent[] = []
    for (const op of ops) {
      const prev = this.live.get(op.key)
      const prevKv = prev === undefined ? undefined : {
        key: enc(op.key), createRevision: prev.createRevision, modRevision: prev.modRevision, version: prev.version,
        value: enc(prev.value), lease: 0n
      }
      if (op.value === undefined) {
        if (prev === undefined) continue
        this.live.delete(op.key)
        events.push({ type: "DELETE", kv: { key: enc(op.key), createRevision: 0, modRevision: rev, version: 0, value: new Uint8Array(), lease: 0n }, prevKv: prevKv! })
      } else {
        const next = { createRevision: prev?.createRevision ?? rev, version: (prev?.version ?? 0) + 1, value: op.value, modRevision: rev }
        this.live.set(op.key, next)
        const kv = { key: enc(op.key), createRevision: next.createRevision, modRevision: rev, version: next.version, value: enc(op.value), lease: 0n }
        events.push(prevKv === undefined ? { type: "PUT", kv } : { type: "PUT", kv, prevKv })
      }
    }
    if (events.length === 0) return undefined
    this.head = rev
    const r = { rev, events }
    this.revs.push(r)
    return r
  }

  /** Answers a history read as the mvcc service does. */
  read(f: FetchRequest) {
    if (f.fromRev < this.compactRev) return { compacted: this.compactRev }
    const to = Math.min(f.toRev, this.head)
    const out: RevisionEvents[] = []
    let bytes = 0
    let covered = to
    for (const r of this.revs) {
      if (r.rev < f.fromRev || r.rev > to) continue
      out.push(f.prevKv ? r : { rev: r.rev, events: r.events.map((e) => ({ type: e.type, kv: e.kv })) })
      for (const e of r.events) bytes += 64 + e.kv.value.length
      if (bytes >= f.maxBytes) {
        covered = r.rev
        break
      }
    }
    return { revs: out, toRev: covered, head: this.head, compactRev: this.compactRev, term: 1 }
  }
}

/** Plays the shell around a hub: frames in, history reads answered, messages collected. */
class Harness {
  readonly hub: WatchHub
  readonly history = new History()
  /** Responses per session, in order, as the gateway received them. */
  readonly received = new Map<string, WatchResponseData[]>()
  readonly messages: OutgoingMessage[] = []
  /** Sessions whose client reads (acks); the others are stalled. */
  readonly reading = new Set<string>()
  private readonly lastSeq = new Map<string, number>()
  private pendingFetches: FetchRequest[] = []
  now = 0

  constructor(options: Partial<HubOptions> = {}) {
    this.hub = new WatchHub(options)
    this.hub.live({ fromRev: 2, head: 1, compactRev: -1, term: 1, revs: [] })
  }

  open(session: string, reading = true): void {
    this.hub.openSession(session, `gw.${session}`, this.now)
    this.received.set(session, [])
    if (reading) this.reading.add(session)
  }

  create(session: string, req: Omit<Partial<CreateRequest>, "key" | "rangeEnd"> & { watchId: number; key: string; end?: string }): void {
    const { key, end, ...rest } = req
    this.hub.create(session, {
      startRevision: 0, prevKv: false, noPut: false, noDelete: false, progressNotify: false, ...rest,
      key: enc(key), ...(end === undefined ? {} : { rangeEnd: enc(end) })
    })
  }

  /** One write; its frame is delivered unless `drop`; `twice` delivers it again (another member's copy). */
  write(ops: ReadonlyArray<{ key: string; value?: string }>, opts: { drop?: boolean; twice?: boolean } = {}): void {
    const r = this.history.txn(ops)
    if (r === undefined || opts.drop === true) return
    const frame = { fromRev: r.rev, head: r.rev, compactRev: this.history.compactRev, term: 1, revs: [r] }
    this.hub.live(frame)
    if (opts.twice === true) this.hub.live(frame)
  }

  heartbeat(): void {
    this.hub.live({ fromRev: this.history.head + 1, head: this.history.head, compactRev: this.history.compactRev, term: 1, revs: [] })
  }

  /** One shell turn: catch-up round, start reads, answer the previous turn's reads, collect output, ack. */
  step(): void {
    this.hub.sync()
    const answering = this.pendingFetches
    this.pendingFetches = this.hub.fetches()
    for (const f of answering) this.hub.fetched(f, this.history.read(f))
    for (const m of this.hub.takeOutgoing()) {
      const last = this.lastSeq.get(m.session) ?? 0
      expect(m.seq).toBe(last + 1)
      this.lastSeq.set(m.session, m.seq)
      this.messages.push(m)
      this.received.get(m.session)!.push(...m.responses)
      if (this.reading.has(m.session)) this.hub.ack(m.session, m.seq, this.now)
    }
  }

  /** Acks everything of `session` so far (the client read again). */
  resume(session: string): void {
    this.reading.add(session)
    this.hub.ack(session, this.lastSeq.get(session) ?? 0, this.now)
  }

  /** Steps at least `turns` times, then until nothing is left to catch up (bounded, to fail rather than hang). */
  settle(turns = 50): void {
    for (let i = 0; i < turns; i++) this.step()
    for (let i = 0; i < 20_000; i++) {
      const s = this.hub.stats()
      if (s.unsynced === 0 && s.victims === 0 && this.pendingFetches.length === 0) return
      this.step()
    }
  }

  /** Events received by watcher `id` of `session`, as "TYPE key=value@rev" strings. */
  events(session: string, id: number): string[] {
    return this.received.get(session)!
      .filter((r) => r.watchId === id && r.events.length > 0)
      .flatMap((r) => r.events.map(show))
  }

  responses(session: string, id: number): WatchResponseData[] {
    return this.received.get(session)!.filter((r) => r.watchId === id)
  }
}

const show = (e: WatchEvent) =>
  `${e.type} ${dec(e.kv.key)}${e.type === "PUT" ? "=" + dec(e.kv.value) : ""}@${e.kv.modRevision}${e.prevKv === undefined ? "" : " prev=" + dec(e.prevKv.value)}`

describe("watch hub: creation and matching", () => {
  it("a watch from now gets later events of its key only", () => {
    const h = new Harness()
    h.write([{ key: "a", value: "0" }]) // rev 2, before the watch
    h.open("s")
    h.create("s", { watchId: 0, key: "a" })
    h.write([{ key: "a", value: "1" }]) // 3
    h.write([{ key: "b", value: "1" }]) // 4
    h.write([{ key: "a" }]) // 5 delete
    h.settle(2)
    expect(h.responses("s", 0)[0]).toMatchObject({ created: true, revision: 2 })
    expect(h.events("s", 0)).toEqual(["PUT a=1@3", "DELETE a@5"])
  })

  it.each([
    // watch                      keys written: a, ab, b, c   -> expected keys
    { name: "single key", key: "ab", end: undefined, want: ["ab"] },
    { name: "prefix a", key: "a", end: "b", want: ["a", "ab"] },
    { name: "from key b", key: "b", end: "", want: ["b", "c"] },
    { name: "range [ab, c)", key: "ab", end: "c", want: ["ab", "b"] }
  ])("range: $name", ({ key, end, want }) => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key, ...(end === undefined ? {} : { end }) })
    for (const k of ["a", "ab", "b", "c"]) h.write([{ key: k, value: "v" }])
    h.settle(2)
    expect(h.events("s", 1).map((e) => e.split(/[ =]/)[1])).toEqual(want)
  })

  it.each([
    { name: "no filter", noPut: false, noDelete: false, want: ["PUT k=1@2", "DELETE k@3"] },
    { name: "NOPUT", noPut: true, noDelete: false, want: ["DELETE k@3"] },
    { name: "NODELETE", noPut: false, noDelete: true, want: ["PUT k=1@2"] }
  ])("filters: $name", ({ noPut, noDelete, want }) => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "k", noPut, noDelete })
    h.write([{ key: "k", value: "1" }])
    h.write([{ key: "k" }])
    h.settle(2)
    expect(h.events("s", 1)).toEqual(want)
  })

  it("prevKv only for watches that asked for it", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "k", prevKv: true })
    h.create("s", { watchId: 2, key: "k" })
    h.write([{ key: "k", value: "1" }])
    h.write([{ key: "k", value: "2" }])
    h.settle(2)
    expect(h.events("s", 1)).toEqual(["PUT k=1@2", "PUT k=2@3 prev=1"])
    expect(h.events("s", 2)).toEqual(["PUT k=1@2", "PUT k=2@3"])
  })

  it("all events of one txn arrive in one response", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "", end: "" })
    h.write([{ key: "x", value: "1" }, { key: "y", value: "1" }, { key: "z", value: "1" }])
    h.settle(2)
    const events = h.responses("s", 1).filter((r) => r.events.length > 0)
    expect(events).toHaveLength(1)
    expect(events[0]!.events.map(show)).toEqual(["PUT x=1@2", "PUT y=1@2", "PUT z=1@2"])
  })

  it("a copy of a revision already fanned out is ignored", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "k" })
    h.write([{ key: "k", value: "1" }], { twice: true })
    h.write([{ key: "k", value: "2" }], { twice: true })
    h.settle(2)
    expect(h.events("s", 1)).toEqual(["PUT k=1@2", "PUT k=2@3"])
  })
})

describe("watch hub: history, gaps, compaction", () => {
  it("a watch from the past replays from the ring, then goes live", () => {
    const h = new Harness()
    h.write([{ key: "k", value: "1" }]) // 2
    h.write([{ key: "k", value: "2" }]) // 3
    h.open("s")
    h.create("s", { watchId: 1, key: "k", startRevision: 2 })
    h.write([{ key: "k", value: "3" }]) // 4, while unsynced
    h.settle(3)
    h.write([{ key: "k", value: "4" }]) // 5, live
    h.settle(2)
    expect(h.events("s", 1)).toEqual(["PUT k=1@2", "PUT k=2@3", "PUT k=3@4", "PUT k=4@5"])
    expect(h.hub.stats()).toMatchObject({ synced: 1, unsynced: 0 })
  })

  it("a watch older than the ring reads mvcc history", () => {
    const h = new Harness({ ringRevs: 2 })
    for (let i = 1; i <= 6; i++) h.write([{ key: "k", value: String(i) }]) // revs 2..7
    h.open("s")
    h.create("s", { watchId: 1, key: "k", startRevision: 3, prevKv: true })
    h.settle(5)
    expect(h.events("s", 1)).toEqual(["PUT k=2@3 prev=1", "PUT k=3@4 prev=2", "PUT k=4@5 prev=3", "PUT k=5@6 prev=4", "PUT k=6@7 prev=5"])
    expect(h.hub.stats().historyFetches).toBeGreaterThan(0)
  })

  it("a lost frame is read back from history (gap), in order", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "k", prevKv: true })
    h.write([{ key: "k", value: "1" }])
    h.write([{ key: "k", value: "2" }], { drop: true })
    h.write([{ key: "k", value: "3" }])
    h.settle(3)
    expect(h.events("s", 1)).toEqual(["PUT k=1@2", "PUT k=2@3 prev=1", "PUT k=3@4 prev=2"])
    expect(h.hub.stats().gapFetches).toBe(1)
  })

  it("a lost last frame is noticed by the heartbeat", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "k" })
    h.write([{ key: "k", value: "1" }], { drop: true })
    h.settle(2)
    expect(h.events("s", 1)).toEqual([])
    h.heartbeat()
    h.settle(3)
    expect(h.events("s", 1)).toEqual(["PUT k=1@2"])
  })

  it("a watch from a compacted revision is canceled with compact_revision (etcd chooseAll)", () => {
    const h = new Harness({ ringRevs: 1 })
    for (let i = 1; i <= 5; i++) h.write([{ key: "k", value: String(i) }])
    h.history.compactRev = 4
    h.open("s")
    h.create("s", { watchId: 7, key: "k", startRevision: 2 })
    h.settle(4)
    const last = h.responses("s", 7).at(-1)!
    expect(last).toMatchObject({ watchId: 7, canceled: true, compactRevision: 4, revision: 0 })
    expect(h.hub.stats().watchers).toBe(0)
  })
})

describe("watch hub: compaction seen on the stream", () => {
  it("nothing at or below a compaction the stream announced is served from memory", () => {
    const h = new Harness()
    h.write([{ key: "k", value: "1" }]) // 2
    h.write([{ key: "k" }]) // 3: delete, gone from the backend once compacted at 3
    h.write([{ key: "k", value: "2" }]) // 4
    h.history.compactRev = 3
    h.history.revs.splice(h.history.revs.findIndex((r) => r.rev === 3), 1)
    h.heartbeat()
    h.open("s")
    h.create("s", { watchId: 1, key: "k", startRevision: 3 })
    h.create("s", { watchId: 2, key: "k", startRevision: 2 })
    h.create("s", { watchId: 3, key: "k", startRevision: -1 })
    h.settle(4)
    expect(h.events("s", 1)).toEqual(["PUT k=2@4"])
    expect(h.responses("s", 2).at(-1)).toMatchObject({ canceled: true, compactRevision: 3 })
    expect(h.responses("s", 3).at(-1)).toMatchObject({ canceled: true, compactRevision: 3 })
  })
})

describe("watch hub: progress", () => {
  it("a progress request waits until every watcher of the session is synced", () => {
    const h = new Harness({ ringRevs: 1 })
    for (let i = 1; i <= 4; i++) h.write([{ key: "k", value: String(i) }])
    h.open("s")
    h.create("s", { watchId: 1, key: "k", startRevision: 2 })
    h.hub.progress("s")
    h.step()
    expect(h.responses("s", -1)).toEqual([])
    h.settle(4)
    expect(h.responses("s", -1)).toEqual([{ watchId: -1, revision: 5, events: [] }])
    // The progress comes after the replayed events in the session's order.
    const order = h.received.get("s")!.map((r) => r.watchId)
    expect(order.lastIndexOf(1)).toBeLessThan(order.indexOf(-1))
  })

  it("periodic progress goes only to synced progress_notify watchers without events since the last tick", () => {
    const h = new Harness()
    h.open("s")
    h.create("s", { watchId: 1, key: "a", progressNotify: true })
    h.create("s", { watchId: 2, key: "b", progressNotify: true })
    h.create("s", { watchId: 3, key: "c" })
    h.hub.progressTick()
    h.step()
    h.write([{ key: "a", value: "1" }])
    h.step()
    h.hub.progressTick()
    h.step()
    const progress = (id: number) => h.responses("s", id).filter((r) => r.events.length === 0 && r.created !== true)
    expect(progress(1)).toHaveLength(1) // first tick only: it had events before the second
    expect(progress(2)).toHaveLength(2)
    expect(progress(2)[1]!.revision).toBe(2)
    expect(progress(3)).toHaveLength(0)
  })
})

describe("watch hub: slow sessions", () => {
  it("a stalled session's watchers become victims, others are not delayed, and it resumes whole", () => {
    const h = new Harness({ windowBytes: 1000 })
    h.open("fast")
    h.open("slow", false)
    h.create("fast", { watchId: 1, key: "k" })
    h.create("slow", { watchId: 1, key: "k" })
    const n = 40
    for (let i = 1; i <= n; i++) {
      h.write([{ key: "k", value: "x".repeat(50) + i }])
      h.step()
    }
    expect(h.events("fast", 1)).toHaveLength(n)
    expect(h.events("slow", 1).length).toBeLessThan(n)
    expect(h.hub.stats().victims).toBe(1)
    h.resume("slow")
    h.settle(30)
    const want = Array.from({ length: n }, (_, i) => `PUT k=${"x".repeat(50)}${i + 1}@${i + 2}`)
    expect(h.events("slow", 1)).toEqual(want)
    expect(h.hub.stats()).toMatchObject({ victims: 0, synced: 2 })
  })

  it("unacknowledged bytes per session stay within the window plus one response", () => {
    const h = new Harness({ windowBytes: 2000 })
    h.open("slow", false)
    h.create("slow", { watchId: 1, key: "k" })
    for (let i = 0; i < 200; i++) {
      h.write([{ key: "k", value: "y".repeat(100) }])
      h.step()
    }
    const bytes = h.received.get("slow")!.reduce((n, r) => n + r.events.reduce((m, e) => m + 40 + e.kv.key.length + e.kv.value.length + 8, 48), 0)
    expect(bytes).toBeLessThan(2000 + 400)
  })

  it("the replica's budget is shared: stalled sessions hold at most budget plus one response each, and a reading one still gets everything", () => {
    const budgetBytes = 50_000
    const h = new Harness({ windowBytes: 100_000, budgetBytes, minWindowBytes: 1000 })
    const stalled = Array.from({ length: 20 }, (_, i) => `slow${i}`)
    h.open("fast")
    h.create("fast", { watchId: 1, key: "k" })
    for (const s of stalled) {
      h.open(s, false)
      h.create(s, { watchId: 1, key: "k" })
    }
    const n = 300
    let peak = 0
    for (let i = 1; i <= n; i++) {
      h.write([{ key: "k", value: "z".repeat(500) + i }])
      h.step()
      peak = Math.max(peak, h.hub.stats().unackedBytes)
    }
    // One revision here is about 600 bytes; each session may exceed its share by one.
    expect(peak).toBeLessThanOrEqual(budgetBytes + 21 * 700)
    expect(peak).toBeGreaterThan(budgetBytes / 2)
    expect(h.events("fast", 1)).toHaveLength(n)
    for (const s of stalled) expect(h.events(s, 1).length).toBeLessThan(n / 2)
    // Once they read again, every stalled session gets every event, in order, once.
    for (const s of stalled) h.resume(s)
    h.settle(50)
    const want = Array.from({ length: n }, (_, i) => `PUT k=${"z".repeat(500)}${i + 1}@${i + 2}`)
    for (const s of stalled) expect(h.events(s, 1)).toEqual(want)
  })

  it("a session's gateway can ask for a smaller window, at open and with each ping", () => {
    const h = new Harness({ windowBytes: 100_000 })
    h.open("slow", false)
    h.hub.openSession("slow", "gw.slow", 0, 2000)
    h.create("slow", { watchId: 1, key: "k" })
    const sent = () => h.received.get("slow")!.reduce((n, r) => n + r.events.reduce((m, e) => m + 48 + e.kv.key.length + e.kv.value.length, 48), 0)
    for (let i = 0; i < 100; i++) {
      h.write([{ key: "k", value: "y".repeat(100) }])
      h.step()
    }
    expect(sent()).toBeLessThan(2000 + 200)
    // The gateway's budget grew (streams closed): the next ping widens the window.
    h.hub.ping([{ session: "slow", acked: 0, windowBytes: 10_000 }], 0)
    for (let i = 0; i < 100; i++) {
      h.write([{ key: "k", value: "y".repeat(100) }])
      h.step()
    }
    expect(sent()).toBeGreaterThan(8000)
    expect(sent()).toBeLessThan(10_000 + 200)
  })
})

const keys = ["a", "ab", "b", "ba", "c"]
const op = fc.record({ key: fc.constantFrom(...keys), put: fc.boolean() })
const action = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant("txn" as const), ops: fc.uniqueArray(op, { minLength: 1, maxLength: 3, selector: (o) => o.key }), drop: fc.boolean(), twice: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("watch" as const), session: fc.integer({ min: 0, max: 2 }), range: fc.integer({ min: 0, max: 3 }), key: fc.constantFrom(...keys), back: fc.integer({ min: -1, max: 8 }), noPut: fc.boolean(), noDelete: fc.boolean(), prevKv: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("stall" as const), session: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("resume" as const), session: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("step" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("heartbeat" as const) }) }
)


type Action = typeof action extends fc.Arbitrary<infer A> ? A : never

/** Runs one scenario and checks every watcher against the model (throws on a violation). */
const runScenario = (actions: ReadonlyArray<Action>, windowBytes: number, ringRevs: number): void => {
        const h = new Harness({ windowBytes, ringRevs, maxResponseBytes: 300, historyMaxBytes: 400, batchMaxRevs: 3 })
        const sessions = ["s0", "s1", "s2"]
        for (const s of sessions) h.open(s)
        const watchers: Array<{ session: string; id: number; key: string; end: string | undefined; start: number; noPut: boolean; noDelete: boolean; prevKv: boolean }> = []
        let value = 0
        for (const a of actions) {
          if (a.t === "txn") h.write(a.ops.map((o) => (o.put ? { key: o.key, value: String(++value) } : { key: o.key })), a)
          else if (a.t === "watch") {
            const session = sessions[a.session]!
            const id = watchers.filter((w) => w.session === session).length + 1
            const end = a.range === 0 ? undefined : a.range === 1 ? "" : a.range === 2 ? a.key + "\xff" : "c"
            if (end !== undefined && end !== "" && end <= a.key) continue
            // back -1: from now; else from head - back (>= 1).
            const head = h.hub.headRevision()
            const start = a.back < 0 ? 0 : Math.max(1, head - a.back)
            watchers.push({ session, id, key: a.key, end, start: start === 0 ? head + 1 : start, noPut: a.noPut, noDelete: a.noDelete, prevKv: a.prevKv })
            h.create(session, { watchId: id, key: a.key, ...(end === undefined ? {} : { end }), startRevision: start, noPut: a.noPut, noDelete: a.noDelete, prevKv: a.prevKv })
          } else if (a.t === "stall") h.reading.delete(sessions[a.session]!)
          else if (a.t === "resume") h.resume(sessions[a.session]!)
          else if (a.t === "heartbeat") h.heartbeat()
          else h.step()
        }
        for (const s of sessions) h.resume(s)
        h.heartbeat()
        h.settle(200)
        for (const w of watchers) {
          const matches = (k: string) => (w.end === undefined ? k === w.key : k >= w.key && (w.end === "" || k < w.end))
          const want = h.history.revs
            .filter((r) => r.rev >= w.start)
            .flatMap((r) => r.events)
            .filter((e) => matches(dec(e.kv.key)) && !(e.type === "PUT" ? w.noPut : w.noDelete))
            .map((e) => show(w.prevKv ? e : { type: e.type, kv: e.kv }))
          expect(h.events(w.session, w.id)).toEqual(want)
          // Txn-atomic: a revision's events are never split over two responses.
          const revsSeen = new Set<number>()
          for (const r of h.responses(w.session, w.id)) {
            const revs = new Set(r.events.map((e) => e.kv.modRevision))
            for (const rev of revs) {
              expect(revsSeen.has(rev)).toBe(false)
              revsSeen.add(rev)
            }
          }
        }
}

describe("watch hub: guarantees against a model (property)", () => {
  it("every watcher gets exactly its matching events, in order, whole revisions per response", () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 20, maxLength: 200, size: "max" }), fc.integer({ min: 100, max: 1500 }), fc.integer({ min: 1, max: 12 }), runScenario),
      { numRuns: 300 }
    )
  })
})
