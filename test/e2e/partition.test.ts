/**
 * A leader cut off in a minority: the raft processes of the two other members are stopped with
 * SIGSTOP, so the leader can reach nobody. It must acknowledge no write and serve no
 * linearizable read (CheckQuorum makes it step down; ReadIndex needs a quorum), while a
 * serializable read is still served locally. After SIGCONT the cluster elects a leader and
 * serves again. Also checks raft messages that must be dropped and counted: from an unknown
 * sender, of a stale term, and undecodable.
 */
import { describe, expect, it } from "vitest"
import { decodeFrame, encodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import { raftMsg, subjectOf } from "../../shared/endpoints.ts"
import { etcdctl, findLeader, natsConnectAs, raftStatus, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"

const portOffset = 600

describe("leader in a minority", () => {
  it("acknowledges no write and serves no linearizable read; recovers after the partition heals", async () => {
    const data = tempDir("partition")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
    try {
      expect((await etcdctl(natcd.endpoints[0]!, ["put", "before", "1"])).code).toBe(0)
      const leader = await findLeader(natcd)
      const others = [0, 1, 2].filter((i) => i !== leader)
      for (const i of others) expect(signalMember(natcd, `m${i + 1}`, "SIGSTOP", "/services/raft/").length).toBe(1)
      try {
        const endpoint = natcd.endpoints[leader]!
        const put = await etcdctl(endpoint, ["put", "during", "x", "--command-timeout=15s"])
        expect(put.code).not.toBe(0)
        // etcd's answers: timed out when the proposal was taken before the leader stepped down,
        // its context's deadline when no leader could take it.
        expect(put.stderr).toMatch(/etcdserver: request timed out|context deadline exceeded/)
        const get = await etcdctl(endpoint, ["get", "before", "--command-timeout=15s"])
        expect(get.code).not.toBe(0)
        expect(get.stderr).toMatch(/etcdserver: (request timed out|no leader)/)
        // A serializable read is local and may be stale: it is still served.
        const local = await etcdctl(endpoint, ["get", "before", "--consistency=s", "--print-value-only"])
        expect(local.stdout.trim()).toBe("1")
      } finally {
        for (const i of others) signalMember(natcd, `m${i + 1}`, "SIGCONT", "/services/raft/")
      }
      await findLeader(natcd, 15_000)
      const after = await etcdctl(natcd.endpoints[leader]!, ["put", "after", "2", "--command-timeout=15s"])
      expect(after.code, after.stderr).toBe(0)
      // "during" was never acknowledged; whether or not it survives, "before" and "after" do.
      const r = await etcdctl(natcd.endpoints[others[0]!]!, ["get", "after", "--print-value-only"])
      expect(r.stdout.trim()).toBe("2")
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 180_000)

  it("drops and counts raft messages from unknown senders, of stale terms, and undecodable ones", async () => {
    const data = tempDir("raft-bad-input")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: portOffset + 10, members: 3 })
    // As member m2's raft: the only identity nats-server lets publish raft messages from m2.
    const nc = await natsConnectAs(natcd, { role: "raft", name: "m2" })
    try {
      await findLeader(natcd)
      const msgSubject = subjectOf(raftMsg, { cluster: "natcd", member: "m1", from: "m2" })
      const m1 = (await raftStatus(natcd, "m1")).memberId
      const base = { to: m1, term: 1, logTerm: 1, index: 1, entries: [], commit: 1, reject: false, rejectHint: 0, context: new Uint8Array() }
      const frame = (body: unknown) => encodeFrame({ kind: "raft.msg", version: 1, traceparent: "", id: 0, body })
      // A sender whose id does not derive from its name.
      nc.publish(msgSubject, frame({ from: 12345n, fromName: "m2", messages: [{ ...base, type: "MsgHeartbeat", from: 12345n }] }))
      // A real member's id and name, but a term long past (stale).
      const m2 = (await raftStatus(natcd, "m2")).memberId
      nc.publish(msgSubject, frame({ from: m2, fromName: "m2", messages: [{ ...base, type: "MsgApp", from: m2 }] }))
      // A claim to be m3 on m2's subject: the subject binds the sender, so it is dropped.
      const m3 = (await raftStatus(natcd, "m3")).memberId
      nc.publish(msgSubject, frame({ from: m3, fromName: "m3", messages: [{ ...base, type: "MsgHeartbeat", from: m3, term: 1000 }] }))
      // Undecodable bodies.
      const inbox = "_INBOX.natcd.natcd.raft.m2.raft-bad"
      let errors = 0
      nc.subscribe(inbox, { callback: (_e, msg) => { const f = decodeFrame(msg.data); if (!isFrameDecodeError(f) && f.kind === "error") errors++ } })
      nc.publish(msgSubject, new Uint8Array([1, 2, 3]), { reply: inbox })
      nc.publish(msgSubject, frame({ from: m2, fromName: "m2", messages: [{ type: "MsgBogus" }] }), { reply: inbox })
      await nc.flush()
      await sleep(500)
      const status = await raftStatus(natcd, "m1")
      console.log(`raft peer counters on m1: ${JSON.stringify(status.peers)}`)
      expect(status.peers.droppedUnknownSender).toBeGreaterThanOrEqual(1)
      expect(status.peers.staleTerm).toBeGreaterThanOrEqual(1)
      expect(status.peers.droppedSenderMismatch).toBe(1)
      // The forged term-1000 heartbeat never reached raft: the term did not move.
      expect(status.term).toBeLessThan(1000)
      expect(errors).toBe(2)
      // Nothing crashed, the cluster still serves.
      expect(natcd.output()).not.toContain("process exited")
      expect((await etcdctl(natcd.endpoints[0]!, ["put", "still", "ok"])).code).toBe(0)
    } finally {
      await nc.close()
      await natcd.stop()
      data.remove()
    }
  }, 120_000)
})
