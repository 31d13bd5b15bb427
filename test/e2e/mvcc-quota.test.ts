/**
 * Backend quota and auto-compaction end to end.
 *
 * Quota: natcd and the reference etcd both run with a 200000-byte --quota-backend-bytes and
 * are filled with 6000-byte values until a put fails. The failing put, the `etcdctl alarm list`
 * output, and what the NOSPACE alarm rejects afterwards (puts, txns with puts) or lets through
 * (deletes, read-only txns) must match etcd. How many puts fit differs: etcd measures bolt's
 * high-water mark, natcd LMDB's pages in use. Then compaction and `etcdctl alarm disarm`
 * restore writes (etcd also needs `etcdctl defrag`, which natcd does not serve yet: its quota
 * counts pages in use, which compaction frees).
 *
 * Auto-compaction: natcd with --auto-compaction-mode=revision and a retention of 5 revisions
 * (check interval shortened from etcd's 5 minutes to 1 s) compacts at current - 5, observable
 * as etcd's compacted-revision error on older reads.
 */
import { describe, expect, it } from "vitest"
import type { CtlResult } from "./harness.ts"
import { etcdctl, sleep, startEtcd, startNatcd, tempDir } from "./harness.ts"

const quota = 200_000

/** What a user reads: exit code, stdout with member ids replaced, and the final error line. */
const shown = (r: CtlResult) => ({
  code: r.code,
  out: r.stdout.replace(/memberID:\d+/g, "memberID:<id>"),
  err: r.stderr.trim().split("\n").filter((l) => !l.startsWith("{")).join("\n")
})

const revisionOf = async (endpoint: string): Promise<number> => {
  const r = await etcdctl(endpoint, ["get", "x", "-w", "json"])
  return JSON.parse(r.stdout).header.revision as number
}

/** Runs the quota scenario on one endpoint; returns what to compare and how many puts fit. */
const fillAndCheck = async (endpoint: string) => {
  const value = "v".repeat(6000)
  let fitted = 0
  let failed: CtlResult | undefined
  for (let i = 0; i < 200 && failed === undefined; i++) {
    const r = await etcdctl(endpoint, ["put", `fill-${i}`, value])
    if (r.code === 0) fitted++
    else failed = r
  }
  return {
    fitted,
    compared: {
      failedPut: shown(failed!),
      alarmList: shown(await etcdctl(endpoint, ["alarm", "list"])),
      alarmListJson: shown(await etcdctl(endpoint, ["alarm", "list", "-w", "json"])).code,
      smallPut: shown(await etcdctl(endpoint, ["put", "x", "y"])),
      txnWithPut: shown(await etcdctl(endpoint, ["txn"], "\nput x y\n\n\n")),
      txnWithPutInFailure: shown(await etcdctl(endpoint, ["txn"], 'value("nope") = "1"\n\nget x\n\nput x y\n\n')),
      readOnlyTxn: shown(await etcdctl(endpoint, ["txn"], "\nget fill-0 --keys-only\n\n\n")),
      statusErrors: ((JSON.parse((await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])).stdout)[0].Status.errors ?? []) as string[])
        .map((e) => e.replace(/memberID:\d+/, "memberID:<id>")),
      deleteOne: shown(await etcdctl(endpoint, ["del", "fill-0"])),
      stillRejected: shown(await etcdctl(endpoint, ["put", "x", "y"]))
    }
  }
}

describe("backend quota and NOSPACE alarm, compared with etcd", () => {
  it("fails puts with etcd's error and alarm once over quota; compact + disarm restores writes", async () => {
    const natcdDir = tempDir("quota-natcd")
    const etcdDir = tempDir("quota-etcd")
    const saved = { ...process.env }
    process.env.NATCD_QUOTA_BACKEND_BYTES = String(quota)
    const natcdStart = startNatcd({ dataDir: natcdDir.dir, portOffset: 430 })
    process.env = saved
    const [natcd, etcd] = await Promise.all([natcdStart, startEtcd({ dataDir: etcdDir.dir, clientPort: 25830, peerPort: 25840, extraArgs: [`--quota-backend-bytes=${quota}`] })])
    try {
      const ours = await fillAndCheck(natcd.endpoints[0]!)
      const ref = await fillAndCheck(etcd.endpoint)
      expect(ours.compared).toEqual(ref.compared)
      expect(ours.compared.failedPut.err).toBe("Error: etcdserver: mvcc: database space exceeded")
      expect(ours.compared.alarmList.out).toBe("memberID:<id> alarm:NOSPACE \n")
      expect(ours.compared.statusErrors).toEqual(["memberID:<id> alarm:NOSPACE "])
      // Both fit a similar number of 6000-byte values into 200000 bytes.
      expect(ours.fitted).toBeGreaterThan(10)
      expect(ref.fitted).toBeGreaterThan(10)

      // Free space: delete, compact, (etcd: defragment), disarm.
      for (const [endpoint, defrag] of [[natcd.endpoints[0]!, false], [etcd.endpoint, true]] as const) {
        expect((await etcdctl(endpoint, ["del", "fill-", "--prefix"])).code).toBe(0)
        const rev = await revisionOf(endpoint)
        expect((await etcdctl(endpoint, ["compact", String(rev), "--physical"])).stdout).toBe(`compacted revision ${rev}\n`)
        if (defrag) expect((await etcdctl(endpoint, ["defrag"])).code).toBe(0)
        const disarm = shown(await etcdctl(endpoint, ["alarm", "disarm"]))
        expect(disarm).toEqual({ code: 0, out: "memberID:<id> alarm:NOSPACE \n", err: "" })
        expect(shown(await etcdctl(endpoint, ["alarm", "list"]))).toEqual({ code: 0, out: "", err: "" })
        expect(shown(await etcdctl(endpoint, ["put", "x", "y"]))).toEqual({ code: 0, out: "OK\n", err: "" })
      }
    } finally {
      await Promise.all([natcd.stop(), etcd.stop()])
      natcdDir.remove()
      etcdDir.remove()
    }
  }, 240_000)
})

describe("auto compaction, revision mode", () => {
  it("compacts at current revision - retention on its own", async () => {
    const data = tempDir("auto-compaction")
    const saved = { ...process.env }
    process.env.NATCD_AUTO_COMPACTION_MODE = "revision"
    process.env.NATCD_AUTO_COMPACTION_RETENTION = "5"
    process.env.NATCD_AUTO_COMPACTION_CHECK_INTERVAL_MS = "1000"
    const natcdStart = startNatcd({ dataDir: data.dir, portOffset: 440 })
    process.env = saved
    const natcd = await natcdStart
    try {
      const endpoint = natcd.endpoints[0]!
      for (let i = 0; i < 20; i++) expect((await etcdctl(endpoint, ["put", "k", `v${i}`])).code).toBe(0)
      const rev = await revisionOf(endpoint)
      expect(rev).toBe(21)
      // Within a few check intervals the compactor compacts at 21 - 5 = 16.
      const deadline = Date.now() + 15_000
      let old: CtlResult
      for (;;) {
        old = await etcdctl(endpoint, ["get", "k", "--rev", "15"])
        if (old.code !== 0 || Date.now() > deadline) break
        await sleep(250)
      }
      expect(shown(old).err).toBe("Error: etcdserver: mvcc: required revision has been compacted")
      const kept = await etcdctl(endpoint, ["get", "k", "--rev", "16", "--print-value-only"])
      expect(kept.stdout).toBe("v14\n")
      expect(shown(await etcdctl(endpoint, ["compact", "16"])).err).toBe("Error: etcdserver: mvcc: required revision has been compacted")
      // The compacted revision survives a restart of the whole cluster.
      await natcd.stop()
      const again = await startNatcd({ dataDir: data.dir, portOffset: 440 })
      try {
        expect(shown(await etcdctl(endpoint, ["get", "k", "--rev", "15"])).err).toBe("Error: etcdserver: mvcc: required revision has been compacted")
        expect((await etcdctl(endpoint, ["get", "k", "--rev", "16", "--print-value-only"])).stdout).toBe("v14\n")
      } finally {
        await again.stop()
      }
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 120_000)
})
