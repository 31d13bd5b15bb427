/**
 * MVCC revisions and their backend key encoding.
 *
 * A revision is the pair {main, sub}: `main` is the store-wide revision of one atomic change
 * (one put, one delete range, one whole txn), `sub` numbers the individual key changes inside
 * it from 0. Every key change is stored in the backend under its revision, so the key bucket
 * is ordered by (main, sub) and replaying it from the start rebuilds the index.
 *
 * This module is not the index: it only defines the pair, its ordering, and the 17/18-byte
 * bucket key. Follows etcd server/storage/mvcc/revision.go (revToBytes, bytesToRev,
 * BucketKey, isTombstone).
 */

/**
 * A revision pair. `main` and `sub` are non-negative safe integers; `main` is what clients see
 * as a revision (`mod_revision`, header revision), `sub` is internal.
 */
export interface Rev {
  readonly main: number
  readonly sub: number
}

/** Byte length of a normal bucket key: 8 bytes main (big-endian), '_', 8 bytes sub. */
export const revBytesLen = 17
/** Byte length of a marked bucket key: a normal key followed by one mark byte. */
export const markedRevBytesLen = 18
/** The mark byte of a tombstone record ('t'), as etcd's markTombstone. */
export const markTombstone = 0x74
const separator = 0x5f // '_'
const two32 = 0x1_0000_0000

/** The zero revision {0, 0}: "none" (a key's created revision when unknown after compaction). */
export const zeroRev: Rev = { main: 0, sub: 0 }

/** Builds a revision pair. */
export const rev = (main: number, sub = 0): Rev => ({ main, sub })

/** True when `a` is strictly greater than `b` in (main, sub) order (etcd Revision.GreaterThan). */
export const revGreaterThan = (a: Rev, b: Rev): boolean => a.main > b.main || (a.main === b.main && a.sub > b.sub)

/** Orders revisions by (main, sub): negative, zero or positive as `a` is below, equal or above `b`. */
export const compareRev = (a: Rev, b: Rev): number => a.main !== b.main ? a.main - b.main : a.sub - b.sub

/**
 * A string identity for a revision, for use as a Set/Map key (e.g. the "available" sets of
 * compaction). Not an ordering: compare with {@link compareRev}.
 */
export const revId = (r: Rev): string => `${r.main}_${r.sub}`

const putUint64 = (out: Uint8Array, offset: number, n: number): void => {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`revision component out of range: ${n}`)
  const hi = Math.floor(n / two32)
  const lo = n % two32
  out[offset] = hi >>> 24
  out[offset + 1] = (hi >>> 16) & 0xff
  out[offset + 2] = (hi >>> 8) & 0xff
  out[offset + 3] = hi & 0xff
  out[offset + 4] = lo >>> 24
  out[offset + 5] = (lo >>> 16) & 0xff
  out[offset + 6] = (lo >>> 8) & 0xff
  out[offset + 7] = lo & 0xff
}

const getUint64 = (b: Uint8Array, offset: number): number => {
  const hi = ((b[offset]! << 24) >>> 0) + (b[offset + 1]! << 16) + (b[offset + 2]! << 8) + b[offset + 3]!
  const lo = ((b[offset + 4]! << 24) >>> 0) + (b[offset + 5]! << 16) + (b[offset + 6]! << 8) + b[offset + 7]!
  const n = hi * two32 + lo
  if (!Number.isSafeInteger(n)) throw new Error("revision component beyond 2^53 in bucket key")
  return n
}

/**
 * Encodes a revision as a bucket key: 17 bytes (main BE, '_', sub BE), or 18 bytes with a
 * trailing 't' when `tombstone` is set. Byte order of the encoding equals (main, sub) order,
 * and a tombstone key sorts right after the plain key of the same revision (which never also
 * exists). Follows etcd RevToBytes / BucketKeyToBytes.
 */
export const revToBytes = (r: Rev, tombstone = false): Uint8Array => {
  const out = new Uint8Array(tombstone ? markedRevBytesLen : revBytesLen)
  putUint64(out, 0, r.main)
  out[8] = separator
  putUint64(out, 9, r.sub)
  if (tombstone) out[revBytesLen] = markTombstone
  return out
}

/**
 * Decodes a 17- or 18-byte bucket key. Throws on any other length, a wrong separator or a
 * component beyond 2^53 (a corrupt backend is a defect, as etcd panics in BytesToBucketKey).
 */
export const bytesToRev = (b: Uint8Array): Rev => {
  if (b.length !== revBytesLen && b.length !== markedRevBytesLen) throw new Error(`invalid revision length: ${b.length}`)
  if (b[8] !== separator) throw new Error(`invalid separator in bucket key: ${b[8]}`)
  return { main: getUint64(b, 0), sub: getUint64(b, 9) }
}

/** True when a bucket key carries the tombstone mark (etcd isTombstone). */
export const isTombstone = (b: Uint8Array): boolean =>
  b.length === markedRevBytesLen && b[markedRevBytesLen - 1] === markTombstone

/**
 * The 8-byte big-endian prefix of `main`: every bucket key of main revisions < `main` sorts
 * below it, so `[empty, mainPrefix(r + 1))` covers all records of revisions <= r (etcd's
 * compaction end key).
 */
export const mainPrefix = (main: number): Uint8Array => {
  const out = new Uint8Array(8)
  putUint64(out, 0, main)
  return out
}
