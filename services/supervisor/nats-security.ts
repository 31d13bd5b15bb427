/**
 * The supervisor's part of the bus's security: one NKey per NATS identity, created at a
 * cluster's first start under `<data-dir>/creds/`, and nats-server's `authorization` block with
 * each identity's permissions derived from the endpoint declarations (shared/endpoints.ts).
 *
 * Files (directory 0700, files 0600, as etcd's private file modes):
 * - `creds/<service>.<member>.nk` per member service, `creds/watch.<replica>.nk` per watch
 *   replica, `creds/cli.nk` for operator tools: the NKey user seed (`SU…`), one line;
 * - `creds/routes.secret`: the password nats-servers of a NATS cluster use on their routes;
 * - `creds/tls/`: with `--nats-tls`, a CA and the server and client certificates (../runtime/certs.ts).
 *
 * A seed is never rewritten once it exists, so restarts keep identities. `natcd creds` adds an
 * identity (e.g. one more watch replica) or rotates a key while the cluster runs: it writes the
 * seed, rewrites `<data-dir>/nats-authorization.conf` (which nats-server's config includes) and
 * has nats-server reload it; a process whose key changed is disconnected by nats-server and
 * reconnects with the new seed from its file (services/runtime/nats-auth.ts re-reads it).
 */
import { createUser, fromSeed } from "@nats-io/nkeys"
import { randomBytes } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { readSeed } from "../runtime/nats-auth.ts"
import { credsFileName, permissionsFor, replyWindowSeconds, roles } from "../../shared/endpoints.ts"
import type { Identity } from "../../shared/endpoints.ts"
import type { TlsFiles } from "../runtime/certs.ts"

/** An identity with its seed file and public key. */
export interface Credential {
  readonly identity: Identity
  readonly file: string
  readonly publicKey: string
}

/** Creates `dir` (and parents) with mode 0700, and makes it 0700 if it existed. */
export const privateDir = (dir: string): string => {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
  return dir
}

/** Writes `text` to `file` with mode 0600 (also when the file existed with another mode). */
export const privateFile = (file: string, text: string): void => {
  writeFileSync(file, text, { mode: 0o600 })
  chmodSync(file, 0o600)
}

/** The identities of a cluster of `members` members and `watchReplicas` watch replicas, plus cli. */
export const clusterIdentities = (members: ReadonlyArray<string>, watchReplicas: ReadonlyArray<string>): ReadonlyArray<Identity> => [
  ...members.flatMap((name) => (["wal", "mvcc", "lease", "raft", "gateway"] as const).map((role) => ({ role, name }))),
  ...watchReplicas.map((name) => ({ role: "watch" as const, name })),
  { role: "cli", name: "" }
]

/**
 * The credential of each identity under `credsDir`: its seed file read, or created (0600) when
 * missing. Throws when an existing file holds no user seed.
 */
export const ensureCredentials = (credsDir: string, identities: ReadonlyArray<Identity>): ReadonlyArray<Credential> => {
  privateDir(credsDir)
  return identities.map((identity) => {
    const file = join(credsDir, credsFileName(identity))
    if (!existsSync(file)) {
      const seed = new TextDecoder().decode(createUser().getSeed())
      privateFile(file, seed + "\n")
    } else {
      chmodSync(file, 0o600)
    }
    return { identity, file, publicKey: fromSeed(readSeed(file)).getPublicKey() }
  })
}

const quote = (s: string): string => JSON.stringify(s)

/**
 * Replies an identity may publish to a requester's inbox after the latest request it received
 * from that inbox (nats-server keys response permissions by reply subject, and a natcd process
 * sends all its requests from one inbox, so many replies follow one delivery).
 */
export const responsesMax = 100_000

/**
 * nats-server's `authorization` block for `credentials` in `cluster`: one NKey user per
 * identity with the permissions {@link permissionsFor} derives, and `allow_responses` so that a
 * server may answer requests it received (to the requester's inbox: {@link responsesMax},
 * shared/endpoints.ts replyWindowSeconds) without any publish grant on inboxes. No user without a key exists, so anonymous connections are refused.
 */
export const authorizationBlock = (cluster: string, credentials: ReadonlyArray<Credential>): string => {
  const users = credentials.map(({ identity, publicKey }) => {
    const p = permissionsFor(cluster, identity)
    return [
      `    # ${identity.role}${identity.name === "" ? "" : "." + identity.name}`,
      `    { nkey: ${quote(publicKey)}, permissions: {`,
      `        publish: { allow: [${p.publish.map(quote).join(", ")}] }`,
      `        subscribe: { allow: [${p.subscribe.map(quote).join(", ")}] }`,
      `        allow_responses: { max: ${responsesMax}, expires: "${replyWindowSeconds}s" }`,
      "    } }"
    ].join("\n")
  })
  return ["authorization {", "  users: [", ...users, "  ]", "}"].join("\n")
}

/** The identity a seed file under `creds/` stands for, from its name (`<role>.<name>.nk`, `cli.nk`), or undefined. */
export const identityOfCredsFile = (file: string): Identity | undefined => {
  if (file === "cli.nk") return { role: "cli", name: "" }
  const m = /^([a-z]+)\.([A-Za-z0-9_-]{1,64})\.nk$/.exec(file)
  if (m === null || !(roles as ReadonlyArray<string>).includes(m[1]!) || m[1] === "cli") return undefined
  return { role: m[1] as Identity["role"], name: m[2]! }
}

/** The file nats-server's config includes for its users (`include`), and an external server's operator too. */
export const authorizationFileName = "nats-authorization.conf"

/**
 * Writes `<data-dir>/nats-authorization.conf` (0600) for every seed file under `creds/` (those
 * the supervisor made and those added with `natcd creds add`), and returns the credentials.
 */
export const writeAuthorization = (dataDir: string, cluster: string): ReadonlyArray<Credential> => {
  const credsDir = join(dataDir, "creds")
  const identities = readdirSync(credsDir).sort().map(identityOfCredsFile).filter((i): i is Identity => i !== undefined)
  const credentials = ensureCredentials(credsDir, identities)
  privateFile(join(dataDir, authorizationFileName), "# Written by natcd (supervisor, natcd creds): NATS users and their permissions.\n" + authorizationBlock(cluster, credentials) + "\n")
  return credentials
}

/**
 * Has every nats-server the supervisor started under `dataDir` (their `nats-server*.pid` files)
 * reload its config (SIGHUP): new users take effect, and connections whose key is gone are
 * closed (their processes reconnect with the seed now in their file). Returns the pids signalled.
 */
export const reloadNatsServers = (dataDir: string): ReadonlyArray<number> =>
  readdirSync(dataDir).filter((f) => /^nats-server(-\d+)?\.pid$/.test(f)).flatMap((f) => {
    const pid = Number(readFileSync(join(dataDir, f), "utf8").trim())
    try {
      process.kill(pid, "SIGHUP")
      return [pid]
    } catch {
      return []
    }
  })

/** The password of the routes between the nats-servers of a NATS cluster (created once, 0600). */
export const routePassword = (credsDir: string): string => {
  const file = join(credsDir, "routes.secret")
  if (!existsSync(file)) privateFile(file, randomBytes(24).toString("hex") + "\n")
  return readFileSync(file, "utf8").trim()
}

/** nats-server's `tls` block: its certificate, and client certificates verified against the CA. */
export const tlsBlock = (files: TlsFiles): string =>
  ["tls {", `  cert_file: ${quote(files.serverCert)}`, `  key_file: ${quote(files.serverKey)}`, `  ca_file: ${quote(files.ca)}`, "  verify: true", "  timeout: 5", "}"].join("\n")
