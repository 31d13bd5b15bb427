/**
 * Concrete subjects from endpoint declarations and back: {@link subjectOf} fills a template's
 * tokens (each checked), {@link tokensOf} reads them out of a subject a server received. The
 * templates themselves live in the declarations (./declare.ts describes the tokens); subject
 * tokens are checked by shared/subjects.ts.
 */
import { checkToken } from "../subjects.ts"
import type { Endpoint, TokensOf } from "./declare.ts"

/** A `{token}` of a subject template. */
export const TOKEN_RE = /\{([a-z]+)\}/g

/**
 * The subject of `endpoint` for `tokens` (each checked: `[A-Za-z0-9_-]{1,64}`). Throws on a
 * missing or invalid token (a programming or configuration error). With `wildcards`, a token
 * may be `*` (a server's subscription to every value of a token it does not bind, e.g. raft.msg's
 * `{from}`).
 */
export const subjectOf = <T extends string>(
  endpoint: Endpoint<T>,
  tokens: { readonly [K in TokensOf<T>]: string },
  options: { readonly wildcards?: boolean } = {}
): string =>
  endpoint.subject.replace(TOKEN_RE, (_, name: string) => {
    const value = (tokens as Record<string, string | undefined>)[name]
    if (value === undefined) throw new Error(`${endpoint.name}: subject token {${name}} missing`)
    return options.wildcards === true && value === "*" ? value : checkToken(name, value)
  })

/**
 * The tokens of a concrete `subject` of `endpoint`, or undefined when it does not match the
 * template (used by servers of subjects with wildcards, e.g. raft.msg's `{from}`).
 */
export const tokensOf = <T extends string>(endpoint: Endpoint<T>, subject: string): { readonly [K in TokensOf<T>]: string } | undefined => {
  const want = endpoint.subject.split(".")
  const got = subject.split(".")
  if (want.length !== got.length) return undefined
  const out: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!
    if (w.startsWith("{")) out[w.slice(1, -1)] = got[i]!
    else if (w !== got[i]) return undefined
  }
  return out as { readonly [K in TokensOf<T>]: string }
}
