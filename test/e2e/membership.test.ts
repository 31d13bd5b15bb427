/**
 * Membership through etcdctl against a 3-member natcd: member list, endpoint status --cluster,
 * move-leader, then a fourth member added as a learner (its four service processes started by
 * hand with --initial-cluster-state=existing and NATS keys from `natcd creds add`, as an operator
 * would), promoted once caught up,
 * and removed; plus etcd's errors for bad member requests.
 */
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { etcdctl, findLeader, natcdPorts, sleep, startNatcd, tempDir, waitForPort } from "./harness.ts"

const portOffset = 700
const root = fileURLToPath(new URL("../../", import.meta.url))

interface MemberJson { ID: number | string; name: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean }

const memberList = async (endpoint: string): Promise<MemberJson[]> => {
  const r = await etcdctl(endpoint, ["member", "list", "-w", "json"])
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as { members: MemberJson[] }).members
}

/** Hex id as etcdctl prints it, from member list's table output (JSON loses bigint precision). */
const idsByName = async (endpoint: string): Promise<Map<string, string>> => {
  const r = await etcdctl(endpoint, ["member", "list"])
  const out = new Map<string, string>()
  for (const line of r.stdout.trim().split("\n")) {
    const [id, , name, peer] = line.split(", ")
    out.set(name === "" ? peer!.replace(/^http:\/\/|:2380$/g, "") : name!, id!)
  }
  return out
}

const startExtraMember = (name: string, dataDir: string, clientPort: number): ChildProcess[] => {
  const nats = `nats://127.0.0.1:${natcdPorts(portOffset).nats}`
  const common = [`--member=${name}`, `--nats=${nats}`, `--data-dir=${dataDir}`, "--log-level=Warn"]
  const run = (service: string, extra: string[] = []) => {
    // As an operator would: a NATS identity for the new process first (nats-server reloads).
    execFileSync(join(root, "bin", "natcd"), ["creds", "add", `${service}.${name}`, `--data-dir=${dataDir}`], { stdio: "pipe" })
    const creds = `--nats-creds=${join(dataDir, "creds", `${service}.${name}.nk`)}`
    return spawn(process.execPath, [join(root, "services", service, "main.ts"), ...common, creds, ...extra], { stdio: "ignore" })
  }
  return [
    run("wal"),
    run("mvcc"),
    run("raft", ["--initial-cluster-state=existing", `--advertise-client-urls=http://127.0.0.1:${clientPort}`]),
    run("gateway", [`--listen-client-urls=http://127.0.0.1:${clientPort}`])
  ]
}

describe("membership with etcdctl", () => {
  it("lists, moves the leader, adds a learner, promotes and removes it", async () => {
    const data = tempDir("membership")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
    let extra: ChildProcess[] = []
    try {
      const all = natcd.endpoints.join(",")
      const list = await memberList(natcd.endpoints[0]!)
      expect(list.map((m) => m.name).sort()).toEqual(["m1", "m2", "m3"])
      expect(list.every((m) => (m.clientURLs ?? []).length === 1 && !m.isLearner)).toBe(true)

      const table = await etcdctl(natcd.endpoints[0]!, ["endpoint", "status", "--cluster", "-w", "table"])
      expect(table.code, table.stderr).toBe(0)
      console.log(table.stdout)
      const statuses = JSON.parse((await etcdctl(natcd.endpoints[0]!, ["endpoint", "status", "--cluster", "-w", "json"])).stdout) as Array<{ Status: { leader: number; header: { member_id: number } } }>
      expect(statuses).toHaveLength(3)
      expect(statuses.filter((s) => s.Status.leader === s.Status.header.member_id)).toHaveLength(1)

      // move-leader: etcdctl finds the leader among the endpoints and asks it to transfer.
      const leader = await findLeader(natcd)
      const target = `m${((leader + 1) % 3) + 1}`
      const ids = await idsByName(natcd.endpoints[0]!)
      const moved = await etcdctl(all, ["move-leader", ids.get(target)!])
      expect(moved.code, moved.stderr).toBe(0)
      expect(moved.stdout).toContain(`Leadership transferred from ${ids.get(`m${leader + 1}`)} to ${ids.get(target)}`)
      expect(await findLeader(natcd)).toBe(Number(target.slice(1)) - 1)
      // MoveLeader sent to a follower: etcd's "not leader".
      const follower = natcd.endpoints[(Number(target.slice(1))) % 3]!
      const notLeader = await etcdctl(follower, ["move-leader", ids.get(target)!])
      expect(notLeader.code).not.toBe(0)

      // Errors as etcd.
      expect((await etcdctl(all, ["member", "remove", "1234"])).stderr).toContain("etcdserver: member not found")
      expect((await etcdctl(all, ["member", "promote", ids.get("m1")!])).stderr).toContain("etcdserver: can only promote a learner member")
      expect((await etcdctl(all, ["member", "add", "m4", "--peer-urls=http://127.0.0.1:2380"])).stderr).toContain("etcdserver: given member URLs are invalid")
      expect((await etcdctl(all, ["member", "add", "m1", "--peer-urls=http://m1:2380"])).stderr).toContain("etcdserver: member ID already exist")

      // Add m4 as a learner and start its processes.
      for (let i = 0; i < 20; i++) await etcdctl(all, ["put", `pre-${i}`, `${i}`])
      const added = await etcdctl(all, ["member", "add", "m4", "--peer-urls=http://m4:2380", "--learner"])
      expect(added.code, added.stderr).toBe(0)
      expect(added.stdout).toMatch(/Member [0-9a-f]+ added to cluster [0-9a-f]+/)
      expect((await etcdctl(all, ["member", "add", "m5", "--peer-urls=http://m5:2380", "--learner"])).stderr).toContain("etcdserver: too many learner members in cluster")
      const m4Port = portOffset + 42379
      extra = startExtraMember("m4", data.dir, m4Port)
      // m4's gateway serves once m4 published its attributes through raft (as etcd serves after
      // its publish), which needs m4's raft connected: after the nats-server reloads that the new
      // identities cause, that took up to about 20 s here. The whole wait keeps the 50 s it had
      // when the port came first and the publish was awaited after it.
      await waitForPort(m4Port, 50_000)
      const deadline = Date.now() + 30_000
      for (;;) {
        const m4 = (await memberList(natcd.endpoints[0]!)).find((m) => m.name === "m4")
        if (m4 !== undefined && (m4.clientURLs ?? []).length > 0) {
          expect(m4.isLearner).toBe(true)
          break
        }
        if (Date.now() > deadline) throw new Error("m4 never published its attributes")
        await sleep(200)
      }
      // The learner replicates the data.
      for (;;) {
        const r = await etcdctl(`127.0.0.1:${m4Port}`, ["get", "pre-19", "--consistency=s", "--print-value-only"])
        if (r.stdout.trim() === "19") break
        if (Date.now() > deadline) throw new Error("m4 did not catch up")
        await sleep(200)
      }
      const m4Id = (await idsByName(natcd.endpoints[0]!)).get("m4")!
      const promoted = await etcdctl(all, ["member", "promote", m4Id])
      expect(promoted.code, promoted.stderr).toBe(0)
      expect(promoted.stdout).toContain(`Member ${m4Id} promoted in cluster`)
      expect((await memberList(natcd.endpoints[0]!)).find((m) => m.name === "m4")?.isLearner ?? false).toBe(false)
      expect((await etcdctl(`127.0.0.1:${m4Port}`, ["put", "via-m4", "yes"])).code).toBe(0)
      // MemberUpdate of the promoted learner: a voter still, in every member's view and in the
      // update's own answer, as etcd.
      const updated = await etcdctl(all, ["member", "update", m4Id, "--peer-urls=http://m4:2380", "-w", "json"])
      expect(updated.code, updated.stderr).toBe(0)
      expect((JSON.parse(updated.stdout) as { members: MemberJson[] }).members.filter((m) => m.isLearner === true)).toEqual([])
      for (const endpoint of [natcd.endpoints[0]!, `127.0.0.1:${m4Port}`]) {
        expect((await memberList(endpoint)).find((m) => m.name === "m4")?.isLearner ?? false, endpoint).toBe(false)
      }

      const removed = await etcdctl(all, ["member", "remove", m4Id])
      expect(removed.code, removed.stderr).toBe(0)
      expect(removed.stdout).toContain(`Member ${m4Id} removed from cluster`)
      expect((await memberList(natcd.endpoints[0]!)).map((m) => m.name).sort()).toEqual(["m1", "m2", "m3"])
      expect((await etcdctl(all, ["put", "after-remove", "ok"])).code).toBe(0)
    } finally {
      for (const p of extra) p.kill("SIGKILL")
      await natcd.stop()
      data.remove()
    }
  }, 180_000)
})
