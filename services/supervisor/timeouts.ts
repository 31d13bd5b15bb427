/**
 * The supervisor's timeouts, intervals and backoffs, all in ms: one table, so each value is
 * named once with what it bounds and why. Used by ./supervise.ts.
 */

/**
 * How often a supervised process's /livez is polled once it answered, ms. Each probe wakes an
 * otherwise idle process (an HTTP request and its checks, a few ms of CPU on a small machine),
 * so it is no more often than a hang needs: with the default 4 failures, 20 s to a kill.
 */
export const livenessPollMs = 5000

/** How long a new process may take to answer /livez before failed polls count, ms (a slow start on a loaded machine is not a hang). */
export const livenessGraceMs = 60_000

/** How long one /livez probe may take, ms: under {@link livenessPollMs}, so probes do not overlap. */
export const livezProbeTimeoutMs = 1500

/** How long a process told to stop (SIGTERM) gets before SIGKILL, ms. */
export const stopGraceMs = 5000

/** The wait between tries to connect to a port that is not yet open, ms. */
export const portWaitRetryMs = 100

/** Tries to connect to a port in all, the first included: 100 retries, {@link portWaitRetryMs} apart (about 10 s). */
export const portWaitAttempts = 101

/** The first wait before restarting a crashed process, ms; doubled per crash up to {@link crashBackoffMaxMs}. */
export const crashBackoffInitialMs = 100

/** The longest wait before restarting a crashed process, ms. */
export const crashBackoffMaxMs = 5000

/** A process that ran this long before exiting is restarted after {@link crashBackoffInitialMs} again, ms. */
export const crashBackoffResetMs = 30_000

/** Wait (ms) before restarting a service that stopped with the planned-restart exit code (./supervise.ts plannedExitCode). */
export const plannedRestartMs = 100
