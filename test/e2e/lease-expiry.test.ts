/**
 * Lease expiry end to end on a 3-member cluster (every service a real process): keys attached
 * to a 2 s lease disappear after the lease expires, all in one revision, with DELETE events on
 * a watch, within etcd's tolerance (the leader's lessor checks expiry every 500 ms and revokes
 * through raft: gone between 2 s and about 3.5 s after the grant); keep-alives keep a lease and
 * its keys for as long as they come; every member ends with the same state.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { etcdClients } from "./lease-client.ts"
import type { EtcdClients } from "./lease-client.ts"
import { sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const enc = (s: string) => Buffer.from(s)

describe("lease expiry", () => {
  const data = tempDir("lease-expiry")
  let natcd: Natcd
  let c: EtcdClients[]
  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset: 1300, members: 3 })
    c = natcd.endpoints.map((e) => etcdClients(e))
  }, 90_000)
  afterAll(async () => {
    c?.forEach((x) => x.close())
    await natcd?.stop()
    data.remove()
  })

  const keysUnder = async (client: EtcdClients, prefix: string, serializable = false) => {
    const r = await client.call(client.kv, "Range", { key: enc(prefix), range_end: enc(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)), serializable })
    return (r.kvs as Array<{ key: Buffer }>).map((kv) => kv.key.toString())
  }

  it("deletes a 2 s lease's keys 2-3.5 s after the grant, on every member", async () => {
    const g = await c[0]!.call(c[0]!.lease, "LeaseGrant", { TTL: 2 })
    const granted = performance.now()
    expect(g.TTL).toBe("2")
    await c[1]!.call(c[1]!.kv, "Put", { key: enc("exp/a"), value: enc("1"), lease: g.ID })
    await c[2]!.call(c[2]!.kv, "Put", { key: enc("exp/b"), value: enc("2"), lease: g.ID })
    const ttl = await c[2]!.call(c[2]!.lease, "LeaseTimeToLive", { ID: g.ID, keys: true })
    expect(ttl.grantedTTL).toBe("2")
    expect((ttl.keys as Buffer[]).map(String).sort()).toEqual(["exp/a", "exp/b"])
    let goneAfter = -1
    while (performance.now() - granted < 6000) {
      if ((await keysUnder(c[0]!, "exp/")).length === 0) {
        goneAfter = performance.now() - granted
        break
      }
      await sleep(50)
    }
    console.log(`lease expiry: keys of a 2 s lease gone after ${Math.round(goneAfter)} ms`)
    expect(goneAfter).toBeGreaterThanOrEqual(2000)
    expect(goneAfter).toBeLessThan(3500)
    // Every member applied the revocation.
    for (const x of c) expect(await keysUnder(x, "exp/", true)).toEqual([])
    const after = await c[0]!.call(c[0]!.lease, "LeaseTimeToLive", { ID: g.ID })
    expect(after.TTL).toBe("-1")
  }, 30_000)

  it("shows the expiry's DELETE events on a watch stream, one revision for both keys", async () => {
    const g = await c[0]!.call(c[0]!.lease, "LeaseGrant", { TTL: 2 })
    const p = await c[0]!.call(c[0]!.kv, "Put", { key: enc("expw/a"), value: enc("1"), lease: g.ID })
    await c[0]!.call(c[0]!.kv, "Put", { key: enc("expw/b"), value: enc("2"), lease: g.ID })
    // etcdctl watch from the first put's revision, stopped after the expiry.
    const watch = etcdctlWatch(natcd.endpoints[2]!, "expw/", Number(p.header.revision), 5000)
    const out = await watch
    const events = out.flatMap((r) => (r.Events ?? []).map((e: any) => ({ type: e.type === 1 || e.type === "DELETE" ? "DELETE" : "PUT", key: Buffer.from(e.kv.key, "base64").toString(), rev: e.kv.mod_revision })))
    const deletes = events.filter((e) => e.type === "DELETE")
    console.log(`lease expiry: watch saw ${JSON.stringify(events)}`)
    expect(deletes.map((e) => e.key).sort()).toEqual(["expw/a", "expw/b"])
    expect(new Set(deletes.map((e) => e.rev)).size).toBe(1)
  }, 30_000)

  it("keep-alives keep the lease and its keys; they go once keep-alives stop", async () => {
    const g = await c[1]!.call(c[1]!.lease, "LeaseGrant", { TTL: 2 })
    await c[1]!.call(c[1]!.kv, "Put", { key: enc("ka/k"), value: enc("v"), lease: g.ID })
    const stream = (c[2]!.lease as any).LeaseKeepAlive()
    const ttls: string[] = []
    stream.on("data", (r: { TTL: string }) => ttls.push(r.TTL))
    stream.on("error", () => undefined)
    const start = performance.now()
    while (performance.now() - start < 6000) {
      stream.write({ ID: g.ID })
      await sleep(600)
    }
    expect(await keysUnder(c[0]!, "ka/")).toEqual(["ka/k"])
    expect(ttls.length).toBeGreaterThan(5)
    expect(new Set(ttls)).toEqual(new Set(["2"]))
    stream.end()
    const stopped = performance.now()
    while ((await keysUnder(c[0]!, "ka/")).length > 0 && performance.now() - stopped < 6000) await sleep(50)
    const goneAfter = performance.now() - stopped
    console.log(`lease expiry: kept alive 6 s; gone ${Math.round(goneAfter)} ms after the last keep-alive`)
    expect(goneAfter).toBeLessThan(4000)
    // A keep-alive of the revoked lease answers TTL 0, as etcd's.
    const again = (c[0]!.lease as any).LeaseKeepAlive()
    again.on("error", () => undefined)
    const ttl0 = await new Promise<string>((resolve) => {
      again.on("data", (r: { TTL: string }) => resolve(r.TTL))
      again.write({ ID: g.ID })
    })
    again.cancel()
    expect(ttl0).toBe("0")
  }, 30_000)
})

/** Runs `etcdctl watch --prefix <prefix> --rev=<rev> -w json` for `ms`, returning the responses. */
const etcdctlWatch = async (endpoint: string, prefix: string, rev: number, ms: number): Promise<any[]> => {
  const { spawn } = await import("node:child_process")
  const child = spawn("etcdctl", [`--endpoints=${endpoint}`, "watch", "--prefix", prefix, `--rev=${rev}`, "-w", "json"], { env: { ...process.env, ETCDCTL_API: "3" } })
  let out = ""
  child.stdout.on("data", (d: Buffer) => (out += d.toString()))
  await sleep(ms)
  child.kill("SIGTERM")
  await new Promise((r) => child.once("exit", r))
  return out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
}
