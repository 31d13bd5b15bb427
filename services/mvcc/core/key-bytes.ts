/**
 * User keys as "binary" (latin1) strings.
 *
 * The index and the in-memory backend hold keys as JavaScript strings with one UTF-16 code unit
 * per byte (0..255). JavaScript compares strings by code units, so for such strings `<`
 * equals a bytewise comparison, which is the order etcd's btree keeps (bytes.Compare). Strings
 * are cheap Map/BTree keys, hash and compare natively, and cost the same memory per byte as
 * a Uint8Array for short keys. They are never shown to users as text: a key leaves the core
 * as a `Uint8Array`.
 *
 * Not a text codec: these functions never interpret UTF-8. (TextDecoder's "latin1" is really
 * windows-1252 and would map 0x80..0x9f to other code points, so it is not used.)
 *
 * Also the few operations on byte strings that keys need everywhere (compare, equal,
 * concatenate, the end of a prefix), so that no module keeps its own copy.
 */

const chunk = 0x2000

/** Converts key bytes to a binary string (one char per byte, code unit = byte value). */
export const toKeyString = (bytes: Uint8Array): string => {
  if (bytes.length <= chunk) return String.fromCharCode.apply(null, bytes as unknown as number[])
  let s = ""
  for (let i = 0; i < bytes.length; i += chunk) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk) as unknown as number[])
  }
  return s
}

/** Converts a binary string back to bytes. Every code unit must be <= 255 (not checked). */
export const fromKeyString = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

/** Bytewise comparison (Go bytes.Compare): negative, zero or positive. */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** True when both byte arrays hold the same bytes. */
export const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Concatenates byte strings into a new one. */
export const concatBytes = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * The key just past every key starting with `prefix`: `prefix` with its last byte incremented.
 * For the fixed ASCII prefixes of natcd's own records (a last byte below 0xff; not etcd's
 * GetPrefixRangeEnd, which also handles 0xff).
 */
export const prefixEnd = (prefix: Uint8Array): Uint8Array => {
  const end = prefix.slice()
  end[end.length - 1]!++
  return end
}
