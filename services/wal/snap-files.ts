/**
 * Raft snapshot files of a member (etcd server/etcdserver/api/snap): `<member>/snap/` holds one
 * file per snapshot, named `%016x-%016x.snap` (term, index) as etcd names them, each the raft
 * snapshot's metadata (index, term, configuration) and data (natcd's membership table and the
 * reference to the mvcc snapshot file).
 *
 * Format: the 4 bytes "NSNP", a CRC-32C (little-endian) of the rest, then the msgpack of
 * `{ metadata, data }`. A file is written to a temporary name, fdatasync'ed, renamed and the
 * directory fsync'ed, so a crash leaves either the whole file or none. Reading checks the CRC;
 * a damaged file is an error naming it (the caller may fall back to an older one).
 */
import { open, readdir, readFile, rename, unlink } from "node:fs/promises"
import { join } from "node:path"
import { packValue, unpackValue } from "../../shared/frame.ts"
import type { SnapshotMetadata } from "../../shared/raft-types.ts"
import { privateFileMode } from "../runtime/private-files.ts"
import { crc32c } from "./core/crc32c.ts"
import { fsyncDir, writeFully } from "./segment-file.ts"

const MAGIC = new Uint8Array([0x4e, 0x53, 0x4e, 0x50])

/** A raft snapshot as stored: metadata and opaque data. */
export interface SnapFile {
  readonly metadata: SnapshotMetadata
  readonly data: Uint8Array
}

/** The file name of the snapshot at (term, index). */
export const snapName = (term: number, index: number): string =>
  `${term.toString(16).padStart(16, "0")}-${index.toString(16).padStart(16, "0")}.snap`

const parseName = (name: string): { term: number; index: number } | undefined => {
  const m = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/.exec(name)
  return m === null ? undefined : { term: Number.parseInt(m[1]!, 16), index: Number.parseInt(m[2]!, 16) }
}

/** Writes `snap` durably into `dir` (which must exist). */
export const saveSnap = async (dir: string, snap: SnapFile): Promise<string> => {
  const body = packValue({ metadata: snap.metadata, data: snap.data })
  const out = new Uint8Array(8 + body.length)
  out.set(MAGIC, 0)
  new DataView(out.buffer).setUint32(4, crc32c(0, body), true)
  out.set(body, 8)
  const name = snapName(snap.metadata.term, snap.metadata.index)
  const tmp = join(dir, `${name}.tmp`)
  const fh = await open(tmp, "w", privateFileMode)
  try {
    await writeFully(fh, out, 0)
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await rename(tmp, join(dir, name))
  await fsyncDir(dir)
  return name
}

/**
 * Reads the snapshot at (term, index) from `dir`. Throws an error naming the file when it is
 * missing, truncated or fails its CRC.
 */
export const loadSnap = async (dir: string, term: number, index: number): Promise<SnapFile> => {
  const path = join(dir, snapName(term, index))
  const bytes = new Uint8Array(await readFile(path))
  const magicOk = bytes.length >= 8 && MAGIC.every((b, i) => bytes[i] === b)
  const body = bytes.subarray(8)
  if (!magicOk || new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true) !== crc32c(0, body)) {
    throw new Error(`snapshot file ${path} is damaged (bad magic or CRC)`)
  }
  const v = unpackValue(body) as SnapFile
  return { metadata: v.metadata, data: v.data }
}

/** Deletes all but the newest `keep` snapshot files (and stray temporary files); returns deleted names. */
export const purgeSnaps = async (dir: string, keep: number): Promise<string[]> => {
  const names = await readdir(dir)
  const snaps = names.flatMap((n) => {
    const p = parseName(n)
    return p === undefined ? [] : [{ name: n, ...p }]
  }).sort((a, b) => a.index - b.index)
  const doomed = [...snaps.slice(0, Math.max(0, snaps.length - keep)).map((s) => s.name), ...names.filter((n) => n.endsWith(".snap.tmp"))]
  for (const n of doomed) await unlink(join(dir, n))
  return doomed
}
