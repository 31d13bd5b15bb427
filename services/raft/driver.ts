/**
 * The raft service's Ready/Advance loop (etcd server/etcdserver/raft.go's raftNode.start, with
 * raft's node.go run loop): {@link RaftDriver} feeds inputs (ticks, proposals, ReadIndex
 * requests, peer messages) to ./ready-handler.ts's {@link ReadyHandler}, which decides the order
 * of everything in a Ready, and performs each durable write the handler yields through the wal
 * service (resolving after fdatasync) before resuming it. Inputs that arrive during a write are
 * stepped into the core at once and batched into the next Ready.
 */
import type { MemberId } from "../../shared/ids.ts"
import type { ConfChange, Entry, HardState } from "../../shared/raft-types.ts"
import type { RawNode } from "./core/raw-node.ts"
import type { MemoryStorage } from "./core/storage.ts"
import type { Message, ProposalError, Snapshot } from "./core/types.ts"
import { type DurableWrite, type ReadIndexAnswer, ReadyHandler, type ReadyIo } from "./ready-handler.ts"

/** What the service's driver needs from the outside world: a Ready's side effects and its writes. */
export interface DriverIo extends ReadyIo {
  /** Performs a `log` write; resolves once durable (retrying as needed). */
  readonly persist: (hardState: HardState | undefined, entries: ReadonlyArray<Entry>, traceparent: string) => Promise<void>
  /** Performs a `snapshot` write; resolves once durable. */
  readonly persistSnapshot: (snapshot: Snapshot) => Promise<void>
}

/**
 * Drives one RawNode for the raft service: any input schedules the loop, which runs
 * {@link ReadyHandler.handleReady} until the core has nothing to do, awaiting each yielded write
 * through `persist` / `persistSnapshot`. Invariant: at most one Ready is in flight (`running`).
 */
export class RaftDriver {
  private running = false
  /** The last write that carried a hard state (settles when it is durable). */
  private hardStateWrite: Promise<void> = Promise.resolve()
  private readonly handler: ReadyHandler
  private readonly io: DriverIo
  private readonly onFatal: (e: unknown) => void

  constructor(node: RawNode, storage: MemoryStorage, io: DriverIo, onFatal: (e: unknown) => void) {
    this.handler = new ReadyHandler(node, storage, io)
    this.io = io
    this.onFatal = onFatal
  }

  /** Advances the core's logical clock by one tick; writes a pending commit-only hard state. */
  tick(): void {
    const write = this.handler.tick()
    if (write !== undefined) this.perform(write).catch(this.onFatal)
    this.kick()
  }

  /**
   * Writes the pending commit-only hard state, if any; resolves once every hard state handed
   * to `persist` so far is written (the raft shell awaits it before recording a snapshot in
   * the WAL). Rejects as `persist`.
   */
  flushHardState(): Promise<void> {
    const write = this.handler.takePendingHardState()
    // A failure reaches the caller through the returned promise, which is this write's.
    if (write !== undefined) this.perform(write).catch(() => undefined)
    return this.hardStateWrite
  }

  /** Starts an election (used at startup by a member that is the only voter, as etcd does). */
  campaign(): void {
    this.handler.node.campaign()
    this.kick()
  }

  /** Proposes entry data; "ProposalDropped" when there is no leader to take it. */
  propose(data: Uint8Array, traceparent = ""): ProposalError | undefined {
    const err = this.handler.propose(data, traceparent)
    this.kick()
    return err
  }

  /** Proposes one membership change; "ProposalDropped" when there is no leader to take it. */
  proposeConfChange(cc: ConfChange): ProposalError | undefined {
    const err = this.handler.node.proposeConfChange(cc)
    this.kick()
    return err
  }

  /** Asks the core to hand leadership to `target` (leader only; ignored elsewhere). */
  transferLeader(target: MemberId): void {
    this.handler.node.transferLeader(target)
    this.kick()
  }

  /** Steps a message from a peer; returns the core's refusal, if any. */
  step(message: Message): string | undefined {
    const err = this.handler.node.step(message)
    this.kick()
    return err
  }

  /**
   * Resolves with the index a linearizable read must wait for (ReadIndex), or "NoLeader" when
   * the member knows no leader (see {@link ReadyHandler.readIndex}).
   */
  readIndex(): Promise<ReadIndexAnswer> {
    return new Promise((resolve) => {
      this.handler.readIndex(resolve)
      this.kick()
    })
  }

  /** The known leader, 0n when none. */
  leader(): MemberId {
    return this.handler.leader()
  }

  /** The highest index handed to `apply`. */
  applied(): number {
    return this.handler.applied()
  }

  /** Performs one durable write; a write with a hard state is remembered for `flushHardState`. */
  private perform(write: DurableWrite): Promise<void> {
    if (write.kind === "snapshot") return this.io.persistSnapshot(write.snapshot)
    const written = this.io.persist(write.hardState, write.entries, write.traceparent)
    if (write.hardState !== undefined) this.hardStateWrite = written
    return written
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
      while (this.handler.hasWork()) {
        const steps = this.handler.handleReady()
        for (let next = steps.next(); next.done !== true; next = steps.next()) await this.perform(next.value)
      }
    } finally {
      this.running = false
    }
    // Inputs that arrived during the last await may have produced a Ready after the check.
    if (this.handler.hasWork()) this.kick()
  }
}
