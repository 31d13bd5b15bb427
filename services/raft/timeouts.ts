/**
 * The raft service's timeouts: every wait it bounds (its calls to the member's wal and mvcc
 * services, snapshots taken, sent and installed, forwarded membership changes), all in ms: one
 * table, so each value is named once with what it bounds and why.
 *
 * What it is not: the raft timers set by flags (`--heartbeat-interval`, `--election-timeout`),
 * and the heartbeat's own period for publishing the member's attributes (./ticker.ts).
 */

/** One page of the log loaded from the wal service at start (at most 4 MiB of entries), ms. */
export const walLoadTimeoutMs = 5000

/** One append (hard state and entries, fdatasync included) to the wal service, ms. */
export const walAppendTimeoutMs = 5000

/** The re-send interval of an append that got no reply yet, ms (the wal service answers a re-sent append once). */
export const walAppendRetryAfterMs = 500

/** Saving a raft snapshot in the wal service (snapshot file, WAL marker, sync, release), ms. */
export const walSnapshotTimeoutMs = 30_000

/** The first wait before calling the wal service again after a call got no reply, ms; doubled per retry up to {@link walRetryMaxMs}. */
export const walRetryInitialMs = 100

/** The longest wait between calls to a silent wal service, ms. */
export const walRetryMaxMs = 2000

/** The wait between logging the give-up line and exiting, when the wal service stays silent, ms: lets the line reach the log. */
export const walGiveUpExitDelayMs = 100

/** Asking the mvcc service how far it applied, at start (best effort: it may not be up yet), ms. */
export const mvccAppliedAtStartTimeoutMs = 2000

/**
 * The base of the request timeout (membership changes, leader transfers), ms: etcd's
 * ReqTimeout is 5 s plus two election timeouts.
 */
export const requestTimeoutBaseMs = 5000

/** How long a follower waits for the leader's raft to answer a forwarded membership change, ms. */
export const confChangeForwardTimeoutMs = 5000

/**
 * How long raft waits for the mvcc service's copy of its state (mvcc.snapshot), in ms. The
 * request is not re-sent meanwhile: the copy of a large LMDB file takes seconds, and each
 * re-sent request would start another copy of the same file in the mvcc service.
 */
export const mvccSnapshotTimeoutMs = 120_000

/**
 * After a snapshot attempt that took none (an error, or an mvcc service with nothing applied
 * since the last one), the next attempt waits at least this long, in ms. Without it every
 * applied batch past the trigger would ask for another copy of the whole state.
 */
export const snapshotRetryDelayMs = 5000

/** How long the leader waits for a follower to leave snapshot state after a MsgSnap, ms. */
export const snapshotSendTimeoutMs = 60_000

/** How long a follower waits for its mvcc service to install the leader's state, ms (not re-sent). */
export const snapshotInstallTimeoutMs = 600_000

/**
 * How long raft keeps calling its wal service when calls get no reply, ms. Raft can do nothing
 * without its log: past this bound the process stops (fail-stop, as etcd panics when its WAL
 * cannot be written) and the supervisor starts it again.
 */
export const walRetryBoundMs = 60_000
