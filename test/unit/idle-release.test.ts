import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { describe, expect, it } from "vitest"
import { idleReleaseLayer } from "../../services/runtime/idle-release.ts"
import { registry } from "../../services/runtime/metrics.ts"

const MiB = 2 ** 20

const releases = async () => (await registry.getSingleMetric("natcd_idle_releases_total")!.get()).values[0]?.value ?? 0

describe("idle release", () => {
  it("collects once when the process is quiet after growing, and the freed pages leave the resident set", async () => {
    // Every sample counts as quiet here; the test controls growth alone.
    const policy = { sampleMs: 100, quietCpuMs: Number.MAX_SAFE_INTEGER, quietSamples: 2, spreadSamples: 0, growthBytes: 64 * MiB }
    const program = Effect.gen(function*() {
      yield* Layer.build(idleReleaseLayer(policy))
      const startReleases = yield* Effect.promise(releases)
      // About 250 MiB of small objects, promoted to the old generation, then dropped.
      let garbage: Array<{ readonly i: number; readonly s: string }> | undefined = []
      for (let i = 0; i < 2_000_000; i++) garbage.push({ i, s: `value ${i}` })
      garbage = undefined
      const grown = process.memoryUsage.rss()
      yield* Effect.sleep(1500)
      return { released: (yield* Effect.promise(releases)) - startReleases, grown, after: process.memoryUsage.rss() }
    })
    const { released, grown, after } = await Effect.runPromise(Effect.scoped(program))
    expect(released).toBe(1)
    expect(grown - after).toBeGreaterThan(100 * MiB)
  })
})
