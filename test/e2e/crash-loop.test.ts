/**
 * Crash loop: while clients put through all three members, the wal and raft processes of a
 * random member are killed with SIGKILL at random moments, 10 times (CRASH_LOOP_ROUNDS; the
 * supervisor restarts them). After every restart every acknowledged put is readable, and at
 * the end the members' HashKV agree. A small --snapshot-count makes snapshots and log compaction part of the loop.
 */
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import type { KvClient } from "./grpc-client.ts"
import { etcdctl, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"

const rounds = Number(process.env.CRASH_LOOP_ROUNDS ?? 10)

/** A small seeded PRNG so a failing run can be repeated (CRASH_LOOP_SEED). */
const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

describe("crash loop of wal and raft processes", () => {
  it(`loses no acknowledged put over ${rounds} kill -9 rounds`, async () => {
    const seed = Number(process.env.CRASH_LOOP_SEED ?? Date.now() % 100000)
    const random = mulberry32(seed)
    console.log(`crash loop seed ${seed}`)
    const data = tempDir("crash-loop")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 960, members: 3, env: { NATCD_SNAPSHOT_COUNT: "200", NATCD_SNAPSHOT_CATCHUP_ENTRIES: "50" } })
    const clients: KvClient[] = natcd.endpoints.map((e) => kvClient(e))
    const acknowledged = new Map<string, string>()
    let stop = false
    try {
      const workers = Array.from({ length: 4 }, (_, w) => (async () => {
        let target = w % 3
        for (let i = 0; !stop; i++) {
          const key = `cl-${w}-${i}`
          for (;;) {
            if (stop) return
            try {
              await clients[target]!.put(key, `v-${key}`, 3000)
              acknowledged.set(key, `v-${key}`)
              break
            } catch {
              target = (target + 1) % 3
              await sleep(30)
            }
          }
        }
      })())
      let lost = 0
      for (let round = 0; round < rounds; round++) {
        await sleep(300 + Math.floor(random() * 700))
        const member = `m${1 + Math.floor(random() * 3)}`
        const which = random() < 0.5 ? ["/services/wal/", "/services/raft/"] : [random() < 0.5 ? "/services/wal/" : "/services/raft/"]
        for (const service of which) signalMember(natcd, member, "SIGKILL", service)
        // Every put acknowledged so far is readable (linearizable read through a live member).
        const snapshot = new Map(acknowledged)
        const deadline = Date.now() + 30_000
        for (;;) {
          const r = await etcdctl(natcd.endpoints.join(","), ["get", "cl-", "--prefix", "-w", "json", "--command-timeout=5s"])
          if (r.code === 0) {
            const kvs = (JSON.parse(r.stdout).kvs ?? []) as Array<{ key: string; value: string }>
            const found = new Map(kvs.map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value, "base64").toString()]))
            lost = [...snapshot].filter(([k, v]) => found.get(k) !== v).length
            break
          }
          if (Date.now() > deadline) {
            const status = await etcdctl(natcd.endpoints.join(","), ["endpoint", "status", "-w", "table", "--command-timeout=3s"])
            throw new Error(`no read after round ${round} (killed ${which.join(" ")} of ${member}): ${r.stderr}\n${status.stdout}${status.stderr}\n${natcd.output().slice(-6000)}`)
          }
          await sleep(200)
        }
        expect(lost, `round ${round}: lost ${lost} of ${snapshot.size}`).toBe(0)
      }
      stop = true
      await Promise.all(workers)
      // Members converge: equal HashKV.
      const deadline = Date.now() + 60_000
      let hashes: string[] = []
      for (;;) {
        const r = await etcdctl(natcd.endpoints.join(","), ["endpoint", "hashkv", "-w", "json"])
        if (r.code === 0) {
          hashes = (JSON.parse(r.stdout) as Array<{ HashKV: { hash: number; header: { revision: number } } }>).map((h) => `${h.HashKV.hash}@${h.HashKV.header.revision}`)
          if (hashes.length === 3 && hashes.every((h) => h === hashes[0])) break
        }
        if (Date.now() > deadline) throw new Error(`HashKV never agreed: ${JSON.stringify(hashes)}`)
        await sleep(300)
      }
      console.log(`crash loop: ${rounds} rounds, ${acknowledged.size} puts acknowledged, lost 0, HashKV ${hashes[0]} on all members`)
    } finally {
      stop = true
      for (const c of clients) c.close()
      await natcd.stop()
      data.remove()
    }
  }, 600_000)
})
