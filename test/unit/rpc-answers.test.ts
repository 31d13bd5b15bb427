/**
 * The calling side of the bus (services/runtime/rpc.ts) against a NATS connection that never
 * answers unless the test does: an answered error is rethrown as its shared/errors.ts instance,
 * with the frame's fields; the RpcClient's own outcomes without an answer (RequestTimeout,
 * Stopped) are isUnanswered, an answer that carried the same tag is not, and either encodes as
 * the same plain data.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { describe, expect, it } from "vitest"
import { raftReadIndex } from "../../shared/endpoints.ts"
import { Compacted, MalformedFrame, RequestTimeout, Stopped, toErrorData } from "../../shared/errors.ts"
import { decodeFrame, encodeFrame } from "../../shared/frame.ts"
import type { Frame } from "../../shared/frame.ts"
import { callEndpoint, isUnanswered, okOf, RpcClient } from "../../services/runtime/rpc.ts"

/** A connection that records published frames; `answer` delivers a reply to the client's inbox. */
const silentBus = () => {
  let deliver: ((err: Error | null, msg: { data: Uint8Array }) => void) | undefined
  const sent: Frame[] = []
  const nc = {
    subscribe: (_subject: string, opts: { callback: typeof deliver }) => {
      deliver = opts.callback
      return { unsubscribe: () => {} }
    },
    publish: (_subject: string, data: Uint8Array) => {
      sent.push(decodeFrame(data) as Frame)
    }
  } as unknown as NatsConnection
  const answer = (id: number, kind: string, body: unknown) =>
    deliver!(null, { data: encodeFrame({ kind, version: 1, traceparent: "", id, body }) })
  return { nc, sent, answer }
}

const failureOf = (p: Promise<unknown>): Promise<unknown> => p.then(() => expect.fail("resolved"), (e: unknown) => e)

describe("answered and unanswered failures", () => {
  it("a call without a reply fails with RequestTimeout that isUnanswered", async () => {
    const { nc } = silentBus()
    const rpc = new RpcClient(nc, "inbox")
    const e = await failureOf(rpc.call("nobody", "readindex", {}, { timeoutMs: 30, retryAfterMs: 10 }))
    expect(e).toBeInstanceOf(RequestTimeout)
    expect(isUnanswered(e)).toBe(true)
    expect(toErrorData(e as RequestTimeout)).toEqual({ _tag: "RequestTimeout" })
  })

  it("calls waiting at close, and calls after it, fail with Stopped that isUnanswered", async () => {
    const { nc } = silentBus()
    const rpc = new RpcClient(nc, "inbox")
    const waiting = failureOf(rpc.call("nobody", "readindex", {}, { timeoutMs: 10_000 }))
    rpc.close()
    const later = failureOf(rpc.call("nobody", "readindex", {}, { timeoutMs: 10_000 }))
    for (const e of [await waiting, await later]) {
      expect(e).toBeInstanceOf(Stopped)
      expect(isUnanswered(e)).toBe(true)
    }
  })

  it("an error frame answering RequestTimeout is an instance that is not isUnanswered", async () => {
    const { nc, sent, answer } = silentBus()
    const rpc = new RpcClient(nc, "inbox")
    const pending = failureOf(callEndpoint(rpc, raftReadIndex, "raft.ri", {}, { timeoutMs: 10_000 }))
    answer(sent[0]!.id, "error", { err: { _tag: "RequestTimeout" } })
    const e = await pending
    expect(e).toBeInstanceOf(RequestTimeout)
    expect(isUnanswered(e)).toBe(false)
    rpc.close()
  })

  it("an error frame without an error is MalformedFrame", async () => {
    const { nc, sent, answer } = silentBus()
    const rpc = new RpcClient(nc, "inbox")
    const pending = failureOf(callEndpoint(rpc, raftReadIndex, "raft.ri", {}, { timeoutMs: 10_000 }))
    answer(sent[0]!.id, "error", {})
    const e = await pending
    expect(e).toBeInstanceOf(MalformedFrame)
    expect(e).toMatchObject({ _tag: "MalformedFrame", reason: "error frame without an error" })
    rpc.close()
  })

  it("okOf throws an `{ err }` reply as its instance, with the frame's fields", () => {
    const data = { _tag: "Compacted", requestedRevision: 3, compactRevision: 5 } as const
    let thrown: unknown
    try {
      okOf({ err: data })
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(Compacted)
    expect(thrown).toMatchObject(data)
    expect(toErrorData(thrown as Compacted)).toEqual(data)
    expect(isUnanswered(thrown)).toBe(false)
    expect(okOf({ ok: 7 })).toBe(7)
  })

  it("nothing made elsewhere isUnanswered", () => {
    expect(isUnanswered(new RequestTimeout())).toBe(false)
    expect(isUnanswered(new Stopped())).toBe(false)
    expect(isUnanswered({ _tag: "RequestTimeout" })).toBe(false)
    expect(isUnanswered(undefined)).toBe(false)
  })
})
