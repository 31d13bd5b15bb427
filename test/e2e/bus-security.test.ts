/**
 * The NATS bus as a trust boundary, tried as an attacker on a cluster started by the supervisor
 * (3 members, real nats-server with the NKeys and permissions the supervisor writes):
 *
 * - an anonymous connection is refused;
 * - with the gateway's own credentials, forged frames that would corrupt a member (mvcc.apply,
 *   wal.append, raft messages, raft.confchange to another member, mvcc.install) and a
 *   subscription to `>` are refused by nats-server; afterwards every member has the same keys
 *   and the same HashKV;
 * - for every declared endpoint (shared/endpoints.ts) and every identity of the cluster, a
 *   publish or subscription on the endpoint's subject at this member and at another is refused
 *   exactly when the declaration does not grant it, and nobody may read another's inbox;
 * - the keys, nats-server's config and the data directory are private (0600 / 0700).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { connect } from "@nats-io/transport-node"
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { natsSecurityOptions } from "../../services/runtime/nats-auth.ts"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { endpoints, inboxPrefix, mvccApply, mvccInstall, raftConfChange, raftMsg, subjectOf, walAppend } from "../../shared/endpoints.ts"
import type { Endpoint, Identity, Party } from "../../shared/endpoints.ts"
import { encodeFrame, packValue } from "../../shared/frame.ts"
import type { Natcd } from "./harness.ts"
import { etcdctl, findLeader, natsConnectAs, raftStatus, sleep, startNatcd, tempDir } from "./harness.ts"

const portOffset = 1770
const root = fileURLToPath(new URL("../../", import.meta.url))
const members = ["m1", "m2", "m3"]

/** Every permission violation nats-server reported to a connection, as "publish <subject>" / "subscription <subject>". */
const violations = (nc: NatsConnection): Set<string> => {
  const seen = new Set<string>()
  void (async () => {
    for await (const s of nc.status()) {
      const e = (s as { error?: { operation?: string; subject?: string } }).error
      if (s.type === "error" && e?.operation !== undefined) seen.add(`${e.operation} ${e.subject}`)
    }
  })()
  return seen
}

/** The concrete tokens of an endpoint's subject aimed at `member` (and sender m2, replica w1). */
const tokensAt = (member: string, role: string) => ({ cluster: "natcd", member, replica: "w1", from: "m2", instance: "abc", role })

/**
 * Whether `party` of a declaration grants `identity` the subject `endpoint` has at `member`
 * (`serverRole` fills `{role}`): the spec the permissions must implement, read off the declaration.
 */
const grants = (party: Party, identity: Identity, endpoint: Endpoint, member: string, serverRole: string): boolean => {
  if (party.role !== identity.role) return false
  const t = tokensAt(member, serverRole)
  const uses = (token: string) => endpoint.subject.includes(`{${token}}`)
  if (party.self.includes("member") && uses("member") && t.member !== identity.name) return false
  if (party.self.includes("replica") && uses("replica") && t.replica !== identity.name) return false
  if (party.self.includes("from") && uses("from") && t.from !== identity.name) return false
  if (party.self.includes("role") && uses("role") && serverRole !== identity.role) return false
  return true
}

const identities: ReadonlyArray<Identity> = [
  ...(["raft", "wal", "mvcc", "lease", "gateway"] as const).map((role) => ({ role, name: "m1" })),
  { role: "watch", name: "w1" },
  { role: "cli", name: "" }
]

describe("the NATS bus as a trust boundary", () => {
  let natcd: Natcd
  const data = tempDir("bus-security")

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3 })
    await findLeader(natcd)
  }, 120_000)

  afterAll(async () => {
    await natcd?.stop()
    data.remove()
  })

  it("refuses an anonymous connection, and a connection with a key it does not know", async () => {
    await expect(natsConnectAs(natcd, undefined)).rejects.toThrow(/Authorization Violation/)
  })

  it("refuses the gateway's forged frames and its subscription to everything; the members stay identical", async () => {
    for (let i = 0; i < 20; i++) expect((await etcdctl(natcd.endpoints[i % 3]!, ["put", `k${i}`, `v${i}`])).code).toBe(0)
    const nc = await natsConnectAs(natcd, { role: "gateway", name: "m1" })
    const seen = violations(nc)
    const status = await raftStatus(natcd, "m1")
    const frame = (kind: string, body: unknown) => encodeFrame({ kind, version: 1, traceparent: "", id: 7, body })
    const proposal = packValue({ requestId: 1n, origin: "m1", replyTo: "x", deadlineMs: 0, traceparent: "", request: { put: { key: new TextEncoder().encode("forged"), value: new TextEncoder().encode("x"), lease: 0n } } })
    const forged: Array<[string, Uint8Array]> = [
      // An entry at the next index, written on m1 alone.
      [subjectOf(mvccApply, { cluster: "natcd", member: "m1" }), frame("apply", { entries: [{ term: status.term, index: status.appliedIndex + 1, type: "Normal", data: proposal }], commitIndex: status.appliedIndex + 1, term: status.term })],
      // A hard state that cuts the log back.
      [subjectOf(walAppend, { cluster: "natcd", member: "m1" }), frame("wal.append", { writer: "attacker", seq: 1, hardState: { term: status.term + 5, vote: 0n, commit: 1 }, entries: [] })],
      // A MsgApp "from m2", on m2's own subject and on m1's.
      [subjectOf(raftMsg, { cluster: "natcd", member: "m1", from: "m2" }), frame("raft.msg", { from: 1n, fromName: "m2", messages: [] })],
      [subjectOf(raftMsg, { cluster: "natcd", member: "m2", from: "m1" }), frame("raft.msg", { from: 1n, fromName: "m1", messages: [] })],
      // Removing a member through another member's raft.
      [subjectOf(raftConfChange, { cluster: "natcd", member: "m2" }), frame("confchange", { action: "remove", memberId: status.memberId, peerUrls: [] })],
      // Replacing m1's database with another member's snapshot file.
      [subjectOf(mvccInstall, { cluster: "natcd", member: "m1" }), frame("mvcc.install", { fromMember: "m2", snapshot: { file: "../../etc/passwd", index: 1_000_000, sizeBytes: 1 } })]
    ]
    for (const [subject, bytes] of forged) nc.publish(subject, bytes)
    const everything = nc.subscribe(">")
    await nc.flush()
    await sleep(1000)
    for (const [subject] of forged) expect(seen, subject).toContain(`publish ${subject}`)
    expect(seen).toContain("subscription >")
    await everything.closed.catch(() => undefined)
    await nc.close()

    // Every member: the same keys and the same HashKV, and no forged key.
    expect((await etcdctl(natcd.endpoints[0]!, ["put", "after", "1"])).code).toBe(0)
    await sleep(500)
    const dumps = await Promise.all(natcd.endpoints.map((e) => etcdctl(e, ["get", "", "--prefix", "--consistency=s", "-w", "json"])))
    const kvs = dumps.map((d) => JSON.stringify(JSON.parse(d.stdout).kvs))
    expect(new Set(kvs).size).toBe(1)
    expect(kvs[0]).not.toContain(Buffer.from("forged").toString("base64"))
    const hashes = await etcdctl(natcd.endpoints[0]!, ["endpoint", "hashkv", "--cluster", "-w", "json"])
    expect(hashes.code, hashes.stderr).toBe(0)
    const byMember = (JSON.parse(hashes.stdout) as Array<{ HashKV: { hash: number } }>).map((h) => h.HashKV.hash)
    expect(byMember).toHaveLength(3)
    expect(new Set(byMember).size).toBe(1)
    const list = await etcdctl(natcd.endpoints[0]!, ["member", "list"])
    expect(list.stdout.trim().split("\n")).toHaveLength(3)
  }, 60_000)

  it("grants each identity exactly what the declarations give it, on every endpoint", async () => {
    let checked = 0
    for (const identity of identities) {
      const nc = await natsConnectAs(natcd, identity)
      const seen = violations(nc)
      const expectedDenied = new Set<string>()
      const tried = new Set<string>()
      for (const endpoint of endpoints) {
        const serverRoles = endpoint.subject.includes("{role}") ? endpoint.servers.map((p) => p.role) : [endpoint.servers[0]!.role]
        for (const member of ["m1", "m2"]) {
          for (const serverRole of serverRoles) {
            const subject = subjectOf(endpoint as Endpoint<string>, tokensAt(member, serverRole) as never)
            if (tried.has(subject)) continue
            tried.add(subject)
            const mayPublish = endpoint.callers.some((p) => grants(p, identity, endpoint, member, serverRole))
            const maySubscribe = endpoint.servers.some((p) => grants(p, identity, endpoint, member, serverRole))
            // Undecodable bytes: harmless where the publish is allowed (a MalformedFrame at most).
            nc.publish(subject, new Uint8Array([0xc1]))
            if (!mayPublish) expectedDenied.add(`publish ${subject}`)
            const sub = nc.subscribe(subject)
            if (!maySubscribe) expectedDenied.add(`subscription ${subject}`)
            await nc.flush()
            sub.unsubscribe()
            checked += 2
          }
        }
      }
      // Nobody reads another identity's inbox, nor everything.
      const other: Identity = identity.role === "raft" ? { role: "gateway", name: "m1" } : { role: "raft", name: "m1" }
      for (const subject of [`${inboxPrefix("natcd", other)}.x`, ">", "natcd.>", "_INBOX.>"]) {
        nc.subscribe(subject)
        expectedDenied.add(`subscription ${subject}`)
      }
      // Its own inbox it may read.
      nc.subscribe(`${inboxPrefix("natcd", identity)}.x`)
      await nc.flush()
      await sleep(300)
      expect([...seen].sort(), `${identity.role}.${identity.name}`).toEqual([...expectedDenied].sort())
      await nc.close()
    }
    console.log(`bus permissions: ${identities.length} identities x ${endpoints.length} endpoints, ${checked} publish/subscribe checks`)
    // The cluster still serves, with every member.
    for (const endpoint of natcd.endpoints) expect((await etcdctl(endpoint, ["get", "after", "--print-value-only"])).stdout.trim()).toBe("1")
  }, 120_000)

  it("rotates a key and adds an identity while the cluster runs (natcd creds)", async () => {
    const gatewayKey = join(natcd.dataDir, "creds", "gateway.m1.nk")
    const oldSeed = readFileSync(gatewayKey, "utf8")
    const rotate = spawnSync(join(root, "bin", "natcd"), ["creds", "rotate", "gateway.m1", `--data-dir=${natcd.dataDir}`], { encoding: "utf8" })
    expect(rotate.status, rotate.stderr).toBe(0)
    expect(rotate.stdout).toMatch(/rotated gateway\.m1: U[A-Z0-9]{55} .*nats-server reloaded: \d+/)
    expect(readFileSync(gatewayKey, "utf8")).not.toBe(oldSeed)
    // The old key is refused from now on.
    const oldFile = join(natcd.dataDir, "old-gateway.nk")
    writeFileSync(oldFile, oldSeed, { mode: 0o600 })
    await expect(connect({ servers: `127.0.0.1:${natcd.portOffset + 4222}`, reconnect: false, ...natsSecurityOptions({ natsCreds: oldFile }) })).rejects.toThrow(/Authorization Violation/)
    // The gateway was disconnected by the reload and came back with the new key: m1 serves writes.
    const deadline = Date.now() + 20_000
    let put = await etcdctl(natcd.endpoints[0]!, ["put", "rotated", "1"])
    while (put.code !== 0 && Date.now() < deadline) {
      await sleep(500)
      put = await etcdctl(natcd.endpoints[0]!, ["put", "rotated", "1"])
    }
    expect(put.code, put.stderr).toBe(0)
    // A new identity: one more watch replica's key, with a watch replica's permissions.
    const add = spawnSync(join(root, "bin", "natcd"), ["creds", "add", "watch.w3", `--data-dir=${natcd.dataDir}`], { encoding: "utf8" })
    expect(add.status, add.stderr).toBe(0)
    const nc = await natsConnectAs(natcd, { role: "watch", name: "w3" })
    const seen = violations(nc)
    nc.subscribe("natcd.natcd.watch.w3.create")
    nc.subscribe("natcd.natcd.watch.w1.create")
    await nc.flush()
    await sleep(300)
    expect([...seen]).toEqual(["subscription natcd.natcd.watch.w1.create"])
    await nc.close()
  }, 60_000)

  it("keeps keys, nats-server's config and the data directory private", () => {
    const walk = (path: string): void => {
      const st = statSync(path)
      if (st.isDirectory()) {
        expect((st.mode & 0o777).toString(8), path).toBe("700")
        for (const name of readdirSync(path)) walk(join(path, name))
      } else if (st.isFile()) {
        expect((st.mode & 0o777).toString(8), path).toBe("600")
      }
    }
    rmSync(join(natcd.dataDir, "old-gateway.nk"), { force: true })
    walk(join(natcd.dataDir, "creds"))
    for (const m of members) walk(join(natcd.dataDir, m))
    walk(join(natcd.dataDir, "traces"))
    for (const f of ["nats-server.conf", "nats-authorization.conf"]) expect((statSync(join(natcd.dataDir, f)).mode & 0o777).toString(8), f).toBe("600")
  })
})

describe("TLS to NATS (make run NATS_TLS=1)", () => {
  it("serves clients with every process on TLS, and refuses a connection without it", async () => {
    const data = tempDir("bus-tls")
    const natcd = await startNatcd({ dataDir: data.dir, portOffset: 1790, env: { NATS_TLS: "1" } })
    try {
      expect((await etcdctl(natcd.endpoints[0]!, ["put", "tls", "on"])).code).toBe(0)
      expect((await etcdctl(natcd.endpoints[0]!, ["get", "tls", "--print-value-only"])).stdout.trim()).toBe("on")
      const tlsDir = join(natcd.dataDir, "creds", "tls")
      const creds = join(natcd.dataDir, "creds", "cli.nk")
      // The right key but no TLS: refused (nats-server requires it, and verifies client certificates).
      await expect(connect({ servers: `127.0.0.1:${natcd.portOffset + 4222}`, reconnect: false, ...natsSecurityOptions({ natsCreds: creds }) })).rejects.toThrow()
      // TLS with a certificate the CA signed, and the key: accepted.
      const nc = await connect({
        servers: `127.0.0.1:${natcd.portOffset + 4222}`,
        reconnect: false,
        ...natsSecurityOptions({ natsCreds: creds, natsTlsCa: join(tlsDir, "ca.pem"), natsTlsCert: join(tlsDir, "client.pem"), natsTlsKey: join(tlsDir, "client-key.pem") })
      })
      await nc.close()
      for (const f of readdirSync(tlsDir)) expect((statSync(join(tlsDir, f)).mode & 0o777).toString(8), f).toBe("600")
    } finally {
      await natcd.stop()
      data.remove()
    }
  }, 90_000)
})
