/**
 * Several gateways per member (issue 19): a member started with `--gateways=2` runs two gateway
 * processes on one client address (SO_REUSEPORT; the kernel spreads connections over them).
 *
 * - Writes, reads, watches and leases work through either, and across them: a lease granted
 *   through one is kept alive and read through the other, a watch on one sees writes made
 *   through the other. Both gateways are seen serving (their own /metrics).
 * - kill -9 of one gateway under load: clients on it get UNAVAILABLE and reconnect (to the other
 *   one, or to the restarted one); nothing acknowledged is lost, each watcher that resumes from
 *   its last seen revision + 1 (as clientv3 does) sees every revision exactly once, in order;
 *   leases kept alive through the killed gateway survive.
 */
import * as grpc from "@grpc/grpc-js"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import type { Natcd } from "./harness.ts"
import { httpGet, metricSum, metricsPort, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"
import { kvWriter, openWatch, ownConnection, prefixEnd } from "./watch-client.ts"
import type { SeenEvent, WatchStream } from "./watch-client.ts"

const portOffset = 2200

/** Started count of `method` on member m1's gateway `k` (grpc_server_started_total). */
const started = async (k: number, method: string): Promise<number> =>
  metricSum((await httpGet(metricsPort(portOffset, 0, "gateway", k), "/metrics")).body, "grpc_server_started_total", [`grpc_method="${method}"`])

/**
 * Makes clients with `make` (each on its own connection, each making one `method` call) until
 * both gateways started at least `min` more `method` calls than before; at most `max` clients.
 */
const spreadOverBoth = async <T>(method: string, min: number, max: number, make: () => Promise<T>): Promise<T[]> => {
  const before = [await started(1, method), await started(2, method)]
  const made: T[] = []
  while (made.length < max) {
    made.push(await make())
    const now = [await started(1, method), await started(2, method)]
    if (now[0]! - before[0]! >= min && now[1]! - before[1]! >= min) return made
  }
  throw new Error(`${max} connections did not reach both gateways ${min} times each`)
}

const leaseClient = (endpoint: string): grpc.Client =>
  new ((loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>).Lease!)(endpoint, grpc.credentials.createInsecure(), ownConnection)

const unary = <R>(client: grpc.Client, method: string, request: unknown): Promise<R> =>
  new Promise<R>((resolve, reject) =>
    (client as any)[method](request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: R) => (err ? reject(err) : resolve(res)))
  )

/** One LeaseKeepAlive round trip on a fresh stream of `client`: the TTL answered (rejects after 5 s). */
const keepAliveOnce = (client: grpc.Client, id: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const call = (client as any).LeaseKeepAlive({ deadline: Date.now() + 5000 }) as grpc.ClientDuplexStream<any, any>
    call.on("data", (r: { TTL: string }) => {
      resolve(Number(r.TTL))
      call.end()
    })
    call.on("error", reject)
    call.write({ ID: id })
  })

/**
 * A watcher of `prefix` that, like clientv3, re-opens its stream (on a new connection) from its
 * last seen revision + 1 when the stream fails.
 */
class ResumingWatcher {
  readonly events: SeenEvent[] = []
  reopened = 0
  private stream: WatchStream
  private consumed = 0
  private readonly timer: ReturnType<typeof setInterval>

  private readonly endpoint: string
  private readonly prefix: string

  constructor(endpoint: string, prefix: string, startRevision: number) {
    this.endpoint = endpoint
    this.prefix = prefix
    this.stream = this.open(startRevision)
    this.timer = setInterval(() => this.poll(), 50)
  }

  private open(startRevision: number): WatchStream {
    const s = openWatch(this.endpoint, { ownConnection: true })
    s.create({ key: this.prefix, rangeEnd: prefixEnd(this.prefix), startRevision })
    this.consumed = 0
    return s
  }

  private poll(): void {
    for (; this.consumed < this.stream.responses.length; this.consumed++) this.events.push(...this.stream.responses[this.consumed]!.events)
    if (!this.stream.ended()) return
    this.stream.close()
    this.reopened++
    this.stream = this.open((this.events.at(-1)?.modRevision ?? 0) + 1)
  }

  created(): Promise<void> {
    return this.stream.until((r) => r.some((x) => x.created))
  }

  async until(revision: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while ((this.events.at(-1)?.modRevision ?? 0) < revision) {
      if (Date.now() > deadline) throw new Error(`watcher at revision ${this.events.at(-1)?.modRevision} after ${timeoutMs} ms, waiting for ${revision}`)
      await sleep(20)
    }
  }

  close(): void {
    clearInterval(this.timer)
    this.stream.close()
  }
}

describe("two gateways of one member on one client address", () => {
  let natcd: Natcd
  const dir = tempDir("natcd-gateways")

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: dir.dir, portOffset, extraArgs: ["--gateways=2"] })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    dir.remove()
  })

  it("serves writes, reads, watches and leases through either gateway and across them", async () => {
    const endpoint = natcd.endpoints[0]!
    // Watches on connections that reach both gateways.
    const streams = await spreadOverBoth("Watch", 2, 40, async () => {
      const s = openWatch(endpoint, { ownConnection: true })
      s.create({ key: "gw/", rangeEnd: prefixEnd("gw/") })
      await s.until((r) => r.some((x) => x.created))
      return s
    })
    // Writers on connections that reach both gateways, one put each.
    const writers: Array<ReturnType<typeof kvWriter>> = []
    const revisions: number[] = []
    await spreadOverBoth("Put", 2, 40, async () => {
      const w = kvWriter(endpoint, ownConnection)
      writers.push(w)
      revisions.push(Number((await w.put(`gw/${writers.length}`, `v${writers.length}`)).header.revision))
    })
    const keys = writers.map((_, i) => `gw/${i + 1}`)
    // Every watch, on either gateway, sees every put, made through either, once and in order.
    for (const s of streams) {
      await s.until((r) => r.flatMap((x) => x.events).length >= keys.length)
      const events = s.responses.flatMap((x) => x.events)
      expect(events.map((e) => e.key)).toEqual(keys)
      expect(events.map((e) => e.modRevision)).toEqual(revisions)
    }
    // Every connection reads every write (linearizable reads through either gateway).
    for (const w of writers) {
      const r = await w.get("gw/", prefixEnd("gw/"))
      expect(r.kvs.map((kv) => Buffer.from(kv.key).toString())).toEqual([...keys].sort())
    }
    // Leases across gateways: granted on one connection, kept alive, read, attached and revoked
    // on others.
    const leases = await spreadOverBoth("LeaseGrant", 1, 40, async () => {
      const c = leaseClient(endpoint)
      const g = await unary<{ ID: string }>(c, "LeaseGrant", { TTL: 30 })
      return { client: c, id: g.ID }
    })
    for (const [i, { id }] of leases.entries()) {
      const other = leases[(i + 1) % leases.length]!.client
      const third = leases[(i + 2) % leases.length]!.client
      expect(await keepAliveOnce(other, id)).toBe(30)
      const ttl = await unary<{ TTL: string; grantedTTL: string }>(third, "LeaseTimeToLive", { ID: id })
      expect(Number(ttl.grantedTTL)).toBe(30)
      expect(Number(ttl.TTL)).toBeGreaterThan(25)
      await writers[i % writers.length]!.putWithLease(`lease/${i}`, "x", id)
    }
    const attached = await writers[0]!.get("lease/", prefixEnd("lease/"))
    expect(attached.kvs.length).toBe(leases.length)
    for (const [i, { id }] of leases.entries()) await unary(leases[(i + 1) % leases.length]!.client, "LeaseRevoke", { ID: id })
    expect((await writers[0]!.get("lease/", prefixEnd("lease/"))).kvs.length).toBe(0)
    for (const s of streams) s.close()
    for (const w of writers) w.close()
    for (const l of leases) l.client.close()
  }, 120_000)

  it("kill -9 of one gateway: its clients reconnect, nothing acknowledged is lost, watchers see every revision once", async () => {
    const endpoint = natcd.endpoints[0]!
    const probe = kvWriter(endpoint, ownConnection)
    const startRev = Number((await probe.put("kill-start", "x")).header.revision)
    // Watchers of kill/ on connections that reach both gateways.
    const watchers: ResumingWatcher[] = await spreadOverBoth("Watch", 3, 40, async () => {
      const w = new ResumingWatcher(endpoint, "kill/", startRev + 1)
      await w.created()
      return w
    })
    // Leases kept alive through connections of both gateways, a keep-alive a second (TTL 6).
    const leaseClients = await spreadOverBoth("LeaseGrant", 1, 40, async () => {
      const c = leaseClient(endpoint)
      return { client: c, id: (await unary<{ ID: string }>(c, "LeaseGrant", { TTL: 6 })).ID }
    })
    let stop = false
    /** Per lease, the most keep-alives that failed in a row. */
    const keepers = leaseClients.map(async ({ client, id }) => {
      let failures = 0
      let most = 0
      while (!stop) {
        await keepAliveOnce(client, id).then(() => (failures = 0), () => (most = Math.max(most, ++failures)))
        await sleep(1000)
      }
      return most
    })
    // Writers: each puts kill/<w>/<n> in turn, retrying a failed put (same key and value) until
    // it is acknowledged.
    const acked = new Map<string, string>()
    const errors: string[] = []
    const loops = Array.from({ length: 8 }, async (_, w) => {
      const writer = kvWriter(endpoint, ownConnection)
      for (let n = 0; !stop; ) {
        const key = `kill/${w}/${n}`
        try {
          await writer.put(key, `v${n}`)
          acked.set(key, `v${n}`)
          n++
        } catch (e) {
          errors.push(String(e))
          await sleep(50)
        }
      }
      writer.close()
    })
    await sleep(2000)
    const killed = signalMember(natcd, "m1", "SIGKILL", `--metrics-port=${metricsPort(portOffset, 0, "gateway", 2)}`)
    expect(killed.length).toBe(1)
    const ackedAtKill = acked.size
    await sleep(3000)
    // The supervisor restarts it; it serves again.
    const deadline = Date.now() + 30_000
    while ((await httpGet(metricsPort(portOffset, 0, "gateway", 2), "/readyz")).status !== 200) {
      expect(Date.now()).toBeLessThan(deadline)
      await sleep(200)
    }
    await sleep(1000)
    stop = true
    await Promise.all(loops)
    const leaseFailures = await Promise.all(keepers)
    expect(acked.size).toBeGreaterThan(ackedAtKill)
    const endRev = Number((await probe.put("kill/end", "x")).header.revision)

    // Nothing acknowledged is lost.
    const all = await probe.get("kill/", prefixEnd("kill/"))
    const stored = new Map(all.kvs.map((kv) => [Buffer.from(kv.key).toString(), Buffer.from(kv.value).toString()]))
    for (const [key, value] of acked) expect(stored.get(key), key).toBe(value)
    // Every watcher saw revisions startRev+1 .. endRev (only kill/ writes in between), each once.
    const expected = Array.from({ length: endRev - startRev }, (_, i) => startRev + 1 + i)
    for (const w of watchers) {
      await w.until(endRev)
      expect(w.events.map((e) => e.modRevision)).toEqual(expected)
    }
    // The kill was felt: some watchers resumed, and some calls failed over.
    expect(watchers.some((w) => w.reopened > 0)).toBe(true)
    // The leases stayed alive (a keep-alive failing at the kill is retried a second later).
    for (const { client, id } of leaseClients) {
      const ttl = await unary<{ TTL: string }>(client, "LeaseTimeToLive", { ID: id })
      expect(Number(ttl.TTL), `lease ${id}`).toBeGreaterThan(0)
    }
    expect(Math.max(...leaseFailures)).toBeLessThan(3)
    for (const w of watchers) w.close()
    for (const l of leaseClients) l.client.close()
    probe.close()
  }, 180_000)
})
