/**
 * The gateway's batching read path (services/runtime/reader.ts) against a scripted RPC client:
 * reads of one turn share one ReadIndex and one range frame, a read never joins a ReadIndex
 * request already sent, results map back in order, and `retry` results are asked again alone.
 */
import { describe, expect, it } from "vitest"
import type { Frame } from "../../shared/frame.ts"
import type { RangeRequest } from "../../shared/kv.ts"
import { Compacted, NoLeader } from "../../shared/errors.ts"
import { isUnanswered } from "../../services/runtime/rpc.ts"
import type { RpcClient } from "../../services/runtime/rpc.ts"
import { Reader } from "../../services/runtime/reader.ts"

interface Call {
  readonly kind: string
  readonly body: any
  readonly answer: (body: unknown) => void
}

/** An RpcClient whose calls wait until the test answers them. */
const scripted = () => {
  const calls: Call[] = []
  const rpc = {
    call: (_subject: string, kind: string, body: unknown) =>
      new Promise<Frame>((resolve) => {
        calls.push({ kind, body, answer: (reply) => resolve({ kind: `${kind}.reply`, version: 2, traceparent: "", id: 1, body: reply }) })
      })
  } as unknown as RpcClient
  return { rpc, calls }
}

/** Lets scheduled flushes run (answers resolve in microtasks, which then schedule the next flush). */
const turn = async () => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r))
}
const key = (k: string): RangeRequest => ({ key: new TextEncoder().encode(k) })
const ok = (revision: number) => ({ ok: { response: { kvs: [], more: false, count: revision }, revision, term: 2 } })

describe("Reader", () => {
  it("shares one ReadIndex and one range frame among the reads of a turn", async () => {
    const { rpc, calls } = scripted()
    const reader = new Reader(rpc, { readIndexSubject: "ri", rangeSubject: "r", requestTimeoutMs: 1000 })
    const reads = [reader.range(key("a"), ""), reader.range(key("b"), ""), reader.range({ ...key("c"), serializable: true }, "")]
    await turn()
    // The serializable read went out alone (it needs no ReadIndex); the two others wait for one.
    expect(calls.map((c) => c.kind)).toEqual(["readindex", "range"])
    expect(calls[1]!.body.requests.map((r: { minAppliedIndex: number }) => r.minAppliedIndex)).toEqual([0])
    calls[1]!.answer({ ok: { results: [ok(7)] } })
    // A read arriving now must not share the ReadIndex request already sent.
    const late = reader.range(key("d"), "")
    calls[0]!.answer({ ok: { index: 42 } })
    await turn()
    expect(calls.map((c) => c.kind)).toEqual(["readindex", "range", "readindex", "range"])
    expect(calls[3]!.body.requests.map((r: { minAppliedIndex: number }) => r.minAppliedIndex)).toEqual([42, 42])
    calls[3]!.answer({ ok: { results: [ok(8), { err: { _tag: "Compacted", requestedRevision: 3, compactRevision: 5 } }] } })
    expect((await reads[0]!).revision).toBe(8)
    // An answered error is rethrown as its shared/errors.ts instance, with the frame's fields.
    await expect(reads[1]).rejects.toBeInstanceOf(Compacted)
    await expect(reads[1]).rejects.toMatchObject({ _tag: "Compacted", requestedRevision: 3, compactRevision: 5 })
    expect((await reads[2]!).revision).toBe(7)
    calls[2]!.answer({ ok: { index: 43 } })
    await turn()
    calls[4]!.answer({ ok: { results: [ok(9)] } })
    expect((await late).revision).toBe(9)
  })

  it("asks again alone for a result that did not fit the batch reply", async () => {
    const { rpc, calls } = scripted()
    const reader = new Reader(rpc, { readIndexSubject: "ri", rangeSubject: "r", requestTimeoutMs: 1000 })
    const a = reader.range({ ...key("a"), serializable: true }, "")
    const b = reader.range({ ...key("b"), serializable: true }, "")
    await turn()
    calls[0]!.answer({ ok: { results: [ok(5), { retry: true }] } })
    await turn()
    expect(calls[1]!.body.requests).toHaveLength(1)
    expect(new TextDecoder().decode(calls[1]!.body.requests[0].request.key)).toBe("b")
    calls[1]!.answer({ ok: { results: [ok(6)] } })
    expect((await a).revision).toBe(5)
    expect((await b).revision).toBe(6)
  })

  it("fails every read of a batch with the error of its ReadIndex", async () => {
    const { rpc, calls } = scripted()
    const reader = new Reader(rpc, { readIndexSubject: "ri", rangeSubject: "r", requestTimeoutMs: 1000 })
    const reads = [reader.range(key("a"), ""), reader.range(key("b"), "")]
    await turn()
    calls[0]!.answer({ err: { _tag: "NoLeader" } })
    for (const r of reads) {
      await expect(r).rejects.toBeInstanceOf(NoLeader)
      await expect(r).rejects.toMatchObject({ _tag: "NoLeader" })
      expect(isUnanswered(await r.catch((e: unknown) => e))).toBe(false)
    }
  })
})
