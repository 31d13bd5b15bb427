/**
 * The retry helper (services/runtime/retry.ts): a first success costs one call; retryable
 * failures are tried again after the backoff; other failures pass through unchanged; the bound
 * (attempts or deadline) ends the call with the policy's named error, and a wait that would run
 * past the deadline is cut to it with no attempt after it.
 */
import { AsyncLocalStorage } from "node:async_hooks"
import { describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import { RequestTimeout, NoLeader } from "../../shared/errors.ts"
import { retryEffect, retryPromise } from "../../services/runtime/retry.ts"
import type { RetryPolicy } from "../../services/runtime/retry.ts"

const policy = (over: Partial<RetryPolicy<unknown, unknown>> = {}): RetryPolicy<unknown, unknown> => ({
  name: "test operation",
  backoff: { initialMs: 5 },
  retryable: (e) => (e as { _tag?: string })._tag === "NoLeader",
  atBound: () => new RequestTimeout(),
  ...over
})

describe("retryPromise", () => {
  it("resolves with a first success after one call", async () => {
    let calls = 0
    await expect(retryPromise(policy(), async () => ++calls)).resolves.toBe(1)
    expect(calls).toBe(1)
  })

  it("retries retryable failures until one succeeds", async () => {
    let calls = 0
    const r = await retryPromise(policy({ maxAttempts: 5 }), async () => {
      if (++calls < 3) throw new NoLeader()
      return "ok"
    })
    expect(r).toBe("ok")
    expect(calls).toBe(3)
  })

  it("runs every retry in the async context of its call (a request's trace and auth context)", async () => {
    const context = new AsyncLocalStorage<string>()
    const seen = new Map<string, Array<string | undefined>>()
    const call = (request: string) => retryPromise(policy({ maxAttempts: 4 }), async () => {
      const list = seen.get(request) ?? []
      seen.set(request, list)
      list.push(context.getStore())
      if (list.length < 4) throw new NoLeader()
      return request
    })
    // Concurrent calls, each made inside its own request's context; their retries run later,
    // from timers and the fiber scheduler they share.
    const requests = ["a", "b", "c", "d"]
    await expect(Promise.all(requests.map((r) => context.run(r, () => call(r))))).resolves.toEqual(requests)
    for (const r of requests) expect(seen.get(r)).toEqual([r, r, r, r])
  })

  it("passes a failure that is not retryable through unchanged, at once", async () => {
    let calls = 0
    const failure = { _tag: "LeaseNotFound", leaseId: 1n }
    await expect(retryPromise(policy(), async () => {
      calls++
      throw failure
    })).rejects.toBe(failure)
    expect(calls).toBe(1)
  })

  it("fails with atBound after maxAttempts", async () => {
    let calls = 0
    const e = await retryPromise(policy({ maxAttempts: 3 }), async () => {
      calls++
      throw new NoLeader()
    }).catch((x) => x)
    expect(e).toBeInstanceOf(RequestTimeout)
    expect(calls).toBe(3)
  })

  it("gives atBound the last retryable failure", async () => {
    let calls = 0
    const e = await retryPromise(policy({ maxAttempts: 2, atBound: (last) => ({ bound: last }) }), async () => {
      throw { _tag: "NoLeader", n: ++calls }
    }).catch((x) => x)
    expect(e).toEqual({ bound: { _tag: "NoLeader", n: 2 } })
  })

  it("cuts a wait at the deadline and makes no attempt after it", async () => {
    let calls = 0
    const started = Date.now()
    const e = await retryPromise(policy({ deadlineMs: 60, backoff: { initialMs: 1000 } }), async () => {
      calls++
      throw new NoLeader()
    }).catch((x) => x)
    const took = Date.now() - started
    expect(e).toBeInstanceOf(RequestTimeout)
    expect(calls).toBe(1)
    expect(took).toBeGreaterThanOrEqual(50)
    expect(took).toBeLessThan(900)
  })

  it("grows an exponential backoff up to its maximum", async () => {
    const at: number[] = []
    await retryPromise(policy({ maxAttempts: 5, backoff: { initialMs: 10, factor: 2, maxMs: 20 } }), async () => {
      at.push(Date.now())
      throw new NoLeader()
    }).catch(() => undefined)
    const gaps = at.slice(1).map((t, i) => t - at[i]!)
    expect(gaps.length).toBe(4)
    expect(gaps[0]).toBeGreaterThanOrEqual(8)
    for (const g of gaps.slice(1)) expect(g).toBeGreaterThanOrEqual(18)
  })
})

describe("retryEffect", () => {
  it("retries an Effect and fails it with atBound at the bound", async () => {
    let calls = 0
    const attempt = Effect.suspend(() => {
      calls++
      return Effect.fail(new NoLeader())
    })
    const exit = await Effect.runPromise(Effect.flip(retryEffect(policy({ maxAttempts: 4 }), attempt)))
    expect(exit).toBeInstanceOf(RequestTimeout)
    expect(calls).toBe(4)
  })
})
