/**
 * The raft shell's Ready/Advance loop around the pure core (etcd server/etcdserver/raft.go and
 * raft's node.go, in one place).
 *
 * Inputs (ticks, proposals, ReadIndex requests, peer messages) go straight into the RawNode; any
 * of them schedules the loop, which drains Readys one at a time:
 *
 * 1. persist the Ready's hard state and entries through `persist` (the wal service; resolves
 *    after fdatasync), then record them in MemoryStorage; a Ready whose only change is the
 *    commit index (no MustSync) is not written at once: that hard state rides on the next
 *    persist, or is written at the next tick or before a snapshot (see `pendingHardState`);
 * 2. send its messages (never before 1: votes and append acknowledgements depend on it), except
 *    a leader's replication messages, which leave before 1 (Raft thesis §10.2.1; the core
 *    counts the leader's own entries only after 5);
 * 3. answer ReadIndex rounds whose read state arrived;
 * 4. hand committed entries to `apply` (the mvcc service), applying ConfChange entries to the
 *    core on the way;
 * 5. advance.
 *
 * Inputs that arrive while a Ready is being persisted are stepped into the core at once (the
 * RawNode allows that, as etcd's node.run does) and batched into the next Ready, which is what
 * amortises one fsync over many proposals.
 */
import type { Index, MemberId } from "../../shared/ids.ts"
import type { ConfChange, Entry, HardState } from "../../shared/raft-types.ts"
import { decodeConfChange } from "./core/conf-change.ts"
import type { RawNode } from "./core/raw-node.ts"
import { sendableBeforePersist } from "./core/raw-node.ts"
import type { MemoryStorage } from "./core/storage.ts"
import type { Message, ProposalError, Snapshot, SoftState } from "./core/types.ts"

/** What the driver needs from the outside world. */
export interface DriverIo {
  /**
   * Persists hard state (if any) and entries; resolves once durable (retrying as needed).
   * `traceparent` names the trace of one proposal in the batch ("" for none).
   */
  readonly persist: (hardState: HardState | undefined, entries: ReadonlyArray<Entry>, traceparent: string) => Promise<void>
  /** Sends messages to peers (at-most-once). */
  readonly send: (messages: ReadonlyArray<Message>) => void
  /** Hands committed entries, in index order, to the state machine; `commitIndex` is the last one's index. */
  readonly apply: (entries: ReadonlyArray<Entry>, commitIndex: Index) => void
  /**
   * Persists a snapshot received from the leader (its state machine part is installed already,
   * see services/raft/main.ts) and restores from it; resolves once durable.
   */
  readonly persistSnapshot: (snapshot: Snapshot) => Promise<void>
  /** Told of leader/role changes. */
  readonly onSoftState?: (state: SoftState) => void
}

interface ReadRound {
  readonly ctx: Uint8Array
  readonly waiters: Array<(index: number | "NoLeader") => void>
}

/**
 * Drives one RawNode. Invariant: at most one Ready is in flight (`running`), and Readys are
 * handled strictly in the order the core produced them.
 */
export class RaftDriver {
  private running = false
  private readCounter = 0
  /** Reads waiting for the next round. */
  private pendingReads: Array<(index: number | "NoLeader") => void> = []
  /** Rounds issued to the core, oldest first, awaiting their read state (which answers its round and every older one). */
  private readonly rounds = new Map<string, ReadRound>()
  private appliedIndex = 0
  /** Trace of the first proposal since the last persist, carried to the wal service. */
  private batchTrace = ""
  /**
   * The newest hard state whose only change was the commit index, not yet handed to `persist`.
   * etcd writes such a HardState without fsync (raft's MustSync); here it costs a wal round trip
   * (two NATS messages) per member per commit, so it waits for the next persist with entries,
   * the next tick (`flushHardState`, at most one heartbeat interval later) or a snapshot. A
   * commit index lost in a crash is learned again from the leader; the log never holds a
   * snapshot beyond its hard state's commit (the core refuses to load that), because a Ready
   * with a snapshot persists its hard state at once and `flushHardState` precedes the
   * snapshot's wal record.
   */
  private pendingHardState: HardState | undefined
  /** The last persist that carried a hard state (settles when it is written). */
  private hardStateWrite: Promise<void> = Promise.resolve()
  private readonly node: RawNode
  private readonly storage: MemoryStorage
  private readonly io: DriverIo
  private readonly onFatal: (e: unknown) => void

  constructor(node: RawNode, storage: MemoryStorage, io: DriverIo, onFatal: (e: unknown) => void) {
    this.node = node
    this.storage = storage
    this.io = io
    this.onFatal = onFatal
  }

  /** Advances the core's logical clock by one tick; writes a pending commit-only hard state. */
  tick(): void {
    this.node.tick()
    if (this.pendingHardState !== undefined) this.flushHardState().catch(this.onFatal)
    this.kick()
  }

  /**
   * Writes the pending commit-only hard state, if any; resolves once every hard state handed
   * to `persist` so far is written (the raft shell awaits it before recording a snapshot in
   * the WAL). Rejects as `persist`.
   */
  flushHardState(): Promise<void> {
    const hardState = this.pendingHardState
    if (hardState !== undefined) {
      this.pendingHardState = undefined
      this.hardStateWrite = this.io.persist(hardState, [], "")
    }
    return this.hardStateWrite
  }

  /** Starts an election (used at startup by a member that is the only voter, as etcd does). */
  campaign(): void {
    this.node.campaign()
    this.kick()
  }

  /** Proposes entry data; "ProposalDropped" when there is no leader to take it. */
  propose(data: Uint8Array, traceparent = ""): ProposalError | undefined {
    const err = this.node.propose(data)
    if (err === undefined && this.batchTrace === "") this.batchTrace = traceparent
    this.kick()
    return err
  }

  /** Proposes one membership change; "ProposalDropped" when there is no leader to take it. */
  proposeConfChange(cc: ConfChange): ProposalError | undefined {
    const err = this.node.proposeConfChange(cc)
    this.kick()
    return err
  }

  /** Asks the core to hand leadership to `target` (leader only; ignored elsewhere). */
  transferLeader(target: MemberId): void {
    this.node.transferLeader(target)
    this.kick()
  }

  /** Steps a message from a peer; returns the core's refusal, if any. */
  step(message: Message): string | undefined {
    const err = this.node.step(message)
    this.kick()
    return err
  }

  /**
   * Resolves with the index a linearizable read must wait for (ReadIndex), or "NoLeader" when
   * the member knows no leader. Concurrent calls share one ReadIndex round (etcd batches its
   * linearizable reads the same way).
   */
  readIndex(): Promise<number | "NoLeader"> {
    if (this.leader() === 0n) return Promise.resolve("NoLeader")
    return new Promise((resolve) => {
      this.pendingReads.push(resolve)
      this.kick()
    })
  }

  /** The known leader, 0n when none. */
  leader(): MemberId {
    return this.node.status().softState.lead
  }

  /** The highest index handed to `apply`. */
  applied(): number {
    return this.appliedIndex
  }

  private startReadRound(): void {
    if (this.pendingReads.length === 0) return
    const ctx = new TextEncoder().encode(`r${++this.readCounter}`)
    this.rounds.set(Buffer.from(ctx).toString("latin1"), { ctx, waiters: this.pendingReads })
    this.pendingReads = []
    this.node.readIndex(ctx)
  }

  private kick(): void {
    if (this.running) return
    this.running = true
    queueMicrotask(() => {
      this.loop().catch(this.onFatal)
    })
  }

  private async loop(): Promise<void> {
    try {
      this.startReadRound()
      while (this.node.hasReady()) {
        const rd = this.node.ready()
        if (rd.softState !== undefined) {
          this.io.onSoftState?.(rd.softState)
          if (rd.softState.lead === 0n) this.failRounds()
        }
        if (rd.snapshot !== undefined) {
          await this.io.persistSnapshot(rd.snapshot)
          this.storage.applySnapshot(rd.snapshot)
          this.appliedIndex = Math.max(this.appliedIndex, rd.snapshot.metadata.index)
        }
        // A leader replicates while it writes (thesis §10.2.1): its MsgApp/MsgHeartbeat/MsgSnap
        // leave now; it counts its own entries only once persisted (core advance).
        const state = this.node.status().softState.raftState
        const early = state === "StateLeader" ? rd.messages.filter((m) => sendableBeforePersist(m, state)) : []
        if (early.length > 0) this.io.send(early)
        if (rd.entries.length > 0 || rd.mustSync || rd.snapshot !== undefined) {
          const trace = this.batchTrace
          this.batchTrace = ""
          // A hard state left pending is older than this Ready's (which, when present, has
          // every field of the newest), so one of the two is written.
          const hardState = rd.hardState ?? this.pendingHardState
          this.pendingHardState = undefined
          const written = this.io.persist(hardState, rd.entries, trace)
          if (hardState !== undefined) this.hardStateWrite = written
          await written
          this.storage.append(rd.entries)
          if (rd.hardState !== undefined) this.storage.setHardState(rd.hardState)
        } else if (rd.hardState !== undefined) {
          // Only the commit index moved: kept for later (see pendingHardState).
          this.pendingHardState = rd.hardState
          this.storage.setHardState(rd.hardState)
        }
        const late = early.length === 0 ? rd.messages : rd.messages.filter((m) => !early.includes(m))
        if (late.length > 0) this.io.send(late)
        for (const rs of rd.readStates) {
          const key = Buffer.from(rs.requestCtx).toString("latin1")
          if (!this.rounds.has(key)) continue
          // Rounds started before this one are answered with its index too: the leader
          // confirmed its leadership after they began, so the index is as good for them (and a
          // round whose message was lost does not wait, or stay in `rounds`, for ever).
          for (const [k, round] of this.rounds) {
            this.rounds.delete(k)
            for (const w of round.waiters) w(rs.index)
            if (k === key) break
          }
        }
        if (rd.committedEntries.length > 0) {
          for (const e of rd.committedEntries) {
            if (e.type === "ConfChange") this.node.applyConfChange(decodeConfChange(e.data))
          }
          const last = rd.committedEntries[rd.committedEntries.length - 1]!
          this.appliedIndex = last.index
          // The frame claims no commit beyond its own entries: the commit index may have moved on
          // during the persist, but those entries come in the next Ready, and a claim beyond them
          // would send the state machine fetching what is already on its way.
          this.io.apply(rd.committedEntries, last.index)
        }
        this.node.advance(rd)
        this.startReadRound()
      }
    } finally {
      this.running = false
    }
    // Inputs that arrived during the last await may have produced a Ready after the check.
    if (this.node.hasReady() || this.pendingReads.length > 0) this.kick()
  }

  private failRounds(): void {
    for (const round of this.rounds.values()) for (const w of round.waiters) w("NoLeader")
    this.rounds.clear()
    for (const w of this.pendingReads) w("NoLeader")
    this.pendingReads = []
  }
}
