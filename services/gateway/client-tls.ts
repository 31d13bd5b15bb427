/**
 * The client port's transport security, with etcd's flags and errors (etcd embed/config.go
 * ClientTLSInfo and configureClientListeners, pkg/transport/listener.go, pkg/tlsutil):
 *
 *   --cert-file, --key-file        the server certificate and key (PEM); required for https://
 *   --trusted-ca-file              the CA that signs client certificates
 *   --client-cert-auth             refuse connections without a client certificate signed by it
 *   --auto-tls                     a self-signed certificate under <member dir>/fixtures/client
 *   --tls-min-version              TLS1.2 (default) or TLS1.3
 *   --cipher-suites                Go's names of the TLS 1.2 suites allowed (comma-separated)
 *   --socket-reuse-port            SO_REUSEPORT on the listener (etcd 3.5's flag), so that several
 *                                  gateways of a member on one host share one client address; the
 *                                  kernel spreads new connections over them
 *
 * The pure part ({@link planClientListener}) turns a listen URL and the flags into what to serve,
 * or etcd's start-up error. The shells own the client port and, as etcd's cmux, hand each
 * connection to the gRPC server (its connection injector) or to the HTTP side (the JSON gateway,
 * /health, /version, /metrics: ./http-gateway.ts): {@link serveClientPlain} for http:// looks at
 * a connection's first bytes (HTTP/2's preface "PRI * HTTP/2.0" is gRPC, anything else is
 * HTTP/1.x), {@link serveClientTls} for https:// terminates TLS in a Node `tls.Server` and goes
 * by ALPN (a client that offers http/1.1 gets it and the HTTP side, one that offers only h2 is
 * gRPC, as every gRPC client does; none is HTTP/1.x), and re-reads the certificate, key and CA
 * files when they change, so a rotation needs no restart (etcd reads them at every handshake).
 * Before the gRPC server gets an HTTP/2 connection, {@link routeGrpcConnection} reads its first
 * request, to relay the connections whose `:authority` is a member URL (./h2-authority.ts).
 * An http:// URL serves plain text and ignores the TLS flags with a warning, as etcd does.
 */
import { watchFile, unwatchFile, readFileSync } from "node:fs"
import * as net from "node:net"
import { type Duplex, duplexPair } from "node:stream"
import * as tls from "node:tls"
import { AuthorityRelay, type RelayStep, serverPreface } from "./h2-authority.ts"
import { firstBytesTimeoutMs, firstHeadersWaitMs } from "./timeouts.ts"

/** The TLS flags of the gateway, as etcd names them. */
export interface ClientTlsFlags {
  readonly certFile: string
  readonly keyFile: string
  readonly trustedCaFile: string
  readonly clientCertAuth: boolean
  readonly autoTls: boolean
  readonly tlsMinVersion: string
  readonly cipherSuites: string
  /** --socket-reuse-port: bind the client port with SO_REUSEPORT (etcd 3.5 SocketOpts.ReusePort). */
  readonly socketReusePort: boolean
}

/** What the client port serves. */
export type ClientListenerPlan =
  | {
    readonly _tag: "Plain"
    readonly host: string
    readonly port: number
    /** Bind with SO_REUSEPORT (--socket-reuse-port). */
    readonly reusePort: boolean
    readonly warnings: ReadonlyArray<string>
  }
  | {
    readonly _tag: "Tls"
    readonly host: string
    readonly port: number
    /** Bind with SO_REUSEPORT (--socket-reuse-port). */
    readonly reusePort: boolean
    /** Create a self-signed certificate at certFile/keyFile when they do not exist (--auto-tls). */
    readonly selfSigned: boolean
    readonly certFile: string
    readonly keyFile: string
    readonly trustedCaFile: string | undefined
    readonly clientCertAuth: boolean
    readonly minVersion: "TLSv1.2" | "TLSv1.3"
    /** OpenSSL cipher list, or undefined for Node's defaults. */
    readonly ciphers: string | undefined
    readonly warnings: ReadonlyArray<string>
  }
  | { readonly _tag: "Invalid"; readonly message: string }

/**
 * The TLS 1.2 cipher suites etcd accepts (pkg/tlsutil/cipher_suites.go, Go's crypto/tls names),
 * with their OpenSSL names.
 */
export const cipherSuites: Readonly<Record<string, string>> = {
  TLS_RSA_WITH_RC4_128_SHA: "RC4-SHA",
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: "DES-CBC3-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: "ECDHE-ECDSA-RC4-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: "ECDHE-RSA-RC4-SHA",
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: "ECDHE-RSA-DES-CBC3-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305"
}

const tlsVersions: Readonly<Record<string, "TLSv1.2" | "TLSv1.3">> = { "TLS1.2": "TLSv1.2", "TLS1.3": "TLSv1.3" }

/**
 * Plans the client listener for `listenUrl` (the first of --listen-client-urls) and the TLS
 * flags; `fixturesDir` is where --auto-tls keeps its certificate (etcd: <data-dir>/fixtures/client).
 * Invalid: etcd's messages, e.g. "TLS key/cert (--cert-file, --key-file) must be provided for
 * client url https://127.0.0.1:2379 with HTTPS scheme", `unexpected TLS cipher suite "X"`.
 */
export const planClientListener = (listenUrl: string, flags: ClientTlsFlags, fixturesDir: string): ClientListenerPlan => {
  let url: URL
  try {
    url = new URL(listenUrl)
  } catch {
    return { _tag: "Invalid", message: `unexpected client url ${JSON.stringify(listenUrl)}` }
  }
  const scheme = url.protocol.replace(/:$/, "")
  if (scheme !== "http" && scheme !== "https") return { _tag: "Invalid", message: `URL scheme must be http or https: ${listenUrl}` }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1")
  const port = Number(url.port || "2379")
  const minVersion = tlsVersions[flags.tlsMinVersion]
  if (minVersion === undefined) return { _tag: "Invalid", message: `unexpected TLS version ${JSON.stringify(flags.tlsMinVersion)} (must be one of: TLS1.2, TLS1.3)` }
  const names = flags.cipherSuites.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const unknown = names.find((n) => cipherSuites[n] === undefined)
  if (unknown !== undefined) return { _tag: "Invalid", message: `unexpected TLS cipher suite ${JSON.stringify(unknown)}` }
  if (names.length > 0 && minVersion === "TLSv1.3") return { _tag: "Invalid", message: "cipher suites cannot be configured when only TLS1.3 is enabled" }
  const hasFiles = flags.certFile !== "" || flags.keyFile !== ""
  if (scheme === "http") {
    const warnings: string[] = []
    if (hasFiles || flags.autoTls) warnings.push("scheme is HTTP while key and certificate files are present; ignoring key and certificate files")
    if (flags.clientCertAuth) warnings.push("scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL")
    return { _tag: "Plain", host, port, reusePort: flags.socketReusePort, warnings }
  }
  const selfSigned = flags.autoTls && !hasFiles
  if (!selfSigned && (flags.certFile === "" || flags.keyFile === "")) {
    return { _tag: "Invalid", message: `TLS key/cert (--cert-file, --key-file) must be provided for client url ${listenUrl} with HTTPS scheme` }
  }
  const warnings: string[] = []
  if (flags.autoTls && hasFiles) warnings.push("ignoring --auto-tls since --cert-file and --key-file are given")
  return {
    _tag: "Tls",
    host,
    port,
    reusePort: flags.socketReusePort,
    selfSigned,
    certFile: selfSigned ? `${fixturesDir}/cert.pem` : flags.certFile,
    keyFile: selfSigned ? `${fixturesDir}/key.pem` : flags.keyFile,
    trustedCaFile: flags.trustedCaFile === "" ? undefined : flags.trustedCaFile,
    clientCertAuth: flags.clientCertAuth,
    minVersion,
    ciphers: names.length === 0 ? undefined : names.map((n) => cipherSuites[n]).join(":"),
    warnings
  }
}

type TlsPlan = Extract<ClientListenerPlan, { _tag: "Tls" }>

/** Reads the plan's files into secure context options; throws when a file is missing or unreadable. */
const contextOptions = (plan: TlsPlan): tls.SecureContextOptions => ({
  cert: readFileSync(plan.certFile),
  key: readFileSync(plan.keyFile),
  ...(plan.trustedCaFile === undefined ? {} : { ca: readFileSync(plan.trustedCaFile) }),
  minVersion: plan.minVersion,
  ...(plan.ciphers === undefined ? {} : { ciphers: plan.ciphers })
})

/** Where the client port's connections go: gRPC (HTTP/2) or the HTTP/1.x side. */
export interface ClientConnections {
  grpc(connection: Duplex): void
  http(connection: Duplex): void
}

/** A client listener in front of the gRPC server and the HTTP side (see the module comment). */
export interface ClientListener {
  /**
   * Stops accepting connections (and, for TLS, watching the files). Established connections
   * stay: the gRPC server's shutdown drains and closes them.
   */
  close(): Promise<void>
}

/** Listens on `host:port` (with SO_REUSEPORT when `reusePort`); rejects when it cannot bind. */
const listen = (server: net.Server, plan: { readonly host: string; readonly port: number; readonly reusePort: boolean }): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen({ port: plan.port, host: plan.host, reusePort: plan.reusePort }, () => {
      server.off("error", reject)
      resolve()
    })
  })

/** The bytes that tell HTTP/2 (prior knowledge) from HTTP/1.x: the preface's "PRI". */
const h2Preface = Buffer.from("PRI")

/**
 * Reads a plain connection's first bytes, puts them back and hands the connection on: to gRPC
 * when they begin HTTP/2's preface, else to the HTTP side. node:http2 takes the bytes put back
 * from the socket's buffer; node:http reads them once the socket flows again.
 */
const dispatchPlain = (socket: net.Socket, to: ClientConnections): void => {
  const chunks: Buffer[] = []
  let size = 0
  // A connection that does not send its first bytes in time holds nothing for long.
  socket.setTimeout(firstBytesTimeoutMs, () => socket.destroy())
  const onData = (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.length
    if (size < h2Preface.length) return
    socket.setTimeout(0)
    socket.off("data", onData)
    socket.off("end", onEnd)
    socket.pause()
    const head = Buffer.concat(chunks)
    socket.unshift(head)
    if (head.subarray(0, h2Preface.length).equals(h2Preface)) return routeGrpcConnection(socket, to.grpc)
    to.http(socket)
    socket.resume()
  }
  const onEnd = () => socket.destroy()
  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("error", () => socket.destroy())
}

/**
 * Hands an HTTP/2 connection to the gRPC server (`grpc`), natively when its requests carry a
 * plain `:authority`, through an {@link AuthorityRelay} when they name the member by its URL
 * (etcd's Go client for calls to one endpoint; see ./h2-authority.ts). Sends the port's
 * server preface at once; closes a connection that does not acknowledge it within
 * {@link firstBytesTimeoutMs}, or that the relay finds invalid.
 */
export const routeGrpcConnection = (socket: Duplex, grpc: (connection: Duplex) => void): void => {
  const relay = new AuthorityRelay()
  let idle: NodeJS.Timeout | undefined
  const deadline = setTimeout(() => socket.destroy(), firstBytesTimeoutMs)
  const done = () => {
    clearTimeout(deadline)
    clearTimeout(idle)
    socket.off("data", onData)
    socket.off("end", onEnd)
  }
  const step = (next: RelayStep): void => {
    switch (next._tag) {
      case "Wait":
        if (relay.ackSeen && idle === undefined) idle = setTimeout(() => step(relay.idle()), firstHeadersWaitMs)
        return
      case "Native":
        done()
        socket.pause()
        if (next.bytes.length > 0) socket.unshift(next.bytes)
        return grpc(socket)
      case "Relay":
        done()
        return relayed(socket, relay, next.bytes, grpc)
      case "Invalid":
        done()
        socket.destroy()
    }
  }
  const onData = (chunk: Buffer) => step(relay.receive(chunk))
  const onEnd = () => {
    done()
    socket.destroy()
  }
  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("error", () => socket.destroy())
  socket.write(serverPreface)
  socket.resume()
}

/**
 * Serves a relayed connection: the gRPC server gets one end of a duplex pair; the client's
 * bytes go through `relay` (header blocks re-encoded) and the server's back as they are, each
 * direction paused while the other side's buffer is full. Either side closing closes both.
 */
const relayed = (socket: Duplex, relay: AuthorityRelay, first: Buffer, grpc: (connection: Duplex) => void): void => {
  const [server, port] = duplexPair()
  const close = () => {
    socket.destroy()
    port.destroy()
  }
  socket.on("data", (chunk: Buffer) => {
    let out: Buffer
    try {
      out = relay.relay(chunk)
    } catch {
      return close()
    }
    if (out.length > 0 && !port.write(out)) socket.pause()
  })
  port.on("drain", () => socket.resume())
  port.on("data", (chunk: Buffer) => {
    if (!socket.write(chunk)) port.pause()
  })
  socket.on("drain", () => port.resume())
  socket.on("end", () => port.end())
  port.on("end", () => socket.end())
  socket.on("close", close)
  port.on("close", close)
  port.on("error", close)
  port.write(first)
  grpc(server)
  socket.resume()
}

/**
 * Listens on the plan's host and port in plain text and passes each connection to gRPC or the
 * HTTP side (see the module comment). Rejects when the port cannot be bound (in use by a
 * process that did not set SO_REUSEPORT, or by another user's).
 */
export const serveClientPlain = async (
  plan: Extract<ClientListenerPlan, { _tag: "Plain" }>,
  to: ClientConnections
): Promise<ClientListener> => {
  const server = net.createServer({ noDelay: true }, (socket) => dispatchPlain(socket, to))
  await listen(server, plan)
  return {
    close: () => {
      server.close()
      return Promise.resolve()
    }
  }
}

/** How often the certificate, key and CA files are checked for changes (ms). */
export const certificatePollMs = 1000

/**
 * Listens on the plan's host and port with TLS (ALPN "http/1.1" or "h2"; with
 * --client-cert-auth, a client certificate signed by the trusted CA is required) and passes each
 * established connection to gRPC (h2) or the HTTP side. Rejects when the files do not load or
 * the port cannot be bound. `log` reports certificate reloads and reload failures (the previous
 * certificate stays in use).
 */
export const serveClientTls = async (
  plan: TlsPlan,
  to: ClientConnections,
  log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void
): Promise<ClientListener> => {
  const server = tls.createServer({
    ...contextOptions(plan),
    // ALPN: HTTP/1.1 when the client offers it (curl, browsers: the JSON gateway and /health),
    // h2 when it offers only that (gRPC clients: etcd's Go client, grpc-js, grpcurl).
    ALPNCallback: ({ protocols }) => (protocols.includes("http/1.1") ? "http/1.1" : protocols.includes("h2") ? "h2" : undefined),
    requestCert: plan.clientCertAuth,
    rejectUnauthorized: plan.clientCertAuth
  }, (socket) => (socket.alpnProtocol === "h2" ? routeGrpcConnection(socket, to.grpc) : to.http(socket)))
  // A failed handshake (no or an untrusted client certificate, a plain-text client) is the
  // client's problem; the listener keeps serving.
  server.on("tlsClientError", () => undefined)
  await listen(server, plan)
  const files = [plan.certFile, plan.keyFile, ...(plan.trustedCaFile === undefined ? [] : [plan.trustedCaFile])]
  const reload = () => {
    try {
      const options = contextOptions(plan)
      // Validates the pair (a half-written rotation fails here and keeps the old context).
      tls.createSecureContext(options)
      server.setSecureContext(options)
      log("info", "reloaded client TLS certificate", { certFile: plan.certFile })
    } catch (e) {
      log("warn", "client TLS certificate did not load; keeping the previous one", { certFile: plan.certFile, error: String(e) })
    }
  }
  for (const f of files) watchFile(f, { interval: certificatePollMs, persistent: false }, (now, before) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) reload()
  })
  return {
    close: () => {
      for (const f of files) unwatchFile(f)
      server.close()
      return Promise.resolve()
    }
  }
}
