/**
 * The mvcc service's timeouts and intervals for its calls to the member's raft service and to
 * peers' mvcc services, and for its own restarts, all in ms: one table, so each value is named
 * once with what it bounds and why.
 *
 * What it is not: the bounds README.md's "Memory bounds" table names where they are used
 * (`applyWaitTimeoutMs` in ./apply-waiters.ts), the constants of one mechanism documented with
 * it (./compactor.ts `proposeTimeoutMs`, ./corrupt-check.ts, ./background-compaction.ts,
 * ./commit-scheduler.ts), and the timers set by flags.
 */

/**
 * One call to the member's own raft service for its status, membership or committed entries
 * (raft.status, raft.members, raft.entries), ms: raft answers from memory, so a call this slow
 * means raft is down or restarting, and the caller tries again later.
 */
export const raftCallTimeoutMs = 2000

/** One 1 MiB chunk of a snapshot fetched from a peer's mvcc service, ms. */
export const snapshotChunkTimeoutMs = 30_000

/** The re-send interval of a snapshot chunk request that got no reply yet, ms. */
export const snapshotChunkRetryMs = 2000

/**
 * The wait between answering a Defragment or an install and stopping (SIGTERM) to restart on the
 * new database, ms: lets the reply and the log line leave first.
 */
export const restartAfterReplyMs = 100

/** How often expired simple auth tokens are dropped, ms (etcd's simple token TTL keeper runs every second). */
export const tokenSweepMs = 1000

/** One proposal of a compaction to raft (raft.propose), at most, ms; less when the deadline is nearer. */
export const compactionProposeCallMs = 1000

/** How long a proposed compaction's result is awaited before it is proposed again (same request id), at most, ms. */
export const compactionResultWaitMs = 3000

/** The wait before proposing a compaction again after raft did not take it (no leader, no answer), ms. */
export const compactionProposeRetryMs = 100
