/**
 * The logical records of the WAL and the compact binary encoding of their payloads. This
 * module knows nothing about framing or checksums (see record.ts); it turns an Entry, a
 * HardState or a snapshot marker into bytes and back.
 *
 * etcd stores protobuf-encoded raftpb.Entry / raftpb.HardState / walpb.Snapshot in its records
 * (server/storage/wal/wal.go, walpb/record.proto). natcd owns a fixed little-endian layout
 * instead; numbers that are `number` in TypeScript (term, index) are stored as uint64 and
 * must be safe integers, member ids are `bigint` stored as uint64.
 *
 * Payload layouts (all integers little-endian):
 *
 * ```
 * entry     index u64 | term u64 | type u8 (0 Normal, 1 ConfChange) | data (rest)
 * state     term u64 | vote u64 | commit u64                              (24 bytes)
 * snapshot  index u64 | term u64 | voters u32 | learners u32 | voter ids u64… | learner ids u64…
 * metadata  opaque bytes supplied by the WAL's creator
 * crc       empty (the chain value travels in the frame header)
 * ```
 */
import type { Entry, EntryType, HardState, SnapshotMetadata } from "../../../shared/raft-types.ts"
import type { Index, MemberId, Term } from "../../../shared/ids.ts"

/** Record type codes as stored in a frame header; same numbers as etcd's wal.go constants. */
export const RecordType = {
  metadata: 1,
  entry: 2,
  state: 3,
  crc: 4,
  snapshot: 5
} as const

/** The numeric type code of a record, 1..5. */
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType]

/** One logical WAL record, before framing / after unframing. */
export type WalRecord =
  | { readonly type: "metadata"; readonly data: Uint8Array }
  | { readonly type: "entry"; readonly entry: Entry }
  | { readonly type: "state"; readonly hardState: HardState }
  | { readonly type: "crc" }
  | { readonly type: "snapshot"; readonly snapshot: SnapshotMetadata }

/** Raised by {@link decodePayload} for a payload that cannot be one of its type. */
export class PayloadError extends Error {
  override readonly name = "PayloadError"
}

const TWO_32 = 2 ** 32
const U64_MAX = (1n << 64n) - 1n

const ENTRY_FIXED_BYTES = 17
const STATE_BYTES = 24
const SNAPSHOT_FIXED_BYTES = 24

/** Numeric code of a record's type. */
export const typeCode = (record: WalRecord): RecordTypeCode => RecordType[record.type]

/** Size in bytes of `record`'s payload (the frame adds header and padding). */
export const payloadBytes = (record: WalRecord): number => {
  switch (record.type) {
    case "metadata":
      return record.data.length
    case "entry":
      return ENTRY_FIXED_BYTES + record.entry.data.length
    case "state":
      return STATE_BYTES
    case "crc":
      return 0
    case "snapshot":
      return SNAPSHOT_FIXED_BYTES + 8 * (record.snapshot.confState.voters.length + record.snapshot.confState.learners.length)
  }
}

const putU64 = (view: DataView, off: number, n: number, what: string): void => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`wal: ${what} must be a safe non-negative integer, got ${n}`)
  view.setUint32(off, n % TWO_32, true)
  view.setUint32(off + 4, Math.floor(n / TWO_32), true)
}

const putId = (view: DataView, off: number, id: bigint): void => {
  if (id < 0n || id > U64_MAX) throw new RangeError(`wal: member id out of uint64 range: ${id}`)
  view.setBigUint64(off, id, true)
}

const getU64 = (view: DataView, off: number, what: string): number => {
  const hi = view.getUint32(off + 4, true)
  if (hi > 0x1fffff) throw new PayloadError(`${what} exceeds 2^53`)
  return hi * TWO_32 + view.getUint32(off, true)
}

/**
 * Writes `record`'s payload into `out` at `off` (exactly {@link payloadBytes} bytes).
 * Throws RangeError for a term or index that is not a safe non-negative integer, or a member
 * id outside uint64: those are caller bugs, caught before anything reaches the disk.
 */
export const writePayload = (record: WalRecord, out: Uint8Array, off: number): void => {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  switch (record.type) {
    case "metadata":
      out.set(record.data, off)
      return
    case "crc":
      return
    case "entry": {
      const e = record.entry
      putU64(view, off, e.index, "entry index")
      putU64(view, off + 8, e.term, "entry term")
      out[off + 16] = e.type === "Normal" ? 0 : 1
      out.set(e.data, off + ENTRY_FIXED_BYTES)
      return
    }
    case "state": {
      const s = record.hardState
      putU64(view, off, s.term, "hard state term")
      putId(view, off + 8, s.vote)
      putU64(view, off + 16, s.commit, "hard state commit")
      return
    }
    case "snapshot": {
      const s = record.snapshot
      putU64(view, off, s.index, "snapshot index")
      putU64(view, off + 8, s.term, "snapshot term")
      view.setUint32(off + 16, s.confState.voters.length, true)
      view.setUint32(off + 20, s.confState.learners.length, true)
      let p = off + SNAPSHOT_FIXED_BYTES
      for (const id of s.confState.voters) (putId(view, p, id), (p += 8))
      for (const id of s.confState.learners) (putId(view, p, id), (p += 8))
      return
    }
  }
}

/** Encodes `record`'s payload into a fresh array (tests and inspection; the writer uses writePayload). */
export const encodePayload = (record: WalRecord): Uint8Array => {
  const out = new Uint8Array(payloadBytes(record))
  writePayload(record, out, 0)
  return out
}

const ENTRY_TYPES: ReadonlyArray<EntryType> = ["Normal", "ConfChange"]

/**
 * Decodes a payload of type code `code`. Byte arrays in the result (entry data, metadata) are
 * copies, so the caller may drop the buffer `payload` views. Throws {@link PayloadError} for an
 * unknown type or a payload of the wrong size; since payloads are checksummed, that means a
 * writer bug or an incompatible format, never a torn write.
 */
export const decodePayload = (code: number, payload: Uint8Array): WalRecord => {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  switch (code) {
    case RecordType.metadata:
      return { type: "metadata", data: payload.slice() }
    case RecordType.crc:
      if (payload.length !== 0) throw new PayloadError(`crc record with ${payload.length} payload bytes`)
      return { type: "crc" }
    case RecordType.entry: {
      if (payload.length < ENTRY_FIXED_BYTES) throw new PayloadError(`entry payload of ${payload.length} bytes`)
      const type = ENTRY_TYPES[payload[16]!]
      if (type === undefined) throw new PayloadError(`unknown entry type ${payload[16]}`)
      const entry: Entry = {
        index: getU64(view, 0, "entry index") as Index,
        term: getU64(view, 8, "entry term") as Term,
        type,
        data: payload.slice(ENTRY_FIXED_BYTES)
      }
      return { type: "entry", entry }
    }
    case RecordType.state: {
      if (payload.length !== STATE_BYTES) throw new PayloadError(`hard state payload of ${payload.length} bytes`)
      const hardState: HardState = {
        term: getU64(view, 0, "hard state term") as Term,
        vote: view.getBigUint64(8, true) as MemberId,
        commit: getU64(view, 16, "hard state commit") as Index
      }
      return { type: "state", hardState }
    }
    case RecordType.snapshot: {
      if (payload.length < SNAPSHOT_FIXED_BYTES) throw new PayloadError(`snapshot payload of ${payload.length} bytes`)
      const voterCount = view.getUint32(16, true)
      const learnerCount = view.getUint32(20, true)
      if (payload.length !== SNAPSHOT_FIXED_BYTES + 8 * (voterCount + learnerCount)) {
        throw new PayloadError(`snapshot payload of ${payload.length} bytes for ${voterCount}+${learnerCount} members`)
      }
      const ids = (from: number, count: number): MemberId[] =>
        Array.from({ length: count }, (_, i) => view.getBigUint64(from + 8 * i, true) as MemberId)
      const snapshot: SnapshotMetadata = {
        index: getU64(view, 0, "snapshot index") as Index,
        term: getU64(view, 8, "snapshot term") as Term,
        confState: {
          voters: ids(SNAPSHOT_FIXED_BYTES, voterCount),
          learners: ids(SNAPSHOT_FIXED_BYTES + 8 * voterCount, learnerCount)
        }
      }
      return { type: "snapshot", snapshot }
    }
    default:
      throw new PayloadError(`unknown record type ${code}`)
  }
}

const badU64 = (n: number): boolean => !Number.isSafeInteger(n) || n < 0
const badId = (id: bigint): boolean => typeof id !== "bigint" || id < 0n || id > U64_MAX

/**
 * Why `record` cannot be encoded (a term or index that is not a safe non-negative integer, a
 * member id outside uint64, an unknown entry type), or `undefined` when it can. Lets the writer
 * refuse one bad call without failing the whole group it would have joined.
 */
export const recordProblem = (record: WalRecord): string | undefined => {
  switch (record.type) {
    case "entry": {
      const e = record.entry
      if (badU64(e.index) || badU64(e.term)) return `entry index/term must be safe non-negative integers (index ${e.index}, term ${e.term})`
      if (e.type !== "Normal" && e.type !== "ConfChange") return `unknown entry type ${String(e.type)}`
      if (!(e.data instanceof Uint8Array)) return "entry data must be a Uint8Array"
      return undefined
    }
    case "state": {
      const s = record.hardState
      if (badU64(s.term) || badU64(s.commit) || badId(s.vote)) return "hard state term/commit must be safe non-negative integers and vote a uint64 bigint"
      return undefined
    }
    case "snapshot": {
      const s = record.snapshot
      if (badU64(s.index) || badU64(s.term)) return "snapshot index/term must be safe non-negative integers"
      if ([...s.confState.voters, ...s.confState.learners].some(badId)) return "member ids must be uint64 bigints"
      return undefined
    }
    default:
      return undefined
  }
}
