/**
 * The auth info of the client request a gateway is serving (shared/auth.ts AuthInfo: who made
 * it, as the member resolved its token or certificate), carried through the handler's
 * asynchronous work like the trace context, so that every proposal and read the request makes
 * on the bus carries it: the gateway's call handlers (services/gateway/call-handlers.ts) resolve it before
 * calling a handler and runs the handler inside {@link withAuthInfo}; the proposer and the
 * reader attach {@link currentAuthInfo} to what they send.
 *
 * Outside a request (or before auth info was resolved) the current auth info is
 * {@link noAuthInfo}: no user, which the mvcc service refuses while authentication is enabled
 * ("user name is empty"), so work a gateway starts on its own is never more privileged than an
 * anonymous client.
 */
import { AsyncLocalStorage } from "node:async_hooks"
import type { AuthInfo } from "../../shared/auth.ts"

/** No user (etcd: a request without a token). */
export const noAuthInfo: AuthInfo = { username: "", revision: 0 }

/**
 * The caller of a stream whose token names nobody (this very object, compared by identity). etcd
 * does not fail such a stream: a Watch refuses each watch it is asked for "invalid auth token",
 * and LeaseKeepAlive, which checks nobody, keeps serving. Anything else it does runs as nobody.
 */
export const invalidTokenAuthInfo: AuthInfo = { username: "", revision: 0 }

const storage = new AsyncLocalStorage<AuthInfo>()

/** Runs `f` with `info` as the current auth info (for everything `f` starts, synchronously or not). */
export const withAuthInfo = <A>(info: AuthInfo, f: () => A): A => storage.run(info, f)

/** The auth info of the request being served, or {@link noAuthInfo}. */
export const currentAuthInfo = (): AuthInfo => storage.getStore() ?? noAuthInfo
