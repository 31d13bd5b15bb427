/**
 * natcd's service-to-service RPC over a real nats-server: replies matched by id through one
 * shared inbox, retries after loss, timeouts, and trace context continued by the serving hop.
 */
import { connect } from "@nats-io/transport-node"
import type { NatsConnection } from "@nats-io/transport-node"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Schema from "effect/Schema"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { busReassemblyBudget, RpcClient, serve } from "../../services/runtime/rpc.ts"
import { chunkBytes, splitFrame } from "../../shared/chunks.ts"
import { decodeFrame, encodeFrame, maxFrameBytes } from "../../shared/frame.ts"
import { parseTraceparent } from "../../shared/trace.ts"
import { waitForPort } from "./harness.ts"

const port = 4922

describe("RPC over NATS", () => {
  let server: ChildProcess
  let nc: NatsConnection
  let rpc: RpcClient

  let dir: string

  beforeAll(async () => {
    // natcd's nats-server settings (services/supervisor/nats-servers.ts): 8 MiB messages at most.
    dir = mkdtempSync(join(tmpdir(), "natcd-rpc-"))
    writeFileSync(join(dir, "nats.conf"), `listen: 127.0.0.1:${port}\nmax_payload: ${maxFrameBytes}\nmax_pending: 268435456\n`)
    server = spawn("nats-server", ["-c", join(dir, "nats.conf")], { stdio: "ignore" })
    await waitForPort(port)
    nc = await connect({ servers: `127.0.0.1:${port}` })
    rpc = new RpcClient(nc, "_INBOX.rpc-test")
  })

  afterAll(async () => {
    rpc?.close()
    await nc?.close()
    server?.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
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

  describe("frames larger than one NATS message", () => {
    const Blob = Schema.Struct({ data: Schema.Uint8Array })
    const blob = (size: number, seed: number) => {
      const b = new Uint8Array(size)
      for (let i = 0; i < size; i += 1021) b[i] = (i * 31 + seed) & 0xff
      return b
    }
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))

    it("carries replies of 50 MiB, and three 20 MiB replies at once, whole", async () => {
      const ep = serve(nc, "test.big", "raft.status", Schema.Struct({ size: Schema.Number, seed: Schema.Number }), (req) =>
        req.reply("raft.status.reply", { data: blob(req.body.size, req.body.seed) }))
      const one = await rpc.call("test.big", "raft.status", { size: 50 * 1024 * 1024, seed: 1 }, { timeoutMs: 20_000 })
      expect(same((one.body as { data: Uint8Array }).data, blob(50 * 1024 * 1024, 1))).toBe(true)
      const three = await Promise.all([2, 3, 4].map((seed) => rpc.call("test.big", "raft.status", { size: 20 * 1024 * 1024, seed }, { timeoutMs: 20_000 })))
      three.forEach((f, i) => expect(same((f.body as { data: Uint8Array }).data, blob(20 * 1024 * 1024, i + 2))).toBe(true))
      expect(busReassemblyBudget.used).toBe(0)
      ep.stop()
    })

    it("carries a 20 MiB request, and a 20 MiB published frame, to the serving side whole", async () => {
      const sizes: number[] = []
      const ep = serve(nc, "test.bigin", "raft.status", Blob, (req) => {
        sizes.push(req.body.data.length)
        if (same(req.body.data, blob(req.body.data.length, 9))) req.reply("raft.status.reply", { ok: true })
      })
      const reply = await rpc.call("test.bigin", "raft.status", { data: blob(20 * 1024 * 1024, 9) }, { timeoutMs: 20_000 })
      expect(reply.body).toEqual({ ok: true })
      rpc.publish("test.bigin", "raft.status", { data: blob(12 * 1024 * 1024, 9) })
      // The request may be handled more than once (a retry while its pieces were on their way).
      await expect.poll(() => [...new Set(sizes)], { timeout: 10_000 }).toEqual([20 * 1024 * 1024, 12 * 1024 * 1024])
      expect(ep.counters.malformed).toBe(0)
      ep.stop()
    })

    it("repairs a lost chunk by the caller's retry", async () => {
      // A server that answers by hand: its first answer loses one chunk.
      let attempts = 0
      const data = blob(10 * 1024 * 1024, 5)
      const sub = nc.subscribe("test.lossychunks", {
        callback: (_err, msg) => {
          const req = decodeFrame(msg.data)
          if ("_tag" in req) return
          attempts++
          const encoded = encodeFrame({ kind: "raft.status.reply", version: 1, traceparent: "", id: req.id, body: { data } })
          const chunks = splitFrame(encoded, attempts)
          chunks.forEach((c, i) => {
            if (attempts === 1 && i === 4) return
            nc.publish(msg.reply!, encodeFrame({ kind: "chunk", version: 1, traceparent: "", id: req.id, body: c }))
          })
        }
      })
      const reply = await rpc.call("test.lossychunks", "raft.status", {}, { timeoutMs: 20_000, retryAfterMs: 300 })
      expect(attempts).toBe(2)
      expect(same((reply.body as { data: Uint8Array }).data, data)).toBe(true)
      expect(busReassemblyBudget.used).toBe(0)
      sub.unsubscribe()
    })

    it("fails a reply larger than the reassembly budget at once with ReplyTooLarge", async () => {
      const budget = busReassemblyBudget as { maxBytes: number }
      const saved = budget.maxBytes
      budget.maxBytes = 16 * chunkBytes
      try {
        const ep = serve(nc, "test.toolarge", "raft.status", Schema.Struct({}), (req) => req.reply("raft.status.reply", { data: blob(40 * 1024 * 1024, 1) }))
        const startedAt = Date.now()
        await expect(rpc.call("test.toolarge", "raft.status", {}, { timeoutMs: 30_000 })).rejects.toMatchObject({
          _tag: "ReplyTooLarge",
          maxBytes: 16 * chunkBytes
        })
        expect(Date.now() - startedAt).toBeLessThan(5000)
        ep.stop()
      } finally {
        budget.maxBytes = saved
      }
    })

    it("answers a malformed chunk with MalformedFrame", async () => {
      const ep = serve(nc, "test.badchunk", "raft.status", Schema.Struct({}), (req) => req.reply("raft.status.reply", {}))
      const bad = splitFrame(new Uint8Array(maxFrameBytes), 1)[0]!
      const reply = await nc.request("test.badchunk", encodeFrame({ kind: "chunk", version: 1, traceparent: "", id: 1, body: { ...bad, count: 3 } }), { timeout: 5000 })
      const frame = decodeFrame(reply.data)
      expect(frame).toMatchObject({ kind: "error", body: { err: { _tag: "MalformedFrame" } } })
      expect(ep.counters.malformed).toBe(1)
      ep.stop()
    })
  })
})
