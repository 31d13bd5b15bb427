/**
 * The aggregate list of every endpoint, in the README's order. Everything derived from the bus
 * walks it: the NATS permissions of each identity (./permissions.ts), the README's subjects
 * table (./docs.ts), and the attack and malformed-frame tests. An endpoint declared in one of
 * the per-service files but missing here would get no permissions and no table row, so every
 * declaration must be listed (a unit test checks that every exported declaration is).
 */
import type { Endpoint } from "./declare.ts"
import { mvccAlarms, mvccApply, mvccAuth, mvccChunk, mvccDefragment, mvccEvents, mvccHashKv, mvccHistory, mvccInstall, mvccLease, mvccLeases, mvccRange, mvccSnapshot, mvccStatus, gatewayResult, leaseResult } from "./mvcc.ts"
import { health, traceKeep } from "./process.ts"
import { raftConfChange, raftEntries, raftMembers, raftMsg, raftPropose, raftReadIndex, raftState, raftStatus, raftTransfer } from "./raft.ts"
import { leaseKeepAlive, leaseTimeToLive } from "./lease.ts"
import { walAppend, walLoad, walSnapshot } from "./wal.ts"
import { gatewayWatch, watchAck, watchCancel, watchClose, watchCreate, watchLoad, watchOpen, watchPing, watchPlace, watchProgress } from "./watch.ts"

/** Every endpoint, in the README's order. */
export const endpoints: ReadonlyArray<Endpoint> = [
  raftPropose, raftReadIndex, raftStatus, raftState, raftEntries, raftMsg, raftMembers, raftConfChange, raftTransfer,
  walAppend, walLoad, walSnapshot,
  mvccApply, mvccRange, mvccStatus, mvccAlarms, mvccHashKv, mvccSnapshot, mvccChunk, mvccInstall, mvccDefragment,
  mvccEvents, mvccHistory, mvccLeases, mvccLease, mvccAuth,
  gatewayResult, leaseResult, leaseKeepAlive, leaseTimeToLive,
  watchOpen, watchPlace, watchCreate, watchCancel, watchProgress, watchPing, watchAck, watchClose, watchLoad, gatewayWatch,
  health, traceKeep
]
