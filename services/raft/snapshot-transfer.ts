/**
 * Snapshots sent between members: a follower's install of a snapshot the leader sent it
 * (MsgSnap), and the leader's watch over the snapshots it sent.
 *
 * A follower given a snapshot by the leader first installs the leader's mvcc state file in its
 * own mvcc service (`mvcc.install`: fetched in chunks over NATS, checksum verified), then steps
 * the MsgSnap into raft, whose Ready saves the snapshot through the wal service and restores
 * from it (the driver's persistSnapshot). Meanwhile heartbeats keep flowing, so the transfer
 * does not trigger elections. One install at a time; a MsgSnap arriving during an install is
 * dropped (the leader retries).
 *
 * Not the snapshots this member takes of itself (./snapshotter.ts).
 */
import * as Effect from "effect/Effect"
import { mvccInstall, subjectOf } from "../../shared/endpoints.ts"
import type { MemberId } from "../../shared/ids.ts"
import { runDetached } from "../runtime/process.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import type { RawNode } from "./core/raw-node.ts"
import type { MemoryStorage } from "./core/storage.ts"
import type { Message } from "./core/types.ts"
import { decodeSnapshotData } from "./membership.ts"
import type { PeerCounters } from "./peers.ts"
import { snapshotInstallTimeoutMs, snapshotSendTimeoutMs } from "./timeouts.ts"
import { describeError } from "../../shared/errors.ts"

/**
 * Invariant: `installing` is true exactly while one mvcc.install call is outstanding.
 */
export class SnapshotTransfer {
  private installing = false
  private readonly rpc: RpcClient
  private readonly installSubject: string
  private readonly storage: MemoryStorage
  private readonly node: RawNode
  /** Steps a message into the driver (`RaftDriver.step`). */
  private readonly step: (m: Message) => string | undefined
  private readonly counters: PeerCounters

  constructor(deps: {
    readonly rpc: RpcClient
    readonly at: { readonly cluster: string; readonly member: string }
    readonly storage: MemoryStorage
    readonly node: RawNode
    readonly step: (m: Message) => string | undefined
    /** `snapshotsInstalled` is counted here. */
    readonly counters: PeerCounters
  }) {
    this.rpc = deps.rpc
    this.installSubject = subjectOf(mvccInstall, deps.at)
    this.storage = deps.storage
    this.node = deps.node
    this.step = deps.step
    this.counters = deps.counters
  }

  /**
   * Receives the leader's MsgSnap `m`: steps it at once when the log already holds its index
   * and term; otherwise starts the install and steps it once installed. Returns the step's
   * refusal reason, or undefined (also when dropped or deferred).
   */
  installThenStep(m: Message): string | undefined {
    const storage = this.storage
    const data = m.snapshot === undefined ? undefined : decodeSnapshotData(m.snapshot.data)
    if (data === undefined || this.installing) return undefined
    if (m.snapshot!.metadata.index <= storage.lastIndex() && storage.term(m.snapshot!.metadata.index) === m.snapshot!.metadata.term) {
      return this.step(m)
    }
    this.installing = true
    callEndpoint(this.rpc, mvccInstall, this.installSubject, { fromMember: data.source, snapshot: data.mvcc }, { timeoutMs: snapshotInstallTimeoutMs, retryAfterMs: snapshotInstallTimeoutMs })
      .then((reply) => {
        okOf(reply)
        this.counters.snapshotsInstalled++
        this.step(m)
        runDetached(Effect.logInfo("installed snapshot from leader").pipe(Effect.annotateLogs({ index: m.snapshot!.metadata.index, source: data.source })))
      })
      .catch((e) => runDetached(Effect.logWarning("snapshot install failed").pipe(Effect.annotateLogs({ error: describeError(e) }))))
      .finally(() => (this.installing = false))
    return undefined
  }

  /**
   * After the leader sent a snapshot to `to`: reports failure if the follower has not left
   * snapshot state within {@link snapshotSendTimeoutMs}, so the leader retries.
   */
  watchSend(to: MemberId): void {
    setTimeout(() => {
      if (this.node.status().progress.get(to)?.state === "StateSnapshot") this.node.reportSnapshot(to, "Failure")
    }, snapshotSendTimeoutMs)
  }
}
