/**
 * The client port's TLS (services/gateway/client-tls.ts): the plan from a listen URL and etcd's
 * flags (table), and the TLS listener with real sockets: the minimum version and cipher suites
 * are enforced, a client certificate is required with --client-cert-auth, and a changed
 * certificate file is served to new connections while a half-written one keeps the old. HTTP/2
 * connections reach the gRPC side through the `:authority` routing (h2-authority.ts).
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Duplex } from "node:stream"
import * as http2 from "node:http2"
import * as net from "node:net"
import * as tls from "node:tls"
import { afterAll, describe, expect, it } from "vitest"
import { certificatePollMs, planClientListener, serveClientPlain, serveClientTls } from "../../services/gateway/client-tls.ts"
import type { ClientTlsFlags } from "../../services/gateway/client-tls.ts"
import { serverPreface } from "../../services/gateway/h2-authority.ts"
import { ensureTlsFiles } from "../../services/runtime/certs.ts"

const none: ClientTlsFlags = { certFile: "", keyFile: "", trustedCaFile: "", clientCertAuth: false, autoTls: false, tlsMinVersion: "TLS1.2", cipherSuites: "", socketReusePort: false }
const withFiles: ClientTlsFlags = { ...none, certFile: "/c.pem", keyFile: "/k.pem" }

describe("planClientListener", () => {
  const cases: ReadonlyArray<readonly [string, string, ClientTlsFlags, Record<string, unknown>]> = [
    ["plain", "http://127.0.0.1:2379", none, { _tag: "Plain", host: "127.0.0.1", port: 2379, warnings: [] }],
    ["plain, default port", "http://localhost", none, { _tag: "Plain", host: "localhost", port: 2379, reusePort: false }],
    ["plain, several gateways on one address", "http://127.0.0.1:2379", { ...none, socketReusePort: true }, { _tag: "Plain", reusePort: true }],
    ["https, several gateways on one address", "https://127.0.0.1:2379", { ...withFiles, socketReusePort: true }, { _tag: "Tls", reusePort: true }],
    ["plain with TLS files: ignored, as etcd", "http://127.0.0.1:2379", { ...withFiles, clientCertAuth: true }, {
      _tag: "Plain",
      warnings: [
        "scheme is HTTP while key and certificate files are present; ignoring key and certificate files",
        "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL"
      ]
    }],
    ["https without files: etcd's error", "https://127.0.0.1:2379", none, {
      _tag: "Invalid", message: "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
    }],
    ["https with only a cert", "https://127.0.0.1:2379", { ...none, certFile: "/c.pem" }, { _tag: "Invalid" }],
    ["https", "https://127.0.0.1:2379", { ...withFiles, trustedCaFile: "/ca.pem", clientCertAuth: true }, {
      _tag: "Tls", selfSigned: false, certFile: "/c.pem", keyFile: "/k.pem", trustedCaFile: "/ca.pem", clientCertAuth: true, minVersion: "TLSv1.2", ciphers: undefined
    }],
    ["auto-tls", "https://127.0.0.1:2379", { ...none, autoTls: true }, {
      _tag: "Tls", selfSigned: true, certFile: "/fixtures/cert.pem", keyFile: "/fixtures/key.pem", trustedCaFile: undefined
    }],
    ["auto-tls with files: the files win", "https://127.0.0.1:2379", { ...withFiles, autoTls: true }, {
      _tag: "Tls", selfSigned: false, certFile: "/c.pem", warnings: ["ignoring --auto-tls since --cert-file and --key-file are given"]
    }],
    ["cipher suites in Go's names", "https://127.0.0.1:2379", { ...withFiles, cipherSuites: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" }, {
      _tag: "Tls", ciphers: "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
    }],
    ["an unknown cipher suite: etcd's error", "https://127.0.0.1:2379", { ...withFiles, cipherSuites: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,FOO" }, {
      _tag: "Invalid", message: `unexpected TLS cipher suite "FOO"`
    }],
    ["TLS 1.3 only", "https://127.0.0.1:2379", { ...withFiles, tlsMinVersion: "TLS1.3" }, { _tag: "Tls", minVersion: "TLSv1.3" }],
    ["TLS 1.3 with cipher suites", "https://127.0.0.1:2379", { ...withFiles, tlsMinVersion: "TLS1.3", cipherSuites: "TLS_RSA_WITH_AES_128_GCM_SHA256" }, {
      _tag: "Invalid", message: "cipher suites cannot be configured when only TLS1.3 is enabled"
    }],
    ["an unknown TLS version", "https://127.0.0.1:2379", { ...withFiles, tlsMinVersion: "TLS1.1" }, {
      _tag: "Invalid", message: `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`
    }],
    ["IPv6 host", "https://[::1]:2400", withFiles, { _tag: "Tls", host: "::1", port: 2400 }],
    ["not http", "unix://x", none, { _tag: "Invalid", message: "URL scheme must be http or https: unix://x" }]
  ]
  it.each(cases)("%s", (_name, url, flags, expected) => {
    expect(planClientListener(url, flags, "/fixtures")).toMatchObject(expected)
  })
})

describe("serveClientTls", () => {
  const dir = mkdtempSync(join(tmpdir(), "natcd-client-tls-unit-"))
  const a = ensureTlsFiles(join(dir, "a"), { ca: "CA a", server: "natcd", client: "root" })
  const b = ensureTlsFiles(join(dir, "b"), { ca: "CA b", server: "natcd", client: "root" })
  // The server's own copies, which the rotation overwrites.
  const live = { cert: join(dir, "server.pem"), key: join(dir, "server-key.pem"), ca: join(dir, "ca.pem") }
  copyFileSync(a.serverCert, live.cert)
  copyFileSync(a.serverKey, live.key)
  copyFileSync(a.ca, live.ca)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /**
   * Starts a listener. Its gRPC side is an HTTP/2 server that answers every request "hello";
   * every connection its HTTP side gets is answered "http" and closed.
   */
  const start = async (flags: Partial<ClientTlsFlags>, port: number) => {
    const plan = planClientListener(`https://127.0.0.1:${port}`, { ...none, certFile: live.cert, keyFile: live.key, trustedCaFile: live.ca, ...flags }, dir)
    if (plan._tag !== "Tls") throw new Error(JSON.stringify(plan))
    const logs: string[] = []
    const h2 = http2.createServer()
    h2.on("stream", (stream) => {
      stream.respond({ ":status": 200 })
      stream.end("hello")
    })
    const server = await serveClientTls(plan, { grpc: (c: Duplex) => h2.emit("connection", c), http: (c: Duplex) => c.end("http") }, (_level, message) => logs.push(message))
    return { server, logs }
  }
  /**
   * Connects with `options`; resolves with what the server said, or the error. A client that
   * offers only h2 makes one HTTP/2 request and reads its body, as a gRPC client would.
   */
  const connect = (port: number, options: tls.ConnectionOptions) =>
    new Promise<string>((resolve) => {
      const tlsOptions = { host: "127.0.0.1", port, servername: "localhost", ALPNProtocols: ["h2"], ...options }
      const alpn = tlsOptions.ALPNProtocols as ReadonlyArray<string>
      const failed = (e: Error) => resolve(`error: ${(e as NodeJS.ErrnoException).code ?? e.message}`)
      if (alpn.length === 1 && alpn[0] === "h2") {
        // A refused handshake reaches the stream (the session may not report it), or only the
        // session; both have had their say once the stream has closed and the session is gone.
        const session = http2.connect(`https://localhost:${port}`, { createConnection: () => tls.connect(tlsOptions) })
        let sessionError: Error | undefined
        let streamError: Error | undefined
        let text = ""
        const settle = () =>
          setImmediate(() => {
            const error = sessionError ?? streamError
            if (error === undefined) resolve(text)
            else failed(error)
          })
        session.on("error", (e) => (sessionError = e))
        session.on("close", settle)
        const request = session.request({ ":path": "/" }, { endStream: true })
        request.on("data", (d: Buffer) => (text += d.toString()))
        request.on("error", (e) => (streamError = e))
        request.on("close", () => {
          session.destroy()
          settle()
        })
        return
      }
      let text = ""
      const socket = tls.connect(tlsOptions, () => undefined)
      socket.on("data", (d) => (text += d.toString()))
      socket.on("end", () => resolve(text))
      socket.on("error", failed)
    })
  const read = (f: string) => readFileSync(f)

  it("requires a client certificate signed by the trusted CA with --client-cert-auth", async () => {
    const port = 24601
    const { server } = await start({ clientCertAuth: true }, port)
    try {
      expect(await connect(port, { ca: read(a.ca), cert: read(a.clientCert), key: read(a.clientKey) })).toBe("hello")
      expect(await connect(port, { ca: read(a.ca) })).toMatch(/^error: ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED$/)
      // A certificate from another CA: refused with an alert, or (TLS 1.3, the alert racing the
      // close) a connection closed before any response; never served.
      expect(await connect(port, { ca: read(a.ca), cert: read(b.clientCert), key: read(b.clientKey) })).toMatch(/^(error: ERR_SSL_\w+)?$/)
      expect(await connect(port, { ca: read(b.ca) })).toMatch(/^error: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/)
    } finally {
      await server.close()
    }
  })

  it("hands h2-only connections (ALPN, as gRPC clients offer) to gRPC, those offering HTTP/1.1 or no ALPN to the HTTP side", async () => {
    const port = 24605
    const { server } = await start({}, port)
    try {
      expect(await connect(port, { ca: read(a.ca) })).toBe("hello")
      expect(await connect(port, { ca: read(a.ca), ALPNProtocols: ["http/1.1"] })).toBe("http")
      // curl offers both: the JSON gateway.
      expect(await connect(port, { ca: read(a.ca), ALPNProtocols: ["h2", "http/1.1"] })).toBe("http")
      expect(await connect(port, { ca: read(a.ca), ALPNProtocols: [] })).toBe("http")
    } finally {
      await server.close()
    }
  })

  it("enforces the minimum TLS version and the cipher suites", async () => {
    const port13 = 24602
    const only13 = await start({ tlsMinVersion: "TLS1.3" }, port13)
    const port12 = 24603
    const suites = await start({ cipherSuites: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" }, port12)
    try {
      expect(await connect(port13, { ca: read(a.ca), maxVersion: "TLSv1.2" })).toMatch(/^error/)
      expect(await connect(port13, { ca: read(a.ca) })).toBe("hello")
      expect(await connect(port12, { ca: read(a.ca), maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).toMatch(/^error/)
      expect(await connect(port12, { ca: read(a.ca), maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES256-GCM-SHA384" })).toBe("hello")
    } finally {
      await only13.server.close()
      await suites.server.close()
    }
  })

  it("serves a changed certificate to new connections, and keeps the old one while the files do not match", async () => {
    const port = 24604
    const { server, logs } = await start({}, port)
    try {
      expect(await connect(port, { ca: read(a.ca) })).toBe("hello")
      // Half a rotation: b's certificate with a's key does not load; a's stays in use.
      copyFileSync(b.serverCert, live.cert)
      await new Promise((r) => setTimeout(r, certificatePollMs * 2.5))
      expect(logs).toContain("client TLS certificate did not load; keeping the previous one")
      expect(await connect(port, { ca: read(a.ca) })).toBe("hello")
      copyFileSync(b.serverKey, live.key)
      await new Promise((r) => setTimeout(r, certificatePollMs * 2.5))
      expect(logs).toContain("reloaded client TLS certificate")
      expect(await connect(port, { ca: read(b.ca) })).toBe("hello")
      expect(await connect(port, { ca: read(a.ca) })).toMatch(/^error: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/)
      writeFileSync(live.cert, "not a certificate")
      await new Promise((r) => setTimeout(r, certificatePollMs * 2.5))
      expect(await connect(port, { ca: read(b.ca) })).toBe("hello")
    } finally {
      await server.close()
    }
  }, 20_000)
})

describe("serveClientPlain", () => {
  /** Sends `chunks` (one write each, 20 ms apart) and resolves with what the server answered. */
  const exchange = (port: number, chunks: ReadonlyArray<string>) =>
    new Promise<string>((resolve) => {
      let text = ""
      const socket = net.connect({ host: "127.0.0.1", port }, async () => {
        for (const c of chunks) {
          socket.write(c)
          await new Promise((r) => setTimeout(r, 20))
        }
      })
      socket.on("data", (d) => (text += d.toString()))
      socket.on("end", () => resolve(text))
      socket.on("error", (e) => resolve(`error: ${e.message}`))
    })

  it("hands HTTP/2 (its preface) to gRPC and anything else to the HTTP side, with the first bytes intact", async () => {
    const port = 24606
    const plan = planClientListener(`http://127.0.0.1:${port}`, none, "/fixtures")
    if (plan._tag !== "Plain") throw new Error(JSON.stringify(plan))
    // Each side echoes the first 8 bytes it reads, after its name. gRPC's side gets the socket
    // paused (node:http2 reads what was put back, then the socket itself): it resumes it here.
    const echo = (name: string) => (c: Duplex) => {
      let got = ""
      c.on("data", (d: Buffer) => {
        got += d.toString()
        if (got.length >= 8) c.end(`${name}:${got.slice(0, 8)}`)
      })
      c.resume()
    }
    // An HTTP/2 client's opening: the preface, its SETTINGS, and the ACK of the port's SETTINGS,
    // which the port sends first. With no request after it, gRPC gets the connection once the
    // port has waited for one (firstHeadersWaitMs in services/gateway/timeouts.ts).
    const settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    const ack = "\x00\x00\x00\x04\x01\x00\x00\x00\x00"
    const server = await serveClientPlain(plan, { grpc: echo("grpc"), http: echo("http") })
    const ported = serverPreface.toString("latin1")
    try {
      expect(await exchange(port, [`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n${settings}${ack}`])).toBe(`${ported}grpc:PRI * HT`)
      expect(await exchange(port, ["GET /health HTTP/1.1\r\n\r\n"])).toBe("http:GET /hea")
      // The first bytes may come in pieces.
      expect(await exchange(port, ["P", "R", "I * HTTP/2.0", `\r\n\r\nSM\r\n\r\n${settings}`, ack])).toBe(`${ported}grpc:PRI * HT`)
      expect(await exchange(port, ["P", "OST /v3/kv/range"])).toBe("http:POST /v3")
    } finally {
      await server.close()
    }
  })
})
