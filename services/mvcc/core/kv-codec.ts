/**
 * Binary encoding of a stored {@link KeyValue}, the value of every record in the key bucket.
 *
 * etcd stores a protobuf mvccpb.KeyValue under each revision; natcd stores this simpler
 * layout, written and read only by natcd:
 *
 *     u8      format (1)
 *     uvarint createRevision
 *     uvarint modRevision
 *     uvarint version
 *     uvarint lease (as an unsigned 64-bit value; 0 = no lease, one byte)
 *     uvarint key length
 *     bytes   key
 *     bytes   value (the rest of the record)
 *
 * Varints are LEB128 (7 bits per byte, low first), as protobuf's. Revisions and versions are
 * safe integers; the lease is a bigint and round-trips the full signed 64-bit range. A
 * tombstone record is encoded like etcd's: only the key set, every other field zero.
 *
 * Not a wire format: frames use msgpack. Decoding copies key and value out of the input, so
 * the caller may pass a buffer the backend reuses.
 */
import type { KeyValue } from "../../../shared/kv.ts"
import { LeaseId, Revision } from "../../../shared/ids.ts"

const FORMAT = 1
const u64 = (1n << 64n) - 1n

const uvarintLen = (n: number): number => {
  let len = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

const putUvarint = (out: Uint8Array, pos: number, n: number): number => {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`kv-codec: not a non-negative safe integer: ${n}`)
  while (n >= 128) {
    out[pos++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[pos++] = n
  return pos
}

const leaseBytes = (lease: bigint): number[] => {
  let v = BigInt.asUintN(64, lease)
  const bytes: number[] = []
  while (v >= 128n) {
    bytes.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  bytes.push(Number(v))
  return bytes
}

/** Encodes a KeyValue as one backend record value. Throws on a negative or unsafe number. */
export const encodeKeyValue = (kv: KeyValue): Uint8Array => {
  const lease = kv.lease === 0n ? [0] : leaseBytes(kv.lease)
  const size = 1 + uvarintLen(kv.createRevision) + uvarintLen(kv.modRevision) + uvarintLen(kv.version) +
    lease.length + uvarintLen(kv.key.length) + kv.key.length + kv.value.length
  const out = new Uint8Array(size)
  out[0] = FORMAT
  let pos = 1
  pos = putUvarint(out, pos, kv.createRevision)
  pos = putUvarint(out, pos, kv.modRevision)
  pos = putUvarint(out, pos, kv.version)
  for (const b of lease) out[pos++] = b
  pos = putUvarint(out, pos, kv.key.length)
  out.set(kv.key, pos)
  pos += kv.key.length
  out.set(kv.value, pos)
  return out
}

/**
 * Reads the unsigned varint (below 2^56) at `cursor.pos` of `b` and moves the cursor past it.
 * Throws on a truncated or over-long varint (a corrupt backend).
 */
const readUvarint = (b: Uint8Array, cursor: { pos: number }): number => {
  let n = 0
  let mul = 1
  for (;;) {
    if (cursor.pos >= b.length) throw new Error("kv-codec: truncated record")
    const byte = b[cursor.pos++]!
    n += (byte & 0x7f) * mul
    if (byte < 0x80) return n
    mul *= 128
    if (mul > 2 ** 56) throw new Error("kv-codec: varint too long")
  }
}

/**
 * The user key of a record written by {@link encodeKeyValue}, without decoding the rest (a
 * copy). Throws on an unknown format byte or a truncated record.
 */
export const decodeKey = (b: Uint8Array): Uint8Array => {
  if (b[0] !== FORMAT) throw new Error(`kv-codec: unknown record format ${b[0]}`)
  let pos = 1
  // createRevision, modRevision, version, lease: four varints to skip (the lease, up to 64
  // bits, is longer than readUvarint reads, so bytes are skipped up to the last one).
  for (let field = 0; field < 4; field++) {
    for (;;) {
      if (pos >= b.length) throw new Error("kv-codec: truncated record")
      if (b[pos++]! < 0x80) break
    }
  }
  const cursor = { pos }
  const keyLen = readUvarint(b, cursor)
  if (cursor.pos + keyLen > b.length) throw new Error("kv-codec: truncated record")
  return b.slice(cursor.pos, cursor.pos + keyLen)
}

/**
 * Decodes a record written by {@link encodeKeyValue}. Throws on an unknown format byte or a
 * truncated record (a corrupt backend is a defect).
 */
export const decodeKeyValue = (b: Uint8Array): KeyValue => {
  if (b[0] !== FORMAT) throw new Error(`kv-codec: unknown record format ${b[0]}`)
  const cursor = { pos: 1 }
  const createRevision = readUvarint(b, cursor)
  const modRevision = readUvarint(b, cursor)
  const version = readUvarint(b, cursor)
  let lease = 0n
  if (b[cursor.pos] === 0) {
    cursor.pos++
  } else {
    let shift = 0n
    for (;;) {
      if (cursor.pos >= b.length) throw new Error("kv-codec: truncated record")
      const byte = b[cursor.pos++]!
      lease |= BigInt(byte & 0x7f) << shift
      if (byte < 0x80) break
      shift += 7n
      if (shift > 63n) throw new Error("kv-codec: lease varint too long")
    }
    lease = BigInt.asIntN(64, lease & u64)
  }
  const keyLen = readUvarint(b, cursor)
  const pos = cursor.pos
  if (pos + keyLen > b.length) throw new Error("kv-codec: truncated record")
  const key = b.slice(pos, pos + keyLen)
  const value = b.slice(pos + keyLen)
  return {
    key,
    createRevision: Revision(createRevision),
    modRevision: Revision(modRevision),
    version,
    value,
    lease: LeaseId(lease)
  }
}
