/**
 * Maintenance on the backend with etcdctl: defrag shrinks the database after a delete and a
 * compaction without changing its content (HashKV), `etcdctl snapshot save` streams it, and
 * `natcd snapshot restore` makes the saved file the data of a new cluster that serves the same
 * keys and continues the same revisions; a damaged file is refused.
 */
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { etcdctl, startNatcd, tempDir } from "./harness.ts"

const cli = fileURLToPath(new URL("../../services/cli/natcd.ts", import.meta.url))
const restore = (args: string[]) => {
  try {
    return { code: 0, out: execFileSync(process.execPath, [cli, "snapshot", "restore", ...args], { encoding: "utf8", stdio: "pipe" }) }
  } catch (e) {
    return { code: 1, out: String((e as { stderr?: unknown }).stderr ?? e) }
  }
}

const status = async (endpoint: string) => {
  const r = await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])
  return (JSON.parse(r.stdout) as Array<{ Status: { dbSize: number; header: { revision: number } } }>)[0]!.Status
}
const hashkv = async (endpoint: string) =>
  (JSON.parse((await etcdctl(endpoint, ["endpoint", "hashkv", "-w", "json"])).stdout) as Array<{ HashKV: { hash: number } }>)[0]!.HashKV.hash

describe("defrag, snapshot save and restore", () => {
  it("defragments, saves, and restores into a new cluster", async () => {
    const data = tempDir("snapshot-save")
    const restored = tempDir("snapshot-restored")
    const file = join(data.dir, "saved.db")
    let natcd = await startNatcd({ dataDir: join(data.dir, "cluster"), portOffset: 940 })
    const endpoint = natcd.endpoints[0]!
    try {
      const big = "x".repeat(4000)
      for (let i = 0; i < 60; i++) expect((await etcdctl(endpoint, ["put", `k${String(i).padStart(2, "0")}`, big])).code).toBe(0)
      expect((await etcdctl(endpoint, ["del", "k00", "k50"])).stdout.trim()).toBe("50")
      const rev = (await status(endpoint)).header.revision
      expect((await etcdctl(endpoint, ["compact", String(rev)])).stdout.trim()).toBe(`compacted revision ${rev}`)
      const before = await status(endpoint)
      const hashBefore = await hashkv(endpoint)
      const defrag = await etcdctl(endpoint, ["defrag"])
      expect(defrag.stdout.trim()).toBe(`Finished defragmenting etcd member[${endpoint}]`)
      let after = await status(endpoint)
      for (let i = 0; i < 50 && after.dbSize >= before.dbSize; i++) after = await status(endpoint)
      console.log(`defrag: db size ${before.dbSize} -> ${after.dbSize} bytes`)
      expect(after.dbSize).toBeLessThan(before.dbSize)
      expect(await hashkv(endpoint)).toBe(hashBefore)

      const saved = await etcdctl(endpoint, ["snapshot", "save", file])
      expect(saved.code, saved.stderr).toBe(0)
      expect(saved.stdout.trim()).toBe(`Snapshot saved at ${file}`)
    } finally {
      await natcd.stop()
    }

    // A damaged file is refused; the intact one restores.
    const damaged = join(data.dir, "damaged.db")
    const bytes = readFileSync(file)
    bytes[100] = bytes[100]! ^ 0xff
    writeFileSync(damaged, bytes)
    const bad = restore([damaged, `--data-dir=${restored.dir}`, "--members=1"])
    expect(bad.code).toBe(1)
    expect(bad.out).toContain("wrong SHA-256")
    const ok = restore([file, `--data-dir=${restored.dir}`, "--members=1"])
    expect(ok.code, ok.out).toBe(0)
    expect(restore([file, `--data-dir=${restored.dir}`, "--members=1"]).out).toContain("already exists")

    natcd = await startNatcd({ dataDir: restored.dir, portOffset: 940 })
    try {
      const r = await etcdctl(endpoint, ["get", "k", "--prefix", "--keys-only"])
      const keys = r.stdout.trim().split("\n").filter((l) => l.length > 0)
      expect(keys).toHaveLength(10)
      expect(keys[0]).toBe("k50")
      const put = await etcdctl(endpoint, ["put", "new", "v", "-w", "json"])
      const rev = JSON.parse(put.stdout).header.revision as number
      console.log(`restored cluster continues at revision ${rev}`)
      expect(rev).toBeGreaterThan(60)
    } finally {
      await natcd.stop()
      data.remove()
      restored.remove()
    }
  }, 180_000)
})
