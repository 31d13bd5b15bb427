/**
 * etcd's corruption checks end to end (services/mvcc/corrupt-check.ts), on a 3-member cluster
 * whose member m2 has one LMDB file altered offline (the value of one stored key revision
 * changes, so the database opens fine but its HashKV differs).
 *
 * Periodic check: the cluster is written to and stopped; m2's file is altered; the cluster
 * starts again with `--experimental-corrupt-check-time=1s` (NATCD_CORRUPT_CHECK_TIME). The
 * leader's periodic check must raise the CORRUPT alarm through raft, after which, as in etcd:
 * `etcdctl alarm list` prints `memberID:<id> alarm:CORRUPT `, a put fails with
 * `etcdserver: corrupt cluster` (etcd ErrGRPCCorrupt), reads still work, `endpoint status`
 * lists the alarm in its errors, the alarm survives a restart of the whole cluster (with the
 * check off), and `etcdctl alarm disarm` clears it and restores writes.
 *
 * Initial check (`--experimental-initial-corrupt-check`, NATCD_INITIAL_CORRUPT_CHECK=true):
 * the cluster starts with the check on (every member's mvcc service passes it: the data are
 * equal) and is written to. With the supervisor paused (SIGSTOP, so that it does not restart
 * anything yet), m2's mvcc process is killed and m2's file altered while no process has it
 * open; the supervisor resumes and restarts m2's mvcc service, whose initial check now runs
 * while m1 and m3 serve. It must find the different hash, log it and exit with etcd's
 * "found data inconsistency with peers", and go on doing so at every restart the supervisor
 * makes (m2 serves no reads meanwhile), while m1 and m3 are never flagged and keep serving
 * linearizable writes and reads (m2's raft service still votes, so the cluster has quorum).
 * The damage is done with the cluster running rather than by a restart of the whole cluster
 * because at a simultaneous start the outcome depends on timing: a member's HashKV requests
 * are retried until their timeout, so a member whose check ends later can reach a peer that
 * already passed and serves; if that peer is the damaged m2, the healthy member is the one
 * that refuses to start (etcd's check cannot tell which side is wrong either).
 */
import { describe, expect, it } from "vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { decodeKeyValue, encodeKeyValue } from "../../services/mvcc/core/kv-codec.ts"
import { mainPrefix } from "../../services/mvcc/core/revision.ts"
import { etcdctl, findLeader, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const portOffset = 1900
const initialCheckPortOffset = 1920

/** Changes the value of key `key`'s newest stored revision in member `member`'s LMDB file. */
const corruptValue = async (dataDir: string, member: string, key: string): Promise<void> => {
  const backend = LmdbBackend.open(join(dataDir, member, "mvcc", "kv.mdb"))
  try {
    const records = backend.read.range("key", new Uint8Array(), mainPrefix(Number.MAX_SAFE_INTEGER))
    const hit = records.filter((r) => new TextDecoder().decode(decodeKeyValue(r.value).key) === key).at(-1)
    if (hit === undefined) throw new Error(`no record of ${key} in ${member}`)
    const kv = decodeKeyValue(hit.value)
    backend.write((tx) => tx.put("key", hit.key, encodeKeyValue({ ...kv, value: new TextEncoder().encode("flipped bits") })))
    backend.commit()
  } finally {
    await backend.close()
  }
}

/** Member id (hex, as etcdctl's simple status prints it) of `endpoint`. */
const memberIdHex = async (endpoint: string): Promise<string> => {
  const r = await etcdctl(endpoint, ["endpoint", "status"])
  return r.stdout.split(",")[1]!.trim()
}

const errLine = (stderr: string) => stderr.trim().split("\n").filter((l) => !l.startsWith("{")).join("\n")

/** Waits (bounded) until every member serves `key` = `value` from its own store. */
const waitAllApplied = async (natcd: Natcd, key: string, value: string): Promise<void> => {
  for (const e of natcd.endpoints) {
    for (let tries = 0; (await etcdctl(e, ["get", key, "--consistency=s", "--print-value-only"])).stdout !== `${value}\n`; tries++) {
      expect(tries).toBeLessThan(100)
      await sleep(100)
    }
  }
}

/** The JSON log lines of `natcd`'s processes, annotations flattened (other output is dropped). */
const logLines = (natcd: Natcd): Array<Record<string, unknown>> =>
  natcd.output().split("\n").filter((l) => l.startsWith("{")).flatMap((l) => {
    try {
      const { annotations, ...rest } = JSON.parse(l) as { annotations?: Record<string, unknown> }
      return [{ ...annotations, ...rest }]
    } catch {
      return []
    }
  })

/** Whether process `pid` has exited (gone, or a zombie its paused parent has not reaped). */
const exited = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").startsWith("Z")
  } catch {
    return true
  }
}

describe("corruption check (etcd --experimental-corrupt-check-time)", () => {
  it("raises CORRUPT for a member whose data differs; the cluster refuses writes as etcd until disarmed", async () => {
    const data = tempDir("corrupt-check")
    let natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
    try {
      const [e1] = natcd.endpoints
      for (let i = 0; i < 10; i++) expect((await etcdctl(e1!, ["put", `k${i}`, `v${i}`])).code).toBe(0)
      // Every member applied the last put before the stop.
      await waitAllApplied(natcd, "k9", "v9")
      const ids = await Promise.all(natcd.endpoints.map(memberIdHex))
      await natcd.stop()

      await corruptValue(data.dir, "m2", "k3")
      natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3, env: { NATCD_CORRUPT_CHECK_TIME: "1s" } })
      let list = ""
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(500)) {
        list = (await etcdctl(e1!, ["alarm", "list"])).stdout
        if (list.includes("alarm:CORRUPT")) break
      }
      const m = /^memberID:(\d+) alarm:CORRUPT \n$/.exec(list)
      expect(m, `alarm list: ${JSON.stringify(list)}\n${natcd.output().slice(-3000)}`).not.toBeNull()
      const named = BigInt(m![1]!).toString(16)
      // A follower that disagrees is named; if m2 itself leads, etcd's rules name a follower.
      const leader = await findLeader(natcd)
      if (leader !== 1) expect(named).toBe(ids[1])
      else expect([ids[0], ids[2]]).toContain(named)

      for (const e of natcd.endpoints) {
        const put = await etcdctl(e, ["put", "x", "y"])
        expect(put.code).not.toBe(0)
        expect(errLine(put.stderr)).toBe("Error: etcdserver: corrupt cluster")
      }
      expect(errLine((await etcdctl(e1!, ["del", "k1"])).stderr)).toBe("Error: etcdserver: corrupt cluster")
      expect(errLine((await etcdctl(e1!, ["compact", "2"])).stderr)).toBe("Error: etcdserver: corrupt cluster")
      expect(errLine((await etcdctl(e1!, ["lease", "grant", "60"])).stderr)).toBe("Error: failed to grant lease (etcdserver: corrupt cluster)")
      // Reads and read-only txns are served (etcd serves them outside the corrupt applier).
      expect((await etcdctl(e1!, ["get", "k0", "--print-value-only"])).stdout).toBe("v0\n")
      expect((await etcdctl(e1!, ["txn"], "\nget k0\n\n\n")).stdout).toBe("SUCCESS\n\nk0\nv0\n")
      const status = JSON.parse((await etcdctl(natcd.endpoints[2]!, ["endpoint", "status", "-w", "json"])).stdout) as Array<{ Status: { errors?: string[] } }>
      expect(status[0]!.Status.errors).toEqual([`memberID:${m![1]} alarm:CORRUPT `])

      // The alarm is raft state: it survives a restart of the whole cluster (check off now).
      await natcd.stop()
      natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
      expect((await etcdctl(natcd.endpoints[1]!, ["alarm", "list"])).stdout).toBe(list)
      expect(errLine((await etcdctl(e1!, ["put", "x", "y"])).stderr)).toBe("Error: etcdserver: corrupt cluster")
      const disarm = await etcdctl(e1!, ["alarm", "disarm"])
      expect(disarm.stdout).toBe(list)
      expect((await etcdctl(e1!, ["alarm", "list"])).stdout).toBe("")
      expect((await etcdctl(e1!, ["put", "x", "y"])).stdout).toBe("OK\n")
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 240_000)

  it("initial check: a member whose data differ refuses to start while its peers serve; the healthy members are not flagged", async () => {
    const data = tempDir("corrupt-initial")
    const env = { NATCD_INITIAL_CORRUPT_CHECK: "true" }
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: initialCheckPortOffset, members: 3, env })
    const supervisorPid = natcd.supervisor.pid!
    let paused = false
    try {
      const [e1, e2, e3] = natcd.endpoints
      for (let i = 0; i < 10; i++) expect((await etcdctl(e1!, ["put", `k${i}`, `v${i}`])).code).toBe(0)
      await waitAllApplied(natcd, "k9", "v9")
      const ids = await Promise.all(natcd.endpoints.map(memberIdHex))

      // Pause the supervisor, kill m2's mvcc process and alter its file while nothing has it open.
      process.kill(supervisorPid, "SIGSTOP")
      paused = true
      const killed = signalMember(natcd, "m2", "SIGKILL", "/services/mvcc/")
      expect(killed).toHaveLength(1)
      for (const deadline = Date.now() + 5000; !exited(killed[0]!); await sleep(50)) expect(Date.now()).toBeLessThan(deadline)
      await corruptValue(data.dir, "m2", "k3")
      process.kill(supervisorPid, "SIGCONT")
      paused = false

      // The restarted mvcc/m2 checks against m1 and m3, which serve: it exits, and again at the next restart.
      const failures = () =>
        logLines(natcd).filter((l) => l.message === "process exited; restarting" && l.process === "mvcc/m2" && l.code === 1).length
      for (const deadline = Date.now() + 30_000; failures() < 2; await sleep(250)) {
        expect(Date.now(), natcd.output().slice(-5000)).toBeLessThan(deadline)
      }
      const lines = logLines(natcd)
      const ofMember = (member: string, message: string) => lines.filter((l) => l.member === member && l.message === message)
      // etcd's warning for each disagreeing peer (m1 and m3, same compact revision), then its refusal.
      const differing = ofMember("m2", "found different hash values from remote peer")
      expect(differing.length).toBeGreaterThanOrEqual(4)
      expect(differing.every((l) => l.level === "WARN" && l["local-member-id"] === ids[1])).toBe(true)
      expect(new Set(differing.map((l) => l["remote-peer-id"]))).toEqual(new Set([ids[0], ids[2]]))
      expect(ofMember("m2", "initial corruption check failed").length).toBeGreaterThanOrEqual(2)
      // The process's exit reason (printed by the Node runtime, not as a JSON line) names m2's id.
      const inconsistency = natcd.output().split("\n").filter((l) => l.includes("found data inconsistency with peers"))
      expect(inconsistency.length, natcd.output().slice(-5000)).toBeGreaterThanOrEqual(2)
      expect(inconsistency.every((l) => l.includes(`Error: ${ids[1]} found data inconsistency with peers`))).toBe(true)

      // m1 and m3 serve linearizable writes and reads; m2 (no mvcc) serves no read.
      expect((await etcdctl(e1!, ["put", "after", "ok"])).stdout).toBe("OK\n")
      expect((await etcdctl(e1!, ["get", "after", "--print-value-only"])).stdout).toBe("ok\n")
      expect((await etcdctl(e3!, ["get", "after", "--print-value-only"])).stdout).toBe("ok\n")
      expect((await etcdctl(e3!, ["get", "k3", "--print-value-only"])).stdout).toBe("v3\n")
      expect((await etcdctl(e2!, ["get", "after", "--command-timeout=2s"])).code).not.toBe(0)

      // The healthy members were never flagged and their mvcc services never exited.
      const after = logLines(natcd)
      for (const member of ["m1", "m3"]) {
        expect(after.filter((l) => l.member === member && typeof l.message === "string" && /inconsisten|corruption check failed|different hash/.test(l.message))).toEqual([])
        expect(after.filter((l) => l.message === "process exited; restarting" && l.process === `mvcc/${member}`)).toEqual([])
      }
    } finally {
      if (paused) process.kill(supervisorPid, "SIGCONT")
      await natcd.stop()
      data.remove()
    }
  }, 120_000)
})
