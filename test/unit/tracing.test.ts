/**
 * The tracing runtime (services/runtime/tracing.ts, trace-store.ts, otlp.ts) and the `natcd
 * trace` formatting (services/cli/trace.ts): sampling and tail keeping, the traceparent a
 * proposal carries, the bounded store, the OTLP/JSON export to a collector, and the causal
 * order of a waterfall.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync, statSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { packValue } from "../../shared/frame.ts"
import { causalOrder, formatWaterfall, parseSince, selectRequests } from "../../services/cli/trace.ts"
import { otlpLayer, otlpTracesUrl } from "../../services/runtime/otlp.ts"
import { readSpans, TraceFileStore } from "../../services/runtime/trace-store.ts"
import {
  addSpanSink,
  configureTracing,
  endSpan,
  keepTrace,
  proposalTraceparent,
  spanTraceparent,
  startRootSpan,
  startSpan,
  withHopSpan
} from "../../services/runtime/tracing.ts"
import type { SpanRecord } from "../../services/runtime/tracing.ts"

const collect = () => {
  const spans: SpanRecord[] = []
  const remove = addSpanSink((s) => spans.push(s))
  return { spans, remove }
}

describe("sampling", () => {
  let cleanup: (() => void) | undefined
  afterEach(() => {
    cleanup?.()
    configureTracing({ service: "test", member: "t", sampleRatio: 1, slowMs: 1000 })
  })

  it("exports sampled spans at once, with parent links from traceparents", () => {
    configureTracing({ service: "gateway", member: "m1", sampleRatio: 1, slowMs: 0 })
    const { spans, remove } = collect()
    cleanup = remove
    const root = startRootSpan("KV.Put", { key: "a" })!
    const hop = withHopSpan("propose", spanTraceparent(root), (tp) => {
      expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
      return tp
    })
    endSpan(root)
    expect(spans.map((s) => s.n)).toEqual(["propose", "KV.Put"])
    expect(spans[0]!.p).toBe(root.spanId)
    expect(spans[0]!.t).toBe(root.traceId)
    expect(hop.slice(36, 52)).toBe(spans[0]!.s)
    expect(spans[1]!).toMatchObject({ p: "", svc: "gateway", m: "m1", smp: true, a: { key: "a" } })
  })

  it("traces nothing when the ratio misses and slow capture is off", () => {
    configureTracing({ service: "gateway", member: "m1", sampleRatio: 0, slowMs: 0 })
    expect(startRootSpan("KV.Put")).toBeUndefined()
    expect(withHopSpan("x", "", (tp) => tp)).toBe("")
  })

  it("keeps unsampled spans in the ring and exports the whole trace when its root is slow", () => {
    configureTracing({ service: "gateway", member: "m1", sampleRatio: 0, slowMs: 5 })
    const { spans, remove } = collect()
    cleanup = remove
    const fast = startRootSpan("KV.Range")!
    expect(fast.sampled).toBe(false)
    endSpan(fast, undefined, undefined, fast.startUs + 1000)
    expect(spans).toEqual([])
    const slow = startRootSpan("KV.Put")!
    const child = startSpan("raft.append", spanTraceparent(slow))!
    expect(spanTraceparent(child).endsWith("-00")).toBe(true)
    endSpan(child)
    expect(spans).toEqual([])
    endSpan(slow, undefined, undefined, slow.startUs + 20_000)
    expect(spans.map((s) => s.n).sort()).toEqual(["KV.Put", "raft.append"])
    expect(spans.every((s) => !s.smp)).toBe(true)
    // A span of a kept trace that ends later is exported too; others stay in the ring.
    endSpan(startSpan("mvcc.apply", spanTraceparent(slow)))
    expect(spans.map((s) => s.n)).toContain("mvcc.apply")
    endSpan(startSpan("mvcc.apply", spanTraceparent(fast)))
    expect(spans.filter((s) => s.t === fast.traceId)).toEqual([])
    // A keep notice from another process exports what the ring holds of that trace.
    keepTrace(fast.traceId)
    expect(spans.filter((s) => s.t === fast.traceId).map((s) => s.n).sort()).toEqual(["KV.Range", "mvcc.apply"])
  })
})

describe("proposalTraceparent", () => {
  it("finds the traceparent of a packed proposal, and nothing in others", () => {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    const proposal = (traceparent: string) =>
      packValue({ requestId: 2n ** 63n - 1n, origin: "m2", replyTo: "natcd.natcd.m2.gateway.result.0123456789abcdef", deadlineMs: 1_700_000_000_000, traceparent, request: { put: { key: new Uint8Array(300), value: new Uint8Array(10) } } })
    expect(proposalTraceparent(proposal(tp))).toBe(tp)
    expect(proposalTraceparent(proposal(""))).toBe("")
    expect(proposalTraceparent(new Uint8Array(0))).toBe("")
    expect(proposalTraceparent(packValue({ something: "else", traceparent: 5 }))).toBe("")
  })
})

describe("trace store", () => {
  it("appends JSON lines, rotates at its bound, and reads every file back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "natcd-traces-"))
    try {
      const store = new TraceFileStore(dir, "raft-m1", 4096)
      const span = (i: number): SpanRecord => ({ t: "a".repeat(32), s: i.toString(16).padStart(16, "0"), p: "", n: "x", svc: "raft", m: "m1", pid: 1, h: "h", st: i, d: 1, a: {}, smp: true })
      for (let i = 0; i < 100; i++) {
        store.add(span(i))
        if (i % 10 === 9) await store.drain()
      }
      store.flushSync()
      expect(statSync(join(dir, "raft-m1.jsonl")).size).toBeLessThanOrEqual(4096)
      expect(store.counters.rotations).toBeGreaterThan(0)
      const back = await readSpans(dir)
      expect(back.length).toBeGreaterThan(10)
      expect(back.length).toBeLessThan(100)
      // The newest spans survive rotation.
      expect(back.some((s) => s.st === 99)).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("OTLP export", () => {
  it("names the endpoint from the standard variables", () => {
    expect(otlpTracesUrl({})).toBeUndefined()
    expect(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })).toBe("http://c:4318/v1/traces")
    expect(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t/x" })).toBe("http://t/x")
    expect(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" })).toBeUndefined()
  })

  it("sends spans as OTLP/JSON to a collector", async () => {
    const bodies: any[] = []
    const server = createServer((req, res) => {
      let text = ""
      req.on("data", (c) => (text += c))
      req.on("end", () => {
        bodies.push({ url: req.url, body: JSON.parse(text) })
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{}")
      })
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
    const port = (server.address() as { port: number }).port
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${port}`
    process.env.OTEL_BSP_SCHEDULE_DELAY = "100"
    configureTracing({ service: "wal", member: "m3", sampleRatio: 1, slowMs: 0 })
    try {
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function*() {
            yield* Layer.build(otlpLayer("wal", "m3"))
            const root = startRootSpan("KV.Put", { key: "k" })!
            endSpan(startSpan("wal.fsync", spanTraceparent(root), { entries: 3 }))
            endSpan(root, undefined, "boom")
            yield* Effect.sleep(400)
          })
        )
      )
    } finally {
      process.env = saved
      server.close()
    }
    expect(bodies.length).toBeGreaterThan(0)
    expect(bodies[0].url).toBe("/v1/traces")
    const rs = bodies.flatMap((b) => b.body.resourceSpans)
    const spans = rs.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))
    const attrs = rs[0].resource.attributes.map((a: any) => [a.key, a.value.stringValue])
    expect(attrs).toContainEqual(["service.name", "natcd-wal"])
    const fsync = spans.find((s: any) => s.name === "wal.fsync")
    const root = spans.find((s: any) => s.name === "KV.Put")
    expect(fsync.parentSpanId).toBe(root.spanId)
    expect(fsync.traceId).toBe(root.traceId)
    expect(fsync.attributes).toContainEqual({ key: "entries", value: { intValue: "3" } })
    expect(root.status).toEqual({ code: 2, message: "boom" })
    expect(BigInt(root.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(root.startTimeUnixNano))
  })
})

describe("natcd trace formatting", () => {
  const s = (id: string, parent: string, name: string, st: number, d: number, extra: Partial<SpanRecord> = {}): SpanRecord =>
    ({ t: "f".repeat(32), s: id.padStart(16, "0"), p: parent === "" ? "" : parent.padStart(16, "0"), n: name, svc: "x", m: "m1", pid: 1, h: "h", st, d, a: {}, smp: true, ...extra })

  it("orders a trace depth-first by start time, orphans after the root", () => {
    const spans = [s("3", "2", "wal.fsync", 30, 5), s("1", "", "KV.Put", 0, 100), s("2", "1", "raft.append", 20, 30), s("4", "1", "propose", 10, 1), s("5", "9", "lost", 50, 1)]
    expect(causalOrder(spans).map(({ span, depth }) => `${depth}:${span.n}`)).toEqual(["0:KV.Put", "1:propose", "1:raft.append", "2:wal.fsync", "1:lost"])
    const lines = formatWaterfall("f".repeat(32), spans)
    expect(lines[0]).toContain("KV.Put")
    expect(lines.some((l) => l.includes("    wal.fsync"))).toBe(true)
    expect(formatWaterfall("0".repeat(32), spans)).toEqual([`no spans of trace ${"0".repeat(32)} in the store`])
  })

  it("selects requests by key, recency and duration", () => {
    const now = 1_000_000
    const spans = [
      s("1", "", "KV.Put", (now - 10_000) * 1000, 5000, { a: { key: "foo" } }),
      s("2", "", "KV.Put", (now - 1000) * 1000, 1000, { a: { key: "bar" } }),
      s("3", "", "KV.Range", (now - 500) * 1000, 9000, { a: { key: "foo" } }),
      s("4", "3", "raft", (now - 500) * 1000, 10)
    ]
    expect(selectRequests(spans, { key: "foo", limit: 10, nowMs: now }).map((r) => r.s.slice(-1))).toEqual(["3", "1"])
    expect(selectRequests(spans, { key: "foo", sinceMs: 5000, limit: 10, nowMs: now }).map((r) => r.s.slice(-1))).toEqual(["3"])
    expect(selectRequests(spans, { slowest: true, limit: 2, nowMs: now }).map((r) => r.s.slice(-1))).toEqual(["3", "1"])
    expect(parseSince("1m")).toBe(60_000)
    expect(parseSince("250")).toBe(250)
    expect(parseSince("x")).toBeUndefined()
  })
})
