/**
 * 2000 watch streams whose clients do not read, on natcd and on etcd 3.4 side by side: the
 * memory a stalled client can pin is bounded. Every stream watches the same prefix and pauses
 * (its gRPC stream stops reading, so HTTP/2 flow control pushes back on the server; they
 * share one connection, as etcd's clients do); one more stream, on its own connection, reads,
 * and the writes go over a third. 150 puts of 16 KiB then ask for 2.4 MB per stream, 4.8 GB in
 * all. natcd's watch replica (256 MiB) and gateway (128 MiB) share their budgets of
 * unacknowledged watch bytes among the streams as their windows (at least 64 KiB each), so
 * what they hold stays near max(budget, streams x 64 KiB); the reading stream gets every event
 * meanwhile, and stalled streams that read again get every event, in order, once. The peak RSS
 * of every natcd process and of etcd is printed.
 */
import type * as grpc from "@grpc/grpc-js"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { groupPids, memory } from "../../bench/proc.ts"
import { natcdBesideEtcd, sleep } from "./harness.ts"
import type { Natcd } from "./harness.ts"
import { kvWriter, openWatch, ownConnection, prefixEnd, watchClient } from "./watch-client.ts"
import type { WatchStream } from "./watch-client.ts"

const streams = 2000
const puts = 150
const value = "v".repeat(16 * 1024)
const mib = 2 ** 20

/** Peak and current RSS of `pid` in bytes; zeros once it is gone. */
const memoryOf = (pid: number): { peak: number; rss: number } => {
  const m = memory(pid)
  return { peak: m.peakRssBytes, rss: m.rssBytes }
}

/** natcd's processes (the supervisor's process group) labelled by service. */
const natcdProcesses = (natcd: Natcd): Array<{ label: string; pid: number }> =>
  groupPids(natcd.supervisor.pid!).map((pid) => {
    let args = ""
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")
    } catch {
      // Gone meanwhile.
    }
    const service = /services\/(\w+)\/main\.ts/.exec(args)?.[1] ?? (args.includes("nats-server") ? "nats-server" : "other")
    return { label: service, pid }
  })

/** The etcd started with data under `marker` (found by command line). */
const etcdPid = (marker: string): number => {
  const line = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).split("\n").find((l) => l.includes("etcd --name=etcd-ref") && l.includes(marker))
  return Number(/^\s*(\d+)/.exec(line ?? "")?.[1] ?? 0)
}

/** Opens the stalled streams and one reader on `endpoint`, writes, and checks delivery. */
const run = async (endpoint: string): Promise<{ stalled: WatchStream[]; reader: WatchStream; firstRev: number; phases: string; client: grpc.Client }> => {
  const t0 = performance.now()
  const phase: string[] = []
  const mark = (name: string) => phase.push(`${name} ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  const stalled: WatchStream[] = []
  const client = watchClient(endpoint)
  for (let i = 0; i < streams; i++) {
    const s = openWatch(endpoint, { client })
    s.create({ key: "m/", rangeEnd: prefixEnd("m/") })
    stalled.push(s)
    if (i % 200 === 199) await Promise.all(stalled.slice(i - 199).map((x) => x.until((r) => r.some((y) => y.created), 30_000)))
  }
  for (const s of stalled) s.pause()
  mark("opened")
  const reader = openWatch(endpoint, { ownConnection: true })
  reader.create({ key: "m/", rangeEnd: prefixEnd("m/") })
  await reader.until((r) => r.some((y) => y.created))
  const kv = kvWriter(endpoint, ownConnection)
  let firstRev = 0
  for (let i = 0; i < puts; i++) {
    const r = await kv.put(`m/${i % 10}`, `${i}:${value}`)
    if (i === 0) firstRev = Number(r.header.revision)
  }
  kv.close()
  mark("written")
  await reader.until((rs) => rs.reduce((n, r) => n + r.events.length, 0) >= puts, 120_000)
  mark("read")
  return { stalled, reader, firstRev, phases: phase.join(", "), client }
}

const summary = (events: ReadonlyArray<{ key: string; modRevision: number; value: string }>) =>
  events.map((e) => `${e.key}@${e.modRevision}:${e.value.slice(0, e.value.indexOf(":"))}`)

describe("watch streams that do not read", () => {
  const pair = natcdBesideEtcd("watch-memory", { portOffset: 2060, clientPort: 28850, peerPort: 28851 })

  it(`${streams} stalled streams: memory bounded by the watch budgets, nothing lost`, async () => {
    const [natcdRun, etcdRun] = await Promise.all([run(pair.natcd.endpoints[0]!), run(pair.etcd.endpoint)])
    await sleep(3000)
    const natcdMemory = natcdProcesses(pair.natcd).map((p) => ({ ...p, ...memoryOf(p.pid) }))
    const etcdMemory = memoryOf(etcdPid("watch-memory-etcd"))
    console.log(
      `${streams} stalled watch streams, ${puts} puts of 16 KiB (2.4 MB asked per stream): peak RSS ` +
        natcdMemory.map((p) => `${p.label} ${(p.peak / mib).toFixed(0)} MiB`).join(", ") +
        `; natcd total now ${(natcdMemory.reduce((n, p) => n + p.rss, 0) / mib).toFixed(0)} MiB` +
        `; etcd 3.4 peak ${(etcdMemory.peak / mib).toFixed(0)} MiB, now ${(etcdMemory.rss / mib).toFixed(0)} MiB`
    )
    expect(natcdMemory.map((p) => p.label)).toEqual(expect.arrayContaining(["gateway", "watch"]))
    for (const p of natcdMemory) {
      // The budgets (256 MiB each) plus one revision per stream plus each process's own ~150 MiB.
      expect(p.peak, p.label).toBeLessThan(p.label === "gateway" || p.label === "watch" ? 1024 * mib : 512 * mib)
    }
    // Nothing lost: the reader got every event; stalled streams that read again get them all, once, in order.
    console.log(`natcd: ${natcdRun.phases}; etcd: ${etcdRun.phases}`)
    for (const { stalled, reader, firstRev, client } of [natcdRun, etcdRun]) {
      const t0 = performance.now()
      const want = summary(reader.responses.flatMap((r) => r.events))
      expect(want).toHaveLength(puts)
      expect(want[0]).toBe(`m/0@${firstRev}:0`)
      const resumed = [stalled[0]!, stalled[streams / 2]!, stalled[streams - 1]!]
      for (const s of resumed) s.resume()
      for (const s of resumed) {
        await s.until((rs) => rs.reduce((n, r) => n + r.events.length, 0) >= puts, 120_000)
        await sleep(200)
        expect(summary(s.responses.flatMap((r) => r.events))).toEqual(want)
      }
      console.log(`resumed streams caught up in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      for (const s of [...stalled, reader]) s.close()
      client.close()
    }
  }, 600_000)
})
