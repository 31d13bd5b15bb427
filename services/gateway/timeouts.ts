/**
 * The gateway's timeouts: every wait it bounds (calls to its member's services, connections on
 * the client port, its own shutdown), with the intervals of its polls, all in ms: one table, so
 * each value is named once with what it bounds and why.
 *
 * What it is not: the request timeout, which is a flag (`--request-timeout-ms`, etcd's 5 s), and
 * the watch placement's staleness (`loadStaleMs` in ./watch-placement.ts, the pure placement
 * rule's own parameter).
 */

/** One raft.status call while waiting for the member to publish its attributes before serving clients, ms. */
export const publishCheckTimeoutMs = 1000

/** The wait between raft.status calls while the member has not published its attributes, ms. */
export const publishPollMs = 100

/**
 * How long unary calls in flight get to finish when the gateway stops, ms; then long-lived
 * streams are cut (as etcd's shutdown does), so their clients reconnect elsewhere at once.
 */
export const grpcShutdownGraceMs = 2000

/**
 * Each call of a /health check to the member's services (raft.status, raft.readIndex,
 * mvcc.status, mvcc.alarms), ms: under the 2 s a readiness check may take in all
 * (`healthCheckTimeoutMs` in ../runtime/timeouts.ts), so one silent service gives its own error.
 */
export const healthCallTimeoutMs = 1500

/**
 * Each control call of a watch stream to a watch replica (watch.open, watch.place,
 * watch.create, watch.cancel, watch.progress), ms; an unanswered one moves the stream to
 * another replica.
 */
export const watchControlTimeoutMs = 3000

/** The wait before opening a watch session again after no replica took it, ms (another known replica is tried at once). */
export const watchOpenRetryMs = 1000

/** How often the gateway pings the watch replicas holding its sessions, ms (a ping is unanswered after 3 of these). */
export const watchPingDefaultMs = 1000

/**
 * How long the gateway's proposer waits for the result of a proposal committed by raft before
 * asking again, ms (`resultWaitMs` in ../runtime/proposer.ts).
 */
export const proposalResultWaitMs = 3000

/** The JSON gateway's HTTP keep-alive: an idle connection is closed after this, ms. */
export const httpKeepAliveTimeoutMs = 30_000

/** The re-send interval of mvcc.status while waiting for the mvcc service to serve again after a defragment, ms. */
export const mvccServingPollMs = 100

/**
 * One Defragment call to the mvcc service, ms, sent once (re-sending interval the same): the
 * copy of a large database takes minutes, and a second request would copy it again.
 */
export const defragmentTimeoutMs = 300_000

/** The mvcc service's preparing of a snapshot (a copy of the database) for Maintenance.Snapshot, ms. */
export const snapshotPrepareTimeoutMs = 120_000

/** One 1 MiB chunk of a snapshot read from the mvcc service, ms. */
export const snapshotChunkTimeoutMs = 30_000

/** The re-send interval of a snapshot chunk request that got no reply yet, ms. */
export const snapshotChunkRetryMs = 2000

/** How long a new plain connection may take to send the bytes that tell its protocol, in ms. */
export const firstBytesTimeoutMs = 10_000

/** How long, in ms after the client's SETTINGS ACK, the port waits for a first request. */
export const firstHeadersWaitMs = 1000

/**
 * Longest wait (ms) after a defragment for the member's mvcc service to serve again on the
 * compacted copy; past it Defragment answers anyway (the defragment itself is done).
 */
export const defragmentRestartWaitMs = 30_000
