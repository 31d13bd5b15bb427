/**
 * Restoring a backend saved with `etcdctl snapshot save` into a new cluster (etcdutl snapshot
 * restore, in natcd's terms).
 *
 * The saved stream is the member's LMDB file followed by the SHA-256 of it (32 bytes), as
 * Maintenance.Snapshot sends it. Restoring checks the hash, then makes the file the starting
 * state of a new cluster: the keys, revisions and compaction state stay; what belonged to the
 * old cluster's raft log goes — the consistent index and term are reset to 0 (the new cluster's
 * log starts at index 1) and the applied request ids and the dedup clock are forgotten. A
 * snapshot saved while a compaction's background deletion ran keeps scheduledCompactRev ahead
 * of finishedCompactRev; each member resumes that deletion when it starts (KvStore.restore).
 */
import { createHash } from "node:crypto"
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { privateDirMode, privateFileMode } from "../runtime/private-files.ts"
import { LmdbBackend } from "./backend-lmdb.ts"
import { encodeUint64, metaConsistentIndexKey } from "./core/backend.ts"
import { metaDedupClockKey } from "./core/dedup.ts"

const metaTermKey = new TextEncoder().encode("term")

/** Why a snapshot file cannot be restored. */
export class RestoreError extends Error {
  override readonly name = "RestoreError"
}

/**
 * Restores `snapshotFile` as the mvcc state of each member in `members` under `dataDir`
 * (`<dataDir>/<member>/mvcc/kv.mdb`). Throws RestoreError when the hash does not match (unless
 * `skipHashCheck`) or a member directory exists already.
 */
export const restoreSnapshot = async (options: {
  readonly snapshotFile: string
  readonly dataDir: string
  readonly members: ReadonlyArray<string>
  readonly skipHashCheck?: boolean
}): Promise<void> => {
  for (const m of options.members) {
    if (existsSync(join(options.dataDir, m))) throw new RestoreError(`member directory ${join(options.dataDir, m)} already exists`)
  }
  const bytes = readFileSync(options.snapshotFile)
  let db = bytes
  if (!options.skipHashCheck) {
    if (bytes.length < 32) throw new RestoreError("snapshot file is too short to carry its SHA-256")
    db = bytes.subarray(0, bytes.length - 32)
    const want = bytes.subarray(bytes.length - 32)
    const got = createHash("sha256").update(db).digest()
    if (!got.equals(want)) throw new RestoreError("snapshot file has a wrong SHA-256: not a natcd snapshot, or damaged")
  }
  const first = join(options.dataDir, options.members[0]!, "mvcc", "kv.mdb")
  mkdirSync(join(options.dataDir, options.members[0]!, "mvcc"), { recursive: true, mode: privateDirMode })
  writeFileSync(first, db, { mode: privateFileMode })
  const backend = LmdbBackend.open(first)
  try {
    backend.write((tx) => {
      tx.put("meta", metaConsistentIndexKey, encodeUint64(0))
      tx.put("meta", metaTermKey, encodeUint64(0))
      for (const { key } of backend.dedupEntries()) tx.dedupDelete(key)
      // The dedup clock belongs to the old log too (./core/dedup.ts); the new one starts it again.
      tx.delete("meta", metaDedupClockKey)
    })
    backend.commit()
  } finally {
    await backend.close()
  }
  for (const m of options.members.slice(1)) {
    mkdirSync(join(options.dataDir, m, "mvcc"), { recursive: true, mode: privateDirMode })
    copyFileSync(first, join(options.dataDir, m, "mvcc", "kv.mdb"))
  }
}
