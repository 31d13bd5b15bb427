/**
 * Gives a quiet process's freed heap pages back to the operating system: every
 * `policy.sampleMs` ms a fiber reads the process's CPU time and resident size, and when
 * ./idle-release-policy.ts says so it runs one memory-reducing garbage collection (V8's
 * "last-resort" flavour: a full, compacting collection that also empties V8's pool of free pages).
 * Why V8 does not do this by itself is in ./idle-release-policy.ts.
 *
 * Each release is counted in `natcd_idle_releases_total`, its pause observed in
 * `natcd_idle_release_pause_seconds`, and logged at Debug level with the resident size before
 * and after.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { counter, histogram } from "./metrics.ts"
import { afterIdleRelease, defaultIdleReleasePolicy, initialIdleRelease, stepIdleRelease } from "./idle-release-policy.ts"
import type { IdleReleasePolicy } from "./idle-release-policy.ts"

/**
 * A function that runs one synchronous memory-reducing collection. V8 hands its `gc` function
 * only to contexts created after `--expose-gc` is set, so it is taken from a fresh context: the
 * process's own global scope gets no `gc`.
 */
const memoryReducingCollection = (): (() => void) => {
  setFlagsFromString("--expose-gc")
  const gc = runInNewContext("gc") as NodeJS.GCFunction
  return () => void gc({ type: "major", execution: "sync", flavor: "last-resort" })
}

/** CPU time the process used (user + system, all threads) since `since`, ms. */
const cpuMsSince = (since: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(since)
  return (d.user + d.system) / 1000
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20)

/**
 * The release fiber, forked in the layer's scope (interrupted with it). Started by `launch`
 * (./process.ts) in every service process.
 */
export const idleReleaseLayer = (policy: IdleReleasePolicy = defaultIdleReleasePolicy): Layer.Layer<never> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const collect = memoryReducingCollection()
    const rule = { ...policy, quietSamples: policy.quietSamples + Math.floor(Math.random() * (policy.spreadSamples + 1)) }
    const releases = counter({ name: "natcd_idle_releases_total", help: "Memory-reducing garbage collections run because the process was quiet after growing." })
    const pauses = histogram({
      name: "natcd_idle_release_pause_seconds",
      help: "Pause of each memory-reducing garbage collection run because the process was quiet.",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    })
    let state = initialIdleRelease(process.memoryUsage.rss())
    let cpuAt = process.cpuUsage()
    const sample = Effect.suspend(() => {
      const step = stepIdleRelease(rule, state, { cpuMs: cpuMsSince(cpuAt), rssBytes: process.memoryUsage.rss() })
      cpuAt = process.cpuUsage()
      state = step.state
      if (!step.release) return Effect.void
      const before = process.memoryUsage.rss()
      const startedMs = performance.now()
      collect()
      const pauseMs = performance.now() - startedMs
      const after = process.memoryUsage.rss()
      state = afterIdleRelease(after)
      // The collection's own CPU does not count against the next sample.
      cpuAt = process.cpuUsage()
      releases.inc()
      pauses.observe(pauseMs / 1000)
      return Effect.logDebug("released idle memory").pipe(
        Effect.annotateLogs({ rssBeforeMiB: mib(before), rssAfterMiB: mib(after), pauseMs: Math.round(pauseMs) })
      )
    })
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(policy.sampleMs), sample)))
  }))
