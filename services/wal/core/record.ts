/**
 * Record framing and the CRC chain: how one logical record (payload.ts) is laid out in a
 * segment file and how it is checked when read back. Follows etcd's
 * server/storage/wal/encoder.go and decoder.go in spirit, with a fixed 16-byte header in
 * place of etcd's 8-byte length field plus protobuf `walpb.Record`.
 *
 * Frame layout (integers little-endian; every frame starts at a multiple of 8):
 *
 * ```
 * offset  size  field
 *   0      1    type        1 metadata, 2 entry, 3 state, 4 crc, 5 snapshot (etcd's numbers)
 *   1      1    padBytes    (8 - dataBytes % 8) % 8, zero bytes that follow the data
 *   2      2    reserved    zero
 *   4      4    dataBytes   payload length
 *   8      4    prevCrc     the chain value before this record
 *  12      4    crc         CRC-32C seeded with prevCrc over bytes [0, 12) and the payload
 *  16      …    payload, then padBytes zero bytes
 * ```
 *
 * The chain: record n's `crc` is computed starting from record n-1's `crc`, so the CRC of the
 * last record vouches for the whole log, across segment boundaries (a new segment opens with a
 * crc record whose prevCrc is the previous segment's last crc, as etcd's `cut`).
 *
 * Departures from etcd, and why:
 * - The CRC covers the header (type, length, padding) as well as the payload; etcd checks the
 *   data only, so a flipped bit in etcd's type or length field is caught only indirectly.
 * - Every record stores `prevCrc`. A record can therefore be verified on its own, without
 *   the records before it. The repair logic uses that to tell a torn tail (nothing valid
 *   after the damage) from corruption in the middle (valid records follow the damage).
 * - The type byte comes first and is never 0, so any partially written header has a non-zero
 *   byte, and eight zero bytes where a header belongs mean "end of log" (preallocated space),
 *   as a zero length field does in etcd.
 */
import { crc32c } from "./crc32c.ts"
import { payloadBytes, typeCode, writePayload, type WalRecord } from "./payload.ts"

/** Bytes of a frame header. */
export const HEADER_BYTES = 16

/** Bytes of padding after a payload of `dataBytes` bytes, keeping frames 8-byte aligned. */
export const padBytesFor = (dataBytes: number): number => (8 - (dataBytes % 8)) % 8

/** Total bytes a frame with a payload of `dataBytes` bytes occupies on disk. */
export const frameBytes = (dataBytes: number): number => HEADER_BYTES + dataBytes + padBytesFor(dataBytes)

/** Total bytes `record` occupies on disk. */
export const recordFrameBytes = (record: WalRecord): number => frameBytes(payloadBytes(record))

/** Largest payload a frame can describe (the length field is a uint32). */
export const MAX_PAYLOAD_BYTES = 0xffff_ffff

/**
 * Writes `record` framed into `out` at `off` (which must leave {@link recordFrameBytes} bytes)
 * and returns its CRC, the chain value for the next record. `prevCrc` is the previous
 * record's CRC (0 for the very first record of a new log).
 */
export const encodeRecord = (out: Uint8Array, off: number, record: WalRecord, prevCrc: number): number => {
  const dataBytes = payloadBytes(record)
  if (dataBytes > MAX_PAYLOAD_BYTES) throw new RangeError(`wal: record payload of ${dataBytes} bytes is too large`)
  const pad = padBytesFor(dataBytes)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  out[off] = typeCode(record)
  out[off + 1] = pad
  out[off + 2] = 0
  out[off + 3] = 0
  view.setUint32(off + 4, dataBytes, true)
  view.setUint32(off + 8, prevCrc >>> 0, true)
  writePayload(record, out, off + HEADER_BYTES)
  out.fill(0, off + HEADER_BYTES + dataBytes, off + HEADER_BYTES + dataBytes + pad)
  const crc = crc32c(crc32c(prevCrc, out, off, off + 12), out, off + HEADER_BYTES, off + HEADER_BYTES + dataBytes)
  view.setUint32(off + 12, crc, true)
  return crc
}

/** A frame that checked out on its own (header sane, CRC matches its own prevCrc). */
export interface FrameOk {
  readonly kind: "record"
  /** Type code, 1..5. */
  readonly type: number
  readonly prevCrc: number
  readonly crc: number
  /** Byte range of the payload inside the buffer. */
  readonly dataStart: number
  readonly dataEnd: number
  /** Offset just past the frame (and its padding): where the next frame starts. */
  readonly end: number
}

/** Result of {@link readFrame}. */
export type FrameRead =
  | FrameOk
  /** End of log: end of buffer, or eight zero bytes where a header belongs. */
  | { readonly kind: "end" }
  /** Something is there but it is not a valid frame; `reason` says what failed first. */
  | { readonly kind: "bad"; readonly reason: string }

const isZero = (buf: Uint8Array, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false
  return true
}

/**
 * Reads the frame at `off` of `buf` (a whole segment file) and checks it on its own: header
 * fields, length within the buffer, zero padding, and CRC against the frame's own prevCrc.
 * Whether prevCrc continues the chain is the caller's check (decoder.ts). Never throws.
 */
export const readFrame = (buf: Uint8Array, off: number): FrameRead => {
  const len = buf.length
  if (off >= len) return { kind: "end" }
  if (isZero(buf, off, Math.min(off + 8, len))) return { kind: "end" }
  if (off + HEADER_BYTES > len) return { kind: "bad", reason: "truncated record header" }
  const type = buf[off]!
  if (type < 1 || type > 5) return { kind: "bad", reason: `unknown record type ${type}` }
  if (buf[off + 2] !== 0 || buf[off + 3] !== 0) return { kind: "bad", reason: "non-zero reserved header bytes" }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const dataBytes = view.getUint32(off + 4, true)
  const pad = buf[off + 1]!
  if (pad !== padBytesFor(dataBytes)) return { kind: "bad", reason: `padding field ${pad} does not fit length ${dataBytes}` }
  const dataStart = off + HEADER_BYTES
  const dataEnd = dataStart + dataBytes
  const end = dataEnd + pad
  if (end > len) return { kind: "bad", reason: `record of ${dataBytes} bytes runs past the end of the file` }
  const prevCrc = view.getUint32(off + 8, true)
  const crc = view.getUint32(off + 12, true)
  const actual = crc32c(crc32c(prevCrc, buf, off, off + 12), buf, dataStart, dataEnd)
  if (actual !== crc) return { kind: "bad", reason: "crc mismatch" }
  if (!isZero(buf, dataEnd, end)) return { kind: "bad", reason: "non-zero padding" }
  return { kind: "record", type, prevCrc, crc, dataStart, dataEnd, end }
}
