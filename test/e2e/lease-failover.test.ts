/**
 * Leases across a leader failover (3 members, every service a real process): 1000 leases with
 * a 10 s TTL, each with a key, are kept alive through the two followers' gateways (one
 * keep-alive per lease every TTL/3, as clientv3 sends them) while every process of the leader
 * member is killed with SIGKILL. The new leader's lease service renews every lease on
 * promotion (etcd Promote: remaining TTL + election timeout), and keep-alives reach it through
 * the followers' lease services, so no lease expires and no key goes: checked 15 s after the
 * kill, longer than a TTL. Once keep-alives stop, all 1000 expire, at etcd's revocation rate.
 */
import { describe, expect, it } from "vitest"
import { etcdClients, KeepAliver } from "./lease-client.ts"
import { findLeader, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"

const enc = (s: string) => Buffer.from(s)

describe("lease failover", () => {
  it("keeps 1000 kept-alive 10 s leases through kill -9 of the leader member", async () => {
    const data = tempDir("lease-failover")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 1310, members: 3 })
    const leader = await findLeader(natcd)
    const followers = [0, 1, 2].filter((i) => i !== leader)
    const clients = followers.map((i) => etcdClients(natcd.endpoints[i]!))
    let aliver: KeepAliver | undefined
    try {
      const ids: string[] = []
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(Array.from({ length: 50 }, async (_, j) => {
          const n = batch * 50 + j
          const c = clients[n % clients.length]!
          const g = await c.call(c.lease, "LeaseGrant", { TTL: 10 })
          await c.call(c.kv, "Put", { key: enc(`lf/${String(n).padStart(4, "0")}`), value: enc("v"), lease: g.ID })
          ids.push(g.ID)
        }))
      }
      expect(ids.length).toBe(1000)
      aliver = new KeepAliver(followers.map((i) => natcd.endpoints[i]!), ids, 3333)
      aliver.start()
      await sleep(4000)
      const killedAt = Date.now()
      expect(signalMember(natcd, `m${leader + 1}`, "SIGKILL").length).toBe(5)
      const newLeader = await findLeader(natcd, 15_000, [leader])
      console.log(`lease failover: killed m${leader + 1}; m${newLeader + 1} leads after ${Date.now() - killedAt} ms`)
      await sleep(15_000 - (Date.now() - killedAt))
      const c = clients[0]!
      const count = await c.call(c.kv, "Range", { key: enc("lf/"), range_end: enc("lf0"), count_only: true })
      const leases = await c.call(c.lease, "LeaseLeases", {})
      const ttls = await Promise.all(ids.slice(0, 50).map((id) => c.call(c.lease, "LeaseTimeToLive", { ID: id })))
      console.log(`lease failover: 15 s after the kill: ${count.count} keys, ${leases.leases.length} leases, ${aliver.lost.size} keep-alives answered TTL 0, ` +
        `${aliver.counters.answered}/${aliver.counters.sent} keep-alives answered, stream reopened ${aliver.counters.reopened} times, ` +
        `remaining TTLs ${Math.min(...ttls.map((t) => Number(t.TTL)))}-${Math.max(...ttls.map((t) => Number(t.TTL)))} s`)
      expect(aliver.lost.size).toBe(0)
      expect(Number(count.count)).toBe(1000)
      expect(leases.leases.length).toBe(1000)
      for (const t of ttls) expect(Number(t.TTL)).toBeGreaterThan(0)

      // Stop keeping them alive: all expire, revoked through raft at most 1000/s.
      aliver.stop()
      aliver = undefined
      const stoppedAt = Date.now()
      let left = 1000
      while (Date.now() - stoppedAt < 25_000) {
        const r = await c.call(c.kv, "Range", { key: enc("lf/"), range_end: enc("lf0"), count_only: true })
        left = Number(r.count)
        if (left === 0) break
        await sleep(250)
      }
      console.log(`lease failover: keep-alives stopped; all 1000 leases expired ${Date.now() - stoppedAt} ms later`)
      expect(left).toBe(0)
    } finally {
      aliver?.stop()
      clients.forEach((x) => x.close())
      await natcd.stop()
      data.remove()
    }
  }, 180_000)
})
