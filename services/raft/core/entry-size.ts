/**
 * Byte accounting for log entries: the size used to cap append messages (maxSizePerMsg), pages
 * of committed entries and in-flight bytes, and the payload size used for the uncommitted-log
 * limit.
 *
 * etcd measures protobuf-encoded sizes (Entry.Size() in util.go, payloadSize in raft.go). natcd
 * entries are not protobuf on the wire, so the encoded size is approximated by the payload plus
 * a fixed per-entry header; the limits are soft in etcd as well (one entry always fits).
 */
import type { Entry } from "../../../shared/raft-types.ts"

/** Approximate bytes of term, index and type around an entry's data (protobuf varints in etcd). */
const ENTRY_HEADER_BYTES = 16

/** Approximate encoded size of one entry, in bytes. */
export const entrySizeBytes = (e: Entry): number => e.data.byteLength + ENTRY_HEADER_BYTES

/** Sum of the data bytes of `ents` (etcd payloadsSize): an empty entry costs 0. */
export const payloadSizeBytes = (ents: ReadonlyArray<Entry>): number => {
  let n = 0
  for (const e of ents) n += e.data.byteLength
  return n
}

/**
 * The longest prefix of `ents` whose total {@link entrySizeBytes} stays within `maxSizeBytes`,
 * but never fewer than one entry (etcd util.go limitSize). Returns `ents` itself when nothing
 * is cut.
 */
export const limitSize = <E extends Entry>(ents: ReadonlyArray<E>, maxSizeBytes: number): ReadonlyArray<E> => {
  if (ents.length === 0) return ents
  let size = entrySizeBytes(ents[0]!)
  let limit = 1
  for (; limit < ents.length; limit++) {
    size += entrySizeBytes(ents[limit]!)
    if (size > maxSizeBytes) break
  }
  return limit === ents.length ? ents : ents.slice(0, limit)
}
