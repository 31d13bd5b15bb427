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
 * The rule: a sample is quiet when the process used at most `quietCpuMs` of CPU in it. After
 * `quietSamples` quiet samples in a row, release when the resident size has grown by at least
 * `growthBytes` over its baseline: the lowest resident size seen since the start or the last
 * release. A release makes the resident size after it the new baseline, so a process whose live
 * data grew is collected once per `growthBytes` of growth, not at every quiet spell, and a process
 * under steady load (never quiet) never is.
 */

/** The release rule's parameters (units in the names). */
export interface IdleReleasePolicy {
  /** Sampling period, ms: the shell reads CPU and resident size this often. */
  readonly sampleMs: number
  /** CPU time (user + system, all threads) at or under which a sample counts as quiet, ms. */
  readonly quietCpuMs: number
  /** Quiet samples in a row before a release. */
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
 * natcd's rule: a second is quiet at ≤ 50 ms of CPU (5 % of a core; an idle member's processes
 * use 5–25 ms a second for ticks, heartbeats and health), 30–45 quiet seconds in a row, and
 * 32 MiB of growth. The collection it triggers pauses the process for 70–270 ms (measured one
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
  /** Quiet samples in a row so far (0 after a busy one or a release). */
  readonly quiet: number
  /** Lowest resident size since the start or the last release, bytes. */
  readonly baselineBytes: number
}

/** The state at a process's start, with its resident size then (bytes). */
export const initialIdleRelease = (rssBytes: number): IdleReleaseState => ({ quiet: 0, baselineBytes: rssBytes })

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
  const quiet = sample.cpuMs <= policy.quietCpuMs ? state.quiet + 1 : 0
  const release = quiet >= policy.quietSamples && sample.rssBytes - baselineBytes >= policy.growthBytes
  return { state: { quiet: release ? 0 : quiet, baselineBytes }, release }
}

/** The state after a release that left the process at `rssBytes` resident. */
export const afterIdleRelease = (rssBytes: number): IdleReleaseState => ({ quiet: 0, baselineBytes: rssBytes })
