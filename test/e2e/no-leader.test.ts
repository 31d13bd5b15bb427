/**
 * No leader, as etcd: 3 members, 2 of them stopped (SIGSTOP, as a partition or a hung host
 * looks), a client on the third. etcd's clients send the `hasleader` metadata
 * (clientv3.WithRequireLeader; Kubernetes does for its watches) and etcd answers such requests
 * "etcdserver: no leader" at once, cancels such watch streams once the leader is lost, and lists
 * "etcdserver: no leader" in Status.errors. The same table is taken from etcd 3.4 and from
 * natcd and must be equal: require-leader put and serializable get, the same without the
 * metadata, lease grant, new and existing watches with and without the metadata, and Status;
 * and, with a leader, v3lock and v3election's answer to an unknown lease (gRPC Unknown, as
 * etcd's embedded client returns it); the gRPC health check with and without a leader (etcd 3.4
 * answers SERVING in both); and the HTTP /health of the client port, the Kubernetes-style probe
 * (200 with a leader, 503 without).
 */
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { protoPath as healthProtoPath } from "grpc-health-check"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { signalMember, sleep, startNatcd, tempDir, waitForPort } from "./harness.ts"
import type { Natcd } from "./harness.ts"
import { openWatch } from "./watch-client.ts"
import type { WatchStream } from "./watch-client.ts"

const b = (s: string) => Buffer.from(s)
const services = () => loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>

/** A unary call's outcome as a line: "ok" or "<code> <details>", and whether it came at once (< 2 s). */
const outcome = (client: any, method: string, request: unknown, requireLeader: boolean, timeoutMs = 20_000) =>
  new Promise<string>((resolve) => {
    const md = new grpc.Metadata()
    if (requireLeader) md.set("hasleader", "true")
    const started = Date.now()
    client[method](request, md, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null) => {
      const at = Date.now() - started < 2000 ? "at once" : "after a wait"
      resolve(err === null ? `ok ${at}` : `${grpc.status[err.code]} ${err.details} ${at}`)
    })
  })

/** Maintenance.Status of `endpoint`: leader and errors. */
const status = (endpoint: string) =>
  new Promise<{ leader: string; errors: string[] }>((resolve, reject) => {
    const client = new (services().Maintenance!)(endpoint, grpc.credentials.createInsecure()) as any
    client.Status({}, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, r: any) => {
      client.close()
      if (err) reject(err)
      else resolve({ leader: String(r.leader), errors: r.errors })
    })
  })

/** grpc.health.v1.Health/Check of the whole server (service ""): its status, or the error. */
const healthCheck = (endpoint: string) =>
  new Promise<string>((resolve) => {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String })) as any
    const client = new pkg.grpc.health.v1.Health(endpoint, grpc.credentials.createInsecure())
    client.Check({ service: "" }, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, r: { status: string }) => {
      client.close()
      resolve(err === null ? r.status : `${grpc.status[err.code]} ${err.details}`)
    })
  })

/**
 * GET /health of the client port (the Kubernetes-style probe `curl -f http://…/health`): the
 * HTTP status and the `health` field of etcd's JSON.
 */
const httpHealth = async (endpoint: string): Promise<string> => {
  try {
    const r = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(10_000) })
    return `${r.status} health=${(await r.json() as { health: string }).health}`
  } catch (e) {
    return `failed: ${String(e)}`
  }
}

/** Takes the table from a cluster whose first endpoint stays up while `stopOthers` freezes the rest. */
const table = async (endpoint: string, stopOthers: () => void, electionMs: number): Promise<string[]> => {
  const kv = new (services().KV!)(endpoint, grpc.credentials.createInsecure()) as any
  const lease = new (services().Lease!)(endpoint, grpc.credentials.createInsecure()) as any
  await outcome(kv, "Put", { key: b("k"), value: b("v") }, false)
  // With a leader: v3lock and v3election answer an unknown lease as etcd's embedded client does.
  const lock = new (services().Lock!)(endpoint, grpc.credentials.createInsecure()) as any
  const election = new (services().Election!)(endpoint, grpc.credentials.createInsecure()) as any
  const before = [
    `grpc health: ${await healthCheck(endpoint)}`,
    `http /health: ${await httpHealth(endpoint)}`,
    `lock, unknown lease: ${await outcome(lock, "Lock", { name: b("l"), lease: "12345" }, false)}`,
    `campaign, unknown lease: ${await outcome(election, "Campaign", { name: b("e"), lease: "12345", value: b("v") }, false)}`
  ]
  lock.close()
  election.close()
  const existing = { requireLeader: openWatch(endpoint, { requireLeader: true }), plain: openWatch(endpoint) }
  for (const w of Object.values(existing)) w.create({ key: b("k").toString() })
  await Promise.all(Object.values(existing).map((w) => w.until((rs) => rs.some((r) => r.created), 10_000)))
  stopOthers()
  // Until the member knows it has no leader.
  const deadline = Date.now() + 30_000
  while ((await status(endpoint)).leader !== "0") {
    if (Date.now() > deadline) throw new Error("the member still reports a leader")
    await sleep(200)
  }
  const rows: string[] = [...before]
  rows.push(`status errors: ${JSON.stringify((await status(endpoint)).errors)}`)
  rows.push(`grpc health, no leader: ${await healthCheck(endpoint)}`)
  rows.push(`http /health, no leader: ${await httpHealth(endpoint)}`)
  rows.push(`put, require leader: ${await outcome(kv, "Put", { key: b("k"), value: b("v2") }, true)}`)
  rows.push(`get serializable, require leader: ${await outcome(kv, "Range", { key: b("k"), serializable: true }, true)}`)
  rows.push(`get serializable: ${await outcome(kv, "Range", { key: b("k"), serializable: true }, false)}`)
  rows.push(`lease grant, require leader: ${await outcome(lease, "LeaseGrant", { TTL: 60 }, true)}`)
  const fresh: WatchStream = openWatch(endpoint, { requireLeader: true })
  fresh.create({ key: "k" })
  await fresh.until((rs) => rs.length > 0 || fresh.ended(), 10_000).catch(() => undefined)
  rows.push(`new watch, require leader: ${fresh.error() ?? (fresh.responses.some((r) => r.created) ? "created" : "no answer")}`)
  // etcd cancels require-leader streams after 3 election timeouts without a leader (monitorLeader).
  await existing.requireLeader.until(() => existing.requireLeader.ended(), 10 * electionMs + 5000).catch(() => undefined)
  rows.push(`existing watch, require leader: ${existing.requireLeader.error() ?? (existing.requireLeader.ended() ? "ended" : "open")}`)
  rows.push(`existing watch: ${existing.plain.error() ?? (existing.plain.ended() ? "ended" : "open")}`)
  // Without the metadata, etcd waits for its request timeout; the answer must be an error, not a hang.
  rows.push(`lease grant: ${(await outcome(lease, "LeaseGrant", { TTL: 60 }, false)).replace(/ (at once|after a wait)$/, "")}`)
  rows.push(`put: ${(await outcome(kv, "Put", { key: b("k"), value: b("v3") }, false)).replace(/ (at once|after a wait)$/, "")}`)
  for (const w of [fresh, existing.requireLeader, existing.plain]) w.close()
  kv.close()
  lease.close()
  return rows
}

describe("no leader, as etcd 3.4", () => {
  const etcdDir = tempDir("no-leader-etcd")
  const natcdDir = tempDir("no-leader-natcd")
  const etcdPorts = [28810, 28820, 28830]
  let etcd: ChildProcess[] = []
  let natcd: Natcd | undefined

  beforeAll(async () => {
    const cluster = etcdPorts.map((p, i) => `e${i + 1}=http://127.0.0.1:${p + 1}`).join(",")
    etcd = etcdPorts.map((p, i) =>
      spawn("etcd", [
        `--name=e${i + 1}`,
        `--data-dir=${join(etcdDir.dir, `e${i + 1}`)}`,
        `--listen-client-urls=http://127.0.0.1:${p}`,
        `--advertise-client-urls=http://127.0.0.1:${p}`,
        `--listen-peer-urls=http://127.0.0.1:${p + 1}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${p + 1}`,
        `--initial-cluster=${cluster}`,
        "--initial-cluster-state=new",
        "--log-level=error",
        "--logger=zap"
      ], { stdio: "ignore" })
    )
    await Promise.all(etcdPorts.map((p) => waitForPort(p)))
    natcd = await startNatcd({ dataDir: natcdDir.dir, portOffset: 2040, members: 3 })
  }, 120_000)

  afterAll(async () => {
    for (const c of etcd) {
      try {
        c.kill("SIGCONT")
        c.kill("SIGKILL")
      } catch {
        // Gone already.
      }
    }
    if (natcd !== undefined) {
      for (const m of ["m2", "m3"]) signalMember(natcd, m, "SIGCONT")
      await natcd.stop()
    }
    etcdDir.remove()
    natcdDir.remove()
  })

  it("answers the no-leader table as etcd does", async () => {
    // etcd's election timeout is 1000 ms by default, as natcd's. Both tables are taken at once.
    const [fromEtcd, fromNatcd] = await Promise.all([
      table(`127.0.0.1:${etcdPorts[0]}`, () => {
        etcd[1]!.kill("SIGSTOP")
        etcd[2]!.kill("SIGSTOP")
      }, 1000),
      table(natcd!.endpoints[0]!, () => {
        for (const m of ["m2", "m3"]) signalMember(natcd!, m, "SIGSTOP")
      }, 1000)
    ])
    expect(fromEtcd[4]).toBe('status errors: ["etcdserver: no leader"]')
    expect(fromEtcd).toContain("http /health: 200 health=true")
    expect(fromEtcd).toContain("http /health, no leader: 503 health=false")
    console.log(`etcd 3.4's table:\n${fromEtcd.join("\n")}`)
    expect(fromNatcd).toEqual(fromEtcd)
  }, 240_000)
})
