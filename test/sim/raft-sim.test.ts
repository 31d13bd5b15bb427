/**
 * Deterministic simulation of raft clusters of 3 and 5 members under message loss,
 * duplication, reordering, delay, partitions, crashes with loss of unsynced state, compaction,
 * snapshots and membership changes (see cluster.ts for the model and the invariants).
 *
 * SIM_SEEDS=<n> runs seeds 1..n (default 300); SIM_SEED=<s> replays one seed. A failure names
 * its seed; replaying that seed reproduces it exactly.
 */
import { expect, it } from "vitest"
import { Cluster, type SimStats } from "./cluster.ts"

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  return v === undefined || v === "" ? undefined : Number(v)
}

const one = envInt("SIM_SEED")
const seeds = one !== undefined ? [one] : Array.from({ length: envInt("SIM_SEEDS") ?? 300 }, (_, i) => i + 1)

it(`raft simulation over ${seeds.length} seed(s)`, { timeout: 600_000 }, () => {
  const started = performance.now()
  const total: SimStats = { leaders: 0, maxTerm: 0, committed: 0, crashes: 0, partitions: 0, snapshotsSent: 0, confChanges: 0, delivered: 0, readStates: 0, earlySends: 0 }
  for (const seed of seeds) {
    const stats = new Cluster({ seed, voters: seed % 2 === 0 ? 5 : 3, ticks: 1500, quietTicks: 300 }).run()
    for (const k of Object.keys(total) as Array<keyof SimStats>) {
      total[k] = k === "maxTerm" ? Math.max(total[k], stats[k]) : total[k] + stats[k]
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  console.log(
    `raft-sim: ${seeds.length} seed(s) in ${seconds} s; leaders ${total.leaders}, max term ${total.maxTerm}, ` +
      `committed ${total.committed}, crashes ${total.crashes}, partitions ${total.partitions}, ` +
      `snapshots sent ${total.snapshotsSent}, conf changes ${total.confChanges}, reads answered ${total.readStates}, leader sends before persist ${total.earlySends}, messages delivered ${total.delivered}`
  )
  expect(total.committed).toBeGreaterThan(0)
  expect(total.earlySends).toBeGreaterThan(0)
})
