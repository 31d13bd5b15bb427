/**
 * The member's auth token provider (etcd auth/simple_token.go and auth/jwt.go), chosen by
 * `--auth-token`:
 *
 * - `simple` (etcd's default): a token is "<16 random letters>.<raft index>", the letters chosen
 *   by the gateway that took the Authenticate call and the index of the entry that applied it.
 *   Every member applies that entry and so knows the token (as every etcd member does). It stays
 *   valid `--auth-token-ttl` seconds (default 300) after its last use, until its user is deleted
 *   or changes password, or authentication is disabled. Tokens live in memory only: a restart
 *   forgets them and clients authenticate again, as with etcd. At most {@link maxSimpleTokens}
 *   tokens are held; beyond it the least recently used is dropped.
 * - `jwt,pub-key=<file>,priv-key=<file>,sign-method=<RS256|PS256|ES256|HS256|…>[,ttl=<duration>]`
 *   (HS*: the shared secret in priv-key, no pub-key): a JSON Web
 *   Token signed by the member that applied the Authenticate, with the claims etcd uses
 *   (`username`, `revision`, `exp`), valid on every member that has the public key until it
 *   expires (ttl default 5 minutes). A JWT names the auth revision it was issued at, so any
 *   change of the auth store after that makes requests with it fail "revision of auth store is
 *   old" until the client authenticates again, as with etcd.
 *
 * Signing and verifying use the `jsonwebtoken` library.
 */
import { readFileSync } from "node:fs"
import jwt from "jsonwebtoken"
import type { AuthInfo } from "../../shared/auth.ts"

/** etcd's default simple token TTL (--auth-token-ttl), seconds. */
export const defaultAuthTokenTtlSec = 300

/** etcd's default JWT lifetime (the `ttl` option of --auth-token jwt), ms. */
export const defaultJwtTtlMs = 5 * 60 * 1000

/** Most simple tokens held by a member (tokens); the least recently used goes first beyond it. */
export const maxSimpleTokens = 100_000

/** The JWT signing methods etcd accepts (auth/jwt.go, via golang-jwt); HS* take the secret from priv-key. */
const jwtMethods = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"] as const
type JwtMethod = (typeof jwtMethods)[number]

/** The parsed `--auth-token` option. */
export type TokenKind =
  | { readonly kind: "simple" }
  | { readonly kind: "jwt"; readonly publicKey: string; readonly privateKey: string | undefined; readonly method: JwtMethod; readonly ttlMs: number }

/** A Go duration ("5m", "300s", "1h") in ms, for the jwt `ttl` option. */
const goDurationMs = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s)
  if (m === null) throw new Error(`invalid duration ${JSON.stringify(s)}`)
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"]
}

/**
 * Parses `--auth-token` as etcd does (etcdserver decomposeOpts): "simple", or "jwt," with
 * comma-separated `pub-key`, `priv-key` (optional: a verify-only member), `sign-method` and
 * `ttl`. Throws with etcd's wording for an unknown type, method or a missing key.
 */
export const parseAuthToken = (option: string): TokenKind => {
  const [kind, ...rest] = option.split(",")
  if (kind === "simple") return { kind: "simple" }
  if (kind !== "jwt") throw new Error(`auth: invalid auth options: unknown token type ${JSON.stringify(kind)}`)
  const opts = new Map(rest.map((kv) => {
    const at = kv.indexOf("=")
    return at < 0 ? [kv, ""] : [kv.slice(0, at), kv.slice(at + 1)]
  }))
  const method = opts.get("sign-method") ?? ""
  if (!(jwtMethods as ReadonlyArray<string>).includes(method)) throw new Error(`auth: invalid auth signature method: ${JSON.stringify(method)}`)
  const pub = opts.get("pub-key")
  const priv = opts.get("priv-key")
  const privateKey = priv === undefined || priv === "" ? undefined : readFileSync(priv, "utf8")
  // etcd: an HMAC method signs and verifies with the secret in priv-key; the others verify with pub-key.
  if (method.startsWith("HS")) {
    if (privateKey === undefined) throw new Error("auth: missing key data: priv-key")
    return { kind: "jwt", publicKey: privateKey, privateKey, method: method as JwtMethod, ttlMs: opts.has("ttl") ? goDurationMs(opts.get("ttl")!) : defaultJwtTtlMs }
  }
  if (pub === undefined || pub === "") throw new Error("auth: missing key data: pub-key")
  return {
    kind: "jwt",
    publicKey: readFileSync(pub, "utf8"),
    privateKey,
    method: method as JwtMethod,
    ttlMs: opts.has("ttl") ? goDurationMs(opts.get("ttl")!) : defaultJwtTtlMs
  }
}

/**
 * Issues and resolves tokens. Invariant (simple): `simple` maps each live token to its user and
 * expiry, in least-recently-used order, with at most {@link maxSimpleTokens} entries.
 */
export class AuthTokens {
  private readonly simple = new Map<string, { readonly username: string; expiresAtMs: number }>()
  private readonly kind: TokenKind
  private readonly ttlMs: number
  private readonly now: () => number

  constructor(kind: TokenKind, simpleTtlSec: number = defaultAuthTokenTtlSec, now: () => number = Date.now) {
    this.kind = kind
    this.ttlMs = (simpleTtlSec > 0 ? simpleTtlSec : defaultAuthTokenTtlSec) * 1000
    this.now = now
  }

  /**
   * The token for `username`, authenticated by the entry at raft `index` while the auth store
   * was at `revision`: simple tokens are recorded on every member (`simpleTokenPrefix` comes
   * from the entry); a JWT is signed only where it is answered (`mine`), undefined elsewhere.
   * Throws when this member has no private key for a JWT (etcd ErrVerifyOnly).
   */
  assign(username: string, simpleTokenPrefix: string, index: number, revision: number, mine: boolean): string | undefined {
    if (this.kind.kind === "simple") {
      const token = `${simpleTokenPrefix}.${index}`
      this.simple.delete(token)
      this.simple.set(token, { username, expiresAtMs: this.now() + this.ttlMs })
      while (this.simple.size > maxSimpleTokens) this.simple.delete(this.simple.keys().next().value!)
      return token
    }
    if (!mine) return undefined
    if (this.kind.privateKey === undefined) throw new Error("auth: token signing attempted with verify-only key")
    return jwt.sign({ username, revision, exp: Math.floor((this.now() + this.kind.ttlMs) / 1000) }, this.kind.privateKey, { algorithm: this.kind.method })
  }

  /**
   * Who `token` names (etcd tokenProvider.info): the user with `revision` (the store's current
   * one) for a live simple token, whose TTL starts again; the user and the revision it was issued
   * at for a valid JWT; undefined for anything else (the caller answers InvalidAuthToken).
   */
  info(token: string, revision: number): AuthInfo | undefined {
    if (this.kind.kind === "simple") {
      const t = this.simple.get(token)
      if (t === undefined) return undefined
      if (t.expiresAtMs <= this.now()) {
        this.simple.delete(token)
        return undefined
      }
      t.expiresAtMs = this.now() + this.ttlMs
      this.simple.delete(token)
      this.simple.set(token, t)
      return { username: t.username, revision }
    }
    try {
      const claims = jwt.verify(token, this.kind.publicKey, { algorithms: [this.kind.method], clockTimestamp: Math.floor(this.now() / 1000) }) as { username?: unknown; revision?: unknown }
      if (typeof claims.username !== "string" || typeof claims.revision !== "number") return undefined
      return { username: claims.username, revision: claims.revision }
    } catch {
      return undefined
    }
  }

  /** Drops the simple tokens of `username` (etcd invalidateUser: UserDelete, UserChangePassword). */
  invalidateUser(username: string): void {
    for (const [token, t] of this.simple) if (t.username === username) this.simple.delete(token)
  }

  /** Drops every simple token (etcd tokenProvider.disable: AuthDisable). */
  disable(): void {
    this.simple.clear()
  }

  /** Drops expired simple tokens (etcd's TTL keeper runs every second); the shell calls it on a timer. */
  sweep(): void {
    const now = this.now()
    for (const [token, t] of this.simple) if (t.expiresAtMs <= now) this.simple.delete(token)
  }

  /** Simple tokens held (metrics, tests). */
  size(): number {
    return this.simple.size
  }
}
