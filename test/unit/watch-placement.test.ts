/**
 * The gateway's placement of new watch sessions (services/gateway/watch-placement.ts): table
 * tests of pick over reports, sessions placed and closed since, staleness, draining and exclusions, and a
 * property: a burst of placements with no report in between spreads evenly.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { loadStaleMs, maxTrackedReplicas, ReplicaPlacement } from "../../services/gateway/watch-placement.ts"
import type { ReplicaLoad } from "../../services/gateway/watch-placement.ts"

const load = (sessions: number, unackedBytes = 0, draining = false): ReplicaLoad => ({ sessions, unackedBytes, draining })

describe("ReplicaPlacement.pick", () => {
  type Step =
    | { readonly report: string; readonly load: ReplicaLoad; readonly at: number }
    | { readonly placed: string }
    | { readonly forget: string }
    | { readonly closed: string }
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<Step>, number, ReadonlyArray<string>, string | undefined]> = [
    ["nothing known: the queue group", [], 0, [], undefined],
    ["the fewest sessions", [{ report: "w1", load: load(5), at: 0 }, { report: "w2", load: load(3), at: 0 }], 100, [], "w2"],
    ["a replica added under load (0 sessions) takes new streams", [{ report: "w1", load: load(400), at: 0 }, { report: "w2", load: load(400), at: 0 }, { report: "w3", load: load(0), at: 900 }], 1000, [], "w3"],
    ["sessions placed since the report count", [{ report: "w1", load: load(3), at: 0 }, { report: "w2", load: load(4), at: 0 }, { placed: "w1" }, { placed: "w1" }], 10, [], "w2"],
    ["a new report replaces what was placed", [{ report: "w1", load: load(3), at: 0 }, { report: "w2", load: load(4), at: 0 }, { placed: "w1" }, { placed: "w1" }, { report: "w1", load: load(3), at: 5 }], 10, [], "w1"],
    ["ties: fewer unacknowledged bytes", [{ report: "w1", load: load(2, 900), at: 0 }, { report: "w2", load: load(2, 100), at: 0 }], 10, [], "w2"],
    ["ties: the smaller name", [{ report: "w2", load: load(2), at: 0 }, { report: "w1", load: load(2), at: 0 }], 10, [], "w1"],
    ["a draining replica is no candidate", [{ report: "w1", load: load(0, 0, true), at: 0 }, { report: "w2", load: load(50), at: 0 }], 10, [], "w2"],
    ["a stale report is no candidate", [{ report: "w1", load: load(0), at: 0 }, { report: "w2", load: load(50), at: 2000 }], loadStaleMs + 1, [], "w2"],
    ["a report exactly loadStaleMs old still counts", [{ report: "w1", load: load(0), at: 0 }, { report: "w2", load: load(50), at: 0 }], loadStaleMs, [], "w1"],
    ["every report stale: the queue group", [{ report: "w1", load: load(0), at: 0 }], loadStaleMs + 1, [], undefined],
    ["excluded (refused this open) is skipped", [{ report: "w1", load: load(0), at: 0 }, { report: "w2", load: load(9), at: 0 }], 10, ["w1"], "w2"],
    ["forgotten until it reports again", [{ report: "w1", load: load(0), at: 0 }, { report: "w2", load: load(9), at: 0 }, { forget: "w1" }], 10, [], "w2"],
    ["reports again after being forgotten", [{ report: "w1", load: load(0), at: 0 }, { forget: "w1" }, { report: "w1", load: load(0), at: 5 }, { report: "w2", load: load(9), at: 5 }], 10, [], "w1"],
    ["placed on an unknown replica (queue group) changes nothing", [{ placed: "w9" }, { report: "w1", load: load(1), at: 0 }], 10, [], "w1"],
    ["sessions closed since the report count off", [{ report: "w1", load: load(5), at: 0 }, { report: "w2", load: load(3), at: 0 }, { closed: "w1" }, { closed: "w1" }, { closed: "w1" }], 10, [], "w1"],
    ["closed and placed since the report net out", [{ report: "w1", load: load(3), at: 0 }, { report: "w2", load: load(3), at: 0 }, { placed: "w1" }, { closed: "w1" }, { placed: "w2" }], 10, [], "w1"],
    ["closing more than reported counts as 0, not below", [{ report: "w1", load: load(1), at: 0 }, { report: "w2", load: load(0), at: 0 }, { closed: "w1" }, { closed: "w1" }, { closed: "w1" }], 10, [], "w1"],
    ["a new report replaces what was closed", [{ report: "w1", load: load(5), at: 0 }, { report: "w2", load: load(3), at: 0 }, { closed: "w1" }, { closed: "w1" }, { closed: "w1" }, { report: "w1", load: load(5), at: 5 }], 10, [], "w2"]
  ]
  it.each(cases)("%s", (_name, steps, now, exclude, expected) => {
    const p = new ReplicaPlacement()
    for (const step of steps) {
      if ("report" in step) p.report(step.report, step.load, step.at)
      else if ("placed" in step) p.placed(step.placed)
      else if ("closed" in step) p.closed(step.closed)
      else p.forget(step.forget)
    }
    expect(p.pick(now, new Set(exclude))).toBe(expected)
  })
})

describe("ReplicaPlacement.report", () => {
  it("says when a replica starts draining, once", () => {
    const p = new ReplicaPlacement()
    expect(p.report("w1", load(4), 0)).toBe(false)
    expect(p.report("w1", load(4, 0, true), 10)).toBe(true)
    expect(p.draining("w1")).toBe(true)
    expect(p.report("w1", load(2, 0, true), 20)).toBe(false)
    // A replica first heard of while draining: its sessions move too.
    expect(p.report("w2", load(7, 0, true), 20)).toBe(true)
    // Restarted under the same name: a candidate again.
    expect(p.report("w1", load(0), 30)).toBe(false)
    expect(p.draining("w1")).toBe(false)
    expect(p.pick(40)).toBe("w1")
  })

  it(`tracks at most ${maxTrackedReplicas} replicas, evicting the stalest`, () => {
    const p = new ReplicaPlacement()
    for (let i = 0; i < maxTrackedReplicas; i++) p.report(`w${i}`, load(10), i)
    p.report("w0", load(10), 5000)
    p.report("new", load(10), 5001)
    expect(p.size).toBe(maxTrackedReplicas)
    // w1 (reported at 1) was the stalest; w0 was refreshed.
    p.forget("new")
    expect(p.size).toBe(maxTrackedReplicas - 1)
    expect(p.pick(5002, new Set())).toBe("w0")
  })
})

describe("a burst of placements between reports", () => {
  it("spreads evenly over equally loaded replicas (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 200 }), (replicas, base, opens) => {
        const p = new ReplicaPlacement()
        for (let i = 0; i < replicas; i++) p.report(`w${i}`, load(base), 0)
        const count = new Map<string, number>()
        for (let i = 0; i < opens; i++) {
          const r = p.pick(1)!
          p.placed(r)
          count.set(r, (count.get(r) ?? 0) + 1)
        }
        const counts = Array.from({ length: replicas }, (_, i) => count.get(`w${i}`) ?? 0)
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1)
      }),
      { numRuns: 200 }
    )
  })

  it("fills the emptiest replica up to the others first (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 300 }), (loads, opens) => {
        const p = new ReplicaPlacement()
        loads.forEach((n, i) => p.report(`w${i}`, load(n), 0))
        const total = loads.slice()
        for (let i = 0; i < opens; i++) {
          const r = p.pick(1)!
          p.placed(r)
          total[Number(r.slice(1))]!++
        }
        // Water-filling: every replica that got a session ends within one of the least loaded.
        const least = Math.min(...total)
        total.forEach((n, i) => {
          if (n > loads[i]!) expect(n - least).toBeLessThanOrEqual(1)
        })
      }),
      { numRuns: 200 }
    )
  })
})
