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
 * `e` with its data in a buffer of its own: `e` itself when its data spans its whole buffer,
 * otherwise a copy (`new Uint8Array(view)`, which copies for a Node Buffer too). Entries decoded
 * from a frame hold views into the frame's receive buffer (shared/frame.ts decodes binary
 * fields without copying), and NATS hands a message a view into a socket read of up to 64 KiB
 * shared with other messages, or, for a message assembled from several reads, into a buffer
 * about twice its size. An entry kept in a log (raft's MemoryStorage) would keep that whole
 * buffer alive (measured: a 100-byte message pins 64 KiB, a 1 MiB one about 2 MiB). The copy costs one memcpy of the data per kept entry.
 */
export const ownedEntry = (e: Entry): Entry =>
  e.data.byteLength === e.data.buffer.byteLength ? e : { term: e.term, index: e.index, type: e.type, data: new Uint8Array(e.data) }

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
