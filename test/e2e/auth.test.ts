/**
 * Authentication on a three-member cluster, end to end, for what the etcdctl differential test
 * (./etcdctl-auth-diff.test.ts) cannot show on one member:
 * - simple tokens: a token issued by one member works on every member (each applies the
 *   Authenticate entry, as etcd's do); it expires `--auth-token-ttl` seconds after its last use,
 *   and each use starts that time again; AuthStatus (etcd 3.5) reports the state;
 * - with authentication on, kill -9 of the leader member while a non-root user writes through
 *   every member loses nothing acknowledged (a member restarted without its tokens makes the
 *   client authenticate again), and the auth store survives kill -9 of every process during
 *   such writes (none of them lost); `etcdctl snapshot save` +
 *   `natcd snapshot restore` carries users, roles, permissions and the enabled flag to a new
 *   cluster;
 * - JWT tokens (`--auth-token jwt,…`): signed by the member that applied the Authenticate,
 *   valid on every member; a change of the auth store makes them stale ("revision of auth store
 *   is old") until the client authenticates again.
 */
import * as grpc from "@grpc/grpc-js"
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { etcdctl, findLeader, signalMember, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const cli = fileURLToPath(new URL("../../services/cli/natcd.ts", import.meta.url))
const root = "--user=root:rootpw"

/** A promise-returning call of `service.method` on `endpoint` with the `token` metadata (if any). */
const call = <R = any>(endpoint: string, service: string, method: string, request: unknown, token?: string): Promise<R> => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const client = new services[service]!(endpoint, grpc.credentials.createInsecure())
  const md = new grpc.Metadata()
  if (token !== undefined) md.set("token", token)
  return new Promise<R>((resolve, reject) =>
    (client as any)[method](request, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: R) => {
      client.close()
      if (err) reject(err)
      else resolve(res)
    })
  )
}

/** The error details of a call that must fail. */
const failure = (p: Promise<unknown>): Promise<string> => p.then(() => "succeeded", (e: grpc.ServiceError) => `${grpc.status[e.code]}: ${e.details}`)

const authenticate = async (endpoint: string, name: string, password: string): Promise<string> =>
  (await call<{ token: string }>(endpoint, "Auth", "Authenticate", { name, password })).token

const get = (endpoint: string, key: string, token?: string) =>
  call<{ kvs: Array<{ value: Buffer }> }>(endpoint, "KV", "Range", { key: Buffer.from(key) }, token).then((r) => r.kvs.map((kv) => kv.value.toString()))

/** Creates root, a role `app` with READWRITE on the prefix app/, a user alice with it, and enables auth. */
const setUpAuth = async (endpoint: string) => {
  for (const args of [
    ["user", "add", "root:rootpw"],
    ["user", "add", "alice:alicepw"],
    ["role", "add", "app"],
    ["role", "grant-permission", "app", "readwrite", "app/", "--prefix"],
    ["user", "grant-role", "alice", "app"],
    ["auth", "enable"]
  ]) {
    const r = await etcdctl(endpoint, args)
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0)
  }
}

/** What a member says of the auth store, as root: users, the role app, and an anonymous read. */
const authState = async (endpoint: string) => ({
  users: (await etcdctl(endpoint, [root, "user", "list"])).stdout,
  app: (await etcdctl(endpoint, [root, "role", "get", "app"])).stdout,
  anonymous: (await etcdctl(endpoint, ["get", "app/x"])).stderr.split("\n").filter((l) => l.startsWith("Error")).join("\n")
})

describe("auth on three members with simple tokens", () => {
  it("honours a token on every member, expires it after its TTL, survives kill -9 and snapshot restore", async () => {
    const data = tempDir("auth-simple")
    const restored = tempDir("auth-restored")
    let natcd: Natcd | undefined
    try {
      natcd = await startNatcd({ dataDir: data.dir, portOffset: 2160, members: 3, env: { NATCD_AUTH_TOKEN_TTL: "3" } })
      const [m1, m2, m3] = natcd.endpoints as [string, string, string]
      await setUpAuth(m1)
      expect((await etcdctl(m1, [root, "put", "app/x", "1"])).stdout).toBe("OK\n")

      // A token of member 1 is good on members 2 and 3.
      const token = await authenticate(m1, "alice", "alicepw")
      expect(token).toMatch(/^[a-zA-Z]{16}\.\d+$/)
      expect(await get(m2, "app/x", token)).toEqual(["1"])
      expect(await get(m3, "app/x", token)).toEqual(["1"])
      expect(await failure(get(m3, "other", token))).toBe("PERMISSION_DENIED: etcdserver: permission denied")
      expect(await failure(get(m3, "app/x"))).toBe("INVALID_ARGUMENT: etcdserver: user name is empty")
      expect(await failure(get(m2, "app/x", "nosuchtoken.1"))).toBe("UNAUTHENTICATED: etcdserver: invalid auth token")
      const rootToken = await authenticate(m2, "root", "rootpw")
      const status = await call<{ enabled: boolean; authRevision: string }>(m3, "Auth", "AuthStatus", {}, rootToken)
      expect(status.enabled).toBe(true)
      expect(Number(status.authRevision)).toBeGreaterThan(1)
      expect(await failure(call(m1, "Auth", "AuthStatus", {}, token))).toBe("PERMISSION_DENIED: etcdserver: permission denied")

      // TTL 3 s: each use starts it again; 4.5 s unused and the token is gone on every member.
      for (let i = 0; i < 4; i++) {
        await sleep(1500)
        expect(await get(m1, "app/x", token)).toEqual(["1"])
      }
      await sleep(4500)
      for (const m of [m1, m2, m3]) expect(await failure(get(m, "app/x", token))).toBe("UNAUTHENTICATED: etcdserver: invalid auth token")

      // Streams opened with a token nobody holds stay open, as etcd's: a watch is refused
      // "invalid auth token", keep-alives (which etcd checks for nobody) are answered.
      {
        const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
        const md = new grpc.Metadata()
        md.set("token", token)
        const watchClient = new services.Watch!(m2, grpc.credentials.createInsecure()) as any
        const watchStream = watchClient.Watch(md)
        // The streams end with the channel's close below ("Connection dropped"): expected.
        watchStream.on("error", () => undefined)
        const refused = new Promise<{ created: boolean; canceled: boolean; cancel_reason: string; watch_id: string }>((resolve) => watchStream.once("data", resolve))
        watchStream.write({ create_request: { key: Buffer.from("app/x") } })
        const w = await refused
        expect([w.created, w.canceled, w.watch_id, w.cancel_reason]).toEqual([true, true, "-1", "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"])
        watchStream.end()
        watchClient.close()
        const { ID } = await call<{ ID: string }>(m1, "Lease", "LeaseGrant", { TTL: 30 })
        const leaseClient = new services.Lease!(m3, grpc.credentials.createInsecure()) as any
        const keepAlive = leaseClient.LeaseKeepAlive(md)
        const renewed = new Promise<{ ID: string; TTL: string }>((resolve, reject) => {
          keepAlive.once("data", resolve)
          keepAlive.once("error", reject)
        })
        keepAlive.write({ ID })
        expect(Number((await renewed).TTL)).toBeGreaterThan(0)
        keepAlive.on("error", () => undefined)
        keepAlive.end()
        leaseClient.close()
      }

      // kill -9 of the leader member while alice writes through every member with one token;
      // a write refused by a member that lost its tokens in the restart authenticates again.
      {
        const leader = await findLeader(natcd)
        let aliceToken = await authenticate(m1, "alice", "alicepw")
        const failedOver: string[] = []
        let stopWorkers = false
        const workers = [0, 1, 2].map((w) => (async () => {
          let target = w
          for (let i = 0; !stopWorkers; i++) {
            const key = `app/f${w}-${i}`
            for (;;) {
              if (stopWorkers) return
              try {
                await call(natcd!.endpoints[target]!, "KV", "Put", { key: Buffer.from(key), value: Buffer.from("v") }, aliceToken)
                failedOver.push(key)
                break
              } catch (e) {
                if ((e as grpc.ServiceError).code === grpc.status.UNAUTHENTICATED) aliceToken = await authenticate(natcd!.endpoints[target]!, "alice", "alicepw").catch(() => aliceToken)
                target = (target + 1) % 3
                await sleep(100)
              }
            }
          }
        })())
        await sleep(1500)
        expect(signalMember(natcd, `m${leader + 1}`, "SIGKILL").length).toBe(5)
        expect(await findLeader(natcd, 10_000, [leader])).not.toBe(leader)
        await sleep(3000)
        stopWorkers = true
        await Promise.all(workers)
        const stored = await etcdctl(m1 === natcd.endpoints[leader] ? m2 : m1, [root, "get", "app/f", "--prefix", "--keys-only"])
        const have = new Set(stored.stdout.split("\n").filter((l) => l !== ""))
        expect(failedOver.length).toBeGreaterThan(10)
        expect(failedOver.filter((k) => !have.has(k))).toEqual([])
        console.log(`auth failover: ${failedOver.length} puts by a non-root user acknowledged across the leader's kill -9, none lost`)
        // The supervisor restarts the killed member's processes: the next phase reads and writes
        // through m1, which may be the member killed here, so wait until it serves again.
        const servesBy = Date.now() + 30_000
        while ((await etcdctl(natcd.endpoints[leader]!, [root, "user", "list"])).code !== 0) {
          if (Date.now() > servesBy) throw new Error(`member m${leader + 1} did not serve again within 30 s of its kill -9`)
          await sleep(200)
        }
      }

      // kill -9 of every process while alice writes under her prefix.
      const before = await authState(m1)
      const acknowledged: string[] = []
      let stop = false
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await etcdctl(m1, ["--user=alice:alicepw", "put", `app/k${i}`, `v${i}`])
          if (r.code !== 0 || r.stdout !== "OK\n") break
          acknowledged.push(`app/k${i}`)
        }
      })()
      await sleep(4000)
      await natcd.kill9()
      stop = true
      await loop
      expect(acknowledged.length).toBeGreaterThan(3)
      natcd = await startNatcd({ dataDir: data.dir, portOffset: 2160, members: 3, env: { NATCD_AUTH_TOKEN_TTL: "3" } })
      expect(await authState(m2)).toEqual(before)
      const kept = await etcdctl(m3, ["--user=alice:alicepw", "get", "app/k", "--prefix", "--keys-only"])
      const found = new Set(kept.stdout.split("\n").filter((l) => l !== ""))
      expect(acknowledged.filter((k) => !found.has(k))).toEqual([])
      console.log(`auth kill -9: ${acknowledged.length} puts by a non-root user acknowledged, none lost; auth store intact`)

      // Snapshot save (admin only) and restore into a new cluster: the auth store comes along.
      const file = join(data.dir, "saved.db")
      expect((await etcdctl(m1, ["--user=alice:alicepw", "snapshot", "save", file])).code).not.toBe(0)
      expect((await etcdctl(m1, [root, "snapshot", "save", file])).code).toBe(0)
      await natcd.stop()
      natcd = undefined
      execFileSync(process.execPath, [cli, "snapshot", "restore", file, `--data-dir=${restored.dir}`, "--members=1"], { stdio: "pipe" })
      natcd = await startNatcd({ dataDir: restored.dir, portOffset: 2160 })
      expect(await authState(natcd.endpoints[0]!)).toEqual(before)
      expect((await etcdctl(natcd.endpoints[0]!, ["--user=alice:alicepw", "get", "app/x", "--print-value-only"])).stdout).toBe("1\n")
    } finally {
      await natcd?.stop()
      data.remove()
      restored.remove()
    }
  }, 300_000)
})

describe("auth on three members with JWT tokens", () => {
  it("signs tokens valid on every member, stale after a change of the auth store", async () => {
    const data = tempDir("auth-jwt")
    let natcd: Natcd | undefined
    try {
      const priv = join(data.dir, "jwt.key")
      const pub = join(data.dir, "jwt.pub")
      execFileSync("openssl", ["genrsa", "-out", priv, "2048"], { stdio: "ignore" })
      execFileSync("openssl", ["rsa", "-in", priv, "-pubout", "-out", pub], { stdio: "ignore" })
      natcd = await startNatcd({
        dataDir: join(data.dir, "cluster"),
        portOffset: 2180,
        members: 3,
        env: { NATCD_AUTH_TOKEN: `jwt,pub-key=${pub},priv-key=${priv},sign-method=RS256,ttl=10m` }
      })
      const [m1, m2, m3] = natcd.endpoints as [string, string, string]
      await setUpAuth(m1)
      expect((await etcdctl(m2, ["--user=alice:alicepw", "put", "app/j", "jwt"])).stdout).toBe("OK\n")
      const token = await authenticate(m1, "alice", "alicepw")
      const [, payload] = token.split(".")
      const claims = JSON.parse(Buffer.from(payload!, "base64url").toString()) as { username: string; revision: number; exp: number }
      expect(claims.username).toBe("alice")
      expect(claims.exp * 1000).toBeGreaterThan(Date.now() + 9 * 60_000)
      expect(await get(m2, "app/j", token)).toEqual(["jwt"])
      expect(await get(m3, "app/j", token)).toEqual(["jwt"])
      expect(await failure(get(m3, "app/j", token.slice(0, -4) + "AAAA"))).toBe("UNAUTHENTICATED: etcdserver: invalid auth token")
      // Any change of the auth store makes the token stale; a new one works.
      expect((await etcdctl(m1, [root, "role", "add", "other"])).code).toBe(0)
      expect(await failure(get(m2, "app/j", token))).toBe("INVALID_ARGUMENT: etcdserver: revision of auth store is old")
      expect(await get(m2, "app/j", await authenticate(m3, "alice", "alicepw"))).toEqual(["jwt"])
      // etcdctl authenticates again by itself.
      expect((await etcdctl(m3, ["--user=alice:alicepw", "get", "app/j", "--print-value-only"])).stdout).toBe("jwt\n")
    } finally {
      await natcd?.stop()
      data.remove()
    }
  }, 180_000)
})
