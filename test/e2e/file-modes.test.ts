/**
 * Files at rest, end to end: a 1-member natcd started (through the supervisor) by a test process
 * whose umask is 0022 keeps everything under its member directory private, as etcd does:
 * directories 0700, regular files 0600 (etcd fileutil.PrivateDirMode / PrivateFileMode). The
 * member directory is made beforehand with mode 0755, as an operator's `mkdir` would, and must
 * be found tightened to 0700. Writes and a small --snapshot-count make every kind of file
 * appear: WAL segments and lock, raft snapshot files, the LMDB data and lock files, the mvcc
 * snapshot files (`etcdctl snapshot save`), and the trace files; and, while the gateway runs,
 * its Unix socket (0600 too).
 */
import { lstatSync, mkdirSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { kvClient } from "./grpc-client.ts"
import { etcdctl, startNatcd, tempDir } from "./harness.ts"

const portOffset = 1880

/** Every path under `dir` (itself included), with its permission bits and kind. */
const walk = (dir: string): Array<{ path: string; mode: number; kind: "dir" | "file" | "other" }> => {
  const s = lstatSync(dir)
  const here = { path: dir, mode: s.mode & 0o777, kind: s.isDirectory() ? "dir" as const : s.isFile() ? "file" as const : "other" as const }
  if (!s.isDirectory()) return [here]
  return [here, ...readdirSync(dir).flatMap((name) => walk(join(dir, name)))]
}

describe("files at rest", () => {
  it("keeps every directory of a member 0700 and every file 0600 under a lax umask", async () => {
    const data = tempDir("file-modes")
    const saved = process.umask(0o022)
    let started: ReturnType<typeof startNatcd>
    try {
      // A member directory made with the lax umask before natcd starts.
      mkdirSync(join(data.dir, "m1"), { mode: 0o755 })
      expect(statSync(join(data.dir, "m1")).mode & 0o777).toBe(0o755)
      // The supervisor is spawned synchronously inside startNatcd: it inherits this umask.
      started = startNatcd({ dataDir: data.dir, portOffset, env: { NATCD_SNAPSHOT_COUNT: "20", NATCD_SNAPSHOT_CATCHUP_ENTRIES: "5" } })
    } finally {
      process.umask(saved)
    }
    const natcd = await started
    try {
      const client = kvClient(natcd.endpoints[0]!)
      try {
        for (let i = 0; i < 60; i++) await client.put(`modes-${i}`, `v${i}`)
      } finally {
        client.close()
      }
      const put = await etcdctl(natcd.endpoints[0]!, ["put", "foo", "bar"])
      expect(put.code).toBe(0)
      const backup = await etcdctl(natcd.endpoints[0]!, ["snapshot", "save", join(data.dir, "backup.db")])
      expect(backup.code, backup.stderr).toBe(0)

      const member = join(data.dir, "m1")
      // Raft snapshots are taken asynchronously after snapshot-count entries: wait for one.
      const deadline = Date.now() + 20_000
      while (!walk(member).some((e) => e.path.endsWith(".snap")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))

      const entries = [...walk(member), ...walk(join(data.dir, "traces"))]
      const paths = entries.map((e) => e.path.slice(data.dir.length + 1))
      // Every kind of file is there, so the modes below are checked on each of them.
      for (const want of [/^m1\/wal\/[0-9a-f-]+\.wal$/, /^m1\/wal\/wal\.lock$/, /^m1\/snap\/[0-9a-f-]+\.snap$/, /^m1\/mvcc\/kv\.mdb$/, /^m1\/mvcc\/kv\.mdb-lock$/, /^m1\/mvcc\/snap\/[0-9a-f]{16}\.mdb$/, /^traces\/.*\.jsonl$/]) {
        expect(paths.some((p) => want.test(p)), `no file matching ${want} in ${JSON.stringify(paths)}`).toBe(true)
      }
      // Nothing but directories and files, and the gateway's Unix socket (its JSON gateway's
      // gRPC connection, while it runs), 0600 as a file.
      const others = entries.filter((e) => e.kind === "other").map((e) => e.path.slice(data.dir.length + 1))
      expect(others.filter((p) => !/^m1\/gw-\d+\.sock$/.test(p))).toEqual([])
      expect(others.length).toBe(1)
      const wrong = entries.filter((e) => e.mode !== (e.kind === "dir" ? 0o700 : 0o600)).map((e) => `${e.path} ${e.mode.toString(8)}`)
      expect(wrong).toEqual([])
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 120_000)
})
