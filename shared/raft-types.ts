/**
 * Raft log records that cross processes: the raft service hands them to the wal service to
 * persist, and committed entries to the mvcc service to apply. Shapes follow etcd's raftpb
 * (raft/raftpb/raft.proto): Entry, HardState, ConfState, SnapshotMetadata.
 */
import type { Index, MemberId, Term } from "./ids.ts"

/** etcd's EntryType, reduced to what natcd uses (EntryConfChangeV2/joint consensus is not used). */
export type EntryType = "Normal" | "ConfChange"

/**
 * One raft log entry. `data` is opaque to raft: for "Normal" entries an encoded natcd request
 * frame (empty for the leader's no-op entry at the start of its term); for "ConfChange" the
 * raft core's own encoding of a {@link ConfChange}.
 */
export interface Entry {
  readonly term: Term
  readonly index: Index
  readonly type: EntryType
  readonly data: Uint8Array
}

/**
 * What a member must persist before it speaks (Raft paper Figure 2): the current term, the
 * member it voted for in that term (0n: none) and the highest index it knows committed.
 */
export interface HardState {
  readonly term: Term
  readonly vote: MemberId
  readonly commit: Index
}

/** Voting members and learners of the cluster configuration. */
export interface ConfState {
  readonly voters: ReadonlyArray<MemberId>
  readonly learners: ReadonlyArray<MemberId>
}

/** The log position and configuration a snapshot stands for. */
export interface SnapshotMetadata {
  readonly index: Index
  readonly term: Term
  readonly confState: ConfState
}

/** etcd's ConfChangeType, for one membership change at a time. */
export type ConfChangeType = "AddNode" | "RemoveNode" | "UpdateNode" | "AddLearnerNode"

/**
 * One membership change, as etcd's raftpb.ConfChange. `context` carries the member's
 * attributes (name, peer and client URLs) encoded by the raft shell; raft does not read it.
 */
export interface ConfChange {
  readonly type: ConfChangeType
  readonly nodeId: MemberId
  readonly context: Uint8Array
}

export const emptyHardState: HardState = { term: 0 as Term, vote: 0n as MemberId, commit: 0 as Index }

/** True when the hard state carries nothing (etcd raft.IsEmptyHardState). */
export const isEmptyHardState = (hs: HardState): boolean => hs.term === 0 && hs.vote === 0n && hs.commit === 0
