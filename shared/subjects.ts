/**
 * Subject tokens. Every NATS subject natcd uses is declared, with its template, in
 * ./endpoints.ts and built there by `subjectOf`; this module holds the one rule every token
 * of a subject follows: `[A-Za-z0-9_-]{1,64}`, so that no cluster, member, replica or instance
 * name can smuggle a `.`, `*` or `>` into a subject (and so widen a subscription or a
 * permission).
 */

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/

/** Returns `token`; throws when it is not a valid subject token (a programming or configuration error). */
export const checkToken = (what: string, token: string): string => {
  if (!TOKEN.test(token)) {
    throw new Error(`invalid ${what} ${JSON.stringify(token)}: use 1-64 characters of [A-Za-z0-9_-]`)
  }
  return token
}
