/**
 * The frame layer's own table: every frame kind with its current version (a receiver rejects
 * other versions; the reply to kind K is kind `${K}.reply`), and the body of the `chunk` frame
 * that carries a piece of a frame too large for one NATS message (shared/chunks.ts). The frame
 * header itself is shared/frame.ts.
 */
import * as Schema from "effect/Schema"
import { Bytes, Int } from "./codec.ts"

/**
 * A piece of a frame too large for one NATS message (shared/chunks.ts): the `stream` number of
 * the chunked frame, piece `seq` of `count`, the whole encoding's `size` in bytes, and the bytes.
 */
export const ChunkBody = Schema.Struct({ stream: Int, seq: Int, count: Int, size: Int, bytes: Bytes })

/** Frame kinds and their current versions; a receiver rejects other versions. */
export const FrameKinds = {
  propose: 2,
  "propose.reply": 1,
  readindex: 1,
  "readindex.reply": 1,
  "raft.status": 1,
  "raft.status.reply": 1,
  "raft.state": 1,
  entries: 1,
  "entries.reply": 1,
  "wal.append": 1,
  "wal.append.reply": 1,
  "wal.load": 1,
  "wal.load.reply": 1,
  apply: 1,
  range: 3,
  "range.reply": 2,
  "mvcc.status": 1,
  "mvcc.status.reply": 1,
  "apply.result": 2,
  "raft.msg": 1,
  "wal.snapshot": 1,
  "wal.snapshot.reply": 1,
  "mvcc.snapshot": 1,
  "mvcc.snapshot.reply": 1,
  "mvcc.install": 1,
  "mvcc.install.reply": 1,
  "mvcc.chunk": 1,
  "mvcc.chunk.reply": 1,
  "mvcc.defragment": 1,
  "mvcc.defragment.reply": 1,
  "raft.members": 1,
  "raft.members.reply": 1,
  confchange: 1,
  "confchange.reply": 1,
  transfer: 1,
  "transfer.reply": 1,
  "mvcc.alarms": 1,
  "mvcc.alarms.reply": 1,
  "mvcc.leases": 1,
  "mvcc.leases.reply": 1,
  "mvcc.lease": 1,
  "mvcc.lease.reply": 1,
  "lease.keepalive": 1,
  "lease.keepalive.reply": 1,
  "lease.timetolive": 1,
  "lease.timetolive.reply": 1,
  hashkv: 1,
  "hashkv.reply": 1,
  "mvcc.events": 1,
  "mvcc.history": 1,
  "mvcc.history.reply": 1,
  "watch.open": 1,
  "watch.open.reply": 1,
  "watch.create": 1,
  "watch.create.reply": 1,
  "watch.cancel": 1,
  "watch.cancel.reply": 1,
  "watch.progress": 1,
  "watch.progress.reply": 1,
  "watch.close": 1,
  "watch.ack": 2,
  "watch.ping": 1,
  "watch.ping.reply": 1,
  "watch.load": 1,
  "watch.responses": 3,
  health: 1,
  "health.reply": 1,
  "trace.keep": 1,
  "mvcc.auth": 1,
  "mvcc.auth.reply": 1,
  chunk: 1,
  error: 1
} as const
export type FrameKind = keyof typeof FrameKinds
