/**
 * Schemas of raft: its records (entries, snapshots, hard state) as the WAL and the wire carry
 * them, the raft service's endpoints (propose, readindex, status and the pushed raft.state,
 * entries), raft messages between members, and the membership (members, conf changes, leader
 * transfer). Record shapes follow etcd raftpb (raft-types.ts); the membership follows etcd
 * etcdserverpb.Member.
 */
import * as Schema from "effect/Schema"
import type { Entry, HardState, SnapshotMetadata } from "../raft-types.ts"
import { Bytes, EmptyBody, Int, okOrErr, opt, U64 } from "./codec.ts"

// ---------------------------------------------------------------------------------------------
// Raft records.

/** A raft log entry (shared/raft-types.ts Entry); `data` is opaque to raft and the WAL. */
export const EntrySchema: Schema.Codec<Entry, unknown> = Schema.Struct({
  term: Int,
  index: Int,
  type: Schema.Literals(["Normal", "ConfChange"]),
  data: Bytes
}) as any

/** A raft snapshot: metadata (index, term, configuration) and opaque data. */
export const SnapshotSchema: Schema.Codec<{ readonly metadata: SnapshotMetadata; readonly data: Uint8Array }, unknown> = Schema.Struct({
  metadata: Schema.Struct({
    index: Int,
    term: Int,
    confState: Schema.Struct({ voters: Schema.Array(U64), learners: Schema.Array(U64) })
  }),
  data: Bytes
}) as any

/** Raft's hard state (term, vote, commit), persisted before messages that depend on it go out. */
export const HardStateSchema: Schema.Codec<HardState, unknown> = Schema.Struct({
  term: Int,
  vote: U64,
  commit: Int
}) as any

// ---------------------------------------------------------------------------------------------
// The raft service's endpoints.

/**
 * raft.propose: encoded proposals, in the order they are to be appended (the raft service never
 * decodes them). A gateway sends the proposals of one event-loop turn in one frame; the reply
 * covers them all: ok once every one was handed to raft, or an error (NoLeader) from the first
 * one refused on, in which case the earlier ones may still commit (the proposer retries them
 * all with their request ids, so none is applied twice).
 */
export const ProposeBody = Schema.Struct({ proposals: Schema.Array(Bytes) })
export const ProposeReply = okOrErr(Schema.Struct({ leader: U64 }))

/** raft.readindex: no body fields; the reply is the index to wait for. */
export const ReadIndexBody = EmptyBody
export const ReadIndexReply = okOrErr(Schema.Struct({ index: Int }))

/** raft.status reply (Maintenance.Status's raft part). */
export const RaftStatus = Schema.Struct({
  memberId: U64,
  clusterId: U64,
  leader: U64,
  term: Int,
  commitIndex: Int,
  appliedIndex: Int,
  raftState: Schema.String,
  isLearner: Schema.Boolean,
  /** Peer message counters (services/raft/peers.ts PeerCounters). */
  peers: Schema.Record(Schema.String, Schema.Number),
  /**
   * Whether the cluster's membership holds this member's name (its attributes were published
   * through raft, etcd's publish); the member's gateway serves clients only then, as etcd
   * serves them only once its publish is done (ReadyNotify).
   */
  published: opt(Schema.Boolean)
})
export type RaftStatus = typeof RaftStatus.Type

/** raft.entries: committed entries with index >= `from`, at most about `maxBytes`. */
export const EntriesBody = Schema.Struct({ from: Int, maxBytes: Int })
export const EntriesReply = Schema.Struct({ entries: Schema.Array(EntrySchema), commitIndex: Int })

// ---------------------------------------------------------------------------------------------
// Raft between members, and membership.

/** One raft message (services/raft/core/types.ts Message) as it travels between members. */
export const RaftMessage = Schema.Struct({
  type: Schema.Literals([
    "MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp", "MsgVote", "MsgVoteResp", "MsgSnap",
    "MsgHeartbeat", "MsgHeartbeatResp", "MsgUnreachable", "MsgSnapStatus", "MsgCheckQuorum",
    "MsgTransferLeader", "MsgTimeoutNow", "MsgReadIndex", "MsgReadIndexResp", "MsgPreVote", "MsgPreVoteResp"
  ]),
  to: U64,
  from: U64,
  term: Int,
  logTerm: Int,
  index: Int,
  entries: Schema.Array(EntrySchema),
  commit: Int,
  snapshot: opt(SnapshotSchema),
  reject: Schema.Boolean,
  rejectHint: Int,
  context: Bytes
})

/**
 * raft.msg: the messages one Ready addresses to one member, from member `from` named
 * `fromName` (the receiver checks that the id derives from the name).
 */
export const RaftMessagesBody = Schema.Struct({ from: U64, fromName: Schema.String, messages: Schema.Array(RaftMessage) })

/** A member as MemberList shows it (etcd etcdserverpb.Member). */
export const MemberInfo = Schema.Struct({
  id: U64,
  name: Schema.String,
  peerUrls: Schema.Array(Schema.String),
  clientUrls: Schema.Array(Schema.String),
  isLearner: Schema.Boolean
})
export type MemberInfo = typeof MemberInfo.Type

/** raft.members reply: the membership as this member applied it, and the leader it knows. */
export const MembersReply = Schema.Struct({ members: Schema.Array(MemberInfo), leader: U64, term: Int })

/** raft.confchange: one membership change, served by the leader. */
export const ConfChangeBody = Schema.Struct({
  action: Schema.Literals(["add", "addLearner", "remove", "promote", "update"]),
  memberId: U64,
  peerUrls: Schema.Array(Schema.String)
})
export const ConfChangeReply = okOrErr(Schema.Struct({ member: opt(MemberInfo), members: Schema.Array(MemberInfo), term: Int }))

/** raft.transfer: move leadership to `target`, served by the leader. */
export const TransferBody = Schema.Struct({ target: U64 })
export const TransferReply = okOrErr(Schema.Struct({ term: Int }))
