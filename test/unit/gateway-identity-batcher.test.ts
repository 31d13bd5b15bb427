/**
 * The gateway's batching of caller identities (services/gateway/auth.ts IdentityBatcher): the
 * callers of one event-loop turn are resolved with one request, a token asked for twice is asked
 * once, an unknown token fails its callers "invalid auth token", a failed request fails every
 * caller of its batch, and a batch is sent early when it reaches its bound.
 */
import { describe, expect, it } from "vitest"
import type { AuthInfo } from "../../shared/auth.ts"
import { IdentityBatcher, maxIdentityBatch } from "../../services/gateway/auth.ts"
import type { Identity } from "../../services/gateway/auth.ts"

const outcome = (p: Promise<AuthInfo>) => p.then((i) => i.username, (e: { _tag?: string; code?: string }) => e.code ?? e._tag ?? String(e))

describe("IdentityBatcher", () => {
  it("asks once per turn, once per distinct identity, in order", async () => {
    const asked: Array<ReadonlyArray<Identity>> = []
    const b = new IdentityBatcher(async (items) => {
      asked.push(items)
      return items.map((i) => ("token" in i ? (i.token === "bad" ? null : { username: `user-${i.token}`, revision: 3 }) : { username: i.commonName, revision: 3 }))
    })
    const results = await Promise.all([
      outcome(b.resolve({ token: "a" })),
      outcome(b.resolve({ token: "b" })),
      outcome(b.resolve({ token: "a" })),
      outcome(b.resolve({ commonName: "alice" })),
      outcome(b.resolve({ token: "bad" }))
    ])
    expect(results).toEqual(["user-a", "user-b", "user-a", "alice", "InvalidAuthToken"])
    expect(asked).toEqual([[{ token: "a" }, { token: "b" }, { commonName: "alice" }, { token: "bad" }]])
    expect(await outcome(b.resolve({ token: "a" }))).toBe("user-a")
    expect(asked).toHaveLength(2)
  })

  it("fails every caller of a batch whose request failed, and counts the answers", async () => {
    const failing = new IdentityBatcher(() => Promise.reject({ _tag: "RequestTimeout" }))
    expect(await Promise.all([outcome(failing.resolve({ token: "a" })), outcome(failing.resolve({ token: "b" }))])).toEqual(["RequestTimeout", "RequestTimeout"])
    const short = new IdentityBatcher(async () => [])
    expect(await outcome(short.resolve({ token: "a" }))).toBe("MalformedFrame")
  })

  it("sends a full batch at once", async () => {
    const sizes: number[] = []
    const b = new IdentityBatcher(async (items) => {
      sizes.push(items.length)
      return items.map(() => ({ username: "u", revision: 1 }))
    })
    await Promise.all(Array.from({ length: maxIdentityBatch + 5 }, (_, i) => b.resolve({ token: `t${i}` })))
    expect(sizes).toEqual([maxIdentityBatch, 5])
  })
})
