/**
 * Raft's persistence through its member's wal service (../wal/main.ts): loading the log at
 * start (`wal.load`, page by page), appending each Ready's hard state and entries
 * (`wal.append`), and saving raft snapshots (`wal.snapshot`). It is the only raft file that
 * calls the wal service; it holds no log (the core's MemoryStorage does).
 *
 * A call that gets no reply (the wal service restarting, a lost frame) is retried, each retry
 * logged, for at most {@link walRetryBoundMs}; then the process exits (fail-stop, as etcd
 * panics when its WAL cannot be written) and the supervisor starts it again. The ordering
 * duties stay with the callers: the driver sends no message that depends on an append before
 * the append resolves (persist before send), and the snapshotter flushes the hard state before
 * it records a snapshot (./snapshotter.ts).
 */
import * as Effect from "effect/Effect"
import { walAppend, walLoad, walSnapshot, subjectOf } from "../../shared/endpoints.ts"
import type { Entry, HardState } from "../../shared/raft-types.ts"
import type { WalLoadReply } from "../../shared/schema.ts"
import { runDetached } from "../runtime/process.ts"
import { retryPromise } from "../runtime/retry.ts"
import { callEndpoint, isUnanswered, okOf } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import type { Snapshot } from "./core/types.ts"
import type { ProposalSpans } from "./proposal-spans.ts"
import {
  walAppendRetryAfterMs,
  walAppendTimeoutMs,
  walGiveUpExitDelayMs,
  walLoadTimeoutMs,
  walRetryInitialMs,
  walRetryMaxMs,
  walSnapshotTimeoutMs
} from "./timeouts.ts"
import { walRetryBoundMs } from "./timeouts.ts"

/** The failure at {@link walRetryBoundMs}: the wal service stayed silent. */
const walSilent: unique symbol = Symbol("walSilent")

/**
 * Calls the wal service (`what` names the call in the log): a call that got no reply
 * (rpc.ts isUnanswered: the wal service is restarting or a frame was lost) is retried,
 * {@link walRetryInitialMs} doubling to {@link walRetryMaxMs} apart, each retry logged at Warn;
 * a reply that is an error frame or malformed is thrown at once. When the wal service stays
 * silent for {@link walRetryBoundMs}, the process exits (the returned promise never settles).
 */
const callWal = <A>(what: string, call: () => Promise<A>): Promise<A> =>
  // The first attempt runs as a plain call (retryPromise's): this is the path of every persisted Ready.
  retryPromise({
    name: `${what} (no reply from the wal service)`,
    deadlineMs: walRetryBoundMs,
    backoff: { initialMs: walRetryInitialMs, factor: 2, maxMs: walRetryMaxMs },
    retryable: isUnanswered,
    atBound: (): typeof walSilent => walSilent,
    logLevel: "Warn"
  }, call).catch((e: unknown) => {
    // A reply that is an error frame or malformed is thrown as itself, as on the first attempt.
    if (e !== walSilent) throw e
    runDetached(Effect.logError(`${what}: the wal service did not answer for ${walRetryBoundMs} ms; exiting to start again`))
    setTimeout(() => process.exit(1), walGiveUpExitDelayMs)
    return new Promise<never>(() => {})
  })

/** What the wal service holds, as {@link WalClient.load} returns it. */
export interface LoadedLog {
  /** The last hard state saved (term 0 when none). */
  readonly hardState: HardState
  /** The entries after `snapshot`, in index order. */
  readonly entries: ReadonlyArray<Entry>
  /** The newest raft snapshot the log starts from, if any. */
  readonly snapshot: (typeof WalLoadReply.Type)["snapshot"]
}

/** The wal service of one member, as raft calls it. */
export class WalClient {
  /** Appends to the wal service are numbered from 1 for this process run (see WalAppendBody). */
  private seq = 0
  private readonly rpc: RpcClient
  /** This process run's token: the `writer` of its appends. */
  private readonly instance: string
  private readonly spans: ProposalSpans
  private readonly appendSubject: string
  private readonly loadSubject: string
  private readonly snapshotSubject: string

  constructor(rpc: RpcClient, instance: string, at: { readonly cluster: string; readonly member: string }, spans: ProposalSpans) {
    this.rpc = rpc
    this.instance = instance
    this.spans = spans
    this.appendSubject = subjectOf(walAppend, at)
    this.loadSubject = subjectOf(walLoad, at)
    this.snapshotSubject = subjectOf(walSnapshot, at)
  }

  /** Loads the whole log (pages of at most 4 MiB of entries), retrying until the wal service answers. */
  async load(): Promise<LoadedLog> {
    let from = 1
    const entries: Entry[] = []
    for (;;) {
      const page = await callWal("wal.load", () => callEndpoint(this.rpc, walLoad, this.loadSubject, { fromIndex: from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: walLoadTimeoutMs }))
      for (const e of page.entries) entries.push(e)
      if (!page.more || page.entries.length === 0) return { hardState: page.hardState, entries, snapshot: page.snapshot }
      from = page.entries[page.entries.length - 1]!.index + 1
    }
  }

  /**
   * Persists `hardState` (if any) and `entries`; resolves once the wal service replied, i.e.
   * after its fdatasync (the driver's `persist`). `traceparent` names the trace of one proposal
   * in the batch ("" for none). Rejects with the error data of an error reply.
   */
  async append(hardState: HardState | undefined, entries: ReadonlyArray<Entry>, traceparent: string): Promise<void> {
    const body = { writer: this.instance, seq: ++this.seq, ...(hardState === undefined ? {} : { hardState }), entries }
    const spans = this.spans.startAppend(entries, traceparent)
    okOf(await callWal("wal.append", () => callEndpoint(this.rpc, walAppend, this.appendSubject, body, { timeoutMs: walAppendTimeoutMs, retryAfterMs: walAppendRetryAfterMs, traceparent: spans.walTraceparent })))
    this.spans.endAppend(spans)
  }

  /**
   * Saves a snapshot received from the leader (snapshot file, WAL marker, sync, release; in
   * the wal service), retried as every wal call; resolves once durable.
   */
  async saveReceivedSnapshot(snapshot: Snapshot): Promise<void> {
    okOf(await callWal("wal.snapshot", () => callEndpoint(this.rpc, walSnapshot, this.snapshotSubject, { snapshot }, { timeoutMs: walSnapshotTimeoutMs })))
  }

  /**
   * Saves a snapshot this member took, in one call without retry ({@link walSnapshotTimeoutMs}): a failure fails that
   * snapshot attempt, which the snapshotter makes again later. Resolves once durable; rejects
   * with RequestTimeout / Stopped (no reply) or the error of an error reply.
   */
  async saveTakenSnapshot(snapshot: Snapshot): Promise<void> {
    okOf(await callEndpoint(this.rpc, walSnapshot, this.snapshotSubject, { snapshot }, { timeoutMs: walSnapshotTimeoutMs }))
  }
}
