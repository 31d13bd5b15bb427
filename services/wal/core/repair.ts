/**
 * What to do where decoding of a segment stopped: nothing (clean end of log), truncate a torn
 * tail, or refuse to open (corruption). Pure decision; files.ts performs the truncation.
 * Follows etcd's server/storage/wal/repair.go and `isTornEntry` in decoder.go, with a stricter
 * and more precise rule described below.
 *
 * ## The rule
 *
 * Let `offset` be where the valid records of a segment stop, and `dirtyEnd` one past the last
 * non-zero byte of the file (`offset` if everything from `offset` on is zero).
 *
 * 1. `dirtyEnd == offset`: clean end of log (end of file or zero-filled preallocated space).
 * 2. Not the last segment: corruption. Segments before the last were sealed (truncated to
 *    their records and synced) before the next one was created, so nothing there may be torn.
 * 3. Last segment, and no frame at any 8-byte aligned offset after `offset` checks out on its
 *    own (record.ts, `readFrame`): a torn tail. Truncate at `offset`. This covers a partial
 *    record (file ends early or the rest reads as zeros), garbage from an interrupted write,
 *    and a bit flip in the final record(s). Nothing after `offset` was ever acknowledged:
 *    `save` resolves only after the fdatasync that covers its records, and a fdatasync covers
 *    every earlier byte, so acknowledged records are an unbroken prefix.
 * 4. Last segment, and a valid frame exists at `next > offset`: the damage is followed by
 *    valid records. That is a torn write only if the damaged region `[offset, next)` contains
 *    a chunk that reads as all zeros, where chunks are the pieces of the region split at
 *    512-byte sector boundaries (a trailing piece that ends at `next` rather than on a
 *    boundary is not counted). A multi-page write interrupted by a crash loses whole sectors,
 *    which read back as zeros in a preallocated (or sparse) file; the later pages that did
 *    reach the disk hold the valid records. Then truncate at `offset` too: the valid records
 *    after it belong to the same unacknowledged write.
 *    Otherwise (bytes flipped in place, no zeroed sector) it is corruption in the middle of
 *    the log: refuse, naming the file and `offset`. Never drop acknowledged records silently.
 *
 * Known limits: a bit flip inside a record whose payload contains 512 aligned zero bytes is
 * taken for a torn write (as in etcd); an entry whose payload embeds a valid natcd frame can
 * turn a torn tail into a reported corruption (the safe direction).
 */
import { readFrame } from "./record.ts"
import type { DecodeStop } from "./decoder.ts"

/** The smallest unit a disk writes atomically; torn writes lose whole sectors. */
export const SECTOR_BYTES = 512

/** Decision for the end of a segment; see the module comment for the rule. */
export type TailDecision =
  | { readonly kind: "clean" }
  /** Drop `[offset, dirtyEnd)` (zero it or cut the file at `offset`). */
  | { readonly kind: "truncate"; readonly offset: number; readonly dirtyEnd: number; readonly reason: string }
  | { readonly kind: "corrupt"; readonly offset: number; readonly reason: string }

/** One past the last non-zero byte of `bytes` at or after `from`; `from` when there is none. */
export const dirtyEndOf = (bytes: Uint8Array, from: number): number => {
  let end = bytes.length
  // Preallocated segments end in megabytes of zeros: skip them a word at a time.
  if (bytes.byteOffset % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2)
    for (let i = bytes.length - 1; i >= words.length * 4; i--) if (i >= from && bytes[i] !== 0) return i + 1
    let w = words.length
    const stop = Math.ceil(from / 4)
    while (w > stop && words[w - 1] === 0) w--
    end = w * 4
  }
  for (let i = end - 1; i >= from; i--) if (bytes[i] !== 0) return i + 1
  return from
}

/** Offset of the first frame after `from` (8-byte aligned, before `to`) that checks out on its own. */
export const nextValidFrame = (bytes: Uint8Array, from: number, to: number): number | undefined => {
  for (let p = Math.floor(from / 8) * 8 + 8; p < to; p += 8) {
    // A frame starts with a non-zero type byte; skip zeros cheaply before the full check.
    if (bytes[p] === 0 || bytes[p]! > 5) continue
    if (readFrame(bytes, p).kind === "record") return p
  }
  return undefined
}

/**
 * True when `[from, to)`, split at sector boundaries, has a piece that is all zeros. A final
 * piece that does not end on a boundary is ignored (it lies just before a valid frame).
 */
export const hasZeroedSector = (bytes: Uint8Array, from: number, to: number): boolean => {
  let start = from
  while (start < to) {
    const boundary = (Math.floor(start / SECTOR_BYTES) + 1) * SECTOR_BYTES
    if (boundary > to) return false
    let zero = true
    for (let i = start; i < boundary; i++) {
      if (bytes[i] !== 0) {
        zero = false
        break
      }
    }
    if (zero) return true
    start = boundary
  }
  return false
}

/**
 * Decides what the stop `stop` of a segment whose whole content is `bytes` means; `isLast`
 * tells whether it is the newest segment. Pure; see the module comment for the rule.
 */
export const classifyTail = (bytes: Uint8Array, stop: DecodeStop, isLast: boolean): TailDecision => {
  const { offset } = stop
  const dirtyEnd = dirtyEndOf(bytes, offset)
  if (dirtyEnd === offset) return { kind: "clean" }
  const what = stop.kind === "end" ? "non-zero bytes after a zero header" : stop.reason
  if (!isLast) return { kind: "corrupt", offset, reason: `${what} in a sealed (not last) segment` }
  const next = nextValidFrame(bytes, offset, dirtyEnd)
  if (next === undefined) return { kind: "truncate", offset, dirtyEnd, reason: `torn tail: ${what}` }
  if (hasZeroedSector(bytes, offset, next)) {
    return { kind: "truncate", offset, dirtyEnd, reason: `torn write: ${what}, zeroed sector before the valid record at offset ${next}` }
  }
  return { kind: "corrupt", offset, reason: `${what}, followed by a valid record at offset ${next}` }
}
