/**
 * Snapshots end to end on a 3-member cluster with a small --snapshot-count: one member is
 * frozen (SIGSTOP on all its processes) while more than snapshot-count entries are written, so
 * the leader's log no longer holds what it missed; once thawed it installs the leader's
 * snapshot (fetched in chunks over NATS, checksum verified) and converges (HashKV equal on all
 * members) while the cluster keeps serving. Also checks that the WAL directory stays within
 * bounds after many snapshots, and that a member restarts from its snapshot.
 */
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import { etcdctl, findLeader, raftStatus, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"

const env = {
  NATCD_SNAPSHOT_COUNT: "100",
  NATCD_SNAPSHOT_CATCHUP_ENTRIES: "20",
  NATCD_WAL_SEGMENT_BYTES: String(1024 * 1024),
  NATCD_MAX_SNAPSHOTS: "3"
}

const hashes = async (endpoints: ReadonlyArray<string>) => {
  const r = await etcdctl(endpoints.join(","), ["endpoint", "hashkv", "-w", "json"])
  if (r.code !== 0) return undefined
  return (JSON.parse(r.stdout) as Array<{ HashKV: { hash: number; header: { revision: number } } }>).map((h) => `${h.HashKV.hash}@${h.HashKV.header.revision}`)
}

describe("snapshots", () => {
  it("catches up a member that fell behind the log by installing the leader's snapshot", async () => {
    const data = tempDir("snapshot")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 900, members: 3, env })
    try {
      const leader = await findLeader(natcd)
      const lagging = (leader + 1) % 3
      const lagName = `m${lagging + 1}`
      expect(signalMember(natcd, lagName, "SIGSTOP")).toHaveLength(5) // wal, mvcc, lease, raft, gateway
      const client = kvClient(natcd.endpoints[leader]!)
      const writes = 1000
      // 8 KiB values: the snapshot the lagging member installs is several MiB, many chunks.
      const pad = "p".repeat(8 * 1024)
      try {
        for (let i = 0; i < writes; i += 20) {
          await Promise.all(Array.from({ length: 20 }, (_, k) => client.put(`snap-${i + k}`, `v${i + k}${pad}`)))
        }
      } finally {
        client.close()
      }
      const termBefore = (await raftStatus(natcd, `m${leader + 1}`)).term
      const walFiles = readdirSync(join(data.dir, `m${leader + 1}`, "wal")).filter((f) => f.endsWith(".wal"))
      const snapFiles = readdirSync(join(data.dir, `m${leader + 1}`, "snap")).filter((f) => f.endsWith(".snap"))
      console.log(`after ${writes} writes: leader WAL segments ${walFiles.length}, raft snapshot files ${snapFiles.length}`)
      expect(snapFiles.length).toBeLessThanOrEqual(3)
      expect(walFiles.length).toBeLessThanOrEqual(5)

      signalMember(natcd, lagName, "SIGCONT")
      const started = Date.now()
      let converged: string[] | undefined
      for (;;) {
        const h = await hashes(natcd.endpoints)
        if (h !== undefined && h.length === 3 && h.every((x) => x === h[0])) {
          converged = h
          break
        }
        if (Date.now() - started > 60_000) throw new Error(`no convergence: ${JSON.stringify(h)}\n${natcd.output().slice(-4000)}`)
        // The cluster keeps serving writes meanwhile.
        expect((await etcdctl(natcd.endpoints[leader]!, ["put", "during-catchup", String(Date.now())])).code).toBe(0)
        await sleep(300)
      }
      console.log(`${lagName} converged after ${Date.now() - started} ms: ${converged[0]}`)
      const status = await raftStatus(natcd, lagName)
      console.log(`${lagName} raft peer counters: ${JSON.stringify(status.peers)}`)
      expect(status.peers.snapshotsInstalled).toBeGreaterThanOrEqual(1)
      const r = await etcdctl(natcd.endpoints[lagging]!, ["get", "snap-999", "--consistency=s", "--print-value-only"])
      expect(r.stdout.trim()).toBe(`v999${pad}`)
      // The transfer did not disturb the leader: no election happened meanwhile.
      const after = await raftStatus(natcd, `m${leader + 1}`)
      expect(after.term).toBe(termBefore)
      expect(await findLeader(natcd)).toBe(leader)
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 240_000)

  it("restarts a member from its snapshot and WAL tail, in seconds, with its data", async () => {
    const data = tempDir("snapshot-restart")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 920, members: 3, env })
    try {
      const client = kvClient(natcd.endpoints[0]!)
      try {
        for (let i = 0; i < 600; i += 20) await Promise.all(Array.from({ length: 20 }, (_, k) => client.put(`r-${i + k}`, `v${i + k}`)))
      } finally {
        client.close()
      }
      const victim = (await findLeader(natcd) + 1) % 3
      const name = `m${victim + 1}`
      expect(readdirSync(join(data.dir, name, "snap")).some((f) => f.endsWith(".snap"))).toBe(true)
      const killedAt = Date.now()
      expect(signalMember(natcd, name, "SIGKILL")).toHaveLength(5) // wal, mvcc, lease, raft, gateway
      // The supervisor restarts it: it must serve its data again and agree with the others.
      for (;;) {
        const r = await etcdctl(natcd.endpoints[victim]!, ["get", "r-599", "--consistency=s", "--print-value-only", "--command-timeout=1s"])
        if (r.stdout.trim() === "v599") break
        if (Date.now() - killedAt > 30_000) throw new Error(`${name} did not come back: ${r.stderr}`)
        await sleep(100)
      }
      const backAfterMs = Date.now() - killedAt
      console.log(`${name} restarted from its snapshot and serves again after ${backAfterMs} ms`)
      expect(backAfterMs).toBeLessThan(10_000)
      for (;;) {
        const h = await hashes(natcd.endpoints)
        if (h !== undefined && h.length === 3 && h.every((x) => x === h[0])) break
        if (Date.now() - killedAt > 60_000) throw new Error(`no convergence: ${JSON.stringify(h)}`)
        await sleep(200)
      }
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 180_000)
})
