/**
 * natcd on a cluster of three nats-servers joined by routes, each member's services connected
 * to a different server (issue 9). Killing one nats-server takes its member out (its gateway
 * can no longer serve), the other two keep serving writes with nothing acknowledged lost, and
 * the member rejoins and catches up once its server is back.
 *
 * The test runs the three nats-servers itself (the supervisor would restart a killed one at
 * once) and gives the supervisor their URLs with --nats-cluster=3, which assigns member i to
 * server i.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { endpointStatus, etcdctl, sleep, startNatcd, tempDir, waitForPort } from "./harness.ts"
import { kvClient } from "./grpc-client.ts"

const portOffset = 1650
const clientPort = (j: number) => 4222 + portOffset + 10000 * j
const routePort = (j: number) => 6222 + portOffset + 10000 * j

const log: string[] = []
const note = (line: string) => {
  const entry = `${new Date().toISOString().slice(11, 23)} ${line}`
  log.push(entry)
  console.log(entry)
}

describe("NATS cluster of three servers", () => {
  const data = tempDir("nats-cluster")
  const servers: Array<ChildProcess | undefined> = []
  const startServer = (j: number) => {
    const conf = join(data.dir, `nats-${j + 1}.conf`)
    writeFileSync(conf, [
      `server_name: test-nats-${j + 1}`,
      `listen: 127.0.0.1:${clientPort(j)}`,
      "max_payload: 8388608",
      "cluster {",
      "  name: natcd",
      `  listen: 127.0.0.1:${routePort(j)}`,
      `  routes: [${[0, 1, 2].filter((k) => k !== j).map((k) => `nats-route://127.0.0.1:${routePort(k)}`).join(", ")}]`,
      "}",
      ""
    ].join("\n"))
    servers[j] = spawn("nats-server", ["-c", conf], { stdio: "ignore" })
  }

  afterAll(() => {
    for (const s of servers) s?.kill("SIGKILL")
    data.remove()
  })

  it("a member drops out with its nats-server, the others keep serving, and it rejoins", async () => {
    for (let j = 0; j < 3; j++) startServer(j)
    for (let j = 0; j < 3; j++) await waitForPort(clientPort(j))
    const natcd = await startNatcd({
      dataDir: join(data.dir, "natcd"),
      portOffset,
      members: 3,
      extraArgs: [`--nats=${[0, 1, 2].map((j) => `nats://127.0.0.1:${clientPort(j)}`).join(",")}`, "--nats-cluster=3"]
    })
    try {
      note(`cluster up: members m1,m2,m3 on nats-servers :${clientPort(0)}, :${clientPort(1)}, :${clientPort(2)}`)
      // Each member's services are connected to their own server only.
      const ps = await import("node:child_process").then((cp) => cp.execFileSync("ps", ["-eo", "args="], { encoding: "utf8" }))
      for (const [i, member] of ["m1", "m2", "m3"].entries()) {
        const lines = ps.split("\n").filter((l) => l.includes(`--member=${member}`) && l.includes(natcd.dataDir))
        expect(lines.length).toBe(5)
        for (const l of lines) expect(l).toContain(`--nats=nats://127.0.0.1:${clientPort(i)} `)
      }

      // A put loop over the two members that stay up, plus probes of m2.
      const clients = [kvClient(natcd.endpoints[0]!), kvClient(natcd.endpoints[2]!)]
      const acked = new Map<string, string>()
      let failures = 0
      let stop = false
      let n = 0
      const loop = (async () => {
        while (!stop) {
          const key = `nc-${n}`
          const value = `v${n}`
          const c = clients[n % 2]!
          n++
          try {
            await c.put(key, value, 5000)
            acked.set(key, value)
          } catch {
            failures++
          }
        }
      })()
      await sleep(1000)
      const before = acked.size

      note(`kill -9 nats-server 2 (pid ${servers[1]!.pid}), serving member m2`)
      servers[1]!.kill("SIGKILL")
      await sleep(4000)
      const down = await etcdctl(natcd.endpoints[1]!, ["get", "nc-0", "--command-timeout=2s"])
      note(`m2 (${natcd.endpoints[1]}) get: exit ${down.code} ${(down.stderr.split("\n").find((l) => l.startsWith("Error")) ?? "").trim()}`)
      expect(down.code).not.toBe(0)
      const during = acked.size
      await sleep(3000)
      note(`while nats-server 2 is down: ${acked.size - during} more puts acknowledged through m1 and m3 in 3 s`)
      expect(acked.size - during).toBeGreaterThan(5)
      for (const i of [0, 2]) {
        const s = await endpointStatus(natcd.endpoints[i]!)
        note(`m${i + 1} status: leader ${s?.leader}, raft index ${s?.raftIndex}`)
        expect(s?.leader).not.toBe("0")
      }

      note("restart nats-server 2")
      startServer(1)
      await waitForPort(clientPort(1))
      const deadline = Date.now() + 45_000
      for (;;) {
        const r = await etcdctl(natcd.endpoints[1]!, ["get", "nc-0", "--command-timeout=2s"])
        if (r.code === 0) break
        if (Date.now() > deadline) throw new Error(`m2 did not rejoin: ${r.stderr}\n${natcd.output().slice(-3000)}`)
        await sleep(500)
      }
      note("m2 serves linearizable reads again")
      stop = true
      await loop
      // m2 caught up: same applied index as the others, and has every acknowledged put.
      const deadline2 = Date.now() + 30_000
      for (;;) {
        const st = await Promise.all(natcd.endpoints.map((e) => endpointStatus(e)))
        if (st.every((s) => s !== undefined && s.raftAppliedIndex === st[0]!.raftAppliedIndex)) {
          note(`all members at applied index ${st[0]!.raftAppliedIndex}`)
          break
        }
        if (Date.now() > deadline2) throw new Error(`members did not converge: ${JSON.stringify(st)}`)
        await sleep(500)
      }
      const m2 = kvClient(natcd.endpoints[1]!)
      let lost = 0
      for (const [key, value] of acked) {
        const r = await m2.range({ key: Buffer.from(key), serializable: true })
        if (r.kvs[0]?.value.toString() !== value) lost++
      }
      m2.close()
      for (const c of clients) c.close()
      note(`puts acknowledged ${acked.size} (${before} before the kill), failed ${failures}, lost on m2 ${lost}`)
      expect(lost).toBe(0)
    } finally {
      await natcd.stop()
    }
  }, 240_000)
})
