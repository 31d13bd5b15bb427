/**
 * The watch replica's timeouts and intervals, all in ms: one table, so each value is named once
 * with what it bounds and why.
 *
 * What it is not: the timers set by flags (`--progress-notify-interval`, `--session-timeout-ms`,
 * `--drain-timeout-ms`) and the load reports' period (`watchLoadEveryMs` in
 * ../../shared/endpoints/watch.ts, shared with the gateways that read the reports).
 */

/** How often catch-up rounds run without other input, ms (etcd's watchResyncPeriod is 100 ms). */
export const resyncMs = 100

/** A history read from mvcc that got no answer within this is retried (on another member if known), ms. */
export const historyTimeoutMs = 3000

/** How often sessions whose gateway went silent (past `--session-timeout-ms`) are looked for and dropped, ms. */
export const sessionExpiryCheckMs = 1000

/**
 * The wait between checks whether every session has moved to another replica while draining,
 * ms; the drain ends when none is left or at `--drain-timeout-ms`, whichever comes first.
 */
export const drainPollMs = 20

/** At most one "slow watch streams" warning per this many ms. */
export const victimLogEveryMs = 10_000
