/**
 * Lease checkpoints (etcd's LeaseCheckpoint, on by default in natcd): the leader's lease
 * service proposes the remaining TTL of long leases through raft every checkpoint interval
 * (here 2 s instead of etcd's 5 min), every member persists it with the lease, and after the
 * whole cluster is killed with SIGKILL and restarted the lease continues from the checkpointed
 * remaining TTL (plus one election timeout) rather than from its full TTL. With checkpoints off
 * a restart gives the full TTL again, as etcd without checkpointing does.
 */
import { describe, expect, it } from "vitest"
import { etcdClients } from "./lease-client.ts"
import { sleep, startNatcd, tempDir } from "./harness.ts"

/** Grants a 60 s lease, lets it age `ageMs`, kills the whole cluster and reads the lease's TTL after the restart. */
const remainingAfterRestart = async (
  portOffset: number,
  checkpoint: boolean,
  ageMs: number
): Promise<{ remaining: number; sinceKillS: number }> => {
  const data = tempDir("lease-checkpoint")
  const env = { NATCD_LEASE_CHECKPOINT: String(checkpoint), NATCD_LEASE_CHECKPOINT_INTERVAL: "2s" }
  let natcd = await startNatcd({ dataDir: data.dir, portOffset, env })
  try {
    let c = etcdClients(natcd.endpoints[0]!)
    const g = await c.call(c.lease, "LeaseGrant", { TTL: 60 })
    await sleep(ageMs)
    c.close()
    await natcd.kill9()
    const killedAt = Date.now()
    natcd = await startNatcd({ dataDir: data.dir, portOffset, env })
    c = etcdClients(natcd.endpoints[0]!)
    const t = await c.call(c.lease, "LeaseTimeToLive", { ID: g.ID })
    const sinceKillS = Math.ceil((Date.now() - killedAt) / 1000)
    c.close()
    expect(t.grantedTTL).toBe("60")
    return { remaining: Number(t.TTL), sinceKillS }
  } finally {
    await natcd.stop()
    data.remove()
  }
}

describe("lease checkpoints", () => {
  it("a restarted cluster continues from the checkpointed remaining TTL", async () => {
    // The lease is 12 s old at the kill: its last checkpoint (every 2 s) left about 50 s, and
    // promotion adds one election timeout (1 s), so about 51 s remain after the restart however
    // quickly the restarted cluster answers (53 allows one checkpoint that came late). Without
    // checkpoints the age does not matter: the lease is back to 60 s at promotion.
    const { remaining: withCheckpoints } = await remainingAfterRestart(1340, true, 12_000)
    const { remaining: without, sinceKillS } = await remainingAfterRestart(1341, false, 2_000)
    console.log(`lease checkpoint: 60 s lease, 12 s old, whole cluster killed and restarted: remaining ${withCheckpoints} s with checkpoints; without checkpoints ${without} s (read ${sinceKillS} s after the kill)`)
    expect(withCheckpoints).toBeLessThanOrEqual(53)
    expect(withCheckpoints).toBeGreaterThanOrEqual(38)
    // Without checkpoints the new leader renews the lease to its full 60 s after the kill.
    expect(without).toBeGreaterThanOrEqual(60 - sinceKillS)
    expect(without).toBeGreaterThan(withCheckpoints)
  }, 180_000)
})
