/**
 * Installing another member's mvcc snapshot, on real LMDB files (services/mvcc/snapshot.ts):
 * the request is refused unless it names a current member's snapshot above the applied index
 * (installRefusal); the fetched file must match size, SHA-256 and the snapshot's consistent index
 * before it becomes `kv.mdb.install`; and at the next start it replaces the database only if it
 * opens. Whatever fails, the current database is left byte for byte as it was.
 */
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { memberIdFor } from "../../shared/membership.ts"
import type { Index, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import type { MvccSnapshotInfo } from "../../shared/schema.ts"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { unsafeReadConsistentIndex } from "../../services/mvcc/core/backend.ts"
import { KvStore } from "../../services/mvcc/core/store.ts"
import { consistentIndexOf, installPending, installRefusal, snapshotFileName, SnapshotFiles } from "../../services/mvcc/snapshot.ts"
import { tempDir } from "../e2e/harness.ts"
import { enc, openApplier, proposal, put } from "./apply-fixtures.ts"

const noop = (index: number): Entry => ({ term: 2 as Term, index: index as Index, type: "Normal", data: new Uint8Array() })

/** A member's mvcc directory holding a database applied up to `entries`' last index. */
const memberWith = async (root: string, name: string, entries: Entry[]) => {
  const dir = join(root, name, "mvcc")
  mkdirSync(dir, { recursive: true })
  const dbPath = join(dir, "kv.mdb")
  const s = openApplier(dbPath)
  await s.applier.applyBatch({ entries, commitIndex: entries.length, term: 2 })
  s.applier.commit()
  return { dir, dbPath, ...s, files: new SnapshotFiles(dir, dbPath) }
}

const valueOf = (dbPath: string, key: string) => {
  const backend = LmdbBackend.open(dbPath)
  try {
    const store = KvStore.restore(backend.read)
    const r = store.range(backend.read, { key: enc(key) })
    if ("err" in r) throw new Error(r.err._tag)
    return { value: r.ok.kvs.map((kv) => new TextDecoder().decode(kv.value))[0], index: unsafeReadConsistentIndex(backend.read) }
  } finally {
    void backend.close()
  }
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

const withCluster = async (f: (root: string) => Promise<void>) => {
  const t = tempDir("install")
  try {
    await f(t.dir)
  } finally {
    t.remove()
  }
}

/** The source takes a snapshot at index 4 (key "k" = "new"); the destination is at index 2 (k = "old"). */
const setUp = async (root: string) => {
  const src = await memberWith(root, "m1", [noop(1), proposal(2, 1n, put("k", "old")), proposal(3, 2n, put("k", "mid")), proposal(4, 3n, put("k", "new"))])
  const info = await src.files.create(() => src.applier.commit(), () => src.applier.appliedIndex(), (p) => src.backend.backup(p), 5)
  const dst = await memberWith(root, "m2", [noop(1), proposal(2, 1n, put("k", "old"))])
  await dst.backend.close()
  const chunk = (offset: number, length: number) => src.files.readChunk(info.file, offset, length)
  const before = readFileSync(dst.dbPath)
  const untouched = () => {
    expect(existsSync(`${dst.dbPath}.install`)).toBe(false)
    expect(existsSync(`${dst.dbPath}.partial`)).toBe(false)
    expect(readFileSync(dst.dbPath).equals(before)).toBe(true)
  }
  return { src, dst, info, chunk, untouched }
}

describe("mvcc snapshot install", () => {
  it("fetches a verified snapshot and installs it at the next start", async () => {
    await withCluster(async (root) => {
      const { src, dst, info, chunk } = await setUp(root)
      expect(info.index).toBe(4)
      expect(info.file).toBe(snapshotFileName(4))
      expect(statSync(join(src.dir, "snap", info.file)).mode & 0o777).toBe(0o600)
      await dst.files.fetch(info, chunk)
      expect(existsSync(`${dst.dbPath}.install`)).toBe(true)
      expect(existsSync(`${dst.dbPath}.partial`)).toBe(false)
      // Until the restart the old database is the one in place.
      expect(valueOf(dst.dbPath, "k")).toEqual({ value: "old", index: 2 })
      expect(await installPending(dst.dbPath)).toBe("installed")
      expect(existsSync(`${dst.dbPath}.install`)).toBe(false)
      expect(valueOf(dst.dbPath, "k")).toEqual({ value: "new", index: 4 })
      await src.backend.close()
    })
  })

  it("rejects bytes that do not match the snapshot's SHA-256, keeping the database", async () => {
    await withCluster(async (root) => {
      const { src, dst, info, chunk, untouched } = await setUp(root)
      const tampered = async (offset: number, length: number) => {
        const b = Uint8Array.from(await chunk(offset, length))
        if (offset === 0) b[100] = b[100]! ^ 0xff
        return b
      }
      await expect(dst.files.fetch(info, tampered)).rejects.toThrow(/checksum/)
      untouched()
      await expect(dst.files.fetch({ ...info, sizeBytes: info.sizeBytes - 1 }, chunk)).rejects.toThrow(/checksum/)
      untouched()
      await src.backend.close()
    })
  })

  it("rejects a file whose consistent index is not the snapshot's index", async () => {
    await withCluster(async (root) => {
      const { src, dst, info, chunk, untouched } = await setUp(root)
      // Size and checksum match the bytes, but the description claims another index.
      await expect(dst.files.fetch({ ...info, index: 7, file: snapshotFileName(7) }, chunk)).rejects.toThrow(/consistent index 4 is not the snapshot's index 7/)
      untouched()
      await src.backend.close()
    })
  })

  it("rejects a file that is not an LMDB environment, keeping the database", async () => {
    await withCluster(async (root) => {
      const { src, dst, untouched } = await setUp(root)
      const garbage = new Uint8Array(64 * 1024).fill(0x5a)
      const info: MvccSnapshotInfo = { index: 4, file: snapshotFileName(4), sizeBytes: garbage.length, sha256: sha256(garbage) }
      await expect(dst.files.fetch(info, async (o, l) => garbage.subarray(o, o + l))).rejects.toThrow()
      untouched()
      // A pending file that does not open is dropped at start; the old database stays.
      writeFileSync(`${dst.dbPath}.install`, garbage)
      const result = await installPending(dst.dbPath)
      expect(typeof result === "object" && "rejected" in result).toBe(true)
      untouched()
      expect(valueOf(dst.dbPath, "k")).toEqual({ value: "old", index: 2 })
      await src.backend.close()
    })
  })

  it("a request that arrives while a copy is made (a retry) shares that copy", async () => {
    await withCluster(async (root) => {
      const src = await memberWith(root, "m1", [noop(1), proposal(2, 1n, put("k", "v"))])
      let copies = 0
      const backup = async (p: string) => {
        copies++
        await src.backend.backup(p)
      }
      const args = [() => src.applier.commit(), () => src.applier.appliedIndex(), backup, 5] as const
      const [a, b] = await Promise.all([src.files.create(...args), src.files.create(...args)])
      expect(copies).toBe(1)
      expect(b).toEqual(a)
      expect(a.index).toBe(2)
      await src.backend.close()
    })
  })

  it("reads the consistent index of an LMDB file", async () => {
    await withCluster(async (root) => {
      const { src, info } = await setUp(root)
      expect(await consistentIndexOf(join(src.dir, "snap", info.file))).toBe(4)
      expect(existsSync(join(src.dir, "snap", `${info.file}-lock`))).toBe(false)
      await src.backend.close()
    })
  })
})

describe("installRefusal", () => {
  const cluster = "natcd"
  const id = (name: string) => memberIdFor(cluster, name)
  const info: MvccSnapshotInfo = { index: 10, file: snapshotFileName(10), sizeBytes: 4096, sha256: "ab".repeat(32) }
  const ctx = { cluster, members: [{ id: id("m1") }, { id: id("m2") }], leader: id("m1"), appliedIndex: 5 }

  it.each([
    ["a current member's snapshot above the applied index", "m1", info, ctx, undefined],
    ["a member that is not in the membership", "m9", info, ctx, /not a current member/],
    ["a removed member that still leads in a stale view", "m3", info, { ...ctx, leader: id("m3") }, /not a current member/],
    ["a new member that knows no membership: the leader it follows", "m1", info, { ...ctx, members: [] }, undefined],
    ["a new member that knows no membership: not its leader", "m2", info, { ...ctx, members: [] }, /not a current member/],
    ["a new member that knows no membership and no leader", "m1", info, { ...ctx, members: [], leader: 0n }, /not a current member/],
    ["a snapshot at the applied index", "m1", { ...info, index: 5, file: snapshotFileName(5) }, ctx, /not above the applied index 5/],
    ["a snapshot below the applied index", "m1", { ...info, index: 3, file: snapshotFileName(3) }, ctx, /not above/],
    ["a file name that is not the index's", "m1", { ...info, file: "../../kv.mdb" }, ctx, /is not the one of index 10/],
    ["another index's file", "m1", { ...info, file: snapshotFileName(11) }, ctx, /is not the one of index 10/],
    ["an empty file", "m1", { ...info, sizeBytes: 0 }, ctx, /bad snapshot size/],
    ["a malformed SHA-256", "m1", { ...info, sha256: "xyz" }, ctx, /bad snapshot SHA-256/]
  ] as const)("%s", (_name, from, snapshot, context, want) => {
    const got = installRefusal(from, snapshot, context)
    if (want === undefined) expect(got).toBeUndefined()
    else expect(got).toMatch(want)
  })
})
