/**
 * Bad input on the wire, on every declared endpoint (shared/endpoints.ts), sent with the
 * credentials of an identity the declaration lets call it (so nats-server lets it through and
 * the service itself must cope): garbage, msgpack that is not a frame, frames of the wrong kind
 * or version, and the endpoint's own kind with a body its schema rejects. Every message gets a
 * MalformedFrame error frame back, no service process exits, and the cluster keeps serving
 * etcdctl with its data intact.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { endpoints, health, inboxPrefix, subjectOf } from "../../shared/endpoints.ts"
import type { Endpoint, Identity } from "../../shared/endpoints.ts"
import { decodeFrame, encodeFrame, isFrameDecodeError, packValue } from "../../shared/frame.ts"
import { FrameKinds, HealthReply } from "../../shared/schema.ts"
import * as Schema from "effect/Schema"
import type { Natcd } from "./harness.ts"
import { etcdctl, findLeader, natsConnectAs, sleep, startNatcd, tempDir } from "./harness.ts"

const portOffset = 300

describe("malformed frames on every declared endpoint", () => {
  let natcd: Natcd
  const data = tempDir("bad-input")

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 2 })
    await findLeader(natcd)
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    data.remove()
  })

  /** The instance token of `role`'s process of m1 (from its health reply), for its per-process subjects. */
  const instanceOf = async (role: "gateway" | "lease"): Promise<string> => {
    const nc = await natsConnectAs(natcd, { role: "cli", name: "" })
    try {
      const msg = await nc.request(subjectOf(health, { cluster: "natcd", member: "m1", role }), encodeFrame({ kind: "health", version: 1, traceparent: "", id: 1, body: { ready: false } }), { timeout: 5000 })
      const f = decodeFrame(msg.data)
      if (isFrameDecodeError(f)) throw new Error(f.reason)
      const instance = Schema.decodeUnknownSync(HealthReply)(f.body).instance
      if (instance === undefined) throw new Error(`${role} named no instance`)
      return instance
    } finally {
      await nc.close()
    }
  }

  it("answers with MalformedFrame, keeps every process up, and keeps serving", async () => {
    expect((await etcdctl(natcd.endpoints[0]!, ["put", "before", "1"])).code).toBe(0)
    const instances = { gateway: await instanceOf("gateway"), lease: await instanceOf("lease") }
    let sent = 0
    const failures: string[] = []
    for (const endpoint of endpoints as ReadonlyArray<Endpoint<string>>) {
      // The first declared caller (the operator's cli only when nobody else calls it).
      const caller = endpoint.callers.find((p) => p.role !== "cli") ?? endpoint.callers[0]!
      const identity: Identity = { role: caller.role, name: caller.role === "watch" ? "w1" : caller.role === "cli" ? "" : "m1" }
      const server = endpoint.servers[0]!
      const tokens = {
        cluster: "natcd",
        member: "m1",
        replica: "w1",
        from: "m1",
        role: server.role,
        instance: server.role === "lease" ? instances.lease : instances.gateway
      }
      const subject = subjectOf(endpoint, tokens as never)
      const payloads: ReadonlyArray<Uint8Array> = [
        new Uint8Array([0xc1, 0xc1, 0xc1]),
        new TextEncoder().encode("not msgpack at all"),
        packValue({ hello: "world" }),
        encodeFrame({ kind: "no-such-kind", version: 1, traceparent: "", id: 1, body: {} }),
        encodeFrame({ kind: endpoint.kind, version: 99, traceparent: "", id: 1, body: {} }),
        // The endpoint's own kind and version with a body no schema of natcd accepts.
        encodeFrame({ kind: endpoint.kind, version: FrameKinds[endpoint.kind], traceparent: "", id: 1, body: "not a body" })
      ]
      const nc = await natsConnectAs(natcd, identity)
      const inbox = `${inboxPrefix("natcd", identity)}.bad-input`
      const errors: string[] = []
      nc.subscribe(inbox, {
        callback: (_err, msg) => {
          const f = decodeFrame(msg.data)
          if (!isFrameDecodeError(f) && f.kind === "error") errors.push((f.body as { err: { _tag: string } }).err._tag)
        }
      })
      await nc.flush()
      for (const p of payloads) nc.publish(subject, p, { reply: inbox })
      sent += payloads.length
      await nc.flush()
      // Every subscriber answers each message: m1's process of each serving role (raft.state: its
      // gateway and its lease service), or at least one per message where every process of a
      // role hears it (trace.keep, mvcc.events to every watch replica).
      const fanOut = endpoint.queue === undefined && endpoint.servers.every((p) => p.self.length === 0)
      // Servers bound to their role (health) hear only their own role's subject.
      const hearing = endpoint.servers.filter((p) => !p.self.includes("role") || p.role === server.role).length
      const expected = payloads.length * (endpoint.queue === undefined ? hearing : 1)
      const deadline = Date.now() + 3000
      while (errors.length < expected && Date.now() < deadline) await sleep(20)
      if (!fanOut) await sleep(100) // an answer beyond the expected ones would be a fault too
      await nc.close()
      if ((fanOut ? errors.length < payloads.length : errors.length !== expected) || errors.some((e) => e !== "MalformedFrame")) {
        failures.push(`${endpoint.name} (${subject} as ${identity.role}.${identity.name}): ${JSON.stringify(errors)}`)
      }
    }
    console.log(`bad input: ${sent} malformed frames on ${endpoints.length} endpoints`)
    expect(failures).toEqual([])

    // No service exited (the supervisor logs every restart), and the cluster still serves.
    expect(natcd.output()).not.toContain("process exited")
    expect((await etcdctl(natcd.endpoints[1]!, ["put", "after", "2"])).code).toBe(0)
    for (const endpoint of natcd.endpoints) {
      const r = await etcdctl(endpoint, ["get", "", "--from-key", "--print-value-only"])
      expect(r.stdout.trim().split("\n")).toEqual(["2", "1"])
    }
  }, 120_000)
})
