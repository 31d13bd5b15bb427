/**
 * The raft service's timeouts for its calls to the member's wal and mvcc services, all in ms:
 * one table, so each value is named once with what it bounds and why.
 *
 * What it is not: the bound README.md's "Memory bounds" table names (`walRetryBoundMs` in
 * ./wal-client.ts), the raft timers set by flags (`--heartbeat-interval`, `--election-timeout`),
 * and the constants of one mechanism documented with it (./snapshot-transfer.ts,
 * ./snapshotter.ts, ./ticker.ts, ./serve-endpoints.ts).
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
