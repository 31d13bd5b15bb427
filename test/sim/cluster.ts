/**
 * A deterministic simulation of a natcd raft cluster: N members in one process, each a RawNode
 * driven by the raft service's own Ready handler (services/raft/ready-handler.ts), over a
 * fake network and fake disks, with every random choice taken from one seeded PRNG. A failing
 * seed replays exactly.
 *
 * What the simulation models:
 * - time: ticks; each tick every running member ticks once, then messages due are delivered and
 *   Readies handled in a few rounds;
 * - network: each message may be lost, duplicated or delayed (which reorders); partitions cut
 *   members into groups (often the leader alone, in a minority); MsgSnap delivery is reported
 *   back to the sender (reportSnapshot) and sends over cut links are reported unreachable;
 * - disk: what the handler yields is written at once and durably, as the wal service writes it
 *   (after fdatasync); the order (a Ready's snapshot, entries and hard state written before its
 *   committed entries are applied and before its messages leave, except a leader's replication
 *   messages, which leave before the write) is the handler's, not the simulation's. A
 *   commit-only hard state the handler holds back lives in memory only, and a crash loses it;
 * - crashes: a member may crash between Readies or inside one (after its leader messages left,
 *   before its write; after the write, before sending; after sending, before applying) and
 *   restarts later from its disk, with its in-memory log rebuilt from the disk and its state
 *   machine from its snapshot;
 * - load: random proposals and ReadIndex requests at random members, compaction of applied entries, and a spare member
 *   cycling through AddLearnerNode, AddNode (promotion) and RemoveNode. A member that applies
 *   its own removal shuts down, as etcd does.
 *
 * Invariants, checked as the run goes (Raft paper Figure 3):
 * - Election Safety: at most one leader per term;
 * - Log Matching: an (index, term) pair names one entry content and one preceding term, in every
 *   log, at every time (by induction, logs agreeing on an entry agree on all before it);
 * - Leader Completeness: a new leader's log holds every entry applied anywhere so far;
 * - State Machine Safety: every member applies the same entry at each index, in index order;
 * - committed entries are never lost: after the faults stop, every member converges on a log
 *   that extends everything ever applied;
 * - linearizable reads: a ReadIndex answer covers everything committed before the request.
 */
import { Index, MemberId } from "../../shared/ids.ts"
import type { ConfState, Entry } from "../../shared/raft-types.ts"
import { decodeConfChange } from "../../services/raft/core/conf-change.ts"
import { type Config, RawNode } from "../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"
import type { Message, Snapshot } from "../../services/raft/core/types.ts"
import { type DurableWrite, ReadyHandler } from "../../services/raft/ready-handler.ts"
import { Prng } from "./prng.ts"

/** Knobs of one simulation run. */
export interface SimOptions {
  readonly seed: number
  /** Voters at bootstrap (3 or 5); one more member starts outside the cluster as the spare. */
  readonly voters: number
  /** Ticks with faults, followed by `quietTicks` without. */
  readonly ticks: number
  readonly quietTicks: number
}

/** What a run did, for the summary line. */
export interface SimStats {
  leaders: number
  maxTerm: number
  committed: number
  crashes: number
  partitions: number
  snapshotsSent: number
  confChanges: number
  delivered: number
  readStates: number
  /** Readies whose leader messages left before the Ready was written. */
  earlySends: number
}

/** A broken invariant; the message names the seed. */
export class SafetyViolation extends Error {}

/** Thrown out of a member's io to stop its handler mid-Ready: a crash, or shutting down after its removal. */
class Halt extends Error {}

interface Member {
  readonly id: MemberId
  /** What the member wrote durably (its WAL and snapshot files). */
  readonly disk: MemoryStorage
  /** The running core; undefined while the member is down. Volatile, as is its handler's in-memory log. */
  node: RawNode | undefined
  handler: ReadyHandler | undefined
  /** The in-memory log the running core reads (rebuilt from `disk` at each start). */
  log: MemoryStorage
  /** Set when the member learns it leads, checked once the Ready's write is on disk. */
  leaderCheck: boolean
  /** The configuration after each ConfChange entry handed to the core in the Ready being handled. */
  readonly confStates: Map<number, ConfState>
  restartAt: number
  /** Shut down after applying its own removal; restarted only if added again. */
  removed: boolean
  /** State machine: highest applied index and the configuration as of that index. Volatile. */
  applied: number
  confState: ConfState
}

interface InFlight {
  readonly m: Message
  readonly deliverAt: number
}

const latin1 = (b: Uint8Array): string => String.fromCharCode(...b)
const contentKey = (e: Entry): string => `${e.type}|${latin1(e.data)}`
const emptyConf: ConfState = { voters: [], learners: [] }

/** One seeded run of the simulation. */
export class Cluster {
  private readonly opts: SimOptions
  private readonly rng: Prng
  private readonly members: Member[] = []
  private readonly spare: MemberId
  private network: InFlight[] = []
  /** Partition group of each member; messages flow only within a group. */
  private readonly group = new Map<MemberId, number>()
  private now = 0
  /** Runs started so far, over all members: each run names its ReadIndex rounds apart. */
  private incarnations = 0
  private faults = true
  private proposals = 0
  readonly stats: SimStats = {
    leaders: 0,
    maxTerm: 0,
    committed: 0,
    crashes: 0,
    earlySends: 0,
    partitions: 0,
    snapshotsSent: 0,
    confChanges: 0,
    delivered: 0,
    readStates: 0
  }
  private readonly preVote: boolean
  private readonly checkQuorum: boolean

  // Oracles.
  private readonly leaderOfTerm = new Map<number, MemberId>()
  /** For every (index, term) ever persisted: its content and the term before it (if known). */
  private readonly entryIds = new Map<string, { prevTerm: number | undefined; content: string }>()
  /** Entries applied anywhere, by index: the committed log. */
  private readonly committed = new Map<number, { term: number; content: string }>()
  private committedMax = 0
  /** The latest committed configuration (applied at committedConfIndex). */
  private committedConf: ConfState = emptyConf
  private committedConfIndex = 0

  constructor(opts: SimOptions) {
    this.opts = opts
    this.rng = new Prng(opts.seed)
    this.preVote = this.rng.chance(0.7)
    this.checkQuorum = this.rng.chance(0.7)
    const voterIds: MemberId[] = []
    for (let i = 1; i <= opts.voters; i++) voterIds.push(MemberId(BigInt(i)))
    this.spare = MemberId(BigInt(opts.voters + 1))
    for (const id of [...voterIds, this.spare]) {
      const disk = new MemoryStorage()
      if (id !== this.spare) RawNode.bootstrap(disk, voterIds)
      const member: Member = {
        id,
        disk,
        node: undefined,
        handler: undefined,
        log: disk,
        leaderCheck: false,
        confStates: new Map(),
        restartAt: 0,
        removed: false,
        applied: 0,
        confState: emptyConf
      }
      this.members.push(member)
      this.group.set(id, 0)
      this.start(member)
    }
  }

  private fail(msg: string): never {
    throw new SafetyViolation(`seed ${this.opts.seed} tick ${this.now}: ${msg}`)
  }

  private config(id: MemberId, applied: number): Config {
    return {
      id,
      electionTick: 10,
      heartbeatTick: 1,
      // Small limits exercise pagination and flow control.
      maxSizePerMsg: 64,
      maxInflightMsgs: 3,
      maxUncommittedEntriesSize: 1024,
      preVote: this.preVote,
      checkQuorum: this.checkQuorum,
      applied: Index(applied),
      randomInt: (n) => this.rng.int(n)
    }
  }

  /**
   * Starts (or restarts) a member from its disk, as the raft service loads its WAL: the
   * in-memory log gets the snapshot, the entries after it and the hard state; the state machine
   * restarts from the snapshot, which may lie after the first entry kept.
   */
  private start(member: Member): void {
    const snap = member.disk.snapshot()
    if (typeof snap === "string") this.fail(`snapshot unavailable: ${snap}`)
    const log = new MemoryStorage()
    if (snap.metadata.index > 0) log.applySnapshot(snap)
    const entries = member.disk.entries(member.disk.firstIndex(), Index(member.disk.lastIndex() + 1), Number.POSITIVE_INFINITY)
    if (Array.isArray(entries)) log.append(entries)
    log.setHardState(member.disk.initialState().hardState)
    member.applied = snap.metadata.index
    member.confState = snap.metadata.confState
    member.log = log
    member.leaderCheck = false
    member.node = new RawNode(this.config(member.id, member.applied), log)
    member.handler = new ReadyHandler(member.node, log, {
      send: (messages, beforeWrite) => this.sendFrom(member, messages, beforeWrite),
      apply: (entries) => this.apply(member, entries),
      onSoftState: (s) => {
        if (s.raftState === "StateLeader") member.leaderCheck = true
      },
      onConfState: (index, confState) => member.confStates.set(index, confState)
    }, `${member.id}.${++this.incarnations}`)
  }

  /** Stops a member; what it held in memory only (its log's unwritten tail, a held-back hard state) is lost. */
  private crash(member: Member, restartAfter: number): void {
    if (member.node === undefined) return
    member.node = undefined
    member.handler = undefined
    member.restartAt = this.now + restartAfter
    this.stats.crashes++
  }

  /** Crashes `member` at random (while faults run) from inside its handler. */
  private maybeCrash(member: Member, p: number): void {
    if (!this.faults || !this.rng.chance(p)) return
    this.crash(member, 5 + this.rng.int(30))
    throw new Halt()
  }

  private running(): Member[] {
    return this.members.filter((m) => m.node !== undefined)
  }

  private connected(a: MemberId, b: MemberId): boolean {
    return this.group.get(a) === this.group.get(b)
  }

  /** Runs the whole schedule; throws SafetyViolation on a broken invariant. */
  run(): SimStats {
    for (this.now = 1; this.now <= this.opts.ticks; this.now++) this.step()
    this.faults = false
    for (const id of this.group.keys()) this.group.set(id, 0)
    for (const m of this.members) {
      const inConf = this.committedConf.voters.includes(m.id) || this.committedConf.learners.includes(m.id)
      if (!inConf) {
        // A removed member that never learned of its removal would keep campaigning (without
        // PreVote and CheckQuorum it deposes leaders forever); etcd's peers refuse such a
        // member, which then stops. Stop it here.
        m.node = undefined
        m.handler = undefined
        m.removed = true
      } else if (m.node === undefined) {
        m.removed = false
        m.restartAt = this.now
      }
    }
    const end = this.opts.ticks + this.opts.quietTicks
    for (; this.now <= end; this.now++) this.step()
    this.checkConvergence()
    this.stats.committed = this.committedMax
    return this.stats
  }

  private step(): void {
    if (this.faults) this.injectFaults()
    for (const m of this.members) {
      if (m.node === undefined && !m.removed && m.restartAt <= this.now) this.start(m)
    }
    if (!this.faults && this.now % 20 === 0 && this.now < this.opts.ticks + this.opts.quietTicks - 20) this.propose()
    // Snapshots keep being taken: a snapshot older than a member's addition cannot catch it up.
    if (!this.faults && this.now % 50 === 0) this.compact(true)
    for (const m of this.running()) {
      const write = m.handler!.tick()
      if (write !== undefined) this.write(m, write)
    }
    for (let round = 0; round < 6; round++) {
      const handled = this.handleReadies()
      const delivered = this.deliverDue()
      if (!handled && !delivered) break
    }
  }

  private injectFaults(): void {
    const rng = this.rng
    if (rng.chance(0.3)) this.propose()
    if (rng.chance(0.1)) this.readIndex()
    if (rng.chance(0.02)) this.proposeConfChange()
    if (rng.chance(0.04)) this.compact()
    if (rng.chance(0.01)) {
      const live = this.running()
      if (live.length > 0) this.crash(rng.pick(live), 5 + rng.int(40))
    }
    if (rng.chance(0.015)) {
      this.stats.partitions++
      const ids = [...this.group.keys()]
      const leader = this.running().find((m) => m.node!.status().softState.raftState === "StateLeader")
      if (leader !== undefined && rng.chance(0.5)) {
        // The leader alone in a minority.
        for (const id of ids) this.group.set(id, id === leader.id ? 1 : 0)
      } else {
        for (const id of ids) this.group.set(id, rng.int(2))
      }
    }
    if (rng.chance(0.03)) for (const id of this.group.keys()) this.group.set(id, 0)
  }

  private propose(): void {
    const live = this.running()
    if (live.length === 0) return
    const data = new TextEncoder().encode(`${this.opts.seed}:${++this.proposals}`)
    this.rng.pick(live).handler!.propose(data)
  }

  private readIndex(): void {
    const live = this.running()
    if (live.length === 0) return
    const floor = this.committedMax
    this.rng.pick(live).handler!.readIndex((index) => this.onReadIndex(index, floor))
  }

  /** Moves the spare one step along AddLearnerNode -> AddNode -> RemoveNode. */
  private proposeConfChange(): void {
    const live = this.running()
    if (live.length === 0) return
    const conf = this.committedConf
    const type = conf.voters.includes(this.spare)
      ? "RemoveNode"
      : conf.learners.includes(this.spare)
        ? "AddNode"
        : "AddLearnerNode"
    this.rng.pick(live).node!.proposeConfChange({ type, nodeId: this.spare, context: new Uint8Array(0) })
  }

  /**
   * Snapshots a member (the leader, if `leader`) at its applied index and drops most of its log
   * before it, in the raft service's snapshotter order: the held-back hard state is written
   * first (a snapshot on disk must not lie beyond the disk's commit), then the snapshot is taken
   * in memory and recorded on disk, then both logs are compacted.
   */
  private compact(leader = false): void {
    const isLeader = (m: Member): boolean => m.node!.status().softState.raftState === "StateLeader"
    const live = this.running().filter((m) => m.applied > m.log.firstIndex() + 2 && (!leader || isLeader(m)))
    if (live.length === 0) return
    const m = this.rng.pick(live)
    const pending = m.handler!.takePendingHardState()
    if (pending !== undefined) this.write(m, pending)
    const data = new TextEncoder().encode(`applied:${m.applied}`)
    const keep = this.rng.int(4)
    for (const storage of [m.log, m.disk]) {
      const snap = storage.createSnapshot(Index(m.applied), m.confState, data)
      if (typeof snap === "string") this.fail(`createSnapshot: ${snap}`)
      storage.compact(Index(Math.max(storage.firstIndex(), m.applied - keep)))
    }
  }

  /** Handles one Ready of every running member that has work; returns whether any did. */
  private handleReadies(): boolean {
    let any = false
    for (const m of this.members) {
      if (m.handler === undefined || !m.handler.hasWork()) continue
      any = true
      this.handleReady(m, m.handler)
    }
    return any
  }

  /** Runs the member's handler over one Ready, doing each write it yields on the member's disk. */
  private handleReady(m: Member, handler: ReadyHandler): void {
    m.confStates.clear()
    try {
      for (const write of handler.handleReady()) this.write(m, write)
      if (m.leaderCheck) this.onLeader(m)
    } catch (e) {
      if (!(e instanceof Halt)) throw e
    }
  }

  /** Sends a Ready's messages; the handler says whether they leave before its write. */
  private sendFrom(m: Member, messages: ReadonlyArray<Message>, beforeWrite: boolean): void {
    if (!beforeWrite) this.maybeCrash(m, 0.003)
    for (const msg of messages) this.send(msg)
    if (beforeWrite) {
      this.stats.earlySends++
      // A crash right after loses the Ready's entries and hard state on this member.
      this.maybeCrash(m, 0.01)
    }
  }

  /** Does one write durably on the member's disk and checks Log Matching on every new entry. */
  private write(m: Member, write: DurableWrite): void {
    if (write.kind === "snapshot") return this.installSnapshot(m, write.snapshot)
    m.disk.append(write.entries)
    if (write.hardState !== undefined) m.disk.setHardState(write.hardState)
    for (const e of write.entries) {
      const t = m.disk.term(Index(e.index - 1))
      const prevTerm = typeof t === "string" ? undefined : t
      const key = `${e.index}/${e.term}`
      const seen = this.entryIds.get(key)
      if (seen === undefined) {
        this.entryIds.set(key, { prevTerm, content: contentKey(e) })
        continue
      }
      if (seen.content !== contentKey(e)) this.fail(`Log Matching: entry ${key} content differs on ${m.id}`)
      if (seen.prevTerm === undefined) seen.prevTerm = prevTerm
      else if (prevTerm !== undefined && prevTerm !== seen.prevTerm) {
        this.fail(`Log Matching: entry ${key} follows term ${prevTerm} on ${m.id}, term ${seen.prevTerm} elsewhere`)
      }
    }
    if (m.leaderCheck && write.entries.length > 0) this.onLeader(m)
  }

  /** Saves a snapshot from the leader on the member's disk and restarts its state machine from it. */
  private installSnapshot(m: Member, snapshot: Snapshot): void {
    const err = m.disk.applySnapshot(snapshot)
    if (err !== undefined) this.fail(`member ${m.id} applySnapshot: ${err}`)
    const { index, term, confState } = snapshot.metadata
    if (index > this.committedMax) this.fail(`snapshot at ${index} beyond anything applied (${this.committedMax})`)
    const want = this.committed.get(index)
    if (want !== undefined && want.term !== term) this.fail(`snapshot ${term}/${index} contradicts committed ${want.term}/${index}`)
    m.applied = index
    m.confState = confState
  }

  /** Election Safety and Leader Completeness, once a member that became leader has written its Ready. */
  private onLeader(m: Member): void {
    m.leaderCheck = false
    const node = m.node!
    const term = node.status().hardState.term
    const prev = this.leaderOfTerm.get(term)
    if (prev !== undefined && prev !== m.id) this.fail(`Election Safety: ${prev} and ${m.id} both lead term ${term}`)
    if (prev === undefined) this.stats.leaders++
    this.leaderOfTerm.set(term, m.id)
    this.stats.maxTerm = Math.max(this.stats.maxTerm, term)
    const first = m.disk.firstIndex()
    if (m.disk.lastIndex() < this.committedMax) {
      this.fail(`Leader Completeness: leader ${m.id} of term ${term} ends at ${m.disk.lastIndex()} < ${this.committedMax}`)
    }
    for (let i = first; i <= this.committedMax; i++) {
      const want = this.committed.get(i)
      const got = m.disk.entries(Index(i), Index(i + 1), Number.POSITIVE_INFINITY)
      if (want === undefined || typeof got === "string") continue
      const e = got[0]!
      if (e.term !== want.term || contentKey(e) !== want.content) {
        this.fail(`Leader Completeness: leader ${m.id} of term ${term} has ${e.term}/${i}, committed ${want.term}/${i}`)
      }
    }
  }

  /**
   * Linearizable reads: a read index must cover every entry committed before the request was
   * made (Raft thesis §6.4), here approximated from below by everything applied anywhere when
   * it was made (`floor`). "NoLeader" answers carry no index.
   */
  private onReadIndex(index: number | "NoLeader", floor: number): void {
    if (index === "NoLeader") return
    if (index < floor) this.fail(`ReadIndex answered with ${index}, but ${floor} was committed before it was asked`)
    this.stats.readStates++
  }

  /**
   * Applies committed entries to the member's state machine (the handler has applied their
   * ConfChanges to the core). A member that applies its own removal shuts down.
   */
  private apply(m: Member, entries: ReadonlyArray<Entry>): void {
    this.maybeCrash(m, 0.003)
    for (const e of entries) {
      if (e.index !== m.applied + 1) this.fail(`member ${m.id} applies ${e.index} after ${m.applied}`)
      const want = this.committed.get(e.index)
      const content = contentKey(e)
      if (want === undefined) {
        this.committed.set(e.index, { term: e.term, content })
        this.committedMax = Math.max(this.committedMax, e.index)
      } else if (want.term !== e.term || want.content !== content) {
        this.fail(`State Machine Safety: member ${m.id} applies ${e.term}/${e.index}, others applied ${want.term}/${e.index}`)
      }
      m.applied = e.index
      if (e.type !== "ConfChange") continue
      const cc = decodeConfChange(e.data)
      const confState = m.confStates.get(e.index)
      if (confState === undefined) this.fail(`member ${m.id} applies ConfChange ${e.index} the core did not apply`)
      m.confState = confState
      if (e.index > this.committedConfIndex) {
        this.committedConfIndex = e.index
        this.committedConf = m.confState
        this.stats.confChanges++
      }
      const selfRemoved = cc.nodeId === m.id && cc.type === "RemoveNode"
      if (selfRemoved && !this.committedConf.voters.includes(m.id) && !this.committedConf.learners.includes(m.id)) {
        m.node = undefined
        m.handler = undefined
        m.removed = true
        this.restartReadded()
        throw new Halt()
      }
    }
    this.restartReadded()
  }

  /** Restarts removed members that the committed configuration holds again. */
  private restartReadded(): void {
    for (const r of this.members) {
      if (r.removed && (this.committedConf.learners.includes(r.id) || this.committedConf.voters.includes(r.id))) {
        r.removed = false
        r.restartAt = this.now + 1
      }
    }
  }

  /** Puts a message on the network: lost, duplicated or delayed at random while faults run. */
  private send(msg: Message): void {
    if (!this.connected(msg.from, msg.to)) {
      if (this.rng.chance(0.5)) this.member(msg.from).node?.reportUnreachable(msg.to)
      if (msg.type === "MsgSnap") this.member(msg.from).node?.reportSnapshot(msg.to, "Failure")
      return
    }
    if (msg.type === "MsgSnap") this.stats.snapshotsSent++
    const copies = this.faults ? (this.rng.chance(0.05) ? 0 : this.rng.chance(0.03) ? 2 : 1) : 1
    // A transport notices a snapshot it failed to stream.
    if (copies === 0 && msg.type === "MsgSnap") this.member(msg.from).node?.reportSnapshot(msg.to, "Failure")
    for (let i = 0; i < copies; i++) {
      const delay = this.faults ? this.rng.int(3) : 0
      this.network.push({ m: msg, deliverAt: this.now + delay })
    }
  }

  private member(id: MemberId): Member {
    return this.members[Number(id) - 1]!
  }

  /** Delivers every due message, in random order; returns whether any was delivered. */
  private deliverDue(): boolean {
    const due = this.network.filter((f) => f.deliverAt <= this.now)
    if (due.length === 0) return false
    this.network = this.network.filter((f) => f.deliverAt > this.now)
    for (const { m } of this.rng.shuffle(due)) {
      const to = this.member(m.to)
      const ok = to.node !== undefined && this.connected(m.from, m.to)
      if (m.type === "MsgSnap") this.member(m.from).node?.reportSnapshot(m.to, ok ? "Finish" : "Failure")
      if (!ok) continue
      this.stats.delivered++
      const err = to.node!.step(m)
      if (err === "InvalidMessage" || err === "StepLocalMsg") this.fail(`member ${m.to} refused ${m.type} from ${m.from}: ${err}`)
    }
    return true
  }

  /**
   * After the quiet period every member of the final configuration runs, agrees on the applied
   * log, and has applied everything ever applied anywhere.
   */
  private checkConvergence(): void {
    const conf = this.committedConf
    const inConf = this.members.filter((m) => conf.voters.includes(m.id) || conf.learners.includes(m.id))
    for (const m of inConf) {
      if (m.node === undefined) this.fail(`member ${m.id} is not running after the quiet period`)
      if (m.applied < this.committedMax) {
        this.fail(`member ${m.id} applied ${m.applied} < ${this.committedMax} after the quiet period (committed entries lost?)`)
      }
    }
    const leaders = inConf.filter((m) => m.node!.status().softState.raftState === "StateLeader")
    if (leaders.length !== 1) this.fail(`${leaders.length} leaders after the quiet period`)
  }
}
