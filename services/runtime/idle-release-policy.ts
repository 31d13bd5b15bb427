/**
 * When a quiet process should give its freed heap pages back to the operating system: the pure
 * decision behind ./idle-release.ts, a function of CPU and memory samples (no clock, no IO).
 *
 * V8 keeps the pages a garbage collection frees in a pool for later allocations and returns them
 * to the operating system only in a memory-reducing collection. V8's memory reducer is meant to
 * run one once a process has gone quiet, but in a service that wakes for ticks, heartbeats and
 * health checks it judges the allocation rate high and never does (`--trace-memory-reducer`:
 * "high alloc", again every 8 s). So a service that served a burst keeps its peak footprint:
 * after the benchmark's workloads a member's raft process held 92 MiB of resident 256 KiB V8
 * pages against a 49 MiB heap. The shell asks for the memory-reducing collection itself once the
 * process is quiet after growing; this module decides when.
 *
 * The rule: the process is quiet when over its last `quietSamples` samples it used on average
 * at most `quietCpuMs` of CPU per sample (an average, not every sample: an idle natcd process has
 * a second or two a minute over 50 ms, its own garbage collections and periodic work, measured
 * on an idle 3-member cluster). Once quiet, release when the resident size has grown by at
 * least `growthBytes` over its baseline: the lowest resident size seen since the start or the
 * last release. A release makes the resident size after it the new baseline, so a process whose live
 * data grew is collected once per `growthBytes` of growth, not at every quiet spell, and a process
 * under steady load (never quiet) never is.
 */

/** The release rule's parameters (units in the names). */
export interface IdleReleasePolicy {
  /** Sampling period, ms: the shell reads CPU and resident size this often. */
  readonly sampleMs: number
  /** CPU time (user + system, all threads) per sample at or under which, on average, the process is quiet, ms. */
  readonly quietCpuMs: number
  /** Samples the average is taken over (none released before this many since the start or the last release). */
  readonly quietSamples: number
  /**
   * The shell adds a random number of samples in [0, spreadSamples] to `quietSamples`, drawn
   * once per process, so that processes sharing a machine that went quiet together do not all
   * collect at once.
   */
  readonly spreadSamples: number
  /** Growth of the resident size over the baseline that makes a release worth its pause, bytes. */
  readonly growthBytes: number
}

/**
 * natcd's rule: quiet at ≤ 50 ms of CPU a second on average (5 % of a core; an idle member's
 * processes use 9–25 ms a second for ticks, heartbeats and health) over the last 30–45 seconds,
 * and 32 MiB of growth. The collection it triggers pauses the process for 70–270 ms (measured one
 * process at a time on the benchmark's members after its workloads), once per burst. It also
 * costs the next burst CPU: a full collection in a quiet process frees what only the last
 * burst's objects kept alive, and the code V8 had optimised for them has to warm up again. With
 * 2–5 quiet seconds instead, the benchmark's next workload cost 14–60 % more CPU per operation
 * (range, txn-put and watch, two interleaved pairs), hence the long wait: a process quiet for
 * half a minute is not in the middle of a burst.
 */
export const defaultIdleReleasePolicy: IdleReleasePolicy = {
  sampleMs: 1000,
  quietCpuMs: 50,
  quietSamples: 30,
  spreadSamples: 15,
  growthBytes: 32 * 2 ** 20
}

/** What the rule remembers between samples. */
export interface IdleReleaseState {
  /** CPU of the latest samples since the start or the last release, oldest first, ms: at most `quietSamples`. */
  readonly recentCpuMs: ReadonlyArray<number>
  /** Lowest resident size since the start or the last release, bytes. */
  readonly baselineBytes: number
}

/** The state at a process's start, with its resident size then (bytes). */
export const initialIdleRelease = (rssBytes: number): IdleReleaseState => ({ recentCpuMs: [], baselineBytes: rssBytes })

/** One sample: the CPU the process used since the previous sample (ms) and its resident size now (bytes). */
export interface IdleReleaseSample {
  readonly cpuMs: number
  readonly rssBytes: number
}

/**
 * The next state after `sample`, and whether to release now. After a release the shell reports
 * the resident size it left with {@link afterIdleRelease}.
 */
export const stepIdleRelease = (
  policy: IdleReleasePolicy,
  state: IdleReleaseState,
  sample: IdleReleaseSample
): { readonly state: IdleReleaseState; readonly release: boolean } => {
  const baselineBytes = Math.min(state.baselineBytes, sample.rssBytes)
  const recentCpuMs = [...state.recentCpuMs, sample.cpuMs].slice(-policy.quietSamples)
  const quiet = recentCpuMs.length >= policy.quietSamples && recentCpuMs.reduce((a, b) => a + b, 0) <= policy.quietCpuMs * recentCpuMs.length
  const release = quiet && sample.rssBytes - baselineBytes >= policy.growthBytes
  return { state: { recentCpuMs: release ? [] : recentCpuMs, baselineBytes }, release }
}

/** The state after a release that left the process at `rssBytes` resident. */
export const afterIdleRelease = (rssBytes: number): IdleReleaseState => ({ recentCpuMs: [], baselineBytes: rssBytes })
