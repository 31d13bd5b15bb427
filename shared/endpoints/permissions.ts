/**
 * NATS identities and their permissions, derived from the endpoint declarations: which subjects
 * each identity may publish (what its role calls or emits) and subscribe to (what its role
 * serves, plus its own reply inboxes), the names of its credential file and its inbox prefix,
 * and the reply window nats-server grants responders. The supervisor writes these into
 * nats-server's config (services/supervisor/nats-security.ts); `bin/natcd subjects --permissions`
 * prints them.
 */
import { checkToken } from "../subjects.ts"
import { endpoints } from "./all.ts"
import type { Endpoint, Party, Role } from "./declare.ts"
import { TOKEN_RE } from "./subjects.ts"

/** A NATS identity: a service type and the member (or watch replica) it runs for. */
export interface Identity {
  readonly role: Role
  /** Member name (m1, ...) for member services, replica name (w1, ...) for watch, "" for cli. */
  readonly name: string
}

/** The file name of an identity's NKey seed under `<data-dir>/creds/`: `<role>.<name>.nk`, `cli.nk`. */
export const credsFileName = (identity: Identity): string =>
  identity.role === "cli" ? "cli.nk" : `${identity.role}.${checkToken("identity name", identity.name)}.nk`

/** The prefix of an identity's reply inboxes: `_INBOX.natcd.<cluster>.<role>.<name>`. */
export const inboxPrefix = (cluster: string, identity: Identity): string =>
  `_INBOX.natcd.${checkToken("cluster name", cluster)}.${identity.role}.${identity.role === "cli" ? "cli" : checkToken("identity name", identity.name)}`

const render = (endpoint: Endpoint, cluster: string, identity: Identity, party: Party): string =>
  endpoint.subject.replace(TOKEN_RE, (_, name: string) => {
    if (name === "cluster") return cluster
    if (name === "role" && party.self.includes("role")) return identity.role
    if ((name === "member" || name === "replica" || name === "from") && party.self.includes(name)) return identity.name
    return "*"
  })

/**
 * How long after the latest request from an inbox a server may still answer it, in seconds
 * (nats-server's `allow_responses.expires`). A caller re-sends a request at least every
 * `retryAfterMs` while it waits, so every call's `retryAfterMs` must stay below this
 * (services/runtime/rpc.ts refuses one that does not): the longest single wait today is an
 * mvcc.install of a large snapshot, 600 s.
 */
export const replyWindowSeconds = 900

/** What an identity may publish and subscribe to (NATS subject patterns), and why. */
export interface Permissions {
  readonly publish: ReadonlyArray<string>
  readonly subscribe: ReadonlyArray<string>
}

/**
 * The NATS permissions of `identity` in `cluster`, derived from {@link endpoints}: publish to
 * every subject its role calls or publishes (bound to its own member where the declaration
 * says so), subscribe to every subject its role serves (bound to its own member or replica)
 * and to its own reply inboxes. Replies to requests it received go through nats-server's
 * `allow_responses` (the requester's inbox, once per request), never through a publish grant
 * on `_INBOX.>`.
 */
export const permissionsFor = (cluster: string, identity: Identity): Permissions => {
  checkToken("cluster name", cluster)
  const publish = new Set<string>()
  const subscribe = new Set<string>([`${inboxPrefix(cluster, identity)}.>`])
  for (const e of endpoints) {
    for (const p of e.callers) if (p.role === identity.role) publish.add(render(e, cluster, identity, p))
    for (const p of e.servers) if (p.role === identity.role) subscribe.add(render(e, cluster, identity, p))
  }
  return { publish: [...publish].sort(), subscribe: [...subscribe].sort() }
}
