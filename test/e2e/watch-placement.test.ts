/**
 * Placement and draining of watch streams over the watch replicas (issue 19), with natcd's
 * supervisor, 2 replicas and real processes, while a writer puts keys all along:
 *
 * - new streams go to the least-loaded replica: 40 streams split evenly over w1 and w2;
 * - a replica added under load takes new streams at once: w2 hangs (SIGSTOP), its streams move
 *   to w1, it is killed (-9) and the supervisor starts a new w2, and the next 20 streams all go
 *   to w2;
 * - a drained replica (SIGTERM) hands its streams over at once, without loss or duplicates: w1's
 *   40 streams move to w2 for the reason "draining" (not a ping timeout);
 * - through all of it, every watcher (all from the same start revision) sees every revision
 *   exactly once, in order, and every process logs one JSON object per line at WARN or above
 *   (the cluster runs with --log-level=Warn).
 */
import { execFileSync } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Natcd } from "./harness.ts"
import { httpGet, metricSum, metricsPort, sleep, startNatcd, tempDir } from "./harness.ts"
import { kvWriter, openWatch, prefixEnd, watchClient } from "./watch-client.ts"
import type { WatchStream } from "./watch-client.ts"

const portOffset = 2220

/** Sends `signal` to watch replica `replica` of `natcd`; returns how many processes got it. */
const signalReplica = (natcd: Natcd, replica: string, signal: NodeJS.Signals): number => {
  let hit = 0
  for (const line of execFileSync("ps", ["-eo", "pid=,pgid=,args="], { encoding: "utf8" }).split("\n")) {
    const cols = line.trim().split(/\s+/)
    if (Number(cols[1]) !== natcd.supervisor.pid || !line.includes("services/watch/main.ts") || !line.includes(`--replica=${replica} `)) continue
    process.kill(Number(cols[0]), signal)
    hit++
  }
  return hit
}

const metrics = async (port: number): Promise<string> => (await httpGet(port, "/metrics")).body
/** Watch streams (sessions) replica w`j` holds. */
const streamsOn = async (j: number): Promise<number> => metricSum(await metrics(metricsPort(portOffset, 0, "watch", j)), "etcd_debugging_mvcc_watch_stream_total")
const gatewayMetric = async (name: string, labels: ReadonlyArray<string> = []): Promise<number> =>
  metricSum(await metrics(metricsPort(portOffset, 0, "gateway")), name, labels)

const eventually = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms: ${what}`)
    await sleep(100)
  }
}

describe("watch stream placement over replicas", () => {
  let natcd: Natcd
  const dir = tempDir("natcd-watch-placement")

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: dir.dir, portOffset, extraArgs: ["--watch-replicas=2"] })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    dir.remove()
  })

  it("places on the least loaded, takes new streams on an added replica at once, and drains without loss", async () => {
    const endpoint = natcd.endpoints[0]!
    const writer = kvWriter(endpoint)
    const startRev = Number((await writer.put("placement-start", "x")).header.revision)
    // The gateway has load reports of both replicas.
    await eventually("the gateway knows both replicas", async () => (await gatewayMetric("natcd_gateway_watch_replicas")) === 2)
    const client = watchClient(endpoint)
    const streams: WatchStream[] = []
    const open = async (n: number) => {
      const opened = Array.from({ length: n }, () => {
        const s = openWatch(endpoint, { client })
        s.create({ key: "p/", rangeEnd: prefixEnd("p/"), startRevision: startRev + 1 })
        return s
      })
      for (const s of opened) await s.until((r) => r.some((x) => x.created))
      streams.push(...opened)
    }
    // Writes all along.
    let stop = false
    let puts = 0
    const writing = (async () => {
      while (!stop) {
        // A failed put is retried (same key and value).
        await writer.put(`p/${puts}`, `v${puts}`).then(() => puts++, () => undefined)
        await sleep(10)
      }
    })()

    // 1. Least loaded: 40 streams split evenly.
    await open(40)
    const [a, b] = [await streamsOn(1), await streamsOn(2)]
    expect(a + b).toBe(40)
    expect(Math.abs(a - b)).toBeLessThanOrEqual(2)

    // 2. Added under load: w2 hangs (SIGSTOP), its streams move to w1 once pings go
    //    unanswered; then it is killed and the supervisor starts a new w2, which takes the next
    //    20 streams, all of them.
    expect(signalReplica(natcd, "w2", "SIGSTOP")).toBe(1)
    await eventually("w1 holds all 40 streams", async () => (await streamsOn(1)) === 40)
    expect(signalReplica(natcd, "w2", "SIGKILL")).toBe(1)
    await eventually("w2 is back", async () => (await httpGet(metricsPort(portOffset, 0, "watch", 2), "/readyz")).status === 200)
    await eventually("the gateway has w2's report", async () => (await gatewayMetric("natcd_gateway_watch_replicas")) === 2 && (await streamsOn(2)) === 0)
    await sleep(1100) // a fresh report from the restarted w2
    await open(20)
    expect(await streamsOn(2)).toBe(20)
    expect(await streamsOn(1)).toBe(40)

    // 3. Drain: SIGTERM to w1 hands its 40 streams to w2 at once.
    const unansweredBefore = await gatewayMetric("natcd_gateway_watch_failovers_total", ['reason="unanswered"'])
    const drainedBefore = await gatewayMetric("natcd_gateway_watch_failovers_total", ['reason="draining"'])
    expect(signalReplica(natcd, "w1", "SIGTERM")).toBe(1)
    await eventually("w2 holds all 60 streams", async () => (await streamsOn(2)) === 60)
    expect(await gatewayMetric("natcd_gateway_watch_failovers_total", ['reason="draining"']) - drainedBefore).toBe(40)
    expect(await gatewayMetric("natcd_gateway_watch_failovers_total", ['reason="unanswered"'])).toBe(unansweredBefore)

    await sleep(500)
    stop = true
    await writing
    const endRev = Number((await writer.put("p/end", "x")).header.revision)
    expect(puts).toBeGreaterThan(50)

    // Every watcher: every revision from its start to the end, once, in order.
    const expected = Array.from({ length: endRev - startRev }, (_, i) => startRev + 1 + i)
    for (const s of streams) {
      await s.until((r) => r.some((x) => x.events.some((e) => e.modRevision === endRev)), 30_000)
      expect(s.responses.flatMap((x) => x.events.map((e) => e.modRevision))).toEqual(expected)
      expect(s.error()).toBeUndefined()
    }
    for (const s of streams) s.close()
    client.close()
    writer.close()
    // Through kills, restarts and a drain, every process logged one JSON object per line, at
    // the level asked for (--log-level=Warn: nothing below WARN).
    const lines = natcd.output().split("\n").filter((l) => l.trim() !== "")
    for (const line of lines) {
      let parsed: { level?: string } | undefined
      try {
        parsed = JSON.parse(line) as { level?: string }
      } catch {
        parsed = undefined
      }
      expect(parsed, line).toBeDefined()
      expect(["WARN", "ERROR", "FATAL"], line).toContain(parsed!.level)
    }
  }, 180_000)
})
