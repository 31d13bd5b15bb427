/**
 * The raft core's public face: a single-threaded, IO-free raft member that the shell drives.
 * The shell feeds it ticks, local requests and messages from peers, and repeatedly takes a
 * {@link Ready} batch (entries and hard state to persist, messages to send, entries to apply),
 * performs it in the documented order, and acknowledges it with {@link RawNode.advance}.
 *
 * Follows etcd raft rawnode.go and bootstrap.go, with Ready built as in etcd v3.5 node.go
 * (no asynchronous storage writes).
 *
 * A typical loop:
 *
 *     const node = new RawNode(config, storage)
 *     // on each 100 ms tick: node.tick(); on each peer frame: node.step(m)
 *     while (node.hasReady()) {
 *       const rd = node.ready()
 *       // persist rd.snapshot, rd.entries, rd.hardState (then storage.append / setHardState)
 *       // send rd.messages; apply rd.committedEntries (applyConfChange for ConfChange entries)
 *       node.advance(rd)
 *     }
 */
import type { Index, MemberId, Term } from "../../../shared/ids.ts"
import type { ConfChange, ConfState, Entry, HardState } from "../../../shared/raft-types.ts"
import { encodeConfChange } from "./conf-change.ts"
import { Raft } from "./raft.ts"
import type { MemoryStorage, Storage } from "./storage.ts"
import type {
  Logger,
  Message,
  ProgressStatus,
  ProposalError,
  Ready,
  SnapshotStatus,
  SoftState,
  StateType,
  Status,
  StepError
} from "./types.ts"
import { isLocalMsg, isResponseMsg, makeMessage, None } from "./types.ts"

/**
 * How a member runs (etcd raft.Config). Ticks are the shell's unit of time (100 ms in natcd).
 */
export interface Config {
  /** This member's id; never 0. */
  id: MemberId
  /**
   * Ticks without hearing from a leader before a follower campaigns. The actual timeout is
   * drawn from [electionTick, 2 * electionTick) after every reset. etcd default 10.
   */
  electionTick: number
  /** Ticks between leader heartbeats; must be below electionTick. etcd default 1. */
  heartbeatTick: number
  /** Bytes of entries per append message (at least one entry is always sent). etcd 1 MiB. */
  maxSizePerMsg: number
  /** Append messages in flight per follower in StateReplicate. etcd 512. */
  maxInflightMsgs: number
  /** Payload bytes of uncommitted entries a leader accepts; 0 or undefined: unlimited. */
  maxUncommittedEntriesSize?: number
  /** Run a PreVote round before raising the term (Raft thesis §9.6). */
  preVote: boolean
  /** Leader steps down when it did not hear from a quorum within an election timeout (§6.2). */
  checkQuorum: boolean
  /**
   * The last index the state machine applied, when restarting; 0 for none. Entries up to it are
   * not handed out again, and the conf changes among them are replayed into the configuration
   * when the member starts. Must not exceed the stored commit index.
   */
  applied: Index
  /** Injected seeded source of integers in [0, maxExclusive), for the election timeout. */
  randomInt: (maxExclusive: number) => number
  logger?: Logger
}

const isSameHardState = (a: HardState, b: HardState): boolean =>
  a.term === b.term && a.vote === b.vote && a.commit === b.commit

const isEmptyHardState = (hs: HardState): boolean => hs.term === 0 && hs.vote === 0n && hs.commit === 0

/**
 * Checks the shape of a message from a peer: a sender is named, leader and vote messages carry
 * a term, appended entries are contiguous after (index, logTerm) with terms no newer than the
 * message's, and payload-carrying types carry their payload.
 */
const isWellFormed = (m: Message): boolean => {
  if (m.from === None) return false
  switch (m.type) {
    case "MsgApp": {
      if (m.term === 0) return false
      let prevTerm = m.logTerm
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i]!
        if (e.index !== m.index + 1 + i || e.term < prevTerm || e.term > m.term) return false
        prevTerm = e.term
      }
      return true
    }
    case "MsgHeartbeat":
    case "MsgVote":
    case "MsgPreVote":
    case "MsgVoteResp":
    case "MsgPreVoteResp":
      return m.term !== 0
    case "MsgSnap":
      return m.term !== 0 && m.snapshot !== undefined
    case "MsgProp":
      return m.entries.length > 0
    case "MsgReadIndex":
    case "MsgReadIndexResp":
      return m.entries.length === 1
    default:
      return true
  }
}

/** A raft member driven by its shell (etcd RawNode). Not thread-safe; no IO. */
export class RawNode {
  private readonly raft: Raft
  private prevSoftSt: SoftState
  private prevHardSt: HardState

  /**
   * Restores a member from `storage` (its hard state, the configuration of its latest snapshot,
   * and its log). A fresh member has an empty storage (see {@link RawNode.bootstrap}) or one
   * that received a snapshot. Throws on an invalid config (zero id, heartbeatTick >= electionTick,
   * non-positive limits) or a hard state inconsistent with the log.
   */
  constructor(config: Config, storage: Storage) {
    this.raft = new Raft(config, storage)
    this.prevSoftSt = this.raft.softState()
    this.prevHardSt = this.raft.hardState()
  }

  /**
   * Writes the initial log of a new cluster into an empty storage (etcd RawNode.Bootstrap): one
   * AddNode conf change per peer at term 1 and indexes 1..n, and hard state
   * { term: 1, vote: 0, commit: n }. A RawNode created on this storage with `applied: 0` hands
   * these entries out as committed in its first Ready; the shell applies them with
   * `applyConfChange` like any other, which forms the configuration. The member can campaign
   * once they are applied.
   *
   * The storage now holds state no Ready will repeat: a shell with a durable log must persist
   * the same entries (storage.entries(1, n + 1)) and hard state itself before driving the node.
   * Throws when `peers` is empty or the storage is not empty.
   */
  static bootstrap(storage: MemoryStorage, peers: ReadonlyArray<MemberId>): void {
    if (peers.length === 0) throw new Error("must provide at least one peer to bootstrap")
    if (storage.lastIndex() !== 0) throw new Error("can't bootstrap a nonempty storage")
    const ents = peers.map(
      (id, i): Entry => ({
        term: 1 as Term,
        index: (i + 1) as Index,
        type: "ConfChange",
        data: encodeConfChange({ type: "AddNode", nodeId: id, context: new Uint8Array(0) })
      })
    )
    storage.append(ents)
    storage.setHardState({ term: 1 as Term, vote: None, commit: ents.length as Index })
  }

  /** Advances the logical clock by one tick (elections, heartbeats, CheckQuorum). */
  tick(): void {
    this.raft.tick()
  }

  /**
   * Starts an election now (with a PreVote round when enabled). Ignored by a leader, a learner,
   * a member outside the configuration, and while committed conf changes await applying. A
   * single voter becomes leader immediately.
   */
  campaign(): void {
    this.raft.step(makeMessage({ type: "MsgHup", from: this.raft.id }))
  }

  /**
   * Proposes `data` (an opaque natcd request) for the log. A follower forwards it to the leader
   * in its next Ready. "ProposalDropped" when no leader is known, a leader transfer is in
   * progress, the uncommitted log is over maxUncommittedEntriesSize, or this leader was removed;
   * a forwarded proposal can still be lost on the way, so callers track their own timeouts.
   */
  propose(data: Uint8Array): ProposalError | undefined {
    return this.stepProposal({ term: 0 as Term, index: 0 as Index, type: "Normal", data })
  }

  /**
   * Proposes a membership change, encoded with encodeConfChange in a "ConfChange" entry. Errors
   * as {@link RawNode.propose}. While an earlier change may still be unapplied, the leader turns
   * the entry into an empty normal entry (etcd's behaviour): the change never takes effect,
   * and the caller notices it was not applied.
   */
  proposeConfChange(cc: ConfChange): ProposalError | undefined {
    return this.stepProposal({ term: 0 as Term, index: 0 as Index, type: "ConfChange", data: encodeConfChange(cc) })
  }

  private stepProposal(e: Entry): ProposalError | undefined {
    const err = this.raft.step(makeMessage({ type: "MsgProp", from: this.raft.id, entries: [e] }))
    return err === undefined ? undefined : "ProposalDropped"
  }

  /**
   * Feeds a message received from a peer. Returns "StepLocalMsg" for a local-only type,
   * "StepPeerNotFound" for a response from a member outside the configuration, "InvalidMessage"
   * for a malformed message, "ProposalDropped" for a forwarded proposal the leader cannot take.
   * Stale, duplicated and reordered messages are expected and handled; they return undefined.
   */
  step(m: Message): StepError | undefined {
    if (isLocalMsg(m.type)) return "StepLocalMsg"
    if (isResponseMsg(m.type) && !this.raft.trk.progress.has(m.from)) return "StepPeerNotFound"
    if (!isWellFormed(m)) return "InvalidMessage"
    return this.raft.step(m)
  }

  /**
   * Requests a linearizable read point. The answer arrives as a ReadState carrying `ctx` in a
   * later Ready; it may never arrive (no leader, leadership lost, message lost), so callers
   * use a timeout and a unique ctx.
   */
  readIndex(ctx: Uint8Array): void {
    this.raft.step(makeMessage({ type: "MsgReadIndex", entries: [{ term: 0 as Term, index: 0 as Index, type: "Normal", data: ctx }] }))
  }

  /**
   * Asks the leader to hand leadership to `transferee` (a follower forwards the request). The
   * leader stops accepting proposals, brings the transferee up to date, then sends it
   * MsgTimeoutNow; the transfer is abandoned after an election timeout.
   */
  transferLeader(transferee: MemberId): void {
    this.raft.step(makeMessage({ type: "MsgTransferLeader", from: transferee }))
  }

  /**
   * Applies a committed conf change to the configuration; call it when applying each
   * "ConfChange" entry (decodeConfChange of its data). Returns the new configuration, to be
   * saved with the state machine. A change that would leave no voter changes nothing.
   */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc)
  }

  /** Reports that the last message to `id` could not be sent; the leader probes it again. */
  reportUnreachable(id: MemberId): void {
    this.raft.step(makeMessage({ type: "MsgUnreachable", from: id }))
  }

  /**
   * Reports the outcome of sending a snapshot to `id`. After "Finish" the leader waits for the
   * member's acknowledgement; after "Failure" it probes again at the next heartbeat.
   */
  reportSnapshot(id: MemberId, status: SnapshotStatus): void {
    this.raft.step(makeMessage({ type: "MsgSnapStatus", from: id, reject: status === "Failure" }))
  }

  /** True when {@link RawNode.ready} would return work. */
  hasReady(): boolean {
    const r = this.raft
    const ss = r.softState()
    if (ss.lead !== this.prevSoftSt.lead || ss.raftState !== this.prevSoftSt.raftState) return true
    const hs = r.hardState()
    if (!isEmptyHardState(hs) && !isSameHardState(hs, this.prevHardSt)) return true
    return (
      r.raftLog.hasPendingSnapshot() ||
      r.msgs.length > 0 ||
      r.raftLog.unstable.entries.length > 0 ||
      r.raftLog.hasNextCommittedEnts() ||
      r.readStates.length > 0
    )
  }

  /**
   * Takes the pending work (see {@link Ready} for the order the shell must follow). Call
   * {@link RawNode.advance} with it before the next ready(); messages and read states are
   * handed out once, entries until advance acknowledges them.
   */
  ready(): Ready {
    const r = this.raft
    const softState = r.softState()
    const hardState = r.hardState()
    const snapshot = r.raftLog.unstable.snapshot
    const entries = r.raftLog.unstableEntries()
    const softChanged = softState.lead !== this.prevSoftSt.lead || softState.raftState !== this.prevSoftSt.raftState
    const hardChanged = !isSameHardState(hardState, this.prevHardSt)
    const rd: Ready = {
      ...(softChanged ? { softState } : {}),
      ...(hardChanged ? { hardState } : {}),
      readStates: r.readStates,
      entries,
      ...(snapshot !== undefined ? { snapshot } : {}),
      committedEntries: r.raftLog.nextCommittedEnts(),
      messages: r.msgs,
      mustSync:
        entries.length > 0 ||
        snapshot !== undefined ||
        hardState.vote !== this.prevHardSt.vote ||
        hardState.term !== this.prevHardSt.term
    }
    if (softChanged) this.prevSoftSt = softState
    if (hardChanged) this.prevHardSt = hardState
    r.readStates = []
    r.msgs = []
    return rd
  }

  /**
   * Acknowledges that `rd` was performed: its entries and snapshot are in storage and its
   * committed entries applied. A leader's entries count towards commitment from here on.
   */
  advance(rd: Ready): void {
    const r = this.raft
    r.reduceUncommittedSize(rd.committedEntries)
    const lastCommitted = rd.committedEntries[rd.committedEntries.length - 1]
    const newApplied = lastCommitted?.index ?? rd.snapshot?.metadata.index ?? 0
    if (newApplied > 0) r.appliedTo(newApplied as Index)
    const lastEntry = rd.entries[rd.entries.length - 1]
    if (lastEntry !== undefined) {
      r.raftLog.stableTo(lastEntry.index, lastEntry.term)
      r.localAppendPersisted(lastEntry.index, lastEntry.term)
    }
    if (rd.snapshot !== undefined) r.raftLog.stableSnapTo(rd.snapshot.metadata.index)
  }

  /** The member's current state; `progress` is filled on the leader only. */
  status(): Status {
    const r = this.raft
    const progress = new Map<MemberId, ProgressStatus>()
    if (r.state === "StateLeader") r.trk.visit((id, pr) => progress.set(id, pr.toStatus()))
    const hardState = r.hardState()
    return {
      id: r.id,
      hardState,
      softState: r.softState(),
      applied: r.raftLog.applied,
      commit: hardState.commit,
      progress,
      leadTransferee: r.leadTransferee,
      confState: r.trk.confState()
    }
  }
}

/**
 * True for the messages a leader may send before the Ready that holds them is persisted: log
 * replication (MsgApp, MsgHeartbeat, MsgSnap) does not depend on the leader's own log being
 * durable, because the leader counts its entries only once they are (Raft thesis §10.2.1; etcd
 * server/etcdserver/raft.go sends a leader's messages before saving). Vote and append
 * responses, and anything a non-leader sends, must wait for the persist.
 */
export const sendableBeforePersist = (m: Message, raftState: StateType): boolean =>
  raftState === "StateLeader" && (m.type === "MsgApp" || m.type === "MsgHeartbeat" || m.type === "MsgSnap")
