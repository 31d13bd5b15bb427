/**
 * The raft shell's handling of one Ready around the pure core (etcd server/etcdserver/raft.go and
 * raft's node.go), synchronous: {@link ReadyHandler} steps proposals and reads into the RawNode
 * and handles one Ready at a time in the production order, asking for each durable write by
 * yielding it. The raft service runs it under ./driver.ts's async loop, which does the writes
 * through the wal service; the deterministic simulation (test/sim) runs the same handler with
 * writes to a fake disk, so the order the simulation checks is the order that runs.
 *
 * One Ready, in order:
 * 1. report a soft state change (a lost leader fails the ReadIndex rounds in flight);
 * 2. a snapshot from the leader: yield it for persisting (its state machine part is installed
 *    already, see services/raft/snapshot-transfer.ts), then restore the in-memory log from it;
 * 3. a leader's replication messages (MsgApp, MsgHeartbeat, MsgSnap) leave before its own write
 *    (Raft thesis §10.2.1; the core counts the leader's own entries only after 7);
 * 4. yield the hard state and entries for persisting, then record them in MemoryStorage; a Ready
 *    whose only change is the commit index (no MustSync) is not written at once: that hard state
 *    rides on the next write, or is written at the next tick or before a snapshot (see
 *    `pendingHardState`);
 * 5. send the other messages (never before 4: votes and append acknowledgements depend on it);
 * 6. answer ReadIndex rounds whose read state arrived;
 * 7. hand committed entries to `apply` (the mvcc service), applying ConfChange entries to the
 *    core on the way; then advance.
 *
 * Inputs that arrive while a write is in flight are stepped into the core at once (the RawNode
 * allows that, as etcd's node.run does) and batched into the next Ready, which is what amortises
 * one fsync over many proposals.
 */
import { randomBytes } from "node:crypto"
import type { Index, MemberId } from "../../shared/ids.ts"
import type { ConfState, Entry, HardState } from "../../shared/raft-types.ts"
import { decodeConfChange } from "./core/conf-change.ts"
import type { RawNode } from "./core/raw-node.ts"
import { sendableBeforePersist } from "./core/raw-node.ts"
import type { MemoryStorage } from "./core/storage.ts"
import type { Message, ProposalError, Snapshot, SoftState } from "./core/types.ts"

/**
 * A durable write that one Ready (or a tick) needs before the handler may go on:
 * - `snapshot`: a snapshot received from the leader, to be saved and recorded in the WAL;
 * - `log`: a hard state (if any) and entries, to be appended to the WAL and synced.
 *   `traceparent` names the trace of one proposal in the batch ("" for none).
 */
export type DurableWrite =
  | { readonly kind: "snapshot"; readonly snapshot: Snapshot }
  | {
    readonly kind: "log"
    readonly hardState: HardState | undefined
    readonly entries: ReadonlyArray<Entry>
    readonly traceparent: string
  }

/** The synchronous side effects of handling a Ready. */
export interface ReadyIo {
  /**
   * Sends messages to peers (at-most-once). `beforeWrite` is true for a leader's replication
   * messages sent before the Ready's own write (step 3), false for the rest (step 5).
   */
  readonly send: (messages: ReadonlyArray<Message>, beforeWrite: boolean) => void
  /** Hands committed entries, in index order, to the state machine; `commitIndex` is the last one's index. */
  readonly apply: (entries: ReadonlyArray<Entry>, commitIndex: Index) => void
  /** Told of leader/role changes. */
  readonly onSoftState?: (state: SoftState) => void
  /** Told of the configuration after each committed ConfChange entry (by its index) is applied to the core. */
  readonly onConfState?: (index: Index, confState: ConfState) => void
}

/** A ReadIndex answer: the index a linearizable read must wait for, or "NoLeader". */
export type ReadIndexAnswer = number | "NoLeader"

interface ReadRound {
  readonly ctx: Uint8Array
  readonly waiters: Array<(index: ReadIndexAnswer) => void>
}

/**
 * Handles one RawNode's Readys synchronously (steps 1–7 above). Every durable write is yielded
 * by {@link handleReady} and must be done before the generator is resumed; abandoning the
 * generator at a yield, or an exception thrown by an `io` call, stands for a crash there.
 *
 * Invariant: Readys are handled strictly in the order the core produced them, one at a time
 * (the caller runs one `handleReady` to completion before starting the next).
 */
export class ReadyHandler {
  private readCounter = 0
  /** Names this handler's ReadIndex rounds apart from those of earlier runs of the member (see the constructor). */
  private readonly readCtxPrefix: string
  /** Reads waiting for the next round. */
  private pendingReads: Array<(index: ReadIndexAnswer) => void> = []
  /** Rounds issued to the core, oldest first, awaiting their read state (which answers its round and every older one). */
  private readonly rounds = new Map<string, ReadRound>()
  private appliedIndex = 0
  /** Trace of the first proposal since the last write, carried to the wal service. */
  private batchTrace = ""
  /**
   * The newest hard state whose only change was the commit index, not yet written. etcd writes
   * such a HardState without fsync (raft's MustSync); here it costs a wal round trip (two NATS
   * messages) per member per commit, so it waits for the next write with entries, the next tick
   * (at most one heartbeat interval later) or a snapshot ({@link takePendingHardState}). A
   * commit index lost in a crash is learned again from the leader; the log never holds a
   * snapshot beyond its hard state's commit (the core refuses to load that), because a Ready
   * with a snapshot writes its hard state at once and the snapshotter writes the pending one
   * before the snapshot's wal record.
   */
  private pendingHardState: HardState | undefined
  /** The core; inputs other than proposals and reads (step, tick, campaign, ...) go straight to it. */
  readonly node: RawNode
  private readonly storage: MemoryStorage
  private readonly io: ReadyIo

  /**
   * `readCtxPrefix` starts the context of every ReadIndex round this handler issues; it must
   * differ from every earlier run of the member (default: 8 random bytes in hex). A read state
   * can arrive long after its request, from a leader answering a round that an earlier run of
   * the member issued before a restart: with contexts counted from 1 in every run, that stale
   * index would answer the new run's round of the same number, and a linearizable read would
   * miss writes committed before it was asked. etcd avoids the same by naming its ReadIndex
   * requests with ids from pkg/idutil's generator, whose ids start from the member's start time.
   */
  constructor(node: RawNode, storage: MemoryStorage, io: ReadyIo, readCtxPrefix: string = randomBytes(8).toString("hex")) {
    this.node = node
    this.storage = storage
    this.io = io
    this.readCtxPrefix = readCtxPrefix
  }

  /** Advances the core's logical clock by one tick; returns the pending commit-only hard state to write, if any. */
  tick(): DurableWrite | undefined {
    this.node.tick()
    return this.takePendingHardState()
  }

  /** The pending commit-only hard state as a write (and forgets it); undefined when there is none. */
  takePendingHardState(): DurableWrite | undefined {
    const hardState = this.pendingHardState
    if (hardState === undefined) return undefined
    this.pendingHardState = undefined
    return { kind: "log", hardState, entries: [], traceparent: "" }
  }

  /** Proposes entry data; "ProposalDropped" when there is no leader to take it. */
  propose(data: Uint8Array, traceparent = ""): ProposalError | undefined {
    const err = this.node.propose(data)
    if (err === undefined && this.batchTrace === "") this.batchTrace = traceparent
    return err
  }

  /**
   * Asks for the index a linearizable read must wait for (ReadIndex): `answer` gets it, or
   * "NoLeader" when the member knows no leader or loses it before the round completes.
   * Concurrent requests share one round (etcd batches its linearizable reads the same way).
   */
  readIndex(answer: (index: ReadIndexAnswer) => void): void {
    if (this.leader() === 0n) return answer("NoLeader")
    this.pendingReads.push(answer)
  }

  /** Whether a Ready or a ReadIndex round waits to be handled. */
  hasWork(): boolean {
    return this.node.hasReady() || this.pendingReads.length > 0
  }

  /** The known leader, 0n when none. */
  leader(): MemberId {
    return this.node.status().softState.lead
  }

  /** The highest index handed to `apply`. */
  applied(): number {
    return this.appliedIndex
  }

  /**
   * Starts a ReadIndex round for the waiting reads, then handles one Ready if the core has one
   * (steps 1–7), yielding each durable write.
   */
  *handleReady(): Generator<DurableWrite, void, void> {
    this.startReadRound()
    if (!this.node.hasReady()) return
    const rd = this.node.ready()
    if (rd.softState !== undefined) {
      this.io.onSoftState?.(rd.softState)
      if (rd.softState.lead === 0n) this.failRounds()
    }
    if (rd.snapshot !== undefined) {
      yield { kind: "snapshot", snapshot: rd.snapshot }
      this.storage.applySnapshot(rd.snapshot)
      this.appliedIndex = Math.max(this.appliedIndex, rd.snapshot.metadata.index)
    }
    const state = this.node.status().softState.raftState
    const early = state === "StateLeader" ? rd.messages.filter((m) => sendableBeforePersist(m, state)) : []
    if (early.length > 0) this.io.send(early, true)
    if (rd.entries.length > 0 || rd.mustSync || rd.snapshot !== undefined) {
      const traceparent = this.batchTrace
      this.batchTrace = ""
      // A hard state left pending is older than this Ready's (which, when present, has every
      // field of the newest), so one of the two is written.
      const hardState = rd.hardState ?? this.pendingHardState
      this.pendingHardState = undefined
      yield { kind: "log", hardState, entries: rd.entries, traceparent }
      this.storage.append(rd.entries)
      if (rd.hardState !== undefined) this.storage.setHardState(rd.hardState)
    } else if (rd.hardState !== undefined) {
      // Only the commit index moved: kept for later (see pendingHardState).
      this.pendingHardState = rd.hardState
      this.storage.setHardState(rd.hardState)
    }
    const late = early.length === 0 ? rd.messages : rd.messages.filter((m) => !early.includes(m))
    if (late.length > 0) this.io.send(late, false)
    for (const rs of rd.readStates) this.answerRounds(Buffer.from(rs.requestCtx).toString("latin1"), rs.index)
    if (rd.committedEntries.length > 0) {
      for (const e of rd.committedEntries) {
        if (e.type !== "ConfChange") continue
        const confState = this.node.applyConfChange(decodeConfChange(e.data))
        this.io.onConfState?.(e.index, confState)
      }
      const last = rd.committedEntries[rd.committedEntries.length - 1]!
      this.appliedIndex = last.index
      // The call claims no commit beyond its own entries: the commit index may have moved on
      // during the write, but those entries come in the next Ready, and a claim beyond them
      // would send the state machine fetching what is already on its way.
      this.io.apply(rd.committedEntries, last.index)
    }
    this.node.advance(rd)
  }

  private startReadRound(): void {
    if (this.pendingReads.length === 0) return
    const ctx = new TextEncoder().encode(`${this.readCtxPrefix}:r${++this.readCounter}`)
    this.rounds.set(Buffer.from(ctx).toString("latin1"), { ctx, waiters: this.pendingReads })
    this.pendingReads = []
    this.node.readIndex(ctx)
  }

  /**
   * Answers the round `key` and every older one with `index`: the leader confirmed its
   * leadership after they began, so the index is as good for them (and a round whose message
   * was lost does not wait, or stay in `rounds`, for ever).
   */
  private answerRounds(key: string, index: number): void {
    if (!this.rounds.has(key)) return
    for (const [k, round] of this.rounds) {
      this.rounds.delete(k)
      for (const w of round.waiters) w(index)
      if (k === key) break
    }
  }

  private failRounds(): void {
    for (const round of this.rounds.values()) for (const w of round.waiters) w("NoLeader")
    this.rounds.clear()
    for (const w of this.pendingReads) w("NoLeader")
    this.pendingReads = []
  }
}
