/**
 * The lease service's timeouts and intervals for its calls to the member's raft service and to
 * the leader's lease service, all in ms: one table, so each value is named once with what it
 * bounds and why.
 *
 * What it is not: the timers set by flags (`--request-timeout-ms`, the whole keep-alive or
 * TimeToLive; `--election-timeout`) and the lease loop's own tick (`tickMs` in ./shell.ts).
 */

/** One call to the member's raft service for its status or membership (raft.status, raft.members), ms: raft answers from memory. */
export const raftCallTimeoutMs = 2000

/** One keep-alive forwarded to the leader's lease service, at most, ms (less when the request's deadline is nearer); a silent leader is asked again. */
export const forwardedKeepAliveTimeoutMs = 2000

/** One TimeToLive forwarded to the leader's lease service, at most, ms (less when the request's deadline is nearer). */
export const forwardedTimeToLiveTimeoutMs = 3000

/** How long the lease proposer waits for a committed proposal's result before asking again, ms (`resultWaitMs` in ../runtime/proposer.ts). */
export const proposalResultWaitMs = 3000

/** How often the primary lease service syncs the lease table from the mvcc service, ms. */
export const syncPollMs = 200
