/**
 * The append planner: turns a batch of logical records into the exact bytes to write, per
 * segment file, deciding where segments are cut. Pure; the node:fs layer (files.ts) performs
 * the plan. Follows etcd's server/storage/wal/encoder.go (framing into one buffer) and
 * `WAL.cut` / `WAL.Save` in wal.go (when and how a segment is cut).
 *
 * Cut rule: before adding a record that would make the current segment exceed
 * `segmentBytes`, the segment is sealed and a new one begins, unless the current segment holds
 * nothing but its header records (then the record goes in anyway, so a record larger than a
 * segment gets a segment of its own, larger than `segmentBytes`). etcd cuts after the write
 * that crossed the size; cutting before keeps segments within `segmentBytes`, which lets the
 * preallocated size be the real maximum.
 *
 * A new segment begins with, in this order: a crc record (prevCrc = chain value so far), the
 * metadata record, the latest snapshot marker if any, and the latest non-empty hard state if
 * any. etcd's cut writes crc, metadata and state; natcd also repeats the snapshot marker so
 * that after old segments are released the log still says which snapshot it starts from.
 */
import { emptyHardState, isEmptyHardState, type HardState, type SnapshotMetadata } from "../../../shared/raft-types.ts"
import type { WalRecord } from "./payload.ts"
import { encodeRecord, recordFrameBytes } from "./record.ts"
import { segmentName } from "./segment.ts"

/**
 * Everything the writer must know to continue the log: where the tail segment ends and what
 * a new segment's header must repeat.
 *
 * Invariant: `headerEnd <= offset`; `crc` is the CRC of the record ending at `offset` (or of
 * the last record of the previous segment when the tail is empty, which cannot happen since
 * every segment starts with a crc record).
 */
export interface EncoderState {
  /** Sequence number of the tail segment. */
  readonly seq: number
  /** File name of the tail segment. */
  readonly name: string
  /** Bytes of valid records in the tail segment: where the next record goes. */
  readonly offset: number
  /** End of the tail segment's header records; a segment is never cut at or before it. */
  readonly headerEnd: number
  /** Chain value: CRC of the last record written. */
  readonly crc: number
  /** Index of the last entry written (after any truncation), or of the snapshot if higher; 0 if none. */
  readonly lastIndex: number
  /** Latest non-empty hard state written (emptyHardState if none). */
  readonly hardState: HardState
  /** Latest snapshot marker written. */
  readonly snapshot: SnapshotMetadata | undefined
  /** The log's metadata, repeated at the start of every segment. */
  readonly metadata: Uint8Array
}

/**
 * Bytes destined for one segment file.
 *
 * The performer's duty, in plan order: for a `fresh` chunk, take a new (preallocated) temp
 * file; write `bytes` at `offset`; if this is not the last chunk of the plan, truncate the file
 * to `end` (it is sealed: no more records will go in); fdatasync; for a `fresh` chunk, rename
 * the temp file to `name` and fsync the directory. Only then move to the next chunk, so a
 * segment never becomes visible before the ones before it are complete and durable.
 */
export interface SegmentChunk {
  readonly seq: number
  /** Final file name, e.g. `0000000000000001-0000000000000020.wal`. */
  readonly name: string
  /** True when the segment does not exist yet (its header records are in `bytes`). */
  readonly fresh: boolean
  /** File offset where `bytes` go. */
  readonly offset: number
  readonly bytes: Uint8Array
  /** `offset + bytes.length`: the segment's valid length after this chunk. */
  readonly end: number
}

/** A plan: chunks to write in order, and the encoder state once all are durable. */
export interface AppendPlan {
  readonly chunks: ReadonlyArray<SegmentChunk>
  readonly state: EncoderState
}

interface OpenChunk {
  seq: number
  name: string
  fresh: boolean
  offset: number
  records: WalRecord[]
  bytes: number
}

const headerRecords = (state: EncoderState): WalRecord[] => {
  const records: WalRecord[] = [{ type: "crc" }, { type: "metadata", data: state.metadata }]
  if (state.snapshot !== undefined) records.push({ type: "snapshot", snapshot: state.snapshot })
  if (!isEmptyHardState(state.hardState)) records.push({ type: "state", hardState: state.hardState })
  return records
}

/** The state after `record` is written (CRC aside). */
const advance = (state: EncoderState, record: WalRecord): EncoderState => {
  switch (record.type) {
    case "entry":
      return { ...state, lastIndex: record.entry.index }
    case "state":
      return isEmptyHardState(record.hardState) ? state : { ...state, hardState: record.hardState }
    case "snapshot":
      return { ...state, snapshot: record.snapshot, lastIndex: Math.max(state.lastIndex, record.snapshot.index) }
    default:
      return state
  }
}

/**
 * Plans writing `records` after the log described by `state`, cutting segments of at most
 * `segmentBytes` bytes (see the module comment for the rule and the header of a new segment).
 * Returns no chunk for an empty batch. When a cut happens, the first chunk may be empty: it
 * still tells the performer to seal (truncate and sync) the old tail.
 *
 * Throws RangeError for records that cannot be encoded (see payload.ts `writePayload`).
 */
export const planAppend = (state: EncoderState, records: ReadonlyArray<WalRecord>, segmentBytes: number): AppendPlan => {
  if (records.length === 0) return { chunks: [], state }
  const open: OpenChunk[] = [
    { seq: state.seq, name: state.name, fresh: false, offset: state.offset, records: [], bytes: 0 }
  ]
  let s = state
  for (const record of records) {
    const size = recordFrameBytes(record)
    if (s.offset + size > segmentBytes && s.offset > s.headerEnd) {
      const seq = s.seq + 1
      const firstIndex = record.type === "entry" ? record.entry.index : s.lastIndex + 1
      const name = segmentName(seq, firstIndex)
      const header = headerRecords(s)
      const headerBytes = header.reduce((n, r) => n + recordFrameBytes(r), 0)
      open.push({ seq, name, fresh: true, offset: 0, records: header, bytes: headerBytes })
      s = { ...s, seq, name, offset: headerBytes, headerEnd: headerBytes }
    }
    const cur = open[open.length - 1]!
    cur.records.push(record)
    cur.bytes += size
    s = advance({ ...s, offset: s.offset + size }, record)
  }
  let crc = state.crc
  const chunks = open.map((c): SegmentChunk => {
    const bytes = new Uint8Array(c.bytes)
    let p = 0
    for (const r of c.records) {
      crc = encodeRecord(bytes, p, r, crc)
      p += recordFrameBytes(r)
    }
    return { seq: c.seq, name: c.name, fresh: c.fresh, offset: c.offset, bytes, end: c.offset + c.bytes }
  })
  return { chunks, state: { ...s, crc } }
}

/**
 * Plans the first segment of a new log: `0000000000000000-0000000000000000.wal` holding a crc
 * record (prevCrc 0) and the metadata record, as etcd's `Create` (which also writes an empty
 * snapshot record; natcd writes no snapshot marker until there is a snapshot).
 */
export const planCreate = (metadata: Uint8Array): AppendPlan => {
  const records: WalRecord[] = [{ type: "crc" }, { type: "metadata", data: metadata }]
  const size = records.reduce((n, r) => n + recordFrameBytes(r), 0)
  const bytes = new Uint8Array(size)
  let crc = 0
  let p = 0
  for (const r of records) {
    crc = encodeRecord(bytes, p, r, crc)
    p += recordFrameBytes(r)
  }
  const chunk: SegmentChunk = { seq: 0, name: segmentName(0, 0), fresh: true, offset: 0, bytes, end: size }
  const state: EncoderState = {
    seq: 0,
    name: chunk.name,
    offset: size,
    headerEnd: size,
    crc,
    lastIndex: 0,
    hardState: emptyHardState,
    snapshot: undefined,
    metadata
  }
  return { chunks: [chunk], state }
}
