/**
 * Failover of a 3-member cluster (real nats-server, every service a real process): while
 * clients put through all three endpoints, every process of the leader member is killed with
 * SIGKILL. A new leader is elected within 3 s, puts resume through the other endpoints, and
 * after the supervisor restarts the killed member every acknowledged put is readable on every
 * member, the restarted one included.
 */
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import type { KvClient } from "./grpc-client.ts"
import { endpointStatus, etcdctl, findLeader, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"

describe("3-member failover", () => {
  it("elects a new leader within 3 s after kill -9 of the leader and loses no acknowledged put", async () => {
    const data = tempDir("failover")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 500, members: 3 })
    const clients: KvClient[] = natcd.endpoints.map((e) => kvClient(e))
    try {
      const acknowledged = new Map<string, string>()
      const ackTimes: number[] = []
      let stop = false
      const workers = Array.from({ length: 6 }, (_, w) => (async () => {
        let target = w % clients.length
        for (let i = 0; !stop; i++) {
          const key = `fo-${w}-${i}`
          // Retry the same key through the next endpoint until it is acknowledged.
          for (let attempt = 0; !stop; attempt++) {
            try {
              await clients[target]!.put(key, `v-${key}`, 3000)
              acknowledged.set(key, `v-${key}`)
              ackTimes.push(Date.now())
              break
            } catch {
              target = (target + 1) % clients.length
              await sleep(50)
            }
          }
        }
      })())
      await sleep(2000)
      const leader = await findLeader(natcd)
      const leaderName = `m${leader + 1}`
      const killedAt = Date.now()
      expect(signalMember(natcd, leaderName, "SIGKILL").length).toBe(5) // wal, mvcc, lease, raft, gateway
      const newLeader = await findLeader(natcd, 10_000, [leader])
      const electedAfterMs = Date.now() - killedAt
      console.log(`failover: killed ${leaderName}; m${newLeader + 1} leads after ${electedAfterMs} ms`)
      expect(electedAfterMs).toBeLessThan(3000)
      await sleep(3000)
      stop = true
      await Promise.all(workers)
      const resumed = ackTimes.filter((t) => t > killedAt + electedAfterMs).length
      console.log(`failover: ${acknowledged.size} puts acknowledged, ${resumed} after the new leader`)
      expect(resumed).toBeGreaterThan(10)

      // The killed member is back (the supervisor restarts it) and catches up.
      const deadline = Date.now() + 30_000
      for (;;) {
        const statuses = await Promise.all(natcd.endpoints.map((e) => endpointStatus(e, 1000)))
        const indexes = statuses.map((s) => s?.raftAppliedIndex ?? -1)
        if (indexes.every((x) => x > 0 && x === indexes[0])) break
        if (Date.now() > deadline) throw new Error(`members did not converge: ${JSON.stringify(statuses)}`)
        await sleep(200)
      }
      for (const endpoint of natcd.endpoints) {
        const r = await etcdctl(endpoint, ["get", "fo-", "--prefix", "--consistency=s", "-w", "json"])
        expect(r.code, r.stderr).toBe(0)
        const kvs = (JSON.parse(r.stdout).kvs ?? []) as Array<{ key: string; value: string }>
        const found = new Map(kvs.map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value, "base64").toString()]))
        const lost = [...acknowledged].filter(([k, v]) => found.get(k) !== v)
        expect(lost, `${endpoint} lost ${lost.length} of ${acknowledged.size}`).toEqual([])
      }
    } finally {
      for (const c of clients) c.close()
      await natcd.stop()
      data.remove()
    }
  }, 180_000)
})
