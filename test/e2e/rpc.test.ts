/**
 * natcd's service-to-service RPC over a real nats-server: replies matched by id through one
 * shared inbox, retries after loss, timeouts, and trace context continued by the serving hop.
 */
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as Schema from "effect/Schema"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RpcClient, serve } from "../../services/runtime/rpc.ts"
import { parseTraceparent } from "../../shared/trace.ts"
import { waitForPort } from "./harness.ts"

const port = 4922

describe("RPC over NATS", () => {
  let server: ChildProcess
  let nc: NatsConnection
  let rpc: RpcClient

  beforeAll(async () => {
    server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" })
    await waitForPort(port)
    nc = await connect({ servers: `127.0.0.1:${port}` })
    rpc = new RpcClient(nc, "_INBOX.rpc-test")
  })

  afterAll(async () => {
    rpc?.close()
    await nc?.close()
    server?.kill("SIGKILL")
  })

  it("matches 2000 concurrent replies to their calls", async () => {
    const ep = serve(nc, "test.echo", "raft.status", Schema.Struct({ n: Schema.Number }), (req) => req.reply("raft.status.reply", { n: req.body.n * 2 }))
    const results = await Promise.all(Array.from({ length: 2000 }, (_, n) => rpc.call("test.echo", "raft.status", { n }, { timeoutMs: 5000 })))
    expect(results.map((f) => (f.body as { n: number }).n)).toEqual(Array.from({ length: 2000 }, (_, n) => n * 2))
    expect(ep.counters.handled).toBe(2000)
    ep.stop()
  })

  it("retries a request whose first delivery was lost", async () => {
    const seen = new Map<number, number>()
    const ep = serve(nc, "test.lossy", "raft.status", Schema.Struct({}), (req) => {
      const count = (seen.get(req.frame.id) ?? 0) + 1
      seen.set(req.frame.id, count)
      if (count === 1) return // drop the first delivery of every request
      req.reply("raft.status.reply", { ok: true })
    })
    const before = rpc.counters.retries
    const replies = await Promise.all(Array.from({ length: 20 }, () => rpc.call("test.lossy", "raft.status", {}, { timeoutMs: 5000, retryAfterMs: 50 })))
    expect(replies).toHaveLength(20)
    expect(rpc.counters.retries - before).toBeGreaterThanOrEqual(20)
    ep.stop()
  })

  it("fails with RequestTimeout when nobody answers", async () => {
    await expect(rpc.call("test.nobody", "raft.status", {}, { timeoutMs: 300, retryAfterMs: 50 })).rejects.toMatchObject({ _tag: "RequestTimeout" })
  })

  it("continues the caller's trace in the serving hop", async () => {
    let seen = ""
    const ep = serve(nc, "test.trace", "raft.status", Schema.Struct({}), (req) => {
      seen = req.traceparent
      req.reply("raft.status.reply", {})
    })
    const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const reply = await rpc.call("test.trace", "raft.status", {}, { timeoutMs: 5000, traceparent: caller })
    const hop = parseTraceparent(seen)
    expect(hop?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736")
    expect(hop?.spanId).not.toBe("00f067aa0ba902b7")
    expect(reply.traceparent).toBe(seen)
    ep.stop()
  })
})
