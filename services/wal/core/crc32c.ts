/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum etcd's WAL uses
 * (`crc32.MakeTable(crc32.Castagnoli)` in server/storage/wal/wal.go, rolling hash in
 * pkg/crc). Pure TypeScript, slicing-by-8 tables built once at module load; no `node:*`
 * import so the WAL core stays runnable anywhere.
 *
 * It is not a cryptographic hash: it detects torn writes and bit rot, not tampering.
 */

const POLY = 0x82f63b78

/** Eight 256-entry tables for slicing-by-8 (table 0 is the classic byte-at-a-time table). */
const TABLES: Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256))
  const t0 = tables[0]!
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
    t0[n] = c >>> 0
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n]!
    for (let t = 1; t < 8; t++) {
      c = (t0[c & 0xff]! ^ (c >>> 8)) >>> 0
      tables[t]![n] = c
    }
  }
  return tables
})()

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array
]

/**
 * Continues a CRC-32C over `bytes[start, end)`, as Go's `crc32.Update(crc, castagnoli, p)`:
 * `crc32c(crc32c(0, a), b) === crc32c(0, a ++ b)`. Pass 0 to start a fresh checksum.
 * Returns an unsigned 32-bit integer.
 *
 * @example
 * // The CRC-32C check value of the ASCII string "123456789" is 0xE3069283.
 * crc32c(0, new TextEncoder().encode("123456789")) === 0xe3069283
 */
export const crc32c = (seed: number, bytes: Uint8Array, start = 0, end = bytes.length): number => {
  let crc = ~seed >>> 0
  let i = start
  // Slicing-by-8: fold eight bytes per step while at least eight remain.
  while (end - i >= 8) {
    const lo = (crc ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0
    const hi = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24)
    crc =
      T7[lo & 0xff]! ^
      T6[(lo >>> 8) & 0xff]! ^
      T5[(lo >>> 16) & 0xff]! ^
      T4[lo >>> 24]! ^
      T3[hi & 0xff]! ^
      T2[(hi >>> 8) & 0xff]! ^
      T1[(hi >>> 16) & 0xff]! ^
      T0[hi >>> 24]!
    i += 8
  }
  while (i < end) crc = T0[(crc ^ bytes[i++]!) & 0xff]! ^ (crc >>> 8)
  return ~crc >>> 0
}
