/**
 * The raft state machine of one member: elections (with PreVote and CheckQuorum), log
 * replication with flow control, commitment, ReadIndex, leader transfer, membership changes one
 * at a time, and snapshots. It consumes messages and ticks and produces messages, log entries
 * and state changes that {@link RawNode} packs into Ready batches. It does no IO and reads no
 * clock; randomness comes from the injected `randomInt`.
 *
 * Follows etcd raft raft.go. A common {@link Raft.step} settles terms and votes first, then
 * hands the message to the role's step function (stepLeader, stepCandidate, stepFollower),
 * chosen by becomeFollower / becomeCandidate / becomePreCandidate / becomeLeader.
 *
 * The leader writes its log in parallel with replicating it (Raft thesis §10.2.1): the shell
 * may send a leader's MsgApp/MsgHeartbeat/MsgSnap before persisting the Ready's entries
 * ({@link sendableBeforePersist}), so the leader counts its own entries towards commitment
 * only once they are durable, when the shell acknowledges the Ready
 * ({@link Raft.localAppendPersisted}, called by RawNode.advance), as etcd raft v3.6 does with
 * its self-addressed MsgAppResp. A commit therefore always rests on a majority of durable
 * copies; a single member commits a proposal in the Ready after the one that persisted it.
 * Everything else in a Ready is still persisted before its messages leave and before its
 * committed entries are applied. The leader votes for itself at once.
 *
 * Departures from etcd, each for a reason given where it happens:
 * - one majority configuration at a time (no joint consensus, ConfChangeV2 or auto-leave);
 * - only ReadOnlySafe reads; no MsgForgetLeader, no proposal forwarding switch;
 * - a conf change that cannot be applied leaves the configuration unchanged instead of panicking;
 * - pending ReadIndex requests are also released when a configuration change commits entries;
 * - a restart with `applied` > 0 replays the conf changes up to it into the configuration.
 * Kept from etcd although it may surprise: a learner answers a vote request (it may have been
 * promoted without knowing yet); its vote only counts for a candidate that sees it as a voter.
 */
import type { Index, MemberId, Term } from "../../../shared/ids.ts"
import { idToHex } from "../../../shared/ids.ts"
import type { ConfChange, ConfState, Entry, HardState } from "../../../shared/raft-types.ts"
import { decodeConfChange } from "./conf-change.ts"
import { changeSimple, restoreConfState, type TrackerConfig } from "./conf-changer.ts"
import { payloadSizeBytes } from "./entry-size.ts"
import { RaftLog } from "./log.ts"
import { Progress } from "./progress.ts"
import { ReadOnly } from "./read-only.ts"
import type { Config } from "./raw-node.ts"
import type { Storage } from "./storage.ts"
import { isStorageError } from "./storage.ts"
import { ProgressTracker } from "./tracker.ts"
import type { Logger, Message, MessageType, ReadState, SoftState, StateType, StepError, Snapshot } from "./types.ts"
import { makeMessage, None } from "./types.ts"

/** How an election was started (etcd CampaignType). */
type CampaignType = "CampaignPreElection" | "CampaignElection" | "CampaignTransfer"

/** The context of a MsgVote sent for a leader transfer: voters grant it even inside a leader lease. */
const campaignTransferCtx = Uint8Array.from("CampaignTransfer", (c) => c.charCodeAt(0))

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && a.every((x, i) => x === b[i])

const hex = (id: MemberId): string => idToHex(id)

const voteRespMsgType = (t: MessageType): MessageType => (t === "MsgVote" ? "MsgVoteResp" : "MsgPreVoteResp")

const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {} }

type StepFn = (r: Raft, m: Message) => StepError | undefined

/** One member's raft state machine (etcd raft.raft). Driven by {@link RawNode}. */
export class Raft {
  readonly id: MemberId
  term: Term = 0 as Term
  vote: MemberId = None
  readStates: ReadState[] = []
  readonly raftLog: RaftLog
  private readonly maxMsgSizeBytes: number
  private readonly maxUncommittedSizeBytes: number
  trk: ProgressTracker
  state: StateType = "StateFollower"
  /** True when this member is a learner of the current configuration. */
  isLearner = false
  lead: MemberId = None
  /** The member leadership is being transferred to, or None. */
  leadTransferee: MemberId = None
  /**
   * Index of the latest conf change this leader proposed; no new one is accepted until the
   * applied index reaches it, so at most one change is ever unapplied (Raft thesis §4.1).
   */
  pendingConfIndex: Index = 0 as Index
  /** Payload bytes of uncommitted entries this leader appended (for maxUncommittedEntriesSize). */
  private uncommittedSizeBytes = 0
  private readOnly = new ReadOnly()
  /**
   * Ticks since the last election timeout reset. As leader or candidate: since the role began or
   * the last timeout. As follower: since the last valid message from the current leader.
   */
  electionElapsed = 0
  private heartbeatElapsed = 0
  private readonly checkQuorum: boolean
  private readonly preVote: boolean
  private readonly heartbeatTimeout: number
  private readonly electionTimeout: number
  /** A value in [electionTimeout, 2 * electionTimeout), drawn again on every reset. */
  private randomizedElectionTimeout = 0
  private readonly randomInt: (maxExclusive: number) => number
  readonly logger: Logger
  /** ReadIndex requests received before this leader committed an entry of its own term. */
  private pendingReadIndexMessages: Message[] = []
  /** Messages produced since the last Ready. */
  msgs: Message[] = []
  private tickFn: () => void = () => this.tickElection()
  private stepFn: StepFn = stepFollower

  /**
   * Restores a member from `storage` (hard state, snapshot configuration, log). Throws on an
   * invalid configuration or a hard state inconsistent with the log (corrupt storage).
   */
  constructor(c: Config, storage: Storage) {
    validateConfig(c)
    this.id = c.id
    this.raftLog = new RaftLog(storage, c.maxSizePerMsg)
    this.maxMsgSizeBytes = c.maxSizePerMsg
    this.maxUncommittedSizeBytes = c.maxUncommittedEntriesSize ?? 0
    this.trk = new ProgressTracker(c.maxInflightMsgs)
    this.electionTimeout = c.electionTick
    this.heartbeatTimeout = c.heartbeatTick
    this.checkQuorum = c.checkQuorum
    this.preVote = c.preVote
    this.randomInt = c.randomInt
    this.logger = c.logger ?? silentLogger

    const { hardState, confState } = storage.initialState()
    this.switchToConfig(restoreConfState(confState, this.raftLog.lastIndex(), this.trk.maxInflight))
    if (!(hardState.term === 0 && hardState.vote === 0n && hardState.commit === 0)) this.loadState(hardState)
    if (c.applied > 0) {
      this.raftLog.appliedTo(c.applied)
      this.restoreAppliedConfChanges(storage)
    }
    this.becomeFollower(this.term, None)
    this.logger.info(
      `newRaft ${hex(this.id)} [peers: [${this.trk.voterIds().map(hex).join(",")}], term: ${this.term}, ` +
        `commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, lastindex: ${this.raftLog.lastIndex()}, ` +
        `lastterm: ${this.raftLog.lastTerm()}]`
    )
  }

  /** True when a leader is known in the current term. */
  /**
   * Replays the conf changes between the storage's snapshot and the applied index the shell
   * restarted with: they will not be handed out again, yet the configuration must include
   * them. (etcd restarts from the snapshot index and re-delivers them instead; natcd lets the
   * shell skip entries its state machine already holds.) Changes are absolute (make X a voter,
   * a learner, or absent), so replaying them in order yields the configuration they produced.
   */
  private restoreAppliedConfChanges(storage: Storage): void {
    const snap = storage.snapshot()
    const snapshotIndex = isStorageError(snap) ? 0 : snap.metadata.index
    const lo = Math.max(this.raftLog.firstIndex(), snapshotIndex + 1) as Index
    if (lo > this.raftLog.applied) return
    const ents = this.raftLog.slice(lo, (this.raftLog.applied + 1) as Index, Number.POSITIVE_INFINITY)
    if (ents === "Compacted") throw new Error(`applied entries [${lo}, ${this.raftLog.applied}] are compacted`)
    for (const e of ents) if (e.type === "ConfChange") this.applyConfChange(decodeConfChange(e.data))
  }

  /** True when a leader is known in the current term. */
  hasLeader(): boolean {
    return this.lead !== None
  }

  /** The current role and known leader. */
  softState(): SoftState {
    return { lead: this.lead, raftState: this.state }
  }

  /** The state to persist: term, vote and commit index. */
  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed }
  }

  /** The drive of time: one call per tick. */
  tick(): void {
    this.tickFn()
  }

  /**
   * Queues a message for the next Ready, filling `from` and `term` as etcd's send does: vote
   * messages carry their own term; MsgProp and MsgReadIndex carry none (they are forwarded, like
   * local messages); everything else carries the current term.
   */
  send(fields: Partial<Message> & { readonly type: MessageType }): void {
    const m0 = makeMessage(fields)
    const m = m0.from === None ? { ...m0, from: this.id } : m0
    const t = m.type
    if (t === "MsgVote" || t === "MsgVoteResp" || t === "MsgPreVote" || t === "MsgPreVoteResp") {
      if (m.term === 0) throw new Error(`term should be set when sending ${t}`)
      this.msgs.push(m)
    } else {
      if (m.term !== 0) throw new Error(`term should not be set when sending ${t} (was ${m.term})`)
      this.msgs.push(t === "MsgProp" || t === "MsgReadIndex" ? m : { ...m, term: this.term })
    }
  }

  /** Sends an append (or a snapshot when the needed entries are compacted) to `to`, even an empty one. */
  sendAppend(to: MemberId): void {
    this.maybeSendAppend(to, true)
  }

  /**
   * Sends the next append to `to` unless its progress is paused. With `sendIfEmpty` false, an
   * append without entries is not sent (useful when draining several messages). Returns whether
   * a message went out.
   */
  maybeSendAppend(to: MemberId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to)
    if (pr === undefined || pr.isPaused()) return false
    const prevIndex = (pr.next - 1) as Index
    const prevTerm = this.raftLog.term(prevIndex)
    if (isStorageError(prevTerm)) return this.maybeSendSnapshot(to, pr)
    let ents: ReadonlyArray<Entry> | "Compacted" = []
    // A throttled StateReplicate sends only empty appends, so that a window full of lost
    // messages still gets acknowledged or rejected and frees itself.
    if (pr.state !== "StateReplicate" || !pr.inflights.full()) {
      ents = this.raftLog.entries(pr.next, this.maxMsgSizeBytes)
    }
    if (ents === "Compacted") return this.maybeSendSnapshot(to, pr)
    if (ents.length === 0 && !sendIfEmpty) return false
    this.send({
      type: "MsgApp",
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.raftLog.committed
    })
    pr.sentEntries(ents.length)
    pr.sentCommitTo(this.raftLog.committed)
    return true
  }

  /** Sends the storage's snapshot to `to` if it was recently active; returns whether it did. */
  private maybeSendSnapshot(to: MemberId, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger.debug(`ignore sending snapshot to ${hex(to)} since it is not recently active`)
      return false
    }
    const snapshot = this.raftLog.snapshot()
    if (snapshot === "SnapshotTemporarilyUnavailable") {
      this.logger.debug(`${hex(this.id)} failed to send snapshot to ${hex(to)} because snapshot is temporarily unavailable`)
      return false
    }
    if (isStorageError(snapshot)) throw new Error(`unexpected snapshot error ${snapshot}`)
    if (snapshot.metadata.index === 0) throw new Error("need non-empty snapshot")
    this.logger.debug(
      `${hex(this.id)} [firstindex: ${this.raftLog.firstIndex()}, commit: ${this.raftLog.committed}] sent snapshot` +
        `[index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${hex(to)}`
    )
    pr.becomeSnapshot(snapshot.metadata.index)
    this.send({ type: "MsgSnap", to, snapshot })
    return true
  }

  /**
   * Sends a heartbeat carrying commit min(match, committed): a follower must never learn a
   * commit index beyond the part of its log known to match the leader's.
   */
  private sendHeartbeat(to: MemberId, ctx: Uint8Array): void {
    const pr = this.trk.progress.get(to)!
    const commit = Math.min(pr.match, this.raftLog.committed) as Index
    this.send({ type: "MsgHeartbeat", to, commit, context: ctx })
    pr.sentCommitTo(commit)
  }

  /** Sends appends to every other member that is not paused. */
  bcastAppend(): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendAppend(id)
    })
  }

  bcastHeartbeat(): void {
    const ctx = this.readOnly.heartbeatCtx()
    this.trk.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, ctx)
    })
  }

  /** Records entries applied by the shell up to `index`. */
  appliedTo(index: Index): void {
    this.raftLog.appliedTo(Math.max(index, this.raftLog.applied) as Index)
  }

  /**
   * Advances the commit index to what a majority of voters stores, if that entry is of the
   * current term. Returns whether it moved. Leader only.
   */
  private maybeCommit(): boolean {
    return this.raftLog.maybeCommit(this.trk.committed(), this.term)
  }

  /** Resets the per-term state on any role change; a new term also clears the vote. */
  private reset(term: Term): void {
    if (this.term !== term) {
      this.term = term
      this.vote = None
    }
    this.lead = None
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.resetRandomizedElectionTimeout()
    this.abortLeaderTransfer()
    this.trk.resetVotes()
    const lastIndex = this.raftLog.lastIndex()
    // This member's own match covers only what is durable: entries still unstable count once
    // the shell persisted them (localAppendPersisted).
    const stableIndex = this.raftLog.unstable.entries.length > 0 ? this.raftLog.unstable.offset - 1 : lastIndex
    for (const [id, pr] of [...this.trk.progress]) {
      this.trk.progress.set(
        id,
        new Progress({
          match: (id === this.id ? stableIndex : 0) as Index,
          next: (lastIndex + 1) as Index,
          maxInflight: this.trk.maxInflight,
          isLearner: pr.isLearner
        })
      )
    }
    this.pendingConfIndex = 0 as Index
    this.uncommittedSizeBytes = 0
    this.readOnly = new ReadOnly()
  }

  /**
   * Appends entries to the leader's log at its term; they count as stored on the leader once
   * persisted (see the module comment and {@link localAppendPersisted}). Returns false when the
   * uncommitted size limit drops them.
   */
  appendEntry(es: ReadonlyArray<Entry>): boolean {
    const li = this.raftLog.lastIndex()
    const ents = es.map((e, i): Entry => ({ ...e, term: this.term, index: (li + 1 + i) as Index }))
    if (!this.increaseUncommittedSize(ents)) {
      this.logger.warn(
        `${hex(this.id)} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`
      )
      return false
    }
    this.raftLog.append(ents)
    return true
  }

  /**
   * Leader: the entries up to `index` (of term `term`) are durable in the local log, so they
   * count for this member's match (etcd raft v3.6: the self-addressed MsgAppResp stepped after
   * the append is persisted). Ignored when not leader or when the entry was replaced since.
   */
  localAppendPersisted(index: Index, term: Term): void {
    if (this.state !== "StateLeader") return
    const t = this.raftLog.term(index)
    if (typeof t === "string" || t !== term) return
    const pr = this.trk.progress.get(this.id)
    if (pr === undefined || !pr.maybeUpdate(index)) return
    this.maybeCommitAndBroadcast()
  }

  /** Follower and candidate tick: start an election once the randomized timeout passes. */
  private tickElection(): void {
    this.electionElapsed++
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0
      this.step(makeMessage({ type: "MsgHup", from: this.id }))
    }
  }

  /** Leader tick: heartbeats every heartbeatTimeout; CheckQuorum and transfer abort every electionTimeout. */
  private tickHeartbeat(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0
      if (this.checkQuorum) this.step(makeMessage({ type: "MsgCheckQuorum", from: this.id }))
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.state === "StateLeader" && this.leadTransferee !== None) this.abortLeaderTransfer()
    }
    if (this.state !== "StateLeader") return
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0
      this.step(makeMessage({ type: "MsgBeat", from: this.id }))
    }
  }

  /** Becomes a follower at `term`, of `lead` (or None when no leader is known yet). */
  becomeFollower(term: Term, lead: MemberId): void {
    this.stepFn = stepFollower
    this.reset(term)
    this.tickFn = () => this.tickElection()
    this.lead = lead
    this.state = "StateFollower"
    this.logger.info(`${hex(this.id)} became follower at term ${this.term}`)
  }

  /** Starts a real election: raises the term and votes for itself (§5.2). */
  becomeCandidate(): void {
    if (this.state === "StateLeader") throw new Error("invalid transition [leader -> candidate]")
    this.stepFn = stepCandidate
    this.reset((this.term + 1) as Term)
    this.tickFn = () => this.tickElection()
    this.vote = this.id
    this.state = "StateCandidate"
    this.logger.info(`${hex(this.id)} became candidate at term ${this.term}`)
  }

  /**
   * Enters the PreVote phase (Raft thesis §9.6): like a candidate, but without raising the term
   * or voting, so a member that cannot win does not disrupt the cluster.
   */
  becomePreCandidate(): void {
    if (this.state === "StateLeader") throw new Error("invalid transition [leader -> pre-candidate]")
    this.stepFn = stepCandidate
    this.trk.resetVotes()
    this.tickFn = () => this.tickElection()
    this.lead = None
    this.state = "StatePreCandidate"
    this.logger.info(`${hex(this.id)} became pre-candidate at term ${this.term}`)
  }

  /** Takes leadership and appends the empty entry that commits the earlier terms' entries (§5.4.2). */
  becomeLeader(): void {
    if (this.state === "StateFollower") throw new Error("invalid transition [follower -> leader]")
    this.stepFn = stepLeader
    this.reset(this.term)
    this.tickFn = () => this.tickHeartbeat()
    this.lead = this.id
    this.state = "StateLeader"
    const pr = this.trk.progress.get(this.id)
    if (pr !== undefined) {
      pr.becomeReplicate()
      pr.recentActive = true
    }
    // Conservatively assume a conf change may be pending anywhere in the log: no new one is
    // accepted until everything up to here is applied.
    this.pendingConfIndex = this.raftLog.lastIndex()
    if (!this.appendEntry([{ term: 0 as Term, index: 0 as Index, type: "Normal", data: new Uint8Array(0) }])) {
      throw new Error("empty entry was dropped")
    }
    this.logger.info(`${hex(this.id)} became leader at term ${this.term}`)
  }

  hup(t: CampaignType): void {
    if (this.state === "StateLeader") {
      this.logger.debug(`${hex(this.id)} ignoring MsgHup because already leader`)
      return
    }
    if (!this.promotable()) {
      this.logger.warn(`${hex(this.id)} is unpromotable and can not campaign`)
      return
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn(
        `${hex(this.id)} cannot campaign at term ${this.term} since there are still pending configuration changes to apply`
      )
      return
    }
    this.logger.info(`${hex(this.id)} is starting a new election at term ${this.term}`)
    this.campaign(t)
  }

  /** True when a committed but unapplied entry is a conf change: the configuration is about to change. */
  private hasUnappliedConfChanges(): boolean {
    if (this.raftLog.applied >= this.raftLog.committed) return false
    const ents = this.raftLog.slice(
      (this.raftLog.applied + 1) as Index,
      (this.raftLog.committed + 1) as Index,
      Number.POSITIVE_INFINITY
    )
    if (ents === "Compacted") throw new Error("unapplied committed entries are compacted")
    return ents.some((e) => e.type === "ConfChange")
  }

  /** Starts a (pre-)election: votes for itself, then asks every other voter. */
  campaign(t: CampaignType): void {
    let term: Term
    let voteMsg: MessageType
    if (t === "CampaignPreElection") {
      this.becomePreCandidate()
      voteMsg = "MsgPreVote"
      // PreVote asks for the next term without moving to it.
      term = (this.term + 1) as Term
    } else {
      this.becomeCandidate()
      voteMsg = "MsgVote"
      term = this.term
    }
    if (this.poll(this.id, voteRespMsgType(voteMsg), true) === "VoteWon") {
      // Won by our own vote alone: a single-voter configuration.
      if (t === "CampaignPreElection") this.campaign("CampaignElection")
      else this.becomeLeader()
      return
    }
    const lastIndex = this.raftLog.lastIndex()
    const lastTerm = this.raftLog.lastTerm()
    for (const id of this.trk.voterIds()) {
      if (id === this.id) continue
      this.logger.info(
        `${hex(this.id)} [logterm: ${lastTerm}, index: ${lastIndex}] sent ${voteMsg} request to ${hex(id)} at term ${this.term}`
      )
      this.send({
        type: voteMsg,
        to: id,
        term,
        index: lastIndex,
        logTerm: lastTerm,
        context: t === "CampaignTransfer" ? campaignTransferCtx : new Uint8Array(0)
      })
    }
  }

  poll(id: MemberId, t: MessageType, granted: boolean): "VotePending" | "VoteLost" | "VoteWon" {
    this.logger.info(
      granted
        ? `${hex(this.id)} received ${t} from ${hex(id)} at term ${this.term}`
        : `${hex(this.id)} received ${t} rejection from ${hex(id)} at term ${this.term}`
    )
    this.trk.recordVote(id, granted)
    const { granted: gr, rejected, result } = this.trk.tallyVotes()
    this.logger.info(`${hex(this.id)} has received ${gr} ${t} votes and ${rejected} vote rejections`)
    return result
  }

  /**
   * The common entry point for every message (etcd raft.Step). Settles the term first: a higher
   * term makes this member a follower (except for PreVote traffic, and for votes ignored inside
   * a leader lease under CheckQuorum); a lower term is mostly dropped. Then handles votes, and
   * passes everything else to the role's step function. Returns "ProposalDropped" for a
   * proposal that could not be accepted.
   */
  step(m: Message): StepError | undefined {
    if (m.term === 0) {
      // Local message, or a forwarded MsgProp / MsgReadIndex.
    } else if (m.term > this.term) {
      if (m.type === "MsgVote" || m.type === "MsgPreVote") {
        const force = bytesEqual(m.context, campaignTransferCtx)
        const inLease = this.checkQuorum && this.lead !== None && this.electionElapsed < this.electionTimeout
        if (!force && inLease) {
          // A member that heard from a leader within the election timeout neither raises its
          // term nor votes (Raft thesis §4.2.3): this keeps a removed or partitioned member
          // from deposing a healthy leader.
          this.logger.info(
            `${hex(this.id)} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${hex(this.vote)}] ` +
              `ignored ${m.type} from ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: ` +
              `lease is not expired (remaining ticks: ${this.electionTimeout - this.electionElapsed})`
          )
          return undefined
        }
      }
      if (m.type === "MsgPreVote") {
        // Never change the term in response to a PreVote.
      } else if (m.type === "MsgPreVoteResp" && !m.reject) {
        // A granted PreVote carries the term we will campaign at; the term moves only once we
        // win the pre-election.
      } else {
        this.logger.info(
          `${hex(this.id)} [term: ${this.term}] received a ${m.type} message with higher term from ${hex(m.from)} [term: ${m.term}]`
        )
        const fromLeader = m.type === "MsgApp" || m.type === "MsgHeartbeat" || m.type === "MsgSnap"
        this.becomeFollower(m.term, fromLeader ? m.from : None)
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === "MsgHeartbeat" || m.type === "MsgApp")) {
        // A leader of an older term is still around: possibly this member's term rose during a
        // partition while it could not win. With CheckQuorum or PreVote, that leader would
        // never see a vote from us, so answer to reveal our term and make it step down.
        this.send({ type: "MsgAppResp", to: m.from })
      } else if (m.type === "MsgPreVote") {
        // Reject explicitly: a pre-candidate that waited for an answer could otherwise stall.
        this.logger.info(
          `${hex(this.id)} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${hex(this.vote)}] ` +
            `rejected ${m.type} from ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`
        )
        this.send({ type: "MsgPreVoteResp", to: m.from, term: this.term, reject: true })
      } else {
        this.logger.info(
          `${hex(this.id)} [term: ${this.term}] ignored a ${m.type} message with lower term from ${hex(m.from)} [term: ${m.term}]`
        )
      }
      return undefined
    }

    switch (m.type) {
      case "MsgHup":
        this.hup(this.preVote ? "CampaignPreElection" : "CampaignElection")
        return undefined
      case "MsgVote":
      case "MsgPreVote": {
        // We can vote if this repeats our vote, if we have not voted and know no leader in this
        // term, or if this is a PreVote for a future term...
        const canVote =
          this.vote === m.from ||
          (this.vote === None && this.lead === None) ||
          (m.type === "MsgPreVote" && m.term > this.term)
        // ...and the candidate's log is at least as up to date as ours (§5.4.1).
        const lastIndex = this.raftLog.lastIndex()
        const lastTerm = this.raftLog.lastTerm()
        if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
          // Learners vote too when asked: a learner promoted by a committed conf change it has
          // not received yet must still be able to help elect a leader (etcd raft.go).
          this.logger.info(
            `${hex(this.id)} [logterm: ${lastTerm}, index: ${lastIndex}, vote: ${hex(this.vote)}] cast ${m.type} ` +
              `for ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`
          )
          // Answer with the message's term, not ours: for a PreVote they differ, and a
          // pre-candidate ignores answers for other terms.
          this.send({ type: voteRespMsgType(m.type), to: m.from, term: m.term })
          if (m.type === "MsgVote") {
            this.electionElapsed = 0
            this.vote = m.from
          }
        } else {
          this.logger.info(
            `${hex(this.id)} [logterm: ${lastTerm}, index: ${lastIndex}, vote: ${hex(this.vote)}] rejected ${m.type} ` +
              `from ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`
          )
          this.send({ type: voteRespMsgType(m.type), to: m.from, term: this.term, reject: true })
        }
        return undefined
      }
      default:
        return this.stepFn(this, m)
    }
  }

  /** Follower side of MsgApp: append if the logs match at (index, logTerm), else reject with a hint. */
  handleAppendEntries(m: Message): void {
    if (m.index < this.raftLog.committed) {
      this.send({ type: "MsgAppResp", to: m.from, index: this.raftLog.committed })
      return
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
    if (lastNew !== undefined) {
      this.send({ type: "MsgAppResp", to: m.from, index: lastNew })
      return
    }
    this.logger.debug(
      `${hex(this.id)} [logterm: ${this.raftLog.zeroTermOnOutOfBounds(this.raftLog.term(m.index))}, index: ${m.index}] ` +
        `rejected MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${hex(m.from)}`
    )
    // Hint the largest (index, term) where the logs may match: the last of our entries at or
    // below m.index whose term is <= m.logTerm. This skips our divergent tail term by term.
    const hint = this.raftLog.findConflictByTerm(Math.min(m.index, this.raftLog.lastIndex()) as Index, m.logTerm)
    this.send({
      type: "MsgAppResp",
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term
    })
  }

  /** Follower side of MsgHeartbeat: learn the commit index and echo the ReadIndex context. */
  handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit)
    this.send({ type: "MsgHeartbeatResp", to: m.from, context: m.context })
  }

  /** Follower side of MsgSnap: restore, then acknowledge the new last index (or the commit index if ignored). */
  handleSnapshot(m: Message): void {
    const s = m.snapshot!
    const { index, term } = s.metadata
    if (this.restore(s)) {
      this.logger.info(`${hex(this.id)} [commit: ${this.raftLog.committed}] restored snapshot [index: ${index}, term: ${term}]`)
      this.send({ type: "MsgAppResp", to: m.from, index: this.raftLog.lastIndex() })
    } else {
      this.logger.info(`${hex(this.id)} [commit: ${this.raftLog.committed}] ignored snapshot [index: ${index}, term: ${term}]`)
      this.send({ type: "MsgAppResp", to: m.from, index: this.raftLog.committed })
    }
  }

  /**
   * Replaces the log and configuration with a snapshot from the leader. Returns false when the
   * snapshot is not newer than the commit index, when this member is not in its configuration,
   * or when the log already holds its last entry (then only the commit index moves).
   */
  restore(s: Snapshot): boolean {
    const { index, term, confState } = s.metadata
    if (index <= this.raftLog.committed) return false
    if (this.state !== "StateFollower") {
      // Defence in depth, as etcd: only followers restore snapshots.
      this.logger.warn(`${hex(this.id)} attempted to restore snapshot as leader; should never happen`)
      this.becomeFollower((this.term + 1) as Term, None)
      return false
    }
    if (!confState.voters.includes(this.id) && !confState.learners.includes(this.id)) {
      this.logger.warn(`${hex(this.id)} attempted to restore snapshot but it is not in the ConfState; should never happen`)
      return false
    }
    if (this.raftLog.matchTerm(index, term)) {
      this.logger.info(
        `${hex(this.id)} [commit: ${this.raftLog.committed}, lastindex: ${this.raftLog.lastIndex()}, lastterm: ${this.raftLog.lastTerm()}] ` +
          `fast-forwarded commit to snapshot [index: ${index}, term: ${term}]`
      )
      this.raftLog.commitTo(index)
      return false
    }
    this.raftLog.restore(s)
    this.trk = new ProgressTracker(this.trk.maxInflight)
    this.switchToConfig(restoreConfState(confState, this.raftLog.lastIndex(), this.trk.maxInflight))
    return true
  }

  /** True when this member may campaign: a voter of the configuration with no snapshot pending. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id)
    return pr !== undefined && !pr.isLearner && !this.raftLog.hasPendingSnapshot()
  }

  /**
   * Applies a committed conf change and returns the resulting configuration. A change that would
   * leave no voter is refused with a warning and changes nothing: every member reaches the same
   * verdict from the same log, so the configurations stay identical (etcd panics here).
   */
  applyConfChange(cc: ConfChange): ConfState {
    const next = changeSimple(this.trk, cc, this.raftLog.lastIndex(), this.trk.maxInflight)
    if (typeof next === "string") {
      this.logger.warn(`${hex(this.id)} ignored conf change ${cc.type} ${hex(cc.nodeId)}: ${next}`)
      return this.trk.confState()
    }
    return this.switchToConfig(next)
  }

  /**
   * Installs a configuration. A leader that is no longer a voter keeps leading until the shell
   * removes it (etcd's default without StepDownOnRemoval) but accepts no proposals; a leader
   * whose quorum shrank may commit more; new members are probed at once.
   */
  private switchToConfig(cfg: TrackerConfig): ConfState {
    this.trk.voters = cfg.voters
    this.trk.learners = cfg.learners
    this.trk.progress = cfg.progress
    const cs = this.trk.confState()
    this.logger.info(
      `${hex(this.id)} switched to configuration voters=(${cs.voters.map(hex).join(" ")})` +
        (cs.learners.length > 0 ? ` learners=(${cs.learners.map(hex).join(" ")})` : "")
    )
    const pr = this.trk.progress.get(this.id)
    this.isLearner = pr !== undefined && pr.isLearner
    if ((pr === undefined || this.isLearner) && this.state === "StateLeader") return cs
    if (this.state !== "StateLeader" || cs.voters.length === 0) return cs
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages()
      this.bcastAppend()
    } else {
      this.trk.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false)
      })
    }
    if (this.leadTransferee !== None && !this.trk.voters.has(this.leadTransferee)) this.abortLeaderTransfer()
    return cs
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.raftLog.committed || hs.commit > this.raftLog.lastIndex()) {
      throw new Error(
        `${hex(this.id)} state.commit ${hs.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`
      )
    }
    this.raftLog.committed = hs.commit
    this.term = hs.term
    this.vote = hs.vote
  }

  private pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.randomInt(this.electionTimeout)
  }

  /** Tells the transferee to campaign at once (leader transfer). */
  sendTimeoutNow(to: MemberId): void {
    this.send({ type: "MsgTimeoutNow", to })
  }

  /** Forgets any leader transfer in progress; proposals are accepted again. */
  abortLeaderTransfer(): void {
    this.leadTransferee = None
  }

  /** True once this leader committed an entry of its own term (needed before serving reads, §6.4). */
  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.zeroTermOnOutOfBounds(this.raftLog.term(this.raftLog.committed)) === this.term
  }

  /**
   * Answers a ReadIndex request: a local one becomes a ReadState, a forwarded one a
   * MsgReadIndexResp to its sender.
   */
  responseToReadIndexReq(req: Message, readIndex: Index): void {
    const ctx = req.entries[0]!.data
    if (req.from === None || req.from === this.id) {
      this.readStates.push({ index: readIndex, requestCtx: ctx })
      return
    }
    this.send({ type: "MsgReadIndexResp", to: req.from, index: readIndex, entries: req.entries })
  }

  /**
   * Accounts for entries a leader appends against maxUncommittedEntriesSize. An empty tail
   * accepts any proposal, and empty entries are always accepted (the new leader's entry).
   */
  private increaseUncommittedSize(ents: ReadonlyArray<Entry>): boolean {
    const s = payloadSizeBytes(ents)
    if (
      this.maxUncommittedSizeBytes > 0 &&
      this.uncommittedSizeBytes > 0 &&
      s > 0 &&
      this.uncommittedSizeBytes + s > this.maxUncommittedSizeBytes
    ) {
      return false
    }
    this.uncommittedSizeBytes += s
    return true
  }

  /** Releases the budget of entries that were committed and handed out for applying. */
  reduceUncommittedSize(ents: ReadonlyArray<Entry>): void {
    this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - payloadSizeBytes(ents))
  }

  /** Starts the heartbeat rounds of deferred reads, once an entry of this term is committed. */
  releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return
    if (!this.committedEntryInCurrentTerm()) return
    const msgs = this.pendingReadIndexMessages
    this.pendingReadIndexMessages = []
    for (const m of msgs) this.sendMsgReadIndexResponse(m)
  }

  /** Starts a ReadIndex heartbeat round for `m`, at the current commit index (ReadOnlySafe). */
  sendMsgReadIndexResponse(m: Message): void {
    this.readOnly.addRequest(this.raftLog.committed, m)
    // The leader acknowledges its own round.
    this.readOnly.recvAck(this.id, this.readOnly.heartbeatCtx())
    this.bcastHeartbeat()
  }

  /** Holds a read until this leader has committed an entry of its term. */
  deferReadIndex(m: Message): void {
    this.pendingReadIndexMessages.push(m)
  }

  /** Records a heartbeat echo and answers the ReadIndex requests it confirms. */
  recvReadIndexAck(from: MemberId, ctx: Uint8Array): void {
    this.readOnly.recvAck(from, ctx)
    for (const rs of this.readOnly.maybeAdvance(this.trk.voterIds())) this.responseToReadIndexReq(rs.req, rs.index)
  }

  /**
   * Leader: advances the commit index if a majority now stores more of this term's entries,
   * then releases deferred reads and broadcasts the new commit index. Returns whether it moved.
   */
  maybeCommitAndBroadcast(): boolean {
    if (!this.maybeCommit()) return false
    this.releasePendingReadIndexMessages()
    this.bcastAppend()
    return true
  }
}

/** Throws on a configuration etcd's Config.validate rejects. */
const validateConfig = (c: Config): void => {
  if (c.id === None) throw new Error("cannot use none as id")
  if (c.heartbeatTick <= 0) throw new Error("heartbeat tick must be greater than 0")
  if (c.electionTick <= c.heartbeatTick) throw new Error("election tick must be greater than heartbeat tick")
  if (c.maxInflightMsgs <= 0) throw new Error("max inflight messages must be greater than 0")
  if (c.maxSizePerMsg <= 0) throw new Error("max message size must be greater than 0")
}

/** The leader's step function (etcd stepLeader). */
const stepLeader: StepFn = (r, m) => {
  // These message types need no progress for m.from.
  switch (m.type) {
    case "MsgBeat":
      r.bcastHeartbeat()
      return undefined
    case "MsgCheckQuorum":
      if (!r.trk.quorumActive()) {
        r.logger.warn(`${hex(r.id)} stepped down to follower since quorum is not active`)
        r.becomeFollower(r.term, None)
      }
      // Everyone but the leader must prove activity again before the next check.
      r.trk.visit((id, pr) => {
        if (id !== r.id) pr.recentActive = false
      })
      return undefined
    case "MsgProp": {
      if (m.entries.length === 0) return "InvalidMessage"
      if (!r.trk.progress.has(r.id)) {
        // Removed from the configuration while leading: accept nothing new.
        return "ProposalDropped"
      }
      if (r.leadTransferee !== None) {
        r.logger.debug(
          `${hex(r.id)} [term ${r.term}] transfer leadership to ${hex(r.leadTransferee)} is in progress; dropping proposal`
        )
        return "ProposalDropped"
      }
      const ents = m.entries.map((e, i): Entry => {
        if (e.type !== "ConfChange") return e
        if (r.pendingConfIndex > r.raftLog.applied) {
          // One membership change at a time: refuse while an earlier one may be unapplied. The
          // entry is kept as an empty normal entry, as etcd does, so indexes stay as proposed.
          r.logger.info(
            `${hex(r.id)} ignoring conf change: possible unapplied conf change at index ${r.pendingConfIndex} ` +
              `(applied to ${r.raftLog.applied})`
          )
          return { ...e, type: "Normal", data: new Uint8Array(0) }
        }
        r.pendingConfIndex = (r.raftLog.lastIndex() + i + 1) as Index
        return e
      })
      if (!r.appendEntry(ents)) return "ProposalDropped"
      r.bcastAppend()
      return undefined
    }
    case "MsgReadIndex":
      if (m.entries.length !== 1) return "InvalidMessage"
      if (r.trk.isSingleton()) {
        // The only voter needs no heartbeat round to know it leads.
        r.responseToReadIndexReq(m, r.raftLog.committed)
        return undefined
      }
      // A leader that has not committed an entry of its term may not know the latest commit
      // index yet (Raft thesis §6.4): defer until it has.
      if (!r.committedEntryInCurrentTerm()) {
        r.deferReadIndex(m)
        return undefined
      }
      r.sendMsgReadIndexResponse(m)
      return undefined
  }

  const pr = r.trk.progress.get(m.from)
  if (pr === undefined) {
    r.logger.debug(`${hex(r.id)} no progress available for ${hex(m.from)}`)
    return undefined
  }
  switch (m.type) {
    case "MsgAppResp":
      pr.recentActive = true
      if (m.reject) {
        r.logger.debug(
          `${hex(r.id)} received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) from ${hex(m.from)} for index ${m.index}`
        )
        // The follower says its log matches at best up to (rejectHint, logTerm). Every index of
        // ours above the last entry with term <= logTerm must fail too (terms only grow along
        // a log), so probe there directly: at most one probe per term of our log.
        let nextProbeIdx = m.rejectHint
        if (m.logTerm > 0) nextProbeIdx = r.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index
        if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
          r.logger.debug(`${hex(r.id)} decreased progress of ${hex(m.from)} to next=${pr.next}`)
          if (pr.state === "StateReplicate") pr.becomeProbe()
          r.sendAppend(m.from)
        }
        return undefined
      }
      if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "StateProbe")) {
        if (pr.state === "StateProbe") {
          pr.becomeReplicate()
        } else if (pr.state === "StateSnapshot" && pr.match + 1 >= r.raftLog.firstIndex()) {
          // The follower can continue from the log (whatever snapshot it applied).
          r.logger.debug(`${hex(r.id)} recovered from needing snapshot, resumed sending replication messages to ${hex(m.from)}`)
          pr.becomeProbe()
          pr.becomeReplicate()
        } else if (pr.state === "StateReplicate") {
          pr.inflights.freeLE(m.index)
        }
        if (r.maybeCommitAndBroadcast()) {
          // Committed entries were broadcast with the new commit index.
        } else if (r.id !== m.from && pr.canBumpCommit(r.raftLog.committed)) {
          r.sendAppend(m.from)
        }
        // Flow control may now allow several messages at once: send them, without empty ones.
        if (r.id !== m.from) {
          while (r.maybeSendAppend(m.from, false)) {
            // keep sending until paused or caught up
          }
        }
        if (m.from === r.leadTransferee && pr.match === r.raftLog.lastIndex()) {
          r.logger.info(`${hex(r.id)} sent MsgTimeoutNow to ${hex(m.from)} after received MsgAppResp`)
          r.sendTimeoutNow(m.from)
        }
      }
      return undefined
    case "MsgHeartbeatResp":
      pr.recentActive = true
      pr.msgAppFlowPaused = false
      // Also sends to a paused follower: an empty append lets a window of lost messages recover,
      // and lets a caught-up follower in StateProbe return to StateReplicate.
      if (pr.match < r.raftLog.lastIndex() || pr.state === "StateProbe") r.sendAppend(m.from)
      if (m.context.byteLength === 0) return undefined
      r.recvReadIndexAck(m.from, m.context)
      return undefined
    case "MsgSnapStatus":
      if (pr.state !== "StateSnapshot") return undefined
      if (m.reject) {
        // Probe from match, not from the snapshot that never arrived.
        pr.pendingSnapshot = 0 as Index
      }
      pr.becomeProbe()
      r.logger.debug(
        `${hex(r.id)} snapshot ${m.reject ? "failed" : "succeeded"}, resumed sending replication messages to ${hex(m.from)}`
      )
      // After success, wait for the follower's MsgAppResp; after failure, for the next heartbeat.
      pr.msgAppFlowPaused = true
      return undefined
    case "MsgUnreachable":
      // An optimistic stream to an unreachable member has likely lost messages: probe again.
      if (pr.state === "StateReplicate") pr.becomeProbe()
      r.logger.debug(`${hex(r.id)} failed to send message to ${hex(m.from)} because it is unreachable`)
      return undefined
    case "MsgTransferLeader": {
      if (pr.isLearner) {
        r.logger.debug(`${hex(r.id)} is learner. Ignored transferring leadership`)
        return undefined
      }
      const transferee = m.from
      const last = r.leadTransferee
      if (last !== None) {
        if (last === transferee) {
          r.logger.info(
            `${hex(r.id)} [term ${r.term}] transfer leadership to ${hex(transferee)} is in progress, ignores request to same node ${hex(transferee)}`
          )
          return undefined
        }
        r.abortLeaderTransfer()
        r.logger.info(`${hex(r.id)} [term ${r.term}] abort previous transferring leadership to ${hex(last)}`)
      }
      if (transferee === r.id) {
        r.logger.debug(`${hex(r.id)} is already leader. Ignored transferring leadership to self`)
        return undefined
      }
      r.logger.info(`${hex(r.id)} [term ${r.term}] starts to transfer leadership to ${hex(transferee)}`)
      // The transfer must finish within one election timeout.
      r.electionElapsed = 0
      r.leadTransferee = transferee
      if (pr.match === r.raftLog.lastIndex()) {
        r.sendTimeoutNow(transferee)
        r.logger.info(
          `${hex(r.id)} sends MsgTimeoutNow to ${hex(transferee)} immediately as ${hex(transferee)} already has up-to-date log`
        )
      } else {
        r.sendAppend(transferee)
      }
      return undefined
    }
    default:
      return undefined
  }
}

/** The step function of candidates and pre-candidates (etcd stepCandidate). */
const stepCandidate: StepFn = (r, m) => {
  // Only answers to our own kind of campaign count: a candidate may still receive stale
  // MsgPreVoteResp from its pre-candidacy in this term.
  const myVoteRespType: MessageType = r.state === "StatePreCandidate" ? "MsgPreVoteResp" : "MsgVoteResp"
  switch (m.type) {
    case "MsgProp":
      r.logger.info(`${hex(r.id)} no leader at term ${r.term}; dropping proposal`)
      return "ProposalDropped"
    case "MsgApp":
      r.becomeFollower(m.term, m.from)
      r.handleAppendEntries(m)
      return undefined
    case "MsgHeartbeat":
      r.becomeFollower(m.term, m.from)
      r.handleHeartbeat(m)
      return undefined
    case "MsgSnap":
      r.becomeFollower(m.term, m.from)
      r.handleSnapshot(m)
      return undefined
    case "MsgTimeoutNow":
      r.logger.debug(`${hex(r.id)} [term ${r.term} state ${r.state}] ignored MsgTimeoutNow from ${hex(m.from)}`)
      return undefined
    default:
      if (m.type !== myVoteRespType) return undefined
      switch (r.poll(m.from, m.type, !m.reject)) {
        case "VoteWon":
          if (r.state === "StatePreCandidate") {
            r.campaign("CampaignElection")
          } else {
            r.becomeLeader()
            r.bcastAppend()
          }
          break
        case "VoteLost":
          // A MsgPreVoteResp carries the pre-candidate's future term; keep ours.
          r.becomeFollower(r.term, None)
          break
        case "VotePending":
          break
      }
      return undefined
  }
}

/** The follower's step function (etcd stepFollower). */
const stepFollower: StepFn = (r, m) => {
  switch (m.type) {
    case "MsgProp":
      if (r.lead === None) {
        r.logger.info(`${hex(r.id)} no leader at term ${r.term}; dropping proposal`)
        return "ProposalDropped"
      }
      r.send({ ...m, to: r.lead, term: 0 as Term })
      return undefined
    case "MsgApp":
      r.electionElapsed = 0
      r.lead = m.from
      r.handleAppendEntries(m)
      return undefined
    case "MsgHeartbeat":
      r.electionElapsed = 0
      r.lead = m.from
      r.handleHeartbeat(m)
      return undefined
    case "MsgSnap":
      r.electionElapsed = 0
      r.lead = m.from
      r.handleSnapshot(m)
      return undefined
    case "MsgTransferLeader":
      if (r.lead === None) {
        r.logger.info(`${hex(r.id)} no leader at term ${r.term}; dropping leader transfer msg`)
        return undefined
      }
      r.send({ ...m, to: r.lead, term: 0 as Term })
      return undefined
    case "MsgTimeoutNow":
      r.logger.info(
        `${hex(r.id)} [term ${r.term}] received MsgTimeoutNow from ${hex(m.from)} and starts an election to get leadership.`
      )
      // A transfer skips PreVote: the old leader asked for it, so no partition is being healed.
      r.hup("CampaignTransfer")
      return undefined
    case "MsgReadIndex":
      if (r.lead === None) {
        r.logger.info(`${hex(r.id)} no leader at term ${r.term}; dropping index reading msg`)
        return undefined
      }
      r.send({ ...m, to: r.lead, term: 0 as Term })
      return undefined
    case "MsgReadIndexResp":
      if (m.entries.length !== 1) {
        r.logger.warn(`${hex(r.id)} invalid format of MsgReadIndexResp from ${hex(m.from)}, entries count: ${m.entries.length}`)
        return undefined
      }
      r.readStates.push({ index: m.index, requestCtx: m.entries[0]!.data })
      return undefined
    default:
      return undefined
  }
}
