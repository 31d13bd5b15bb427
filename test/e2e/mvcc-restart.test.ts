/**
 * Restart in the middle of a batch, at process level: natcd runs with a backend batch interval
 * and limit so large that nothing the put loop writes is committed to LMDB before the mvcc
 * process is killed with SIGKILL; results were published to clients before any commit. The
 * supervisor restarts the mvcc process, which reopens LMDB at the last committed consistent
 * index and re-applies the entries above it from the raft service. Every acknowledged put must
 * then be present once, not twice: version 1, at the revision that was acknowledged, and the
 * store revision must count each applied put exactly once.
 */
import { execFileSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { etcdctl, sleep, startNatcd, tempDir } from "./harness.ts"

/** Pids of the mvcc processes serving data dir `dataDir`. */
const mvccPids = (dataDir: string): number[] =>
  execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.includes("services/mvcc/main.ts") && line.includes(`--data-dir=${dataDir}`))
    .map((line) => Number.parseInt(line.trim(), 10))

describe("kill -9 of the mvcc process in the middle of a batch", () => {
  it("keeps every acknowledged put exactly once, at its acknowledged revision", async () => {
    const data = tempDir("mvcc-restart")
    const saved = { ...process.env }
    process.env.NATCD_BACKEND_BATCH_INTERVAL = "10m"
    process.env.NATCD_BACKEND_BATCH_LIMIT = "1000000"
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 420 })
    process.env = saved
    try {
      const endpoint = natcd.endpoints[0]!
      const acknowledged = new Map<string, number>()
      let attempted = 0
      let stop = false
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          attempted++
          const r = await etcdctl(endpoint, ["put", `once-${i}`, `v${i}`, "-w", "json"])
          if (r.code === 0) acknowledged.set(`once-${i}`, JSON.parse(r.stdout).header.revision as number)
          else await sleep(100)
        }
      })()
      await sleep(3000)
      const before = mvccPids(natcd.dataDir)
      expect(before).toHaveLength(1)
      const ackedBeforeKill = acknowledged.size
      process.kill(before[0]!, "SIGKILL")
      // Let the supervisor restart it and the loop go on.
      await sleep(4000)
      stop = true
      await loop
      const after = mvccPids(natcd.dataDir)
      expect(after).toHaveLength(1)
      expect(after[0]).not.toBe(before[0])
      expect(ackedBeforeKill).toBeGreaterThan(5)
      expect(acknowledged.size).toBeGreaterThan(ackedBeforeKill)

      const r = await etcdctl(endpoint, ["get", "once-", "--prefix", "-w", "json"])
      expect(r.code, r.stderr).toBe(0)
      const res = JSON.parse(r.stdout) as { header: { revision: number }; kvs?: Array<{ key: string; version: number; mod_revision: number; create_revision: number }> }
      const found = new Map((res.kvs ?? []).map((kv) => [Buffer.from(kv.key, "base64").toString(), kv]))
      const wrong = [...acknowledged].filter(([k, rev]) => {
        const kv = found.get(k)
        return kv === undefined || kv.version !== 1 || kv.mod_revision !== rev || kv.create_revision !== rev
      })
      expect(wrong, `${wrong.length} of ${acknowledged.size} acknowledged puts missing, duplicated or moved`).toEqual([])
      // Every key present was put once (version 1), each at its own revision, and the store
      // revision counts exactly those puts: nothing was applied twice.
      expect([...found.values()].every((kv) => kv.version === 1)).toBe(true)
      expect(new Set([...found.values()].map((kv) => kv.mod_revision)).size).toBe(found.size)
      expect(res.header.revision).toBe(1 + found.size)
      expect(found.size).toBeLessThanOrEqual(attempted)
    } finally {
      process.env = saved
      await natcd.stop()
      data.remove()
    }
  }, 120_000)
})
