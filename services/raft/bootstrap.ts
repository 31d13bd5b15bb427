/**
 * The raft process's start: the member's log loaded from its wal service into a MemoryStorage,
 * or, for an empty log of a new cluster, the bootstrap entries written first; and how far the
 * mvcc service already applied. It runs once, before the RawNode exists.
 *
 * An empty log with `--initial-cluster-state=new` bootstraps the `--initial-cluster` members as
 * etcd's RawNode.Bootstrap does (the same entries on every member); with `existing` the member
 * starts empty and the leader brings it up to date after `etcdctl member add`.
 */
import { callEndpoint } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { mvccStatus } from "../../shared/endpoints.ts"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import { memberIdFor } from "../../shared/membership.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { encodeConfChange } from "./core/conf-change.ts"
import { MemoryStorage } from "./core/storage.ts"
import { decodeSnapshotData, encodeConfChangeContext, peerUrlFor } from "./membership.ts"
import type { LoadedLog, WalClient } from "./wal-client.ts"
import { mvccAppliedAtStartTimeoutMs } from "./timeouts.ts"

/** What {@link startFromWal} found and set up. */
export interface RaftStart {
  /** The log, hard state and snapshot the member starts from. */
  readonly storage: MemoryStorage
  /** True when the wal service held nothing (no entry, no term, no snapshot). */
  readonly fresh: boolean
  /** The snapshot the log starts from, if any. */
  readonly snapshot: LoadedLog["snapshot"]
  /** That snapshot's data (membership table and mvcc file), if any and readable. */
  readonly snapshotData: ReturnType<typeof decodeSnapshotData>
  /** The commit index of the hard state loaded. */
  readonly commit: number
  /**
   * Committed entries up to this index are not handed to the mvcc service again: it applied
   * them already (min of its applied index and `commit`).
   */
  readonly skipApplyUpTo: number
}

/**
 * Loads the log through `wal` (retrying until the wal service answers) or bootstraps it, then
 * asks the mvcc service how far it applied (best effort, 2 s: it may not be up yet, then 0).
 */
export const startFromWal = async (
  wal: WalClient,
  rpc: RpcClient,
  options: {
    readonly cluster: string
    readonly member: string
    readonly initialNames: ReadonlyArray<string>
    readonly initialClusterState: "new" | "existing"
  }
): Promise<RaftStart> => {
  const at = { cluster: options.cluster, member: options.member }
  // 1. Load the log from the wal service (retrying until it answers).
  const storage = new MemoryStorage()
  const loaded = await wal.load()
  const fresh = loaded.entries.length === 0 && loaded.hardState.term === 0 && loaded.snapshot === undefined
  if (fresh && options.initialClusterState === "new") {
    // Bootstrap as etcd's RawNode.Bootstrap does, with each member's peer URL in the
    // ConfChange context: identical entries on every initial member. Durable before use.
    const entries: Entry[] = options.initialNames.map((name, i) => ({
      term: Term(1),
      index: Index(i + 1),
      type: "ConfChange",
      data: encodeConfChange({
        type: "AddNode",
        nodeId: memberIdFor(options.cluster, name),
        context: encodeConfChangeContext({ peerUrls: [peerUrlFor(name)], requestId: "" })
      })
    }))
    const hardState = { term: Term(1), vote: MemberId(0n), commit: Index(entries.length) }
    await wal.append(hardState, entries, "")
    storage.append(entries)
    storage.setHardState(hardState)
  } else if (!fresh) {
    if (loaded.snapshot !== undefined) storage.applySnapshot(loaded.snapshot)
    storage.append(loaded.entries)
    // A snapshot holds only committed entries: a crash between writing a snapshot received
    // from the leader and the hard state after it leaves a lower commit, which the core
    // would refuse to load.
    const snapshotIndex = loaded.snapshot?.metadata.index ?? 0
    storage.setHardState(loaded.hardState.commit >= snapshotIndex ? loaded.hardState : { ...loaded.hardState, commit: Index(snapshotIndex) })
  }
  const snapshot = loaded.snapshot
  const snapshotData = snapshot === undefined ? undefined : decodeSnapshotData(snapshot.data)

  // 2. Ask mvcc how far it applied (best effort: it may not be up yet).
  const mvccApplied = await callEndpoint(rpc, mvccStatus, at, {}, { timeoutMs: mvccAppliedAtStartTimeoutMs }).then(
    (s) => s.appliedIndex,
    () => 0
  )
  const commit = storage.initialState().hardState.commit
  // Raft re-delivers every committed entry after its snapshot (none yet), so ConfChange
  // entries reach the core and the membership table again, as etcd's restart does; the mvcc
  // service is only handed entries above what it already applied.
  const skipApplyUpTo = Math.min(mvccApplied, commit)
  return { storage, fresh, snapshot, snapshotData, commit, skipApplyUpTo }
}
