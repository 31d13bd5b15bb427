/**
 * Segment files: naming, ordering and which ones a release may delete. Follows etcd's
 * server/storage/wal/util.go (`walName`, `parseWALName`, `isValidSeq`) and `ReleaseLockTo` in
 * wal.go.
 *
 * A segment is named `%016x-%016x.wal`: its sequence number (0, 1, 2, … with no gaps) and the
 * raft index of the first entry it holds (for a segment cut before a non-entry record, the
 * last index written so far plus one, as etcd's `enti + 1`). The first segment of a new log
 * is `0000000000000000-0000000000000000.wal`. Zero-padded lower-case hex makes the
 * lexicographic order of names the sequence order.
 */
import { WalCorruptError } from "./wal-error.ts"

/** Sequence number and first index of a segment, parsed from its name. */
export interface SegmentId {
  readonly name: string
  /** 0-based, consecutive across the segments of one log. */
  readonly seq: number
  /** First entry index held by the segment (see the module comment). */
  readonly index: number
}

const hex16 = (n: number): string => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`wal: segment number out of range: ${n}`)
  return n.toString(16).padStart(16, "0")
}

/** Builds a segment file name, e.g. `segmentName(1, 0x20)` is `0000000000000001-0000000000000020.wal`. */
export const segmentName = (seq: number, index: number): string => `${hex16(seq)}-${hex16(index)}.wal`

const NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/

/** Parses a segment file name; `undefined` for any other file name (lock, tmp, broken copies). */
export const parseSegmentName = (name: string): SegmentId | undefined => {
  const m = NAME.exec(name)
  if (m === null) return undefined
  const seq = Number.parseInt(m[1]!, 16)
  const index = Number.parseInt(m[2]!, 16)
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(index)) return undefined
  return { name, seq, index }
}

/**
 * Picks the segment files out of a directory listing and orders them by sequence number.
 * Throws {@link WalCorruptError} naming the first file after a gap when sequence numbers are
 * not consecutive (a segment went missing; etcd's `isValidSeq`). Other names are ignored.
 */
export const orderSegments = (fileNames: ReadonlyArray<string>): SegmentId[] => {
  const segments = fileNames.flatMap((n) => parseSegmentName(n) ?? []).sort((a, b) => a.seq - b.seq)
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1]!
    const cur = segments[i]!
    if (cur.seq !== prev.seq + 1) {
      throw new WalCorruptError(cur.name, 0, `segment sequence ${prev.seq} is followed by ${cur.seq}: a segment is missing`)
    }
  }
  return segments
}

/**
 * How many leading segments hold only entries below `index`, so that deleting them loses
 * nothing at or after `index`. The last segment is never counted.
 *
 * Rule: every live (not later overwritten) entry of segment k is below the first index of
 * every later segment m (segment m either starts with the entry at its index, which truncates
 * everything from there on, or is named after the last index written plus one). So segment k
 * may go when `min(index of segments k+1 …) <= index`. That minimum only grows with k, so the
 * deletable segments form a prefix.
 *
 * etcd's `ReleaseLockTo` keeps one more segment when a segment's index equals `index` exactly;
 * with the rule above that extra segment holds only entries below `index`.
 *
 * Example, segments named with first indexes [0, 10, 20, 30]:
 *
 * | index | deletable | kept first index |
 * |-------|-----------|------------------|
 * | 5     | 0         | 0                |
 * | 10    | 1         | 10               |
 * | 25    | 2         | 20               |
 * | 99    | 3         | 30 (the last is always kept) |
 */
export const releasableCount = (segments: ReadonlyArray<Pick<SegmentId, "index">>, index: number): number => {
  let count = 0
  let suffixMin = Number.POSITIVE_INFINITY
  const minAfter: number[] = new Array<number>(segments.length)
  for (let k = segments.length - 1; k >= 0; k--) {
    minAfter[k] = suffixMin
    suffixMin = Math.min(suffixMin, segments[k]!.index)
  }
  for (let k = 0; k < segments.length - 1; k++) {
    if (minAfter[k]! <= index) count = k + 1
    else break
  }
  return count
}
