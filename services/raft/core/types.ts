/**
 * The data the raft core exchanges with its shell: messages between members, the Ready batch of
 * work, soft state, read states, snapshots, status and the errors the core returns as values.
 * Nothing here does IO; these are plain immutable records.
 *
 * Shapes follow etcd raft's raftpb.Message (raftpb/raft.proto), node.go (Ready, SoftState),
 * read_only.go (ReadState) and status.go (Status). Log records (Entry, HardState, ConfState,
 * SnapshotMetadata, ConfChange) live in shared/raft-types.ts because they cross processes.
 */
import type { Index, MemberId, Term } from "../../../shared/ids.ts"
import type { ConfState, Entry, HardState, SnapshotMetadata } from "../../../shared/raft-types.ts"

/** Member id 0: "nobody" (no leader, no vote), as etcd raft's `None`. */
export const None = 0n as MemberId

/**
 * etcd's raftpb.MessageType names. Local types (MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus,
 * MsgCheckQuorum) never travel between members; {@link isLocalMsg} tells them apart.
 */
export type MessageType =
  | "MsgHup"
  | "MsgBeat"
  | "MsgProp"
  | "MsgApp"
  | "MsgAppResp"
  | "MsgVote"
  | "MsgVoteResp"
  | "MsgSnap"
  | "MsgHeartbeat"
  | "MsgHeartbeatResp"
  | "MsgUnreachable"
  | "MsgSnapStatus"
  | "MsgCheckQuorum"
  | "MsgTransferLeader"
  | "MsgTimeoutNow"
  | "MsgReadIndex"
  | "MsgReadIndexResp"
  | "MsgPreVote"
  | "MsgPreVoteResp"

/** A snapshot: the log position and configuration it stands for, and the opaque state machine image. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata
  readonly data: Uint8Array
}

/**
 * One raft message, as etcd's raftpb.Message. Field meaning depends on `type`:
 *
 * - MsgApp: `index`/`logTerm` name the entry preceding `entries`; `commit` is the leader's commit.
 * - MsgAppResp: `index` is the follower's last matching index (or the rejected `index` of the
 *   MsgApp when `reject`); on rejection `rejectHint`/`logTerm` are the follower's guess of where
 *   the logs match (etcd's findConflictByTerm).
 * - MsgVote/MsgPreVote: `index`/`logTerm` describe the candidate's last entry; `context` is
 *   "CampaignTransfer" for a leader transfer.
 * - MsgHeartbeat/MsgHeartbeatResp: `commit` is min(follower match, leader commit); `context`
 *   carries the ReadIndex round counter.
 * - MsgReadIndex/MsgReadIndexResp: `entries[0].data` carries the caller's request context;
 *   `index` in the response is the read index.
 * - MsgSnap: `snapshot` is set.
 *
 * `term` is 0 for local messages and for MsgProp/MsgReadIndex forwarded to the leader.
 */
export interface Message {
  readonly type: MessageType
  readonly to: MemberId
  readonly from: MemberId
  readonly term: Term
  readonly logTerm: Term
  readonly index: Index
  readonly entries: ReadonlyArray<Entry>
  readonly commit: Index
  readonly snapshot?: Snapshot
  readonly reject: boolean
  readonly rejectHint: Index
  readonly context: Uint8Array
}

const emptyBytes = new Uint8Array(0)

/**
 * Builds a {@link Message} from the fields that matter, zeroing the rest (etcd's Go zero
 * values): `makeMessage({ type: "MsgHeartbeat", to: 2n as MemberId })`.
 */
export const makeMessage = (fields: Partial<Message> & { readonly type: MessageType }): Message => ({
  to: None,
  from: None,
  term: 0 as Term,
  logTerm: 0 as Term,
  index: 0 as Index,
  entries: [],
  commit: 0 as Index,
  reject: false,
  rejectHint: 0 as Index,
  context: emptyBytes,
  ...fields
})

/** True for message types that never cross the network (etcd util.go IsLocalMsg). */
export const isLocalMsg = (t: MessageType): boolean =>
  t === "MsgHup" || t === "MsgBeat" || t === "MsgUnreachable" || t === "MsgSnapStatus" || t === "MsgCheckQuorum"

/** True for responses, which are only accepted from members of the configuration (etcd IsResponseMsg). */
export const isResponseMsg = (t: MessageType): boolean =>
  t === "MsgAppResp" ||
  t === "MsgVoteResp" ||
  t === "MsgHeartbeatResp" ||
  t === "MsgUnreachable" ||
  t === "MsgPreVoteResp"

/** The role of a member (etcd StateType). */
export type StateType = "StateFollower" | "StateCandidate" | "StateLeader" | "StatePreCandidate"

/** Volatile state, reported for observability; never persisted (etcd SoftState). */
export interface SoftState {
  /** The leader this member knows of in its current term, or {@link None}. */
  readonly lead: MemberId
  readonly raftState: StateType
}

/**
 * The answer to a ReadIndex request: once the member's applied index reaches `index`, a read
 * issued with `requestCtx` is linearizable (etcd read_only.go ReadState).
 */
export interface ReadState {
  readonly index: Index
  readonly requestCtx: Uint8Array
}

/**
 * One batch of work handed to the shell (etcd node.go Ready). The shell performs it in this
 * order, then calls `advance(rd)`:
 *
 * 1. persist `snapshot` (if set), then `entries` (append, overwriting any stored suffix from
 *    `entries[0].index` on), then `hardState` (if set); sync when `mustSync`;
 * 2. send `messages` (only after step 1 is durable: votes and append acknowledgements in them
 *    depend on it; Raft thesis 3.8);
 * 3. install `snapshot` in the state machine, then apply `committedEntries` in order, calling
 *    `applyConfChange` for each ConfChange entry.
 *
 * `committedEntries` may include entries from this Ready's own `entries` (a leader counts its
 * own log when committing, as etcd raft does without async storage writes), which is why they are
 * applied only after step 1.
 */
export interface Ready {
  /** Set when the soft state changed since the previous Ready. Not persisted. */
  readonly softState?: SoftState
  /** Set when the hard state changed since the previous Ready: persist before sending messages. */
  readonly hardState?: HardState
  /** ReadIndex answers, in request order. */
  readonly readStates: ReadState[]
  /** Entries to persist before sending messages; they replace any stored suffix from entries[0].index on. */
  readonly entries: Entry[]
  /** A snapshot received from the leader: persist before sending messages, then install. */
  readonly snapshot?: Snapshot
  /** Entries to apply, in index order, after `entries` of this Ready are persisted. */
  readonly committedEntries: Entry[]
  /** Messages to send after `entries`, `hardState` and `snapshot` are persisted. */
  readonly messages: Message[]
  /** True when the write of step 1 must be synced to disk (new term, vote or entries). */
  readonly mustSync: boolean
}

/** How the leader replicates to one follower (etcd tracker/state.go). */
export type ProgressStateType = "StateProbe" | "StateReplicate" | "StateSnapshot"

/** A copy of the leader's view of one member (etcd tracker.Progress), for status reports. */
export interface ProgressStatus {
  readonly match: Index
  readonly next: Index
  readonly state: ProgressStateType
  readonly pendingSnapshot: Index
  readonly recentActive: boolean
  readonly isLearner: boolean
  /** True when the leader currently refrains from sending appends to this member. */
  readonly paused: boolean
  /** Number of append messages in flight (StateReplicate flow control). */
  readonly inflight: number
}

/** A snapshot of the member's state (etcd status.go Status). */
export interface Status {
  readonly id: MemberId
  readonly hardState: HardState
  readonly softState: SoftState
  readonly applied: Index
  /** Same as hardState.commit. */
  readonly commit: Index
  /** Per-member replication progress; empty unless this member is the leader. */
  readonly progress: ReadonlyMap<MemberId, ProgressStatus>
  /** The member leadership is being transferred to, or {@link None}. */
  readonly leadTransferee: MemberId
  readonly confState: ConfState
}

/**
 * Why a proposal was not accepted (etcd ErrProposalDropped): no known leader, a leader transfer
 * is in progress, the uncommitted log is over its size limit, or this member was removed.
 * The caller may retry later; nothing was appended.
 */
export type ProposalError = "ProposalDropped"

/**
 * Why `step` refused a message (etcd rawnode.go): a local message type arrived from outside
 * ("StepLocalMsg"), a response came from a member that is not in the configuration
 * ("StepPeerNotFound"), a forwarded proposal could not be accepted ("ProposalDropped"), or the
 * message is malformed (entries not contiguous after `index`, a MsgSnap without snapshot,
 * a MsgReadIndex without exactly one entry: "InvalidMessage").
 */
export type StepError = "StepLocalMsg" | "StepPeerNotFound" | "ProposalDropped" | "InvalidMessage"

/** Outcome reported by the shell after sending a snapshot (etcd SnapshotStatus). */
export type SnapshotStatus = "Finish" | "Failure"

/** Where the core reports what it does; lines follow etcd raft's log messages. */
export interface Logger {
  debug(msg: string): void
  info(msg: string): void
  warn(msg: string): void
}
