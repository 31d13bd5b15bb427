/**
 * etcd's corruption check end to end (services/mvcc/corrupt-check.ts): a 3-member cluster is
 * written to and stopped; one member's LMDB file is altered offline (the value of one stored
 * key revision changes, so the database opens fine but its HashKV differs); the cluster starts
 * again with `--experimental-corrupt-check-time=1s` (NATCD_CORRUPT_CHECK_TIME). The leader's
 * periodic check must raise the CORRUPT alarm through raft, after which, as in etcd:
 * `etcdctl alarm list` prints `memberID:<id> alarm:CORRUPT `, a put fails with
 * `etcdserver: corrupt cluster` (etcd ErrGRPCCorrupt), reads still work, `endpoint status`
 * lists the alarm in its errors, the alarm survives a restart of the whole cluster (with the
 * check off), and `etcdctl alarm disarm` clears it and restores writes.
 *
 * Then the initial check (NATCD_INITIAL_CORRUPT_CHECK=true): the healthy members' mvcc
 * services pass it when the damaged member does not answer (it is checking too), and the
 * damaged member's mvcc service, which finds its peers disagreeing once they serve, exits
 * with etcd's "found data inconsistency with peers".
 */
import { describe, expect, it } from "vitest"
import { join } from "node:path"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { decodeKeyValue, encodeKeyValue } from "../../services/mvcc/core/kv-codec.ts"
import { mainPrefix } from "../../services/mvcc/core/revision.ts"
import { etcdctl, findLeader, sleep, startNatcd, tempDir } from "./harness.ts"

const portOffset = 1900

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

describe("corruption check (etcd --experimental-corrupt-check-time)", () => {
  it("raises CORRUPT for a member whose data differs; the cluster refuses writes as etcd until disarmed", async () => {
    const data = tempDir("corrupt-check")
    let natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
    try {
      const [e1] = natcd.endpoints
      for (let i = 0; i < 10; i++) expect((await etcdctl(e1!, ["put", `k${i}`, `v${i}`])).code).toBe(0)
      // Every member applied the last put before the stop.
      for (const e of natcd.endpoints) {
        for (let tries = 0; (await etcdctl(e, ["get", "k9", "--consistency=s", "--print-value-only"])).stdout !== "v9\n"; tries++) {
          expect(tries).toBeLessThan(100)
          await sleep(100)
        }
      }
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
})
