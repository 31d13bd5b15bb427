/**
 * The wal service's endpoints, all called by the member's own raft service: append (reply after
 * fdatasync), load (raft start-up) and snapshot. Each declaration is the single source of its
 * subject, schemas, server and callers (see ../endpoints.ts).
 */
import * as S from "../schema.ts"
import { onMember, own } from "./declare.ts"

/** wal.append: hard state and entries; the reply follows fdatasync. */
export const walAppend = onMember("wal", "append", {
  kind: "wal.append", request: S.WalAppendBody, reply: S.WalAppendReply, callers: [own("raft")],
  doc: "persist hard state and entries; reply after fdatasync"
})
/** wal.load: the WAL's contents, in pages. */
export const walLoad = onMember("wal", "load", {
  kind: "wal.load", request: S.WalLoadBody, reply: S.WalLoadReply, callers: [own("raft")],
  doc: "everything the WAL holds, in pages (raft start-up)"
})
/** wal.snapshot: save a raft snapshot, then release the segments it covers. */
export const walSnapshot = onMember("wal", "snapshot", {
  kind: "wal.snapshot", request: S.WalSnapshotBody, reply: S.WalSnapshotReply, callers: [own("raft")],
  doc: "save a raft snapshot, then release what it covers"
})
