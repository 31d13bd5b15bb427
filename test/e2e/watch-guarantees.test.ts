/**
 * Watch guarantees end to end (etcd api_guarantees): a 3-member natcd with 2 watch replicas,
 * and a 1-member natcd with 1 and with 3 (one cluster each).
 *
 * Checker: W watchers on overlapping ranges (single keys, prefixes, ranges, from-key, filters,
 * prev_kv, some starting in the past), multiplexed over a few streams, while random txns of
 * puts and deletes go through every member's gateway; meanwhile streams are canceled at random
 * and reopened by the client from its last seen revision + 1, and watch replicas are killed
 * with SIGKILL (the supervisor restarts them; the gateway moves their sessions). Afterwards each
 * watcher's events must equal the sequence derived from the mvcc service's own history
 * (mvcc.history over NATS): ordered, exactly once, complete; and no revision's events may be
 * split over two responses (txn-atomic).
 *
 * Scaling (2 and 3 replicas): new streams are spread over every replica (counted on the NATS
 * subjects of their create endpoints); killing one keeps every watcher whole.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { execFileSync } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { unpackValue } from "../../shared/frame.ts"
import { PackedRevisions } from "../../shared/schema.ts"
import { RpcClient, callEndpoint, okOf } from "../../services/runtime/rpc.ts"
import type { Natcd } from "./harness.ts"
import { inboxPrefix, mvccHistory } from "../../shared/endpoints.ts"
import { httpGet, metricsPort, natsConnectAs, sleep, startNatcd, tempDir } from "./harness.ts"
import { kvWriter, openWatch, prefixEnd } from "./watch-client.ts"
import type { CreateOptions, SeenEvent, SeenResponse, WatchStream } from "./watch-client.ts"

/**
 * Each run: its watch replicas, its cluster's members and port offset, and how long its chaos
 * lasts (ms). The runs with 1 and 3 replicas use one member, which keeps the suite's time down;
 * the replicas and the gateway's failover are what they vary.
 */
const runs = [
  { replicas: 2, members: 3, portOffset: 820, chaosMs: 20_000 },
  { replicas: 1, members: 1, portOffset: 2260, chaosMs: 10_000 },
  { replicas: 3, members: 1, portOffset: 2280, chaosMs: 10_000 }
]

/** Pids of the watch replicas of `natcd`, by replica name. */
const replicaPids = (natcd: Natcd): Map<string, number> => {
  const out = execFileSync("ps", ["-eo", "pid=,pgid=,args="], { encoding: "utf8" })
  const pids = new Map<string, number>()
  for (const line of out.split("\n")) {
    const cols = line.trim().split(/\s+/)
    if (Number(cols[1]) !== natcd.supervisor.pid || !line.includes("services/watch/main.ts")) continue
    const m = /--replica=(\S+)/.exec(line)
    if (m !== null) pids.set(m[1]!, Number(cols[0]))
  }
  return pids
}

/** Reads revisions from..to of the mvcc history (with prevKv) from member m1, page by page. */
const readHistory = async (rpc: RpcClient, from: number, to: number): Promise<Array<{ rev: number; events: SeenEvent[] }>> => {
  const out: Array<{ rev: number; events: SeenEvent[] }> = []
  const str = (b: Uint8Array) => Buffer.from(b).toString("latin1")
  let next = from
  while (next <= to) {
    const ok = okOf(await callEndpoint(rpc, mvccHistory, { cluster: "natcd", member: "m1" }, { fromRev: next, toRev: to, maxBytes: 1 << 20, prevKv: true }, { timeoutMs: 10_000 }))
    const revs = Schema.decodeUnknownSync(PackedRevisions)(unpackValue(ok.revs))
    for (const r of revs) {
      out.push({
        rev: r.rev,
        events: r.events.map((e) => ({
          type: e.type, key: str(e.kv.key), value: str(e.kv.value), modRevision: e.kv.modRevision,
          createRevision: e.kv.createRevision, version: e.kv.version, ...(e.prevKv ? { prevValue: str(e.prevKv.value) } : {})
        }))
      })
    }
    if (ok.toRev < next) throw new Error(`history made no progress at ${next}`)
    next = ok.toRev + 1
  }
  return out
}

/** A watcher as the checker tracks it across stream reconnects. */
interface CheckedWatcher {
  readonly id: number
  readonly create: CreateOptions
  /** The first revision it must see (fixed at its first created response when it started "now"). */
  firstRev: number | undefined
  /** Responses received, over every stream it lived on, in order. */
  readonly responses: SeenResponse[]
  lastSeen: number
}

const matches = (w: CheckedWatcher, key: string): boolean => {
  const { key: k, rangeEnd } = w.create
  if (rangeEnd === undefined) return key === k
  if (key < k) return false
  return rangeEnd === "\0" || key < rangeEnd
}

describe.each(runs)("watch guarantees with $replicas watch replica(s) on $members member(s)", ({ replicas, members, portOffset, chaosMs }) => {
  const dir = tempDir(`watch-guarantees-${replicas}`)
  let natcd: Natcd
  let nc: NatsConnection
  let rpc: RpcClient

  beforeAll(async () => {
    process.env.NATCD_WATCH_REPLICAS = String(replicas)
    natcd = await startNatcd({ dataDir: dir.dir, portOffset, members })
    delete process.env.NATCD_WATCH_REPLICAS
    // As watch replica w1 (a caller of mvcc.history), with an inbox under w1's prefix.
    nc = await natsConnectAs(natcd, { role: "watch", name: "w1" })
    rpc = new RpcClient(nc, `${inboxPrefix("natcd", { role: "watch", name: "w1" })}.test-${process.pid}`)
  }, 120_000)

  afterAll(async () => {
    rpc?.close()
    await nc?.close()
    await natcd?.stop()
    dir.remove()
  })

  it("every watcher gets every event once, in order, whole txns, across stream cancels and replica kills", async () => {
    const keys = ["w/a0", "w/a1", "w/a2", "w/a3", "w/b0", "w/b1", "w/b2", "w/c"]
    const specs: CreateOptions[] = [
      { key: "w/a1" },
      { key: "w/a", rangeEnd: prefixEnd("w/a") },
      { key: "w/", rangeEnd: prefixEnd("w/") },
      { key: "w/a2", rangeEnd: "w/b2" },
      { key: "w/b", rangeEnd: "\0" },
      { key: "w/b", rangeEnd: prefixEnd("w/b"), filters: ["NOPUT"] },
      { key: "w/", rangeEnd: prefixEnd("w/"), prevKv: true },
      { key: "w/a", rangeEnd: prefixEnd("w/a"), filters: ["NODELETE"], prevKv: true },
      { key: "w/c" },
      { key: "w/a0", rangeEnd: "w/a3" },
      { key: "w/", rangeEnd: prefixEnd("w/"), startRevision: 2 },
      { key: "w/b1", prevKv: true, startRevision: 3 }
    ]
    const watchers: CheckedWatcher[] = specs.map((create, i) => ({
      id: i + 1, create: { ...create, watchId: i + 1 }, firstRev: create.startRevision, responses: [], lastSeen: 0
    }))
    // Streams: watchers i, i+4, i+8 share stream i.
    const groups = [0, 1, 2, 3].map((g) => watchers.filter((w) => (w.id - 1) % 4 === g))
    const streams: Array<{ stream: WatchStream; taken: number }> = []
    const endpoints = natcd.endpoints

    const absorb = (g: number) => {
      const s = streams[g]!
      for (const r of s.stream.responses.slice(s.taken)) {
        const w = groups[g]!.find((x) => x.id === r.watchId)
        if (w === undefined) continue
        if (r.created && w.firstRev === undefined) w.firstRev = r.revision + 1
        w.responses.push(r)
        for (const e of r.events) w.lastSeen = e.modRevision
      }
      s.taken = s.stream.responses.length
    }
    const open = (g: number) => {
      const stream = openWatch(endpoints[g % endpoints.length]!)
      for (const w of groups[g]!) {
        const start = w.lastSeen > 0 ? w.lastSeen + 1 : w.firstRev ?? 0
        stream.create({ ...w.create, startRevision: start })
      }
      streams[g] = { stream, taken: 0 }
    }
    for (let g = 0; g < groups.length; g++) open(g)
    // Let the "from now" watchers be created before writing.
    await Promise.all(streams.map((s, g) => s.stream.until((r) => r.filter((x) => x.created).length === groups[g]!.length)))
    for (let g = 0; g < groups.length; g++) absorb(g)

    let reconnects = 0
    let replicaKills = 0
    let txns = 0
    let writing = true
    let seed = 42
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    const writers = endpoints.map((endpoint, wi) => (async () => {
      const kv = kvWriter(endpoint)
      let n = 0
      while (writing) {
        const ops: Array<{ key: string; value?: string; end?: string }> = []
        const used = new Set<string>()
        for (let i = 0, count = 1 + rand(3); i < count; i++) {
          const key = keys[rand(keys.length)]!
          if (used.has(key)) continue
          used.add(key)
          const r = rand(10)
          if (r < 7) ops.push({ key, value: `v${wi}-${n++}` })
          else ops.push({ key })
        }
        if (rand(20) === 0 && used.size === 0) ops.push({ key: "w/b", end: prefixEnd("w/b") })
        try {
          await kv.txn(ops)
          txns++
        } catch {
          // A timed-out write may or may not have applied: the checker reads the truth from mvcc.
        }
      }
      kv.close()
    })())
    const chaos = (async () => {
      const started = performance.now()
      let nextKill = started + 3000
      while (performance.now() - started < chaosMs) {
        await sleep(700 + rand(800))
        const g = rand(groups.length)
        absorb(g)
        streams[g]!.stream.close()
        absorb(g)
        open(g)
        reconnects++
        if (performance.now() > nextKill) {
          const pids = [...replicaPids(natcd).values()]
          if (pids.length > 0) {
            process.kill(pids[rand(pids.length)]!, "SIGKILL")
            replicaKills++
          }
          nextKill = performance.now() + 4000
        }
      }
    })()
    await chaos
    writing = false
    await Promise.all(writers)

    // The last revision: a read after the writes.
    const kv = kvWriter(endpoints[0]!)
    const head = Number((await kv.put("w-end", "x")).header.revision)
    kv.close()
    const history = await readHistory(rpc, 2, head)
    const expected = (w: CheckedWatcher) =>
      history
        .filter((r) => r.rev >= (w.firstRev ?? 0))
        .flatMap((r) => r.events)
        .filter((e) => matches(w, e.key) && !(w.create.filters ?? []).includes(e.type === "PUT" ? "NOPUT" : "NODELETE"))
        .map((e) => ({ ...e, prevValue: w.create.prevKv === true ? e.prevValue : undefined }))
    const received = (w: CheckedWatcher) => w.responses.flatMap((r) => r.events).map((e) => ({ ...e, prevValue: e.prevValue }))
    // Wait for everything to arrive.
    const deadline = performance.now() + 30_000
    for (;;) {
      for (let g = 0; g < groups.length; g++) absorb(g)
      if (watchers.every((w) => received(w).length >= expected(w).length) || performance.now() > deadline) break
      await sleep(200)
    }
    await sleep(500)
    for (let g = 0; g < groups.length; g++) absorb(g)

    let violations = 0
    let events = 0
    const problems: string[] = []
    for (const w of watchers) {
      const want = expected(w)
      const got = received(w)
      events += got.length
      const show = (e: SeenEvent) => `${e.type} ${e.key}=${e.value}@${e.modRevision}${e.prevValue === undefined ? "" : " prev=" + e.prevValue}`
      const a = got.map(show)
      const b = want.map(show)
      if (JSON.stringify(a) !== JSON.stringify(b)) {
        violations++
        const i = a.findIndex((x, j) => x !== b[j])
        problems.push(`watcher ${w.id} ${JSON.stringify(w.create)}: got ${a.length}, want ${b.length}, first difference at ${i}: got ${a[i]} want ${b[i]}`)
      }
      // Txn-atomic: a revision's events never span two responses.
      const seen = new Set<number>()
      for (const r of w.responses) {
        for (const rev of new Set(r.events.map((e) => e.modRevision))) {
          if (seen.has(rev)) {
            violations++
            problems.push(`watcher ${w.id}: revision ${rev} split over responses`)
          }
          seen.add(rev)
        }
      }
    }
    for (const s of streams) s.stream.close()
    console.log(`watch checker (${replicas} replica(s)): watchers=${watchers.length} events=${events} txns=${txns} revisions=${history.length} reconnects=${reconnects} replica kills=${replicaKills} violations=${violations}`)
    expect(problems).toEqual([])
    expect(violations).toBe(0)
    expect(replicaKills).toBeGreaterThan(0)
  }, 180_000)

  // Spreading needs two replicas or more.
  if (replicas > 1) it("spreads new streams over every replica; killing one keeps every watcher whole", async () => {
    const names = Array.from({ length: replicas }, (_, i) => `w${i + 1}`)
    // The test before kills replicas: wait until the supervisor restarted them all and they serve.
    for (let replica = 1; replica <= replicas; replica++) {
      const deadline = Date.now() + 30_000
      while ((await httpGet(metricsPort(portOffset, 0, "watch", replica), "/readyz")).status !== 200) {
        if (Date.now() > deadline) throw new Error(`watch replica w${replica} not ready`)
        await sleep(100)
      }
    }
    // Each replica's identity may read its own session subjects: count the creates each gets.
    const creates = new Map<string, number>()
    const observers = await Promise.all(names.map((name) => natsConnectAs(natcd, { role: "watch", name })))
    const subs = observers.map((o, i) =>
      o.subscribe(`natcd.natcd.watch.w${i + 1}.create`, {
        callback: (_e, m) => {
          const replica = m.subject.split(".")[3]!
          creates.set(replica, (creates.get(replica) ?? 0) + 1)
        }
      }))
    await Promise.all(observers.map((o) => o.flush()))
    const n = 10 * replicas
    const streams = Array.from({ length: n }, (_, i) => {
      const s = openWatch(natcd.endpoints[i % natcd.endpoints.length]!)
      s.create({ key: "s/", rangeEnd: prefixEnd("s/") })
      return s
    })
    await Promise.all(streams.map((s) => s.until((r) => r.some((x) => x.created))))
    subs.forEach((sub) => sub.unsubscribe())
    await Promise.all(observers.map((o) => o.close()))
    console.log(`watch scaling: streams per replica ${JSON.stringify(Object.fromEntries(creates))}`)
    expect(creates.size).toBe(replicas)
    const kv = kvWriter(natcd.endpoints[0]!)
    const puts = 60
    const killAfter = 20
    let killedAt = 0
    for (let i = 0; i < puts; i++) {
      if (i === killAfter) {
        const pids = replicaPids(natcd)
        process.kill(pids.get("w1")!, "SIGKILL")
        killedAt = performance.now()
      }
      await kv.put(`s/${i % 7}`, `v${i}`)
      await sleep(20)
    }
    kv.close()
    await Promise.all(streams.map((s) => s.until((r) => r.flatMap((x) => x.events).length >= puts, 30_000).catch(() => undefined)))
    const recovered = performance.now() - killedAt
    for (const s of streams) {
      const values = s.responses.flatMap((r) => r.events.map((e) => e.value))
      expect(values).toEqual(Array.from({ length: puts }, (_, i) => `v${i}`))
      s.close()
    }
    console.log(`watch scaling: replica w1 killed after ${killAfter} puts; all ${n} watchers whole (${puts} events each), done ${Math.round(recovered)} ms after the kill`)
  }, 120_000)
})
