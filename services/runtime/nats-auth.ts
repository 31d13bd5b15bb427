/**
 * How a natcd process proves who it is to nats-server: its NKey seed (`--nats-creds`, one file
 * per identity, written by the supervisor under `<data-dir>/creds/`) and, optionally, TLS to
 * NATS (`--nats-tls-ca`, `--nats-tls-cert`, `--nats-tls-key`).
 *
 * The seed file is read again at every (re)connect, so a rotated key (a new seed in the file and
 * the new public key in nats-server's config, then a config reload) takes effect at the next
 * reconnect without restarting the process. A missing or malformed seed file is a start-up
 * error naming the file.
 */
import { nkeyAuthenticator } from "@nats-io/transport-node"
import type { ConnectionOptions } from "@nats-io/transport-node"
import { readFileSync } from "node:fs"

/** What {@link natsSecurityOptions} reads from the process's flags. */
export interface NatsSecurityFlags {
  readonly natsCreds?: string | undefined
  readonly natsTlsCa?: string | undefined
  readonly natsTlsCert?: string | undefined
  readonly natsTlsKey?: string | undefined
}

/**
 * The NKey seed in `file`: its first line starting with `SU` (a user seed, as `nsc` and natcd's
 * supervisor write it). Throws an Error naming the file when there is none.
 */
export const readSeed = (file: string): Uint8Array => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    throw new Error(`cannot read NATS credentials ${file}: ${(e as Error).message}`)
  }
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l.startsWith("SU"))
  if (line === undefined) throw new Error(`no NKey user seed (a line starting with SU) in ${file}`)
  return new TextEncoder().encode(line)
}

/**
 * Connection options for NATS authentication and TLS from `flags`: an NKey authenticator
 * when `natsCreds` is set (the seed checked now, re-read at each connect), TLS when any TLS
 * file is set. Throws on an unreadable seed file.
 */
export const natsSecurityOptions = (flags: NatsSecurityFlags): Partial<ConnectionOptions> => {
  const out: { authenticator?: ConnectionOptions["authenticator"]; tls?: ConnectionOptions["tls"] } = {}
  const creds = flags.natsCreds
  if (creds !== undefined && creds !== "") {
    let last = readSeed(creds)
    out.authenticator = nkeyAuthenticator(() => {
      try {
        last = readSeed(creds)
      } catch {
        // Keep the last good seed: a file being rewritten must not break a reconnect.
      }
      return last
    })
  }
  if (flags.natsTlsCa || flags.natsTlsCert || flags.natsTlsKey) {
    out.tls = {
      ...(flags.natsTlsCa ? { caFile: flags.natsTlsCa } : {}),
      ...(flags.natsTlsCert ? { certFile: flags.natsTlsCert } : {}),
      ...(flags.natsTlsKey ? { keyFile: flags.natsTlsKey } : {})
    }
  }
  return out
}
