/**
 * The mvcc service's timeouts: every wait it bounds (reads waiting for the applied index, its
 * calls to the member's raft service and to peers' mvcc services, the corruption check, the
 * compactor's proposals, its own restarts), with the intervals of its polls and retries, all in
 * ms: one table, so each value is named once with what it bounds and why.
 *
 * What it is not: the timers set by flags (`--backend-batch-interval`, the compaction and
 * corruption-check periods).
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

/**
 * The corruption check's timeout of one peer's HashKV and of the wait for the local apply, in
 * ms: etcd's ReqTimeout (5 s + 2 × the 1 s election timeout).
 */
export const corruptCheckRequestTimeoutMs = 7000

/** How long the initial corruption check waits for the member's raft service to list the members, ms. */
export const corruptCheckMembersWaitMs = 15_000

/** The wait between the initial corruption check's asks for the member list, ms. */
export const corruptCheckMembersRetryMs = 500

/** How long one of the auto compactor's proposals may take before it counts as failed, ms (the gateway's request timeout). */
export const compactionProposeTimeoutMs = 7000

/** How long probing an LMDB file for its consistent index (./lmdb-probe.ts, a child process) may take, in ms. */
export const lmdbProbeTimeoutMs = 60_000

/**
 * How long a read waits for the applied index it needs, in ms, before it fails with
 * RequestTimeout ("etcdserver: request timed out"); shorter than the gateway's own request
 * timeout (7 s), so the gateway gets the answer rather than no reply.
 */
export const applyWaitTimeoutMs = 5_000

/** Pause before retrying a background compaction batch that failed (an LMDB error), in ms. */
export const compactionRetryMs = 1000
