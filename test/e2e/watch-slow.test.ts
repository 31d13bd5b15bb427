/**
 * Slow watchers are isolated, and progress notifications work end to end (1 member, 1 watch
 * replica, progress interval set to 1 s through the environment the supervisor passes on).
 *
 * Latency: put -> event latency of four reading watchers is measured twice for the same load
 * (150 puts of 32 KiB, against a per-stream window of 512 KiB), first alone, then next to a watcher whose client stopped reading (its
 * gRPC stream paused, so HTTP/2 flow control pushes back on the gateway, which stops
 * acknowledging, so the replica's window for that stream fills and its watcher becomes a
 * victim). The figures are printed; the check is loose on purpose (a shared machine): the
 * stalled stream must not multiply the others' latency. Afterwards the stalled client reads
 * again and must get every event, in order, once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Natcd } from "./harness.ts"
import { sleep, startNatcd, tempDir } from "./harness.ts"
import { kvWriter, openWatch, prefixEnd } from "./watch-client.ts"
import type { WatchStream } from "./watch-client.ts"

const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

describe("slow watchers and progress", () => {
  const dir = tempDir("watch-slow")
  let natcd: Natcd

  beforeAll(async () => {
    process.env.NATCD_WATCH_PROGRESS_NOTIFY_INTERVAL = "1000"
    // A 512 KiB window per stream (default 4 MiB), so that this test's 4.8 MB clearly exceeds it.
    process.env.NATCD_WATCH_WINDOW_BYTES = String(512 * 1024)
    natcd = await startNatcd({ dataDir: dir.dir, portOffset: 830 })
    delete process.env.NATCD_WATCH_PROGRESS_NOTIFY_INTERVAL
    delete process.env.NATCD_WATCH_WINDOW_BYTES
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    dir.remove()
  })

  it("one stalled watcher does not raise the others' event latency, and catches up whole", async () => {
    const endpoint = natcd.endpoints[0]!
    const kv = kvWriter(endpoint)
    const value = "x".repeat(32 * 1024)
    const puts = 150

    /** One load phase: returns event latencies (ms) over the reading watchers and put latencies. */
    const phase = async (prefix: string, readers: ReadonlyArray<WatchStream>) => {
      const sentAt = new Map<number, number>()
      const putMs: number[] = []
      for (let i = 0; i < puts; i++) {
        const t0 = performance.now()
        const r = await kv.put(`${prefix}${i % 10}`, `${i}:${value}`)
        putMs.push(performance.now() - t0)
        sentAt.set(Number(r.header.revision), t0)
        await sleep(5)
      }
      await Promise.all(readers.map((s) => s.until((rs) => rs.flatMap((r) => r.events).filter((e) => e.key.startsWith(prefix)).length >= puts, 30_000)))
      const latencies: number[] = []
      for (const s of readers) {
        for (const r of s.responses) for (const e of r.events) if (e.key.startsWith(prefix)) latencies.push(r.at - sentAt.get(e.modRevision)!)
      }
      return { latencies, putMs }
    }

    const readers = Array.from({ length: 4 }, () => {
      const s = openWatch(endpoint)
      s.create({ key: "l", rangeEnd: prefixEnd("l") })
      return s
    })
    await Promise.all(readers.map((s) => s.until((r) => r.some((x) => x.created))))
    const alone = await phase("la/", readers)

    const stalled = openWatch(endpoint)
    stalled.create({ key: "l", rangeEnd: prefixEnd("l") })
    await stalled.until((r) => r.some((x) => x.created))
    stalled.pause()
    const withStalled = await phase("lb/", readers)
    const receivedWhileStalled = stalled.responses.flatMap((r) => r.events).length

    stalled.resume()
    await stalled.until((rs) => rs.flatMap((r) => r.events).length >= puts, 60_000)
    await sleep(300)
    const got = stalled.responses.flatMap((r) => r.events).map((e) => `${e.key}@${e.modRevision}:${e.value.slice(0, 8)}`)
    const want = readers[0]!.responses.flatMap((r) => r.events).filter((e) => e.key.startsWith("lb/")).map((e) => `${e.key}@${e.modRevision}:${e.value.slice(0, 8)}`)
    expect(got).toEqual(want)

    const fmt = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms`
    console.log(`watch latency, 4 readers, ${puts} puts of 32 KiB: alone ${fmt(alone.latencies)}; next to a stalled watcher ${fmt(withStalled.latencies)}`)
    console.log(`put latency: alone ${fmt(alone.putMs)}; next to a stalled watcher ${fmt(withStalled.putMs)}`)
    console.log(`stalled watcher: ${receivedWhileStalled} of ${puts} events reached its client while it was not reading; all ${got.length} in order after it read again`)
    // The replica moved the stalled stream's watcher aside (victims) rather than buffer for it.
    expect(natcd.output()).toContain("slow watch streams")
    // Loose: a stalled client must not multiply everyone else's latency.
    expect(percentile(withStalled.latencies, 50)).toBeLessThan(percentile(alone.latencies, 50) * 5 + 100)
    for (const s of [...readers, stalled]) s.close()
    kv.close()
  }, 180_000)

  it("periodic progress notifications and progress requests", async () => {
    const endpoint = natcd.endpoints[0]!
    const kv = kvWriter(endpoint)
    const s = openWatch(endpoint)
    s.create({ key: "p/", rangeEnd: prefixEnd("p/"), progressNotify: true })
    s.create({ key: "q" })
    await s.until((r) => r.filter((x) => x.created).length === 2)
    const rev = Number((await kv.put("other", "1")).header.revision)
    await s.until((r) => r.some((x) => x.watchId === 0 && !x.created && x.events.length === 0 && x.revision >= rev), 5000)
    expect(s.responses.some((x) => x.watchId === 1 && x.events.length === 0 && !x.created)).toBe(false)
    s.progress()
    await s.until((r) => r.some((x) => x.watchId === -1), 5000)
    expect(s.responses.find((x) => x.watchId === -1)!.revision).toBe(rev)
    s.close()
    kv.close()
  }, 60_000)
})
