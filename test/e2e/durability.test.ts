/**
 * kill -9 durability: while a client puts in a loop (etcdctl, then a gRPC client), every natcd
 * process (supervisor, services, nats-server) is killed with SIGKILL; after `natcd run` starts
 * again on the same data, every put that was acknowledged is readable with its value.
 */
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import { etcdctl, sleep, startNatcd, tempDir } from "./harness.ts"

describe("kill -9 of every process during a put loop", () => {
  it("loses no acknowledged put (etcdctl loop)", async () => {
    const data = tempDir("durability-ctl")
    try {
      let natcd = await startNatcd({ dataDir: data.dir, portOffset: 200 })
      const endpoint = natcd.endpoints[0]!
      const acknowledged = new Map<string, string>()
      let stop = false
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await etcdctl(endpoint, ["put", `ctl-${i}`, `value-${i}`])
          if (r.code === 0 && r.stdout.trim() === "OK") acknowledged.set(`ctl-${i}`, `value-${i}`)
          else break
        }
      })()
      await sleep(3000)
      await natcd.kill9()
      stop = true
      await loop
      expect(acknowledged.size).toBeGreaterThan(5)

      natcd = await startNatcd({ dataDir: data.dir, portOffset: 200 })
      try {
        const r = await etcdctl(endpoint, ["get", "ctl-", "--prefix", "-w", "json"])
        expect(r.code, r.stderr).toBe(0)
        const kvs = (JSON.parse(r.stdout).kvs ?? []) as Array<{ key: string; value: string }>
        const found = new Map(kvs.map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value, "base64").toString()]))
        const lost = [...acknowledged].filter(([k, v]) => found.get(k) !== v)
        console.log(`durability (etcdctl): ${acknowledged.size} puts acknowledged before kill -9 of every process, ${lost.length} lost`)
        expect(lost, `lost ${lost.length} of ${acknowledged.size} acknowledged puts`).toEqual([])
      } finally {
        await natcd.stop()
      }
    } finally {
      data.remove()
    }
  }, 120_000)

  it("loses no acknowledged put (concurrent gRPC clients, two kills)", async () => {
    const data = tempDir("durability-grpc")
    try {
      const acknowledged = new Map<string, string>()
      for (let round = 0; round < 2; round++) {
        const natcd = await startNatcd({ dataDir: data.dir, portOffset: 200 })
        const client = kvClient(natcd.endpoints[0]!)
        let stop = false
        const workers = Array.from({ length: 8 }, (_, w) => (async () => {
          for (let i = 0; !stop; i++) {
            const key = `grpc-${round}-${w}-${i}`
            try {
              await client.put(key, `v-${key}`, 5000)
              acknowledged.set(key, `v-${key}`)
            } catch {
              return
            }
          }
        })())
        await sleep(2500)
        await natcd.kill9()
        stop = true
        await Promise.all(workers)
        client.close()
      }
      expect(acknowledged.size).toBeGreaterThan(50)
      const natcd = await startNatcd({ dataDir: data.dir, portOffset: 200 })
      const client = kvClient(natcd.endpoints[0]!)
      try {
        const r = await client.range({ key: Buffer.from("grpc-"), range_end: Buffer.from("grpc."), serializable: false })
        const found = new Map(r.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]))
        const lost = [...acknowledged].filter(([k, v]) => found.get(k) !== v)
        console.log(`durability (gRPC): ${acknowledged.size} puts acknowledged over two kill -9 rounds, ${lost.length} lost`)
        expect(lost, `lost ${lost.length} of ${acknowledged.size} acknowledged puts`).toEqual([])
        expect(Number(r.count)).toBeGreaterThanOrEqual(acknowledged.size)
      } finally {
        client.close()
        await natcd.stop()
      }
    } finally {
      data.remove()
    }
  }, 180_000)
})
