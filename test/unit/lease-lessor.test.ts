/**
 * The pure lessor (services/lease/core/lessor.ts) on a logical clock, one behaviour per test,
 * each checked against what etcd's lessor does (server/lease/lessor.go and lessor_test.go):
 * expiry only while primary, renew, the minimum-TTL helper, Promote's renewal of every lease
 * (with the election timeout added) and its spreading of piled-up expiries, Demote, the 1000/s
 * revocation limit with re-queueing after the retry interval, and checkpoints.
 */
import { describe, expect, it } from "vitest"
import { LeaseQueue } from "../../services/lease/core/lease-queue.ts"
import { Lessor, minLeaseTtlSec } from "../../services/lease/core/lessor.ts"

const lease = (id: number, ttl: number, remainingTtl = 0, grantIndex = id) => ({ id: BigInt(id), ttl, remainingTtl, grantIndex })

describe("LeaseQueue", () => {
  it("keeps one entry per lease and pops in time order", () => {
    const q = new LeaseQueue()
    const times = [50, 10, 40, 30, 20, 60, 5]
    times.forEach((t, i) => q.registerOrUpdate(BigInt(i), t))
    q.registerOrUpdate(6n, 70) // moved from 5 to 70
    q.remove(2n)
    const out: number[] = []
    while (q.size > 0) {
      const top = q.peek()!
      out.push(top.time)
      q.remove(top.id)
    }
    expect(out).toEqual([10, 20, 30, 50, 60, 70])
  })
})

describe("Lessor", () => {
  it("minimum TTL is ceil(1.5 x election timeout) in seconds", () => {
    expect(minLeaseTtlSec(1000)).toBe(2)
    expect(minLeaseTtlSec(100)).toBe(1)
    expect(minLeaseTtlSec(5000)).toBe(8)
  })

  it("a follower's leases never expire; the primary's expire at grant + TTL", () => {
    const l = new Lessor()
    l.upsert(lease(1, 5), 0)
    expect(l.findExpired(1_000_000, 10)).toEqual([])
    l.promote(0, 1000)
    l.upsert(lease(2, 5), 100)
    // Lease 1 was known at promotion: 5 s + the 1 s election timeout. Lease 2: 5 s from its grant.
    expect(l.findExpired(5099, 10)).toEqual([])
    expect(l.findExpired(5100, 10)).toEqual([2n])
    expect(l.findExpired(5999, 10)).toEqual([])
    expect(l.findExpired(6000, 10)).toEqual([1n])
  })

  it("renew pushes the expiry to now + TTL and returns the TTL", () => {
    const l = new Lessor()
    l.promote(0, 0)
    l.upsert(lease(7, 5), 100)
    expect(l.renew(7n, 2000)).toEqual({ ttl: 5, clearCheckpoint: false })
    expect(l.findExpired(6999, 10)).toEqual([])
    expect(l.remainingMs(7n, 4000)).toBe(3000)
    expect(l.findExpired(7000, 10)).toEqual([7n])
  })

  it("renew errors: not primary, unknown lease, expired lease awaiting revocation", () => {
    const l = new Lessor()
    l.upsert(lease(1, 2), 0)
    expect(l.renew(1n, 0)).toEqual({ err: "NotPrimary" })
    l.promote(0, 0)
    expect(l.renew(9n, 0)).toEqual({ err: "NotFound" })
    expect(l.renew(1n, 2000)).toEqual({ expired: true })
    l.remove(1n)
    expect(l.renew(1n, 2000)).toEqual({ err: "NotFound" })
  })

  it("an expired lease whose revocation did not apply comes back after the retry interval", () => {
    const l = new Lessor({ expiredRetryMs: 3000 })
    l.promote(0, 0)
    l.upsert(lease(1, 2), 0)
    expect(l.findExpired(2000, 10)).toEqual([1n])
    expect(l.findExpired(4999, 10)).toEqual([])
    expect(l.findExpired(5000, 10)).toEqual([1n])
    l.remove(1n)
    expect(l.findExpired(9000, 10)).toEqual([])
  })

  it("revocations are limited to half the per-second rate per 500 ms tick (etcd: 1000/s)", () => {
    const l = new Lessor()
    l.promote(0, 0)
    for (let i = 1; i <= 1500; i++) l.upsert(lease(i, 2), 0)
    const limit = l.revokeLimitPerTick()
    expect(limit).toBe(500)
    const first = l.findExpired(2000, limit)
    const second = l.findExpired(2500, limit)
    const third = l.findExpired(3000, limit)
    expect([first.length, second.length, third.length]).toEqual([500, 500, 500])
    expect(new Set([...first, ...second, ...third]).size).toBe(1500)
    expect(l.findExpired(3500, limit)).toEqual([])
  })

  it("promote renews every lease to remaining TTL + election timeout, so none expires early", () => {
    const l = new Lessor()
    l.promote(0, 1000)
    l.upsert(lease(1, 10), 0)
    l.renew(1n, 9000) // would expire at 19000 on this leader
    l.demote()
    expect(l.findExpired(100_000, 10)).toEqual([])
    // A new leader takes over at t=20000 (after the old expiry): the lease gets a full TTL + 1 s.
    l.promote(20_000, 1000)
    expect(l.findExpired(30_999, 10)).toEqual([])
    expect(l.findExpired(31_000, 10)).toEqual([1n])
  })

  it("promote uses the checkpointed remaining TTL when there is one", () => {
    const l = new Lessor({ checkpointIntervalMs: 300_000 })
    l.upsert(lease(1, 600, 100), 0)
    l.promote(0, 1000)
    expect(l.findExpired(100_999, 10)).toEqual([])
    expect(l.findExpired(101_000, 10)).toEqual([1n])
  })

  it("promote spreads piled-up expiries to 3/4 of the revoke rate per second", () => {
    const l = new Lessor({ revokeRate: 1000 })
    for (let i = 1; i <= 3000; i++) l.upsert(lease(i, 10), 0)
    l.promote(0, 1000)
    const perSecond = new Map<number, number>()
    for (let i = 1; i <= 3000; i++) {
      const s = Math.floor(l.remainingMs(BigInt(i), 0)! / 1000)
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1)
    }
    // None earlier than 11 s; at most 750 (+1 for the window edge) in any one second.
    expect(Math.min(...perSecond.keys())).toBeGreaterThanOrEqual(11)
    for (const n of perSecond.values()) expect(n).toBeLessThanOrEqual(751)
  })

  it("demote forgets expiry tracking; a re-grant of a revoked id is a new lease", () => {
    const l = new Lessor()
    l.promote(0, 0)
    l.upsert(lease(1, 2, 0, 10), 0)
    expect(l.findExpired(2000, 10)).toEqual([1n])
    // Revoked and granted again (grant index 20) before the next sync: a fresh expiry.
    l.upsert(lease(1, 2, 0, 20), 2100)
    expect(l.findExpired(4099, 10)).toEqual([])
    expect(l.findExpired(4100, 10)).toEqual([1n])
    l.demote()
    expect(l.isPrimary()).toBe(false)
    expect(l.remainingMs(1n, 0)).toBe(Infinity)
  })

  it("checkpoints: due leases with less than their TTL left, rounded up to seconds; a renewal asks to clear", () => {
    const l = new Lessor({ checkpointIntervalMs: 60_000 })
    l.promote(0, 0)
    l.upsert(lease(1, 600), 0) // TTL above the interval: scheduled at 60 s
    l.upsert(lease(2, 30), 0) // TTL below the interval: never checkpointed (etcd scheduleCheckpointIfNeeded)
    expect(l.dueCheckpoints(59_999)).toEqual([])
    expect(l.dueCheckpoints(60_000)).toEqual([{ id: 1n, remainingTtl: 540 }])
    expect(l.dueCheckpoints(60_500)).toEqual([])
    // The checkpoint applies (remaining 540): scheduled again, and a renewal asks to clear it.
    l.upsert(lease(1, 600, 540), 60_500)
    expect(l.dueCheckpoints(120_499)).toEqual([])
    expect(l.dueCheckpoints(120_500)).toEqual([{ id: 1n, remainingTtl: 480 }])
    expect(l.renew(1n, 121_000)).toEqual({ ttl: 600, clearCheckpoint: true })
    // Off: nothing is ever due, and renewals never ask.
    const off = new Lessor()
    off.promote(0, 0)
    off.upsert(lease(1, 600, 5), 0)
    expect(off.dueCheckpoints(1e9)).toEqual([])
    expect(off.renew(1n, 1)).toEqual({ ttl: 600, clearCheckpoint: false })
  })
})
