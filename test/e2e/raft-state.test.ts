/**
 * raft.state: each member's raft service pushes its status to the member's gateway and lease
 * service (within a tick of a change of leader, role or term, and every second), instead of
 * being polled by them ten times a second. Seen from a gateway's own NATS identity on a
 * 3-member cluster: frames arrive every second and name the leader; when the leader's member
 * freezes (SIGSTOP), the frame naming the new leader arrives as soon as the member's own
 * raft.status shows it; and an idle member's raft service answers almost no raft.status polls:
 * the gateway's and the lease service's backstops ask only when no frame came for 1.5 s (polling
 * every 100 ms was 20 a second, the backstops every second 2).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import * as Schema from "effect/Schema"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { raftState, subjectOf } from "../../shared/endpoints.ts"
import { decodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import { RaftStatus } from "../../shared/schema.ts"
import { etcdctl, findLeader, httpGet, metricsPort, natsConnectAs, raftStatus, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const portOffset = 2080
const decodeStatus = Schema.decodeUnknownSync(RaftStatus)

/** raft.status requests m`index + 1`'s raft service has served, from its /metrics. */
const statusServed = async (memberIndex: number): Promise<number> => {
  const { body } = await httpGet(metricsPort(portOffset, memberIndex, "raft"), "/metrics")
  const line = body.split("\n").find((l) => l.startsWith("natcd_nats_handle_duration_seconds_count") && l.includes('endpoint="raft.status"'))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe("raft.state", () => {
  let natcd: Natcd
  let tmp: ReturnType<typeof tempDir>
  let nc: NatsConnection
  /** Frames seen on m2's raft.state, with the time they arrived. */
  const frames: Array<{ atMs: number; status: typeof RaftStatus.Type }> = []

  beforeAll(async () => {
    tmp = tempDir("raft-state")
    natcd = await startNatcd({ dataDir: tmp.dir, portOffset, members: 3 })
    // m2's gateway identity: allowed to subscribe to m2's raft.state (and nothing of m1's or m3's).
    nc = await natsConnectAs(natcd, { role: "gateway", name: "m2" })
    nc.subscribe(subjectOf(raftState, { cluster: "natcd", member: "m2" }), {
      callback: (err, msg) => {
        if (err) return
        const f = decodeFrame(msg.data)
        if (isFrameDecodeError(f) || f.kind !== "raft.state") return
        frames.push({ atMs: Date.now(), status: decodeStatus(f.body) })
      }
    })
    await nc.flush()
  }, 90_000)

  afterAll(async () => {
    await nc?.close()
    await natcd?.stop()
    tmp?.remove()
  })

  it("arrive every second from a running member, naming its leader", async () => {
    const leader = await findLeader(natcd)
    const leaderId = (await raftStatus(natcd, `m${leader + 1}`)).memberId
    const from = Date.now()
    await sleep(3500)
    const seen = frames.filter((f) => f.atMs >= from)
    expect(seen.length).toBeGreaterThanOrEqual(3)
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.atMs - seen[i - 1]!.atMs).toBeLessThan(1500)
    for (const f of seen) expect(f.status.leader).toBe(leaderId)
  })

  it("leave an idle member's raft service almost no raft.status polls while frames arrive", async () => {
    const before = await Promise.all([0, 1, 2].map(statusServed))
    await sleep(5000)
    const after = await Promise.all([0, 1, 2].map(statusServed))
    const perSecond = after.map((a, i) => (a - before[i]!) / 5)
    console.log(`raft.status served per second, idle: ${perSecond.join(", ")}`)
    // The gateway's and the lease service's backstops stay quiet while frames come every
    // second; a late frame may set one off now and then. Polling every 100 ms was 20/s, the
    // backstops every second 2/s.
    for (const rate of perSecond) expect(rate).toBeLessThanOrEqual(0.6)
  })

  it("tell the new leader as soon as raft itself knows it", async () => {
    const leader = await findLeader(natcd)
    const frozen = `m${leader + 1}`
    // Watch a member that is not the leader; m2's frames are the ones subscribed.
    if (frozen === "m2") {
      // Freezing m2 would silence the frames watched here: make another member lead first.
      const target = (await raftStatus(natcd, "m1")).memberId
      const moved = await etcdctl(natcd.endpoints[leader]!, ["move-leader", target.toString(16)])
      expect(moved.code, moved.stderr).toBe(0)
    }
    const oldLeader = await findLeader(natcd)
    expect(oldLeader).not.toBe(1)
    const oldLeaderId = (await raftStatus(natcd, `m${oldLeader + 1}`)).memberId
    const stoppedAtMs = Date.now()
    signalMember(natcd, `m${oldLeader + 1}`, "SIGSTOP")
    try {
      // Poll m2's own raft.status until it names another leader; the frame must be no later
      // than a tick (100 ms) after that, give or take the poll's own period.
      const deadline = Date.now() + 20_000
      let knownAtMs = 0
      let newLeader = 0n
      while (Date.now() < deadline) {
        const s = await raftStatus(natcd, "m2")
        if (s.leader !== 0n && s.leader !== oldLeaderId) {
          knownAtMs = Date.now()
          newLeader = s.leader
          break
        }
        await sleep(20)
      }
      expect(newLeader).not.toBe(0n)
      // Only frames sent after the freeze count (the new leader may have led before).
      const newsOf = (f: (typeof frames)[number]) => f.atMs >= stoppedAtMs && f.status.leader === newLeader
      while (Date.now() < knownAtMs + 2000 && !frames.some(newsOf)) await sleep(10)
      const told = frames.find(newsOf)
      expect(told, "no raft.state frame named the new leader").toBeDefined()
      console.log(`raft.state named the new leader ${told!.atMs - knownAtMs} ms after raft.status did`)
      expect(told!.atMs - knownAtMs).toBeLessThan(400)
    } finally {
      signalMember(natcd, `m${oldLeader + 1}`, "SIGCONT")
    }
  }, 60_000)
})
