/**
 * TLS on the client port, end to end and against etcd 3.4 with the same certificate files:
 * - `--client-tls` (make run TLS=1): https with a CA; etcdctl with the CA and a client
 *   certificate works; without a client certificate, with one from another CA, or in plain text
 *   it is refused, exactly as etcd refuses it;
 * - the server certificate is re-read when its files change: a new certificate (of a new CA) is
 *   served without a restart;
 * - `--client-tls=auto` (etcd's --auto-tls): a self-signed certificate like etcd's (organisation
 *   etcd, the listen host as subject alternative name) that etcdctl trusts with --cacert;
 * - with auth enabled, the Common Name of a verified client certificate is the user (a token,
 *   when given, takes precedence), as etcd with --client-cert-auth;
 * - an https:// URL without --cert-file/--key-file is a start-up error with etcd's message.
 */
import { execFile, execFileSync } from "node:child_process"
import { copyFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureTlsFiles } from "../../services/runtime/certs.ts"
import type { TlsFiles } from "../../services/runtime/certs.ts"
import { etcdctl, natcdPorts, sleep, startEtcd, startNatcd, tempDir } from "./harness.ts"
import type { CtlResult, Etcd, Natcd } from "./harness.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const portOffset = 2100
const etcdClientPort = 21479
const etcdPeerPort = 21480

/** etcdctl flags trusting `files`' CA, with its client certificate unless `client` is false. */
const ctlFlags = (files: TlsFiles, client = true): string[] => [
  `--cacert=${files.ca}`,
  ...(client ? [`--cert=${files.clientCert}`, `--key=${files.clientKey}`] : []),
  "--command-timeout=3s"
]

/** What a test compares: the exit code and stdout (stderr carries ids and times). */
const outcome = (r: CtlResult) => ({ code: r.code === 0 ? 0 : "failed", stdout: r.stdout })

describe("client TLS with a CA (--client-tls, make run TLS=1)", () => {
  const data = tempDir("client-tls")
  const other = mkdtempSync(join(tmpdir(), "natcd-client-tls-other-"))
  let natcd: Natcd
  let etcd: Etcd
  let files: TlsFiles
  let strangers: TlsFiles

  beforeAll(async () => {
    files = ensureTlsFiles(join(data.dir, "natcd", "creds", "client-tls"), { ca: "natcd client CA", server: "natcd", client: "root" })
    strangers = ensureTlsFiles(join(other, "stranger"), { ca: "another CA", server: "natcd", client: "root" })
    natcd = await startNatcd({
      dataDir: join(data.dir, "natcd"),
      portOffset,
      extraArgs: ["--client-tls"],
      scheme: "https",
      ctlArgs: ctlFlags(files)
    })
    etcd = await startEtcd({
      dataDir: join(data.dir, "etcd"),
      clientPort: etcdClientPort,
      peerPort: etcdPeerPort,
      scheme: "https",
      extraArgs: [`--cert-file=${files.serverCert}`, `--key-file=${files.serverKey}`, `--trusted-ca-file=${files.ca}`, "--client-cert-auth"],
      ctlArgs: ctlFlags(files)
    })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    await etcd?.stop()
    data.remove()
    rmSync(other, { recursive: true, force: true })
  })

  it("serves etcdctl with the CA and a client certificate, and refuses what etcd refuses", async () => {
    const endpoints = [natcd.endpoints[0]!, etcd.endpoint]
    const run = async (args: ReadonlyArray<string>) => Promise.all(endpoints.map((e) => etcdctl(e, args)))
    const [natcdPut, etcdPut] = await run([...ctlFlags(files), "put", "tls-key", "tls-value"])
    expect(natcdPut!.stdout).toBe("OK\n")
    expect(outcome(natcdPut!)).toEqual(outcome(etcdPut!))
    const [natcdGet, etcdGet] = await run([...ctlFlags(files), "get", "tls-key"])
    expect(natcdGet!.stdout).toBe("tls-key\ntls-value\n")
    expect(outcome(natcdGet!)).toEqual(outcome(etcdGet!))
    // Refused: no client certificate; a client certificate of another CA; a server certificate
    // checked against another CA; plain text to the TLS port.
    const refused: ReadonlyArray<ReadonlyArray<string>> = [
      ctlFlags(files, false),
      [`--cacert=${files.ca}`, `--cert=${strangers.clientCert}`, `--key=${strangers.clientKey}`, "--command-timeout=3s"],
      ctlFlags(strangers)
    ]
    for (const flags of refused) {
      const [n, e] = await run([...flags, "get", "tls-key"])
      expect(n!.code, `${flags.join(" ")}: ${n!.stderr}`).not.toBe(0)
      expect(n!.stderr).toContain("context deadline exceeded")
      expect(outcome(n!)).toEqual(outcome(e!))
    }
    const plain = await Promise.all(endpoints.map((e) => etcdctl(e.replace("https://", "http://"), ["--command-timeout=3s", "get", "tls-key"])))
    expect(plain[0]!.code).not.toBe(0)
    expect(outcome(plain[0]!)).toEqual(outcome(plain[1]!))
  }, 120_000)

  it("takes a verified certificate's Common Name as the user once auth is enabled, as etcd", async () => {
    // A second client certificate, CN alice, signed by the same CA.
    const alice = { cert: join(other, "alice.pem"), key: join(other, "alice-key.pem") }
    const csr = join(other, "alice.csr")
    execFileSync("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", alice.key, "-out", csr, "-subj", "/CN=alice"], { stdio: "ignore" })
    execFileSync("openssl", ["x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", files.caKey, "-CAcreateserial", "-out", alice.cert, "-days", "30"], { stdio: "ignore" })
    const asAlice = [`--cacert=${files.ca}`, `--cert=${alice.cert}`, `--key=${alice.key}`, "--command-timeout=3s"]
    const endpoints = [natcd.endpoints[0]!, etcd.endpoint]
    /** Exit code, stdout and the error line etcdctl prints (its retry warnings carry ids and times). */
    const seen = (r: CtlResult) => ({ code: r.code, stdout: r.stdout, error: r.stderr.split("\n").filter((l) => l.startsWith("Error")).join("\n") })
    const steps: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
      [ctlFlags(files), ["user", "add", "root:rootpw"]],
      [ctlFlags(files), ["user", "add", "alice", "--no-password"]],
      [ctlFlags(files), ["role", "add", "reader"]],
      [ctlFlags(files), ["role", "grant-permission", "reader", "read", "cn/", "--prefix"]],
      [ctlFlags(files), ["user", "grant-role", "alice", "reader"]],
      [ctlFlags(files), ["auth", "enable"]],
      // The root certificate is the root user: no password needed.
      [ctlFlags(files), ["put", "cn/a", "1"]],
      [ctlFlags(files), ["user", "list"]],
      // alice's certificate reads her prefix and nothing else, and cannot write.
      [asAlice, ["get", "cn/a"]],
      [asAlice, ["get", "tls-key"]],
      [asAlice, ["put", "cn/a", "2"]],
      [asAlice, ["user", "list"]],
      // A token takes precedence over the certificate.
      [[...asAlice, "--user", "root:rootpw"], ["put", "cn/a", "3"]],
      [asAlice, ["get", "cn/a", "--print-value-only"]],
      [ctlFlags(files), ["auth", "disable"]],
      [ctlFlags(files, false).concat(`--cert=${alice.cert}`, `--key=${alice.key}`), ["put", "cn/b", "4"]]
    ]
    const natcdSeen: string[] = []
    for (const [flags, args] of steps) {
      const [n, e] = await Promise.all(endpoints.map((endpoint) => etcdctl(endpoint, [...flags, ...args])))
      expect([args.join(" "), seen(n!)]).toEqual([args.join(" "), seen(e!)])
      natcdSeen.push(`${args.join(" ")}: ${seen(n!).error || seen(n!).stdout.trim()}`)
    }
    // What the steps show, spelled out (the comparison above alone would pass if both refused everything).
    expect(natcdSeen).toEqual([
      "user add root:rootpw: User root created",
      "user add alice --no-password: User alice created",
      "role add reader: Role reader created",
      "role grant-permission reader read cn/ --prefix: Role reader updated",
      "user grant-role alice reader: Role reader is granted to user alice",
      "auth enable: Authentication Enabled",
      "put cn/a 1: OK",
      "user list: alice\nroot",
      "get cn/a: cn/a\n1",
      "get tls-key: Error: etcdserver: permission denied",
      "put cn/a 2: Error: etcdserver: permission denied",
      "user list: Error: etcdserver: permission denied",
      "put cn/a 3: OK",
      "get cn/a --print-value-only: 3",
      "auth disable: Authentication Disabled",
      "put cn/b 4: OK"
    ])
  }, 120_000)

  it("serves a rotated certificate without a restart", async () => {
    const endpoint = natcd.endpoints[0]!
    const gatewayPids = () => execFileSync("pgrep", ["-f", `services/gateway/main.ts.*--data-dir=${join(data.dir, "natcd")}`]).toString().trim()
    const before = gatewayPids()
    // The new certificates come from a new CA: a client that trusts only the old one is refused
    // once the gateway serves the new certificate, which proves the reload.
    const rotated = ensureTlsFiles(join(other, "rotated"), { ca: "rotated CA", server: "natcd", client: "root" })
    expect((await etcdctl(endpoint, [...ctlFlags(rotated), "get", "tls-key"])).code).not.toBe(0)
    for (const [from, to] of [[rotated.serverKey, files.serverKey], [rotated.serverCert, files.serverCert], [rotated.ca, files.ca]] as const) copyFileSync(from, to)
    const deadline = Date.now() + 15_000
    let last: CtlResult | undefined
    for (;;) {
      last = await etcdctl(endpoint, [...ctlFlags(rotated), "get", "tls-key"])
      if (last.code === 0 || Date.now() > deadline) break
      await sleep(500)
    }
    expect(last.code, last.stderr).toBe(0)
    expect(last.stdout).toBe("tls-key\ntls-value\n")
    expect((await etcdctl(endpoint, [...ctlFlags(strangers), "get", "tls-key"])).code).not.toBe(0)
    expect(gatewayPids()).toBe(before)
  }, 60_000)
})

describe("client TLS with self-signed certificates (--client-tls=auto, etcd's --auto-tls)", () => {
  const data = tempDir("client-auto-tls")
  let natcd: Natcd
  let etcd: Etcd
  const natcdCert = () => join(data.dir, "natcd", "m1", "fixtures", "client", "cert.pem")
  const etcdCert = () => join(data.dir, "etcd", "fixtures", "client", "cert.pem")

  beforeAll(async () => {
    natcd = await startNatcd({
      dataDir: join(data.dir, "natcd"),
      portOffset,
      extraArgs: ["--client-tls=auto"],
      scheme: "https",
      ctlArgs: [`--cacert=${natcdCert()}`]
    })
    etcd = await startEtcd({
      dataDir: join(data.dir, "etcd"),
      clientPort: etcdClientPort,
      peerPort: etcdPeerPort,
      scheme: "https",
      extraArgs: ["--auto-tls"],
      ctlArgs: [`--cacert=${etcdCert()}`]
    })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    await etcd?.stop()
    data.remove()
  })

  it("creates a certificate like etcd's that etcdctl trusts with --cacert", async () => {
    // Subject, then each extension on its own (openssl prints them in the certificate's order).
    const describeCert = (file: string) =>
      [["-subject"], ...["subjectAltName", "basicConstraints", "keyUsage", "extendedKeyUsage"].map((e) => ["-ext", e])]
        .map((args) => execFileSync("openssl", ["x509", "-in", file, "-noout", ...args]).toString())
    expect(describeCert(natcdCert())).toEqual(describeCert(etcdCert()))
    const n = await etcdctl(natcd.endpoints[0]!, [`--cacert=${natcdCert()}`, "put", "auto", "tls"])
    const e = await etcdctl(etcd.endpoint, [`--cacert=${etcdCert()}`, "put", "auto", "tls"])
    expect(n.stdout).toBe("OK\n")
    expect(outcome(n)).toEqual(outcome(e))
    const refused = await Promise.all([natcd.endpoints[0]!, etcd.endpoint].map((ep) => etcdctl(ep, ["--command-timeout=3s", "get", "auto"])))
    expect(refused[0]!.code).not.toBe(0)
    expect(outcome(refused[0]!)).toEqual(outcome(refused[1]!))
  }, 60_000)
})

describe("an https:// client URL without a certificate", () => {
  it("is a start-up error with etcd's message, never plain text", async () => {
    const data = tempDir("client-tls-missing")
    try {
      const port = natcdPorts(portOffset).clients[0]!
      const url = `https://127.0.0.1:${port}`
      const run = (command: string, args: ReadonlyArray<string>) =>
        new Promise<{ code: number | null; stderr: string }>((resolve) => {
          execFile(command, args, { cwd: root, timeout: 20_000 }, (err, _stdout, stderr) =>
            resolve({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : null, stderr: String(stderr) }))
        })
      const natcdRun = await run(process.execPath, [
        join(root, "services/gateway/main.ts"), "--member=m1", `--data-dir=${data.dir}`, `--listen-client-urls=${url}`, "--nats=nats://127.0.0.1:1"
      ])
      const etcdRun = await run("etcd", [
        `--data-dir=${join(data.dir, "etcd")}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`
      ])
      const message = `TLS key/cert (--cert-file, --key-file) must be provided for client url ${url} with HTTPS scheme`
      expect(etcdRun.code).not.toBe(0)
      expect(etcdRun.stderr).toContain(message)
      expect(natcdRun.code).toBe(1)
      expect(natcdRun.stderr).toContain(message)
    } finally {
      data.remove()
    }
  }, 60_000)
})
