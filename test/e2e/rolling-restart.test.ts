/**
 * Rolling restart under load (issue 9): with a put loop and a watcher running against a
 * 3-member cluster with two watch replicas, every service type is restarted in turn (gateway,
 * raft, wal, mvcc, lease, then the watch replicas), one member at a time, each time waiting for
 * the restarted process's /readyz before the next. Checks:
 *
 * - no acknowledged write is lost: every acknowledged put is readable at the end, with its value;
 * - the watcher (a client that, as etcd's clientv3 does, reopens its watch from the last
 *   revision it saw + 1 on another endpoint when its stream breaks) sees every revision of the
 *   run exactly once, in order: none missed, none duplicated;
 * - clients see only retriable errors (gRPC Unavailable, or their own deadline).
 */
import { execFileSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import { httpGet, metricsPort, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"
import { openWatch, prefixEnd } from "./watch-client.ts"
import type { WatchStream } from "./watch-client.ts"

const portOffset = 1700

/** The pid of the process serving /metrics on `port` in this cluster (its --metrics-port is unique). */
const pidOnPort = (natcd: Natcd, service: string, port: number): number | undefined => {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" })
  for (const line of out.split("\n")) {
    if (line.includes(`services/${service}/main.ts`) && line.includes(`--metrics-port=${port} `) && line.includes(natcd.dataDir)) {
      return Number(line.trim().split(/\s+/)[0])
    }
  }
  // Watch replicas carry --data-dir too; fall back to the port alone.
  for (const line of out.split("\n")) {
    if (line.includes(`services/${service}/main.ts`) && line.includes(`--metrics-port=${port} `)) return Number(line.trim().split(/\s+/)[0])
  }
  return undefined
}

/** SIGTERMs the process on `port` and waits for its successor's /readyz. */
const restart = async (natcd: Natcd, service: string, port: number): Promise<number> => {
  const started = Date.now()
  const old = pidOnPort(natcd, service, port)
  expect(old, `${service} on ${port}`).toBeDefined()
  process.kill(old!, "SIGTERM")
  const deadline = Date.now() + 60_000
  for (;;) {
    const now = pidOnPort(natcd, service, port)
    if (now !== undefined && now !== old && (await httpGet(port, "/readyz")).status === 200) break
    if (Date.now() > deadline) throw new Error(`${service} on ${port} not ready after restart\n${natcd.output().slice(-3000)}`)
    await sleep(200)
  }
  return Date.now() - started
}

/** A watcher over the prefix that resumes on another endpoint from the next revision when its stream breaks. */
const resumingWatcher = (endpoints: ReadonlyArray<string>, prefix: string, startRevision: number) => {
  const revisions: number[] = []
  let next = startRevision
  let stream: WatchStream | undefined
  let consumed = 0
  let at = 0
  let stopped = false
  let reopened = 0
  const open = () => {
    stream = openWatch(endpoints[at % endpoints.length]!)
    consumed = 0
    stream.create({ key: prefix, rangeEnd: prefixEnd(prefix), startRevision: next })
  }
  open()
  const pump = (async () => {
    while (!stopped) {
      const s = stream!
      while (consumed < s.responses.length) {
        const r = s.responses[consumed++]!
        for (const e of r.events) {
          revisions.push(e.modRevision)
          next = e.modRevision + 1
        }
        if (r.canceled) s.close()
      }
      if (s.ended() || (s.responses.length > 0 && s.responses[s.responses.length - 1]!.canceled)) {
        s.close()
        at++
        reopened++
        open()
        await sleep(100)
        continue
      }
      await sleep(20)
    }
  })()
  return {
    revisions,
    reopened: () => reopened,
    next: () => next,
    stop: async () => {
      stopped = true
      await pump
      stream?.close()
    }
  }
}

describe("rolling restart under load", () => {
  it("restarts every service type one member at a time: nothing lost, no event missed or duplicated, only retriable errors", async () => {
    const data = tempDir("rolling")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3, extraArgs: ["--watch-replicas=2"] })
    try {
      const first = kvClient(natcd.endpoints[0]!)
      const start = Number((await first.put("rr-start", "0")).header.revision)
      first.close()
      const watcher = resumingWatcher(natcd.endpoints, "rr-", start + 1)

      // The put loop: each key is put until acknowledged, moving to the next endpoint on error.
      const clients = natcd.endpoints.map((e) => kvClient(e))
      const acked = new Map<string, string>()
      const errors = new Map<string, number>()
      let stop = false
      let n = 0
      let at = 0
      const loop = (async () => {
        while (!stop) {
          const key = `rr-${n}`
          const value = `v${n}`
          n++
          for (;;) {
            try {
              await clients[at % clients.length]!.put(key, value, 8000)
              acked.set(key, value)
              break
            } catch (e) {
              const code = (e as { code?: number }).code ?? -1
              const text = `${code} ${(e as { details?: string }).details ?? ""}`.slice(0, 80)
              errors.set(text, (errors.get(text) ?? 0) + 1)
              at++
              if (stop) break
              await sleep(50)
            }
          }
        }
      })()

      await sleep(1500)
      const timings: string[] = []
      for (const service of ["gateway", "raft", "wal", "mvcc", "lease"] as const) {
        for (let m = 0; m < 3; m++) {
          const ms = await restart(natcd, service, metricsPort(portOffset, m, service))
          timings.push(`${service}/m${m + 1} ${ms} ms`)
          await sleep(500)
        }
      }
      for (const replica of [1, 2]) {
        const ms = await restart(natcd, "watch", metricsPort(portOffset, 0, "watch", replica))
        timings.push(`watch/w${replica} ${ms} ms`)
        await sleep(500)
      }
      await sleep(1000)
      stop = true
      await loop

      // Every acknowledged write is there.
      const reader = kvClient(natcd.endpoints[0]!)
      const all = await reader.range({ key: Buffer.from("rr-"), range_end: Buffer.from(prefixEnd("rr-")) })
      const final = Number(all.header.revision)
      reader.close()
      const stored = new Map(all.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]))
      let lost = 0
      for (const [key, value] of acked) if (stored.get(key) !== value) lost++

      // The watcher saw every revision after the start exactly once, in order.
      const deadline = Date.now() + 30_000
      while (watcher.next() <= final && Date.now() < deadline) await sleep(100)
      await watcher.stop()
      const seen = watcher.revisions
      const duplicates = seen.length - new Set(seen).size
      let outOfOrder = 0
      for (let i = 1; i < seen.length; i++) if (seen[i]! <= seen[i - 1]!) outOfOrder++
      const seenSet = new Set(seen)
      let missed = 0
      for (let r = start + 1; r <= final; r++) if (!seenSet.has(r)) missed++
      const retriable = [...errors.entries()].filter(([k]) => k.startsWith("14 ") || k.startsWith("4 "))
      const other = [...errors.entries()].filter(([k]) => !k.startsWith("14 ") && !k.startsWith("4 "))
      console.log([
        `restarts: ${timings.join(", ")}`,
        `writes acknowledged ${acked.size}, lost ${lost}; revisions ${start + 1}..${final}`,
        `watch events ${seen.length}, missed ${missed}, duplicated ${duplicates}, out of order ${outOfOrder}, watch reopened ${watcher.reopened()} times`,
        `client errors: ${JSON.stringify(Object.fromEntries(errors))}`
      ].join("\n"))
      for (const c of clients) c.close()
      expect(acked.size).toBeGreaterThan(100)
      expect(lost).toBe(0)
      expect(missed).toBe(0)
      expect(duplicates).toBe(0)
      expect(outOfOrder).toBe(0)
      expect(other, JSON.stringify(other)).toEqual([])
      expect(retriable.length).toBeGreaterThanOrEqual(0)
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 480_000)
})
