/**
 * X.509 certificates natcd creates itself, with openssl (the Debian `openssl` package): the CA
 * and certificates of TLS to NATS (`--nats-tls`) and of the client port (`make run TLS=1`), and
 * the gateway's `--auto-tls` certificate. Files are PEM; keys are written 0600 in 0700 directories.
 * Errors: openssl's, thrown (with its stderr) when it is missing or fails.
 */
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, rmSync, writeFileSync } from "node:fs"
import { isIP } from "node:net"
import { dirname, join } from "node:path"
import { privateFileMode, touchPrivateDir } from "./private-files.ts"

const openssl = (args: ReadonlyArray<string>) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] })

/** openssl's subjectAltName value for `hosts`: IP addresses as IP entries, anything else as DNS names. */
const altNames = (hosts: ReadonlyArray<string>) => hosts.map((h) => (isIP(h) !== 0 ? `IP:${h}` : `DNS:${h}`)).join(",")

/**
 * Creates `certFile` and `keyFile` unless both exist: a self-signed certificate for `hosts`, as
 * etcd's `--auto-tls` (pkg/transport SelfCert): an ECDSA P-256 key, organisation "etcd", valid
 * `days` (etcd: 365), for server authentication.
 */
export const ensureSelfSignedCertificate = (certFile: string, keyFile: string, hosts: ReadonlyArray<string>, days = 365): void => {
  if (existsSync(certFile) && existsSync(keyFile)) return
  touchPrivateDir(dirname(certFile))
  touchPrivateDir(dirname(keyFile))
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", certFile,
    "-days", String(days), "-subj", "/O=etcd",
    "-addext", `subjectAltName=${altNames(hosts)}`,
    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
    "-addext", "extendedKeyUsage=serverAuth",
    "-addext", "basicConstraints=critical,CA:FALSE"
  ])
  chmodSync(keyFile, privateFileMode)
}

/** The files of a CA and the server and client certificates it signed (PEM paths). */
export interface TlsFiles {
  readonly ca: string
  readonly caKey: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
  readonly clientKey: string
}

/**
 * Creates (once: files that exist are kept) under `dir` a CA with common name `names.ca`, a
 * server certificate (`names.server`, for 127.0.0.1 and localhost) and a client certificate
 * (`names.client`, the user name etcd takes from a client certificate) signed by it: ca.pem,
 * ca-key.pem, server.pem, server-key.pem, client.pem, client-key.pem. The CA key stays, so that
 * an operator can sign more client certificates with it.
 */
export const ensureTlsFiles = (dir: string, names: { readonly ca: string; readonly server: string; readonly client: string }): TlsFiles => {
  touchPrivateDir(dir)
  const f: TlsFiles = {
    ca: join(dir, "ca.pem"),
    caKey: join(dir, "ca-key.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem")
  }
  if (!existsSync(f.ca)) {
    openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f.caKey, "-out", f.ca, "-days", "3650", "-subj", `/CN=${names.ca}`])
  }
  const issue = (cert: string, key: string, cn: string, ext: string) => {
    if (existsSync(cert)) return
    const csr = cert + ".csr"
    const extFile = cert + ".ext"
    openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`])
    writeFileSync(extFile, ext)
    openssl(["x509", "-req", "-in", csr, "-CA", f.ca, "-CAkey", f.caKey, "-CAcreateserial", "-out", cert, "-days", "825", "-extfile", extFile])
    for (const tmp of [csr, extFile]) rmSync(tmp, { force: true })
  }
  issue(f.serverCert, f.serverKey, names.server, `subjectAltName=${altNames(["127.0.0.1", "localhost"])}\nextendedKeyUsage=serverAuth\n`)
  issue(f.clientCert, f.clientKey, names.client, "extendedKeyUsage=clientAuth\n")
  for (const key of [f.caKey, f.serverKey, f.clientKey]) chmodSync(key, privateFileMode)
  return f
}
