/**
 * The mvcc service's `mvcc.auth` endpoint (shared/schema.ts MvccAuthBody): what a gateway
 * asks of its member's auth store and token provider before it acts on a request, as etcd's
 * API layer asks its own auth store (etcd server/etcdserver/v3_server.go AuthInfoFromCtx,
 * Authenticate's CheckPassword; v3rpc IsRangePermitted for watches, IsAdminPermitted for
 * maintenance).
 *
 * Password checks compare with bcrypt on libuv's thread pool; at most
 * {@link maxPasswordChecks} run or wait at once, more are refused at once with
 * TooManyRequests ("etcdserver: too many requests"), so a flood of Authenticate calls cannot
 * queue without bound behind the slow hash.
 */
import bcrypt from "bcrypt"
import type { NatsConnection } from "@nats-io/transport-node"
import { mvccAuth } from "../../shared/endpoints.ts"
import type { EtcdErrorData } from "../../shared/errors.ts"
import type { ServeOptions } from "../runtime/rpc.ts"
import { serveEndpoint } from "../runtime/rpc.ts"
import type { AuthTokens } from "./auth-tokens.ts"
import type { AuthStore } from "./core/auth-store.ts"
import { type WaitOutcome, waitError } from "./apply-waiters.ts"

/** Most password checks running or waiting at once (checks); more get TooManyRequests. */
export const maxPasswordChecks = 64

/** What the endpoint reads: the applied auth store, the tokens, and the applied index. */
export interface AuthEndpointContext {
  readonly auth: AuthStore
  readonly tokens: AuthTokens
  /** As Applier.waitApplied: undefined when `index` is applied, else how the wait ended. */
  readonly waitApplied: (index: number) => Promise<WaitOutcome> | undefined
}

/** Serves mvcc.auth for member `at`; returns the subscription. */
export const serveAuthEndpoint = (nc: NatsConnection, at: { readonly cluster: string; readonly member: string }, ctx: AuthEndpointContext, options: ServeOptions) => {
  let checking = 0
  return serveEndpoint(nc, mvccAuth, at, (req) => {
    const body = req.body
    const refuse = (err: EtcdErrorData) => req.reply({ err })
    if ("infos" in body) {
      const revision = ctx.auth.authRevision()
      const infos = body.infos.map((item) =>
        // etcd AuthInfoFromTLS: the certificate's common name, at the current revision.
        "commonName" in item ? { username: item.commonName, revision } : ctx.tokens.info(item.token, revision) ?? null
      )
      return req.reply({ ok: { infos } })
    }
    const waitThen = (minAppliedIndex: number, answer: () => void) => {
      const wait = ctx.waitApplied(minAppliedIndex)
      if (wait === undefined) return answer()
      wait.then((outcome) => (outcome === "applied" ? answer() : refuse(waitError(outcome))))
    }
    if ("checkPassword" in body) {
      const { name, password, minAppliedIndex } = body.checkPassword
      return waitThen(minAppliedIndex, () => {
        if (!ctx.auth.isEnabled()) return refuse({ _tag: "AuthError", code: "AuthNotEnabled" })
        const user = ctx.auth.user(name)
        if (user === undefined) return refuse({ _tag: "AuthError", code: "AuthFailed" })
        if (user.noPassword) return refuse({ _tag: "AuthError", code: "NoPasswordUser" })
        if (checking >= maxPasswordChecks) return refuse({ _tag: "TooManyRequests" })
        const revision = ctx.auth.authRevision()
        checking++
        bcrypt.compare(password, user.password).then(
          (same) => (same ? req.reply({ ok: { revision } }) : refuse({ _tag: "AuthError", code: "AuthFailed" })),
          () => refuse({ _tag: "AuthError", code: "AuthFailed" })
        ).finally(() => checking--)
      })
    }
    const { authInfo, minAppliedIndex, ranges, admin } = body.check
    waitThen(minAppliedIndex, () => {
      const denied = admin === true
        ? ctx.auth.checkAdmin(authInfo.username === "" ? undefined : authInfo)
        : (ranges ?? []).map((r) => ctx.auth.checkRange(authInfo, r, "READ")).find((d) => d !== undefined)
      if (denied !== undefined) return refuse(denied.err)
      req.reply({ ok: {} })
    })
  }, options)
}
