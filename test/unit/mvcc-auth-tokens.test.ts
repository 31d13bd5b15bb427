/**
 * The token provider (services/mvcc/auth-tokens.ts) on a fake clock: simple tokens (etcd
 * auth/simple_token.go: "<prefix>.<index>", a TTL that each use starts again, dropped with their
 * user or when auth is disabled) and JWTs (etcd auth/jwt.go: claims username, revision, exp;
 * RS256, ES256 and HS256 keys; a forged or expired token names nobody), and `--auth-token`
 * parsing with etcd's errors.
 */
import { generateKeyPairSync } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { AuthTokens, maxSimpleTokens, parseAuthToken } from "../../services/mvcc/auth-tokens.ts"

const dir = mkdtempSync(join(tmpdir(), "natcd-auth-tokens-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const keyFiles = (name: string, kind: "rsa" | "ec") => {
  const { publicKey, privateKey } = kind === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: 2048 })
    : generateKeyPairSync("ec", { namedCurve: "P-256" })
  const pub = join(dir, `${name}.pub`)
  const priv = join(dir, `${name}.key`)
  writeFileSync(pub, publicKey.export({ type: "spki", format: "pem" }))
  writeFileSync(priv, privateKey.export({ type: kind === "rsa" ? "pkcs1" : "sec1", format: "pem" }))
  return { pub, priv }
}

describe("simple tokens", () => {
  it("are '<prefix>.<index>', live their TTL after the last use, and die with their user or auth", () => {
    let now = 1_000_000
    const tokens = new AuthTokens({ kind: "simple" }, 300, () => now)
    const a = tokens.assign("alice", "abcdefghijklmnop", 42, 7, false)
    expect(a).toBe("abcdefghijklmnop.42")
    const b = tokens.assign("bob", "ABCDEFGHIJKLMNOP", 43, 7, false)!
    expect(tokens.info(a!, 9)).toEqual({ username: "alice", revision: 9 })
    now += 299_000
    expect(tokens.info(a!, 9)?.username).toBe("alice") // used: 300 s again from now
    now += 299_000
    expect(tokens.info(a!, 9)?.username).toBe("alice")
    expect(tokens.info(b, 9)).toBeUndefined() // unused for 598 s
    now += 300_000
    tokens.sweep()
    expect(tokens.size()).toBe(0)
    const c = tokens.assign("carol", "x", 50, 1, true)!
    const d = tokens.assign("dave", "y", 51, 1, true)!
    tokens.invalidateUser("carol")
    expect(tokens.info(c, 1)).toBeUndefined()
    expect(tokens.info(d, 1)?.username).toBe("dave")
    tokens.disable()
    expect(tokens.info(d, 1)).toBeUndefined()
    expect(tokens.info("nonsense", 1)).toBeUndefined()
  })

  it("hold at most maxSimpleTokens, dropping the least recently used", () => {
    const tokens = new AuthTokens({ kind: "simple" })
    const first = tokens.assign("u", "first", 1, 1, false)!
    const second = tokens.assign("u", "second", 2, 1, false)!
    tokens.info(first, 1) // first is now the most recently used
    for (let i = 3; i <= maxSimpleTokens + 1; i++) tokens.assign("u", "t", i, 1, false)
    expect(tokens.size()).toBe(maxSimpleTokens)
    expect(tokens.info(second, 1)).toBeUndefined()
    expect(tokens.info(first, 1)?.username).toBe("u")
  })
})

describe("JWT tokens", () => {
  it.each(["RS256", "ES256", "HS256"] as const)("%s: signed where answered, verified anywhere with the key, forged or expired ones refused", (method) => {
    let now = Date.now()
    const keys = method === "HS256" ? undefined : keyFiles(method, method === "RS256" ? "rsa" : "ec")
    const secret = join(dir, "hmac.secret")
    if (keys === undefined) writeFileSync(secret, "a shared secret of the cluster")
    const option = keys === undefined
      ? `jwt,priv-key=${secret},sign-method=${method},ttl=1m`
      : `jwt,pub-key=${keys.pub},priv-key=${keys.priv},sign-method=${method},ttl=1m`
    const tokens = new AuthTokens(parseAuthToken(option), 300, () => now)
    expect(tokens.assign("alice", "prefix", 10, 5, false)).toBeUndefined()
    const token = tokens.assign("alice", "prefix", 10, 5, true)!
    expect(token.split(".")).toHaveLength(3)
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>
    expect(claims).toMatchObject({ username: "alice", revision: 5 })
    expect(tokens.info(token, 99)).toEqual({ username: "alice", revision: 5 })
    const [h, p] = token.split(".")
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, username: "root" })).toString("base64url")}.${token.split(".")[2]}`
    expect(p).not.toBe(forged.split(".")[1])
    expect(tokens.info(forged, 99)).toBeUndefined()
    // A verify-only member (RS/ES with pub-key alone) checks tokens but cannot sign.
    if (keys !== undefined) {
      const verifyOnly = new AuthTokens(parseAuthToken(`jwt,pub-key=${keys.pub},sign-method=${method}`))
      expect(verifyOnly.info(token, 1)?.username).toBe("alice")
      expect(() => verifyOnly.assign("alice", "p", 1, 1, true)).toThrow("auth: token signing attempted with verify-only key")
    }
    now += 61_000
    expect(tokens.info(token, 1)).toBeUndefined()
  })

  it("parses --auth-token with etcd's errors", () => {
    expect(parseAuthToken("simple")).toEqual({ kind: "simple" })
    expect(() => parseAuthToken("opaque")).toThrow("auth: invalid auth options")
    expect(() => parseAuthToken("jwt,sign-method=RS256")).toThrow("auth: missing key data: pub-key")
    expect(() => parseAuthToken("jwt,sign-method=HS256")).toThrow("auth: missing key data: priv-key")
    expect(() => parseAuthToken("jwt,pub-key=x,sign-method=none")).toThrow("auth: invalid auth signature method")
  })
})
