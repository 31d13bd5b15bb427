import { describe, expect, it } from "vitest"
import { afterIdleRelease, defaultIdleReleasePolicy, initialIdleRelease, stepIdleRelease } from "../../services/runtime/idle-release-policy.ts"
import type { IdleReleaseSample, IdleReleaseState } from "../../services/runtime/idle-release-policy.ts"

const MiB = 2 ** 20
// The table reads more easily with two quiet samples than with natcd's thirty.
const policy = { ...defaultIdleReleasePolicy, quietSamples: 2 }

/** Runs `samples` from `state`; returns the indexes of the samples that released and the final state. */
const run = (state: IdleReleaseState, samples: ReadonlyArray<IdleReleaseSample>, rssAfterRelease = 100 * MiB) => {
  const released: number[] = []
  samples.forEach((sample, i) => {
    const step = stepIdleRelease(policy, state, sample)
    state = step.state
    if (step.release) {
      released.push(i)
      state = afterIdleRelease(rssAfterRelease)
    }
  })
  return { released, state }
}

const busy = (rssMiB: number): IdleReleaseSample => ({ cpuMs: 400, rssBytes: rssMiB * MiB })
const quiet = (rssMiB: number): IdleReleaseSample => ({ cpuMs: 10, rssBytes: rssMiB * MiB })

describe("idle release policy", () => {
  it.each([
    { name: "a quiet process that never grew is never collected", samples: [quiet(100), quiet(100), quiet(110), quiet(120)], released: [] },
    { name: "a process under load is never collected, however much it grew", samples: [busy(200), busy(250), busy(300), busy(300)], released: [] },
    { name: "growth by the threshold, then two quiet samples: one release", samples: [busy(200), quiet(200), quiet(200), quiet(100), quiet(100)], released: [2] },
    { name: "one quiet sample between bursts is not enough", samples: [busy(200), quiet(200), busy(210), quiet(210), busy(210)], released: [] },
    { name: "growth just under the threshold is not collected", samples: [busy(131), quiet(131), quiet(131)], released: [] },
    { name: "growth exactly at the threshold is", samples: [busy(132), quiet(132), quiet(132)], released: [2] },
    { name: "an average at the CPU bound is quiet", samples: [busy(200), { cpuMs: 50, rssBytes: 200 * MiB }, { cpuMs: 50, rssBytes: 200 * MiB }], released: [2] },
    { name: "an average just over it is not", samples: [busy(200), { cpuMs: 51, rssBytes: 200 * MiB }, { cpuMs: 51, rssBytes: 200 * MiB }], released: [] },
    { name: "a spike is averaged with the samples around it", samples: [busy(200), { cpuMs: 90, rssBytes: 200 * MiB }, quiet(200)], released: [2] },
    { name: "a second burst after a release is collected again", samples: [busy(200), quiet(200), quiet(200), busy(220), busy(240), quiet(240), quiet(240)], released: [2, 6] }
  ])("$name", ({ samples, released }) => {
    expect(run(initialIdleRelease(100 * MiB), samples).released).toEqual(released)
  })

  it("measures growth from the lowest resident size seen, so a shrink then a regrowth counts from the low point", () => {
    // Start at 100 MiB, V8 itself shrinks the process to 80, then it grows to 115: 35 MiB of growth.
    expect(run(initialIdleRelease(100 * MiB), [quiet(80), busy(115), quiet(115), quiet(115)]).released).toEqual([3])
  })

  it("after a release the new baseline is what the release left, so live data that stays is not collected again", () => {
    // The release leaves 180 MiB live: another quiet spell at 190 MiB is under the threshold.
    const { released, state } = run(initialIdleRelease(100 * MiB), [busy(250), quiet(250), quiet(250), busy(190), quiet(190), quiet(190)], 180 * MiB)
    expect(released).toEqual([2])
    expect(state.baselineBytes).toBe(180 * MiB)
  })

  it("natcd's own rule waits for thirty quiet samples, and a spike among them does not reset the count", () => {
    const quietSpell = (n: number) => {
      let state = initialIdleRelease(100 * MiB)
      let released = false
      const spell = Array.from({ length: n }, (_, i) => (i === 10 ? { cpuMs: 180, rssBytes: 200 * MiB } : quiet(200)))
      // A burst that kept two cores busy: one such second is above the average on its own.
      for (const sample of [{ cpuMs: 2000, rssBytes: 200 * MiB }, ...spell]) {
        const step = stepIdleRelease(defaultIdleReleasePolicy, state, sample)
        state = step.state
        released ||= step.release
      }
      return released
    }
    expect(quietSpell(29)).toBe(false)
    expect(quietSpell(30)).toBe(true)
  })

  it("starts counting quiet samples again after a release", () => {
    const step = stepIdleRelease(policy, { recentCpuMs: [10, 10], baselineBytes: 100 * MiB }, quiet(200))
    expect(step).toEqual({ state: { recentCpuMs: [], baselineBytes: 100 * MiB }, release: true })
  })
})
