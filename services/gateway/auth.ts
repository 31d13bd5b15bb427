/**
 * etcd's authentication at the gateway: who each call is made by, the Auth service's RPCs, and
 * the permission checks etcd's API layer makes itself rather than at apply.
 *
 * Who a call is made by (etcd server/etcdserver/v3_server.go AuthInfoFromCtx): the token in
 * the call's `token` metadata (or `authorization`, as etcd's JSON gateway sends it), resolved by
 * the member's mvcc service, the calls of one event-loop turn in one request
 * ({@link IdentityBatcher}; a token it does not know fails the call "invalid auth token", also
 * while authentication is disabled, as etcd 3.4); without a token, with `--client-cert-auth`,
 * the Common Name of the client's verified certificate; otherwise nobody. The result
 * ({@link AuthInfo}) travels with the call's work (../runtime/auth-context.ts): every proposal
 * and read carries it, and the mvcc service checks it against its auth store.
 *
 * The Auth RPCs (etcd 3.5's etcdserverpb.Auth) are proposed through raft like writes and applied
 * by every member's auth store (../mvcc/core/auth-store.ts), which checks the admin permission
 * with the caller's auth info. Passwords are hashed here with bcrypt at `--bcrypt-cost` (etcd
 * 3.5's API layer does the same), so that no password reaches the log. Authenticate checks the
 * password against the stored hash (mvcc.auth checkPassword), then proposes the user with a
 * fresh random token prefix; when the auth store changed between the check and the apply, it
 * checks again (etcd's loop; natcd gives up after {@link authenticateAttempts} attempts with
 * "revision of auth store is old").
 */
import bcrypt from "bcrypt"
import { randomInt } from "node:crypto"
import type * as grpc from "@grpc/grpc-js"
import type { AuthInfo, AuthRequest, AuthResponse, Permission, PermissionType } from "../../shared/auth.ts"
import { mvccAuth } from "../../shared/endpoints.ts"
import { AuthError, ConcurrencyError, MalformedFrame } from "../../shared/errors.ts"
import type { AuthErrorCode } from "../../shared/errors.ts"
import { currentAuthInfo, noAuthInfo } from "../runtime/auth-context.ts"
import type { Proposer } from "../runtime/proposer.ts"
import type { Reader } from "../runtime/reader.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import type { Header, Wire } from "./convert.ts"
import { headerToWire } from "./convert.ts"

/** etcd's default --bcrypt-cost. */
export const defaultBcryptCost = 10

/** How many times Authenticate checks the password again when the auth store keeps changing. */
export const authenticateAttempts = 5

/** The gateway's view of its member for auth. */
export interface AuthContext {
  readonly rpc: RpcClient
  readonly proposer: Proposer
  readonly requestTimeoutMs: number
  readonly subjects: { readonly auth: string }
  /** The member's read path: Authenticate waits for a ReadIndex through it (shared with the reads of its turn). */
  readonly reader: Pick<Reader, "readIndex">
  /** bcrypt cost of the password hashes made here (etcd --bcrypt-cost; 4..31). */
  readonly bcryptCost: number
  /** Whether a verified client certificate's Common Name names the user (etcd --client-cert-auth). */
  readonly clientCertAuth: boolean
  readonly header: (revision: number, term: number) => Promise<Header>
}

const authError = (code: AuthErrorCode): AuthError => new AuthError({ code })

/** The first value of metadata `key`, as a string. */
const metadataValue = (md: grpc.Metadata, key: string): string | undefined => {
  const v = md.get(key)[0]
  return v === undefined ? undefined : typeof v === "string" ? v : v.toString("utf8")
}

/** A verified client certificate's Common Name, when the call came over TLS with one. */
const peerCommonName = (call: { getAuthContext?: () => { sslPeerCertificate?: { subject?: { CN?: string | string[] } } } | null }): string | undefined => {
  const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN
  return Array.isArray(cn) ? cn[0] : cn
}

/** The 16-letter random prefix of a simple token (etcd tokenSimple.genTokenPrefix). */
const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
const tokenPrefix = (): string => Array.from({ length: 16 }, () => letters[randomInt(letters.length)]).join("")

const permTypes: ReadonlyArray<PermissionType> = ["READ", "WRITE", "READWRITE"]
const bytesOf = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : new Uint8Array())
const permissionFromWire = (w: Wire | null | undefined): Permission | undefined => {
  if (w == null) return undefined
  const t = typeof w.permType === "number" ? permTypes[w.permType] : w.permType
  return { permType: permTypes.includes(t) ? t : "READ", key: bytesOf(w.key), rangeEnd: bytesOf(w.range_end) }
}
const permissionToWire = (p: Permission): Wire => ({ permType: p.permType, key: Buffer.from(p.key), range_end: Buffer.from(p.rangeEnd) })

/** Most identities asked for in one mvcc.auth frame (tokens and common names). */
export const maxIdentityBatch = 1024

/** A token or a certificate's common name to resolve. */
export type Identity = { readonly token: string } | { readonly commonName: string }

/**
 * Resolves the identities of the calls that arrive in one event-loop turn with one mvcc.auth
 * `infos` request (at most {@link maxIdentityBatch} per frame), as the reader batches ranges:
 * an authenticated request then costs a share of one round trip to mvcc, not one of its own.
 * Calls with the same token in one batch share its entry. Invariant: `pending` holds only
 * callers whose batch has not been sent; a flush is scheduled whenever it is non-empty.
 */
export class IdentityBatcher {
  private pending = new Map<string, { readonly identity: Identity; readonly waiters: Array<{ resolve: (i: AuthInfo) => void; reject: (e: unknown) => void }> }>()
  private readonly ask: (items: ReadonlyArray<Identity>) => Promise<ReadonlyArray<AuthInfo | null>>

  constructor(ask: (items: ReadonlyArray<Identity>) => Promise<ReadonlyArray<AuthInfo | null>>) {
    this.ask = ask
  }

  /** The auth info `identity` names; rejects InvalidAuthToken for a token nobody holds. */
  resolve(identity: Identity): Promise<AuthInfo> {
    const key = "token" in identity ? `t:${identity.token}` : `c:${identity.commonName}`
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) setImmediate(() => this.flush())
      let entry = this.pending.get(key)
      if (entry === undefined) this.pending.set(key, (entry = { identity, waiters: [] }))
      entry.waiters.push({ resolve, reject })
      if (this.pending.size >= maxIdentityBatch) this.flush()
    })
  }

  private flush(): void {
    const batch = [...this.pending.values()]
    if (batch.length === 0) return
    this.pending = new Map()
    this.ask(batch.map((e) => e.identity)).then(
      (infos) =>
        batch.forEach((entry, i) => {
          const info = infos[i]
          for (const w of entry.waiters) {
            if (info === undefined) w.reject(new MalformedFrame({ reason: "mvcc.auth infos count" }))
            else if (info === null) w.reject(authError("InvalidAuthToken"))
            else w.resolve(info)
          }
        }),
      (e: unknown) => {
        for (const entry of batch) for (const w of entry.waiters) w.reject(e)
      }
    )
  }
}

/** The gateway's auth: call identities, the Auth RPC handlers, and the API-layer checks. */
export const makeAuth = (ctx: AuthContext) => {
  const ask = async (body: typeof mvccAuth.request.Type) =>
    okOf(await callEndpoint(ctx.rpc, mvccAuth, ctx.subjects.auth, body, { timeoutMs: ctx.requestTimeoutMs }))

  const identities = new IdentityBatcher((items) => ask({ infos: items }).then((r) => r.infos ?? []))

  /** Who `call` is made by (see the module comment). Rejects InvalidAuthToken for an unknown token. */
  const resolve = async (call: { readonly metadata: grpc.Metadata }): Promise<AuthInfo> => {
    const token = metadataValue(call.metadata, "token") ?? metadataValue(call.metadata, "authorization")
    if (token !== undefined) return identities.resolve({ token })
    if (!ctx.clientCertAuth) return noAuthInfo
    const commonName = peerCommonName(call as never)
    return commonName === undefined ? noAuthInfo : identities.resolve({ commonName })
  }

  /**
   * etcd IsRangePermitted for what the API layer checks itself (a Watch's range): rejects with
   * the auth store's error unless the current caller may read every range.
   */
  const checkRead = async (ranges: ReadonlyArray<{ readonly key: Uint8Array; readonly rangeEnd?: Uint8Array }>): Promise<void> => {
    await ask({ check: { authInfo: currentAuthInfo(), minAppliedIndex: 0, ranges: ranges.map((r) => ({ key: r.key, ...(r.rangeEnd === undefined ? {} : { rangeEnd: r.rangeEnd }) })) } })
  }

  /** etcd IsAdminPermitted for the current caller: rejects UserEmpty, UserNotFound or PermissionDenied while auth is enabled. */
  const checkAdmin = async (): Promise<void> => {
    await ask({ check: { authInfo: currentAuthInfo(), minAppliedIndex: 0, admin: true } })
  }

  const propose = async (request: AuthRequest): Promise<{ response: AuthResponse; header: Wire }> => {
    const r = await ctx.proposer.propose({ auth: request }, "")
    return { response: (r.response as { auth: AuthResponse }).auth, header: headerToWire(await ctx.header(r.revision, r.term)) }
  }
  const plain = (request: AuthRequest) => propose(request).then(({ header }) => ({ header }))
  const hash = (password: string) => bcrypt.hash(password, ctx.bcryptCost)
  const str = (v: unknown): string => (typeof v === "string" ? v : "")

  const Authenticate = async (w: Wire): Promise<Wire> => {
    const name = str(w.name)
    const password = str(w.password)
    // etcd: a linearizable read first, so the password is checked against an up-to-date store.
    const index = await ctx.reader.readIndex("")
    for (let attempt = 0; attempt < authenticateAttempts; attempt++) {
      const checked = await ask({ checkPassword: { name, password, minAppliedIndex: index } })
      const { response, header } = await propose({ authenticate: { name, simpleToken: tokenPrefix() } })
      if (response.authRevision === checked.revision) return { header, token: response.token ?? "" }
    }
    throw authError("AuthOldRevision")
  }

  const handlers = {
    AuthEnable: () => plain({ authEnable: {} }),
    AuthDisable: () => plain({ authDisable: {} }),
    AuthStatus: async () => {
      const { response, header } = await propose({ authStatus: {} })
      return { header, enabled: response.enabled === true, authRevision: String(response.authRevision ?? 0) }
    },
    Authenticate,
    UserAdd: async (w: Wire) => {
      // As etcd 3.5: the password is hashed here; a hash sent by the client is not taken.
      const noPassword = w.options?.no_password === true
      const hashedPassword = noPassword ? "" : await hash(str(w.password))
      return plain({ userAdd: { name: str(w.name), hashedPassword, noPassword } })
    },
    UserGet: async (w: Wire) => {
      const { response, header } = await propose({ userGet: { name: str(w.name) } })
      return { header, roles: response.roles ?? [] }
    },
    UserList: async () => {
      const { response, header } = await propose({ userList: {} })
      return { header, users: response.users ?? [] }
    },
    UserDelete: (w: Wire) => plain({ userDelete: { name: str(w.name) } }),
    UserChangePassword: async (w: Wire) => {
      return plain({ userChangePassword: { name: str(w.name), hashedPassword: await hash(str(w.password)) } })
    },
    UserGrantRole: (w: Wire) => plain({ userGrantRole: { user: str(w.user), role: str(w.role) } }),
    UserRevokeRole: (w: Wire) => plain({ userRevokeRole: { name: str(w.name), role: str(w.role) } }),
    RoleAdd: (w: Wire) => plain({ roleAdd: { name: str(w.name) } }),
    RoleGet: async (w: Wire) => {
      const { response, header } = await propose({ roleGet: { role: str(w.role) } })
      return { header, perm: (response.perm ?? []).map(permissionToWire) }
    },
    RoleList: async () => {
      const { response, header } = await propose({ roleList: {} })
      return { header, roles: response.roles ?? [] }
    },
    RoleDelete: (w: Wire) => plain({ roleDelete: { role: str(w.role) } }),
    RoleGrantPermission: (w: Wire) => {
      const perm = permissionFromWire(w.perm)
      // etcd ErrPermissionNotGiven.
      if (perm === undefined) return Promise.reject(authError("PermissionNotGiven"))
      return plain({ roleGrantPermission: { name: str(w.name), perm } })
    },
    RoleRevokePermission: (w: Wire) => plain({ roleRevokePermission: { role: str(w.role), key: bytesOf(w.key), rangeEnd: bytesOf(w.range_end) } })
  }
  return { resolve, checkRead, checkAdmin, handlers }
}

/**
 * The auth store's own wording of an auth error (etcd auth/store.go), for the Maintenance calls
 * that return it unconverted (etcd's authMaintenanceServer: Defragment, Hash, HashKV, Snapshot),
 * which clients see as gRPC Unknown with this text.
 */
export const rawAuthMessages: { readonly [C in AuthErrorCode]?: string } = {
  UserEmpty: "auth: user name is empty",
  UserNotFound: "auth: user not found",
  PermissionDenied: "auth: permission denied",
  InvalidAuthToken: "auth: invalid auth token"
}

/** An auth error as the unconverted maintenance paths return it ({@link rawAuthMessages}); others unchanged. */
export const asRawAuthError = (e: unknown): unknown => {
  const err = e as { _tag?: string; code?: AuthErrorCode }
  const message = err?._tag === "AuthError" && err.code !== undefined ? rawAuthMessages[err.code] : undefined
  return message === undefined ? e : new ConcurrencyError({ message })
}
