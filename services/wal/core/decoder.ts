/**
 * Decodes the records of one segment file and follows the CRC chain through it. Follows etcd's
 * server/storage/wal/decoder.go, minus the decision about what a failure means: the decoder
 * only reports where valid records stop and why; repair.ts decides whether that is a torn
 * tail or corruption.
 */
import { decodePayload, PayloadError, type WalRecord } from "./payload.ts"
import { readFrame } from "./record.ts"
import { WalCorruptError } from "./wal-error.ts"

/** One record read back, with its place in the file. */
export interface DecodedRecord {
  readonly record: WalRecord
  /** Byte offset of the frame in the segment file. */
  readonly offset: number
  /** Byte offset just past the frame. */
  readonly end: number
}

/** Where and why decoding of a segment stopped. */
export interface DecodeStop {
  /** Byte offset of the first frame that is not a valid continuation of the chain. */
  readonly offset: number
  /** `end`: end of file or a zero header; `bad`: something else is there. */
  readonly kind: "end" | "bad"
  readonly reason: string
}

/** The valid prefix of a segment. */
export interface SegmentDecode {
  readonly records: ReadonlyArray<DecodedRecord>
  readonly stop: DecodeStop
  /** Chain value after the last valid record (the `prevCrc` given when there is none). */
  readonly crc: number | undefined
}

/**
 * Decodes frames of `bytes` (a whole segment file) from offset 0 until the first frame that is
 * missing, fails its own checks, or does not continue the chain (`prevCrc` differs from the
 * previous record's CRC). `prevCrc` is the chain value the segment must continue (the CRC of
 * the previous segment's last record) or `undefined` for the oldest segment on disk, whose
 * first record is trusted to seed the chain (older segments may have been released).
 *
 * Throws {@link WalCorruptError} only for a frame whose checksum is valid but whose payload
 * does not decode, which no torn write can produce.
 */
export const decodeSegment = (file: string, bytes: Uint8Array, prevCrc: number | undefined): SegmentDecode => {
  const records: DecodedRecord[] = []
  let crc = prevCrc
  let off = 0
  for (;;) {
    const frame = readFrame(bytes, off)
    if (frame.kind === "end") {
      const reason = off >= bytes.length ? "end of file" : "zero header"
      return { records, stop: { offset: off, kind: "end", reason }, crc }
    }
    if (frame.kind === "bad") return { records, stop: { offset: off, kind: "bad", reason: frame.reason }, crc }
    if (crc !== undefined && frame.prevCrc !== crc) {
      return { records, stop: { offset: off, kind: "bad", reason: "record does not continue the crc chain" }, crc }
    }
    let record: WalRecord
    try {
      record = decodePayload(frame.type, bytes.subarray(frame.dataStart, frame.dataEnd))
    } catch (e) {
      if (e instanceof PayloadError) throw new WalCorruptError(file, off, `undecodable payload: ${e.message}`)
      throw e
    }
    records.push({ record, offset: off, end: frame.end })
    crc = frame.crc
    off = frame.end
  }
}
