/**
 * The raft service's endpoints: proposals, ReadIndex, status (asked, and pushed as raft.state),
 * committed entries for mvcc's gap repair, messages between members' rafts, the membership,
 * membership changes and leader transfer. Each declaration is the single source of its subject,
 * schemas, server and callers (see ../endpoints.ts).
 */
import * as S from "../schema.ts"
import { any, onMember, own, pub, server } from "./declare.ts"

/** raft.propose: proposals of the member's clients; forwarded to the leader by raft itself. */
export const raftPropose = onMember("raft", "propose", {
  kind: "propose", request: S.ProposeBody, reply: S.ProposeReply, callers: [own("gateway"), own("lease"), own("mvcc")],
  doc: "proposals (entry data, batched); reply: accepted with the leader, or NoLeader"
})
/** raft.readindex: the index a linearizable read must wait for. */
export const raftReadIndex = onMember("raft", "readindex", {
  kind: "readindex", request: S.ReadIndexBody, reply: S.ReadIndexReply, callers: [own("gateway")],
  doc: "ReadIndex: the commit index a linearizable read waits for"
})
/** raft.status: term, leader, commit and applied index. */
export const raftStatus = onMember("raft", "status", {
  kind: "raft.status", request: S.EmptyBody, reply: S.RaftStatus,
  callers: [own("gateway"), own("lease"), own("mvcc"), any("cli")],
  doc: "raft status: ids, term, leader, commit and applied index"
})
/**
 * raft.state: the member's raft status (as raft.status answers it), published by its raft
 * service within a tick of a change of leader, role or term, and at least every
 * {@link raftStateEveryMs} ms; the member's gateway and lease service follow it instead of
 * polling raft.status.
 */
export const raftState = pub({
  name: "raft.state", subject: "natcd.{cluster}.{member}.raft.state",
  kind: "raft.state", request: S.RaftStatus,
  servers: [server("gateway"), server("lease")], callers: [own("raft")],
  doc: "the member's raft status, pushed on a change of leader, role or term and every second"
})
/** The longest gap between two raft.state frames of a running raft service, in ms. */
export const raftStateEveryMs = 1000
/** raft.entries: committed entries from an index, for mvcc's apply gap repair. */
export const raftEntries = onMember("raft", "entries", {
  kind: "entries", request: S.EntriesBody, reply: S.EntriesReply, callers: [own("mvcc")],
  doc: "committed entries from an index (apply gap repair)"
})
/** raft.msg: raft messages from member `{from}`'s raft to member `{member}`'s. */
export const raftMsg = pub({
  name: "raft.msg", subject: "natcd.{cluster}.{member}.raft.msg.{from}",
  kind: "raft.msg", request: S.RaftMessagesBody,
  servers: [server("raft")], callers: [{ role: "raft", self: ["from"] }],
  doc: "raft messages between members; the sender's name is in the subject, bound by its permission"
})
/** raft.members: the membership. */
export const raftMembers = onMember("raft", "members", {
  kind: "raft.members", request: S.EmptyBody, reply: S.MembersReply,
  callers: [own("gateway"), own("lease"), own("mvcc"), any("cli")],
  doc: "the membership: ids, names, URLs, learners, leader"
})
/** raft.confchange: add/remove/promote/update a member; served by the leader. */
export const raftConfChange = onMember("raft", "confchange", {
  kind: "confchange", request: S.ConfChangeBody, reply: S.ConfChangeReply, callers: [own("gateway"), any("raft")],
  doc: "membership change (MemberAdd/Remove/Promote/Update); a follower's raft forwards it to the leader's"
})
/** raft.transfer: leader transfer (MoveLeader). */
export const raftTransfer = onMember("raft", "transfer", {
  kind: "transfer", request: S.TransferBody, reply: S.TransferReply, callers: [own("gateway")],
  doc: "leader transfer (MoveLeader)"
})
