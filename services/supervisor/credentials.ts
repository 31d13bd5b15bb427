/**
 * The supervisor's credentials set-up, at each start: one NKey per process identity and the
 * authorization file with their permissions (./nats-security.ts), the CA and certificates of
 * TLS to NATS (`--nats-tls`, under `creds/tls/`) and of TLS on the client port
 * (`--client-tls=ca`, under `creds/client-tls/`), created when missing (../runtime/certs.ts),
 * and the flags that hand each process its files.
 *
 * Which modes are on is decided from the command line in ./main.ts; this file only creates
 * the files and names them.
 */
import { join } from "node:path"
import { ensureTlsFiles } from "../runtime/certs.ts"
import type { TlsFiles } from "../runtime/certs.ts"
import { clusterIdentities, ensureCredentials, writeAuthorization } from "./nats-security.ts"

/** What the processes get to reach the bus and serve their clients. */
export interface Credentials {
  /** `<data-dir>/creds`. */
  readonly credsDir: string
  /** The CA and the server and client certificates of TLS to NATS, when on. */
  readonly natsTls: TlsFiles | undefined
  /** The gateway's TLS flags (services/gateway/client-tls.ts) for the client-TLS mode. */
  readonly clientTlsArgs: ReadonlyArray<string>
  /** The flags that let a process of `identity` onto the bus: its NKey seed file, TLS files. */
  readonly natsSecurityArgs: (identity: { readonly role: string; readonly name: string }) => ReadonlyArray<string>
}

/**
 * Creates what is missing under `<dataDir>/creds` (seeds are never rewritten) and rewrites
 * `<dataDir>/nats-authorization.conf` for the identities of `members` and `watchReplicas`.
 * Throws node:fs errors.
 */
export const setUpCredentials = (options: {
  readonly dataDir: string
  readonly cluster: string
  readonly members: ReadonlyArray<string>
  readonly watchReplicas: ReadonlyArray<string>
  readonly natsTls: boolean
  readonly clientTlsMode: "ca" | "auto" | undefined
}): Credentials => {
  const credsDir = join(options.dataDir, "creds")
  ensureCredentials(credsDir, clusterIdentities(options.members, options.watchReplicas))
  const credentials = writeAuthorization(options.dataDir, options.cluster)
  const natsTls: TlsFiles | undefined = options.natsTls
    ? ensureTlsFiles(join(credsDir, "tls"), { ca: "natcd NATS CA", server: "natcd nats-server", client: "natcd" })
    : undefined
  const clientTls: TlsFiles | undefined = options.clientTlsMode === "ca"
    ? ensureTlsFiles(join(credsDir, "client-tls"), { ca: "natcd client CA", server: "natcd", client: "root" })
    : undefined
  const clientTlsArgs: ReadonlyArray<string> = options.clientTlsMode === "auto"
    ? ["--auto-tls"]
    : clientTls === undefined
    ? []
    : [`--cert-file=${clientTls.serverCert}`, `--key-file=${clientTls.serverKey}`, `--trusted-ca-file=${clientTls.ca}`, "--client-cert-auth"]
  const natsSecurityArgs = (identity: { readonly role: string; readonly name: string }): ReadonlyArray<string> => {
    const cred = credentials.find((c) => c.identity.role === identity.role && c.identity.name === identity.name)
    if (cred === undefined) throw new Error(`no credential for ${identity.role}.${identity.name}`)
    return [
      `--nats-creds=${cred.file}`,
      ...(natsTls === undefined ? [] : [`--nats-tls-ca=${natsTls.ca}`, `--nats-tls-cert=${natsTls.clientCert}`, `--nats-tls-key=${natsTls.clientKey}`])
    ]
  }
  return { credsDir, natsTls, clientTlsArgs, natsSecurityArgs }
}
