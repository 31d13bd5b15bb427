/**
 * The binary encoding of a {@link ConfChange} inside the data of a "ConfChange" log entry.
 * etcd stores a protobuf raftpb.ConfChange there; natcd uses a fixed compact layout instead,
 * since the entry never leaves natcd:
 *
 *     byte 0      format version (1)
 *     byte 1      type: 0 AddNode, 1 RemoveNode, 2 UpdateNode, 3 AddLearnerNode (raftpb numbering)
 *     bytes 2-9   nodeId, unsigned 64-bit big-endian
 *     bytes 10-   context, opaque to raft
 *
 * Only the core writes these bytes (proposeConfChange), so data that does not decode is a
 * corrupt log: decodeConfChange throws rather than let members diverge on a guess.
 */
import type { MemberId } from "../../../shared/ids.ts"
import type { ConfChange, ConfChangeType } from "../../../shared/raft-types.ts"

const FORMAT_VERSION = 1
const HEADER_BYTES = 10
const TYPES: ReadonlyArray<ConfChangeType> = ["AddNode", "RemoveNode", "UpdateNode", "AddLearnerNode"]
const U64_MAX = (1n << 64n) - 1n

/** Encodes a conf change for an entry's data. Throws when nodeId is not an unsigned 64-bit value. */
export const encodeConfChange = (cc: ConfChange): Uint8Array => {
  if (cc.nodeId < 0n || cc.nodeId > U64_MAX) throw new Error(`nodeId out of uint64 range: ${cc.nodeId}`)
  const out = new Uint8Array(HEADER_BYTES + cc.context.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, FORMAT_VERSION)
  view.setUint8(1, TYPES.indexOf(cc.type))
  view.setBigUint64(2, cc.nodeId)
  out.set(cc.context, HEADER_BYTES)
  return out
}

/** Decodes {@link encodeConfChange} output; throws on anything else (a corrupt entry). */
export const decodeConfChange = (data: Uint8Array): ConfChange => {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const type = data.byteLength >= HEADER_BYTES && view.getUint8(0) === FORMAT_VERSION ? TYPES[view.getUint8(1)] : undefined
  if (type === undefined) throw new Error(`not an encoded conf change (${data.byteLength} bytes)`)
  return { type, nodeId: view.getBigUint64(2) as MemberId, context: data.slice(HEADER_BYTES) }
}
