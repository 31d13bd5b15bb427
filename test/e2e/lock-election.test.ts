/**
 * etcd's Lock and Election gRPC services (v3lockpb.Lock, v3electionpb.Election) on a 3-member
 * cluster, every service a real process.
 *
 * Mutual exclusion: 8 clients take the lock `counter` in a loop for 30 s and, while holding it,
 * read a counter key, add one and write it back without a txn; meanwhile every process of the
 * leader member is killed with SIGKILL every 10 s. At the end the counter equals the number of
 * acquisitions and no two clients ever held the lock at once. Ambiguous writes (a put whose
 * answer was lost in the failover) are resolved by re-reading the counter while still holding
 * the lock. This holds because every client keeps its lease alive: a lock is only as safe as
 * its lease (etcd's caveat, see services/gateway/lock.ts); a client that may have lost its lease
 * must treat the lock as lost and use the key's revision as a fencing token.
 *
 * Election: an Observe stream sees every leader and proclamation, in order, as campaigners
 * win, proclaim and resign; Leader, "election: no leader" and "election: not leader" as etcd.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { etcdClients, KeepAliver } from "./lease-client.ts"
import type { EtcdClients } from "./lease-client.ts"
import { findLeader, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const enc = (s: string) => Buffer.from(s)

describe("lock and election", () => {
  const data = tempDir("lock-election")
  let natcd: Natcd
  let c: EtcdClients[]
  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset: 1320, members: 3 })
    c = natcd.endpoints.map((e) => etcdClients(e))
  }, 90_000)
  afterAll(async () => {
    c?.forEach((x) => x.close())
    await natcd?.stop()
    data.remove()
  })

  /** Calls through endpoint `at.i`, moving to the next endpoint after a failure, until `ok` or the deadline. */
  const retrying = async <R>(at: { i: number }, f: (x: EtcdClients) => Promise<R>, deadlineMs = 60_000): Promise<R> => {
    const deadline = Date.now() + deadlineMs
    for (;;) {
      try {
        return await f(c[at.i % c.length]!)
      } catch (e) {
        if (Date.now() > deadline) throw e
        at.i++
        await sleep(100)
      }
    }
  }

  it("8 clients around a shared counter for 30 s with leader kills: counter = acquisitions", async () => {
    await c[0]!.call(c[0]!.kv, "Put", { key: enc("counter"), value: enc("0") })
    const leases: string[] = []
    for (let i = 0; i < 8; i++) leases.push((await c[i % 3]!.call(c[i % 3]!.lease, "LeaseGrant", { TTL: 10 })).ID)
    const aliver = new KeepAliver(natcd.endpoints, leases, 2000)
    aliver.start()
    let stop = false
    let acquisitions = 0
    let holders = 0
    let overlaps = 0
    const perClient = new Array(8).fill(0)
    const readCounter = async (at: { i: number }) => {
      const r = await retrying(at, (x) => x.call(x.kv, "Range", { key: enc("counter") }, 5000))
      return Number(r.kvs[0].value.toString())
    }
    const clientLoop = async (n: number) => {
      const at = { i: n }
      while (!stop) {
        const lock = await retrying(at, (x) => x.call(x.lock, "Lock", { name: enc("counter"), lease: leases[n] }, 20_000), 120_000)
        holders++
        if (holders > 1) overlaps++
        const before = await readCounter(at)
        for (;;) {
          try {
            await c[at.i % c.length]!.call(c[at.i % c.length]!.kv, "Put", { key: enc("counter"), value: enc(String(before + 1)) }, 5000)
            break
          } catch {
            // The put may or may not have applied: let the failover settle, then look.
            at.i++
            await sleep(1000)
            if ((await readCounter(at)) === before + 1) break
          }
        }
        acquisitions++
        perClient[n]++
        holders--
        await retrying(at, (x) => x.call(x.lock, "Unlock", { key: lock.key }, 5000), 120_000)
      }
    }
    const started = Date.now()
    const loops = Array.from({ length: 8 }, (_, n) => clientLoop(n))
    const kills: string[] = []
    while (Date.now() - started < 30_000) {
      await sleep(Math.min(10_000, 30_000 - (Date.now() - started)))
      if (Date.now() - started > 29_000) break
      const leader = await findLeader(natcd, 15_000)
      signalMember(natcd, `m${leader + 1}`, "SIGKILL")
      kills.push(`m${leader + 1}@${Math.round((Date.now() - started) / 1000)}s`)
    }
    stop = true
    await Promise.all(loops)
    aliver.stop()
    const at = { i: 0 }
    const counter = await readCounter(at)
    console.log(`lock: ${acquisitions} acquisitions (per client ${perClient.join(",")}), counter ${counter}, overlaps ${overlaps}, leader kills ${kills.join(" ")}, leases lost ${aliver.lost.size}`)
    expect(kills.length).toBeGreaterThanOrEqual(2)
    expect(aliver.lost.size).toBe(0)
    expect(overlaps).toBe(0)
    expect(counter).toBe(acquisitions)
    expect(acquisitions).toBeGreaterThan(50)
  }, 240_000)

  it("Observe sees every leader change and proclamation in order", async () => {
    const at = { i: 0 }
    await findLeader(natcd, 30_000)
    const name = enc("elect-observe")
    const grant = async () => (await retrying(at, (x) => x.call(x.lease, "LeaseGrant", { TTL: 30 }))).ID as string
    const [la, lb, lc] = [await grant(), await grant(), await grant()]
    const seen: string[] = []
    const observe = (c[0]!.election as any).Observe({ name })
    observe.on("data", (r: { kv: { value: Buffer } }) => seen.push(r.kv.value.toString()))
    observe.on("error", () => undefined)
    const a = await c[1]!.call(c[1]!.election, "Campaign", { name, lease: la, value: enc("a") })
    const bWins = c[2]!.call(c[2]!.election, "Campaign", { name, lease: lb, value: enc("b") }, 30_000)
    await sleep(200)
    const cWins = c[0]!.call(c[0]!.election, "Campaign", { name, lease: lc, value: enc("c") }, 30_000)
    await sleep(300)
    await c[1]!.call(c[1]!.election, "Proclaim", { leader: a.leader, value: enc("a2") })
    await sleep(300)
    const leaderNow = await c[2]!.call(c[2]!.election, "Leader", { name })
    expect(leaderNow.kv.value.toString()).toBe("a2")
    await c[1]!.call(c[1]!.election, "Resign", { leader: a.leader })
    const b = await bWins
    expect(b.leader.key.toString()).toBe(`elect-observe/${BigInt(lb).toString(16)}`)
    await sleep(300)
    await c[2]!.call(c[2]!.election, "Proclaim", { leader: b.leader, value: enc("b2") })
    await sleep(300)
    // A resigned leader can no longer proclaim.
    await expect(c[1]!.call(c[1]!.election, "Proclaim", { leader: a.leader, value: enc("zombie") })).rejects.toMatchObject({ details: "election: not leader" })
    await c[2]!.call(c[2]!.election, "Resign", { leader: b.leader })
    await cWins
    await sleep(300)
    observe.cancel()
    console.log(`election: observe saw ${seen.join(" -> ")}`)
    expect(seen).toEqual(["a", "a2", "b", "b2", "c"])
    await expect(c[0]!.call(c[0]!.election, "Leader", { name: enc("nobody") })).rejects.toMatchObject({ details: "election: no leader" })
    await expect(c[0]!.call(c[0]!.election, "Resign", {})).rejects.toMatchObject({ details: "\"leader\" field must be provided" })
  }, 60_000)
})
