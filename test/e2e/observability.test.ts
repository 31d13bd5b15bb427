/**
 * Tracing, metrics and health of a real 3-member cluster (issue 9).
 *
 * - One put through a follower's gateway is one trace: the gateway's root span, the follower
 *   raft's forward, the leader's raft append, its wal fsync, the commit, the apply on the
 *   proposing member, and the watch replica's receipt and the gateway's delivery to a watcher,
 *   each recorded by the process that ran it, every span's parent recorded before it (causal
 *   order), and the trace id returned to the client in the response metadata.
 * - `natcd trace <id>` prints that waterfall; `natcd trace --key` finds the request.
 * - Every process serves /metrics (etcd's names), /livez, /readyz and /health.
 */
import * as grpc from "@grpc/grpc-js"
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { readSpans } from "../../services/runtime/trace-store.ts"
import type { SpanRecord } from "../../services/runtime/tracing.ts"
import { etcdctl, findLeader, httpGet, metricsPort, sleep, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"
import { openWatch } from "./watch-client.ts"

const portOffset = 1600
const root = fileURLToPath(new URL("../../", import.meta.url))

/** Puts through `endpoint` with a raw gRPC call, returning the natcd-trace-id response metadata. */
const putWithTraceId = (endpoint: string, key: string, value: string) =>
  new Promise<{ traceId: string; revision: number }>((resolve, reject) => {
    const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
    const client = new services.KV!(endpoint, grpc.credentials.createInsecure())
    let traceId = ""
    const call = (client as any).Put({ key: Buffer.from(key), value: Buffer.from(value) }, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: { header: { revision: string } }) => {
      client.close()
      if (err) reject(err)
      else resolve({ traceId, revision: Number(res.header.revision) })
    }) as grpc.ClientUnaryCall
    call.on("metadata", (md: grpc.Metadata) => {
      traceId = String(md.get("natcd-trace-id")[0] ?? "")
    })
  })

describe("observability", () => {
  const data = tempDir("observability")
  let natcd: Natcd

  beforeAll(async () => {
    // Three failed /livez polls (2 s apart) get a hung process killed, for the last test.
    natcd = await startNatcd({ dataDir: data.dir, portOffset, members: 3, env: { NATCD_LIVENESS_FAILURES: "3" } })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    data.remove()
  })

  it("traces one put through a follower's gateway across every process, in causal order", async () => {
    const leader = await findLeader(natcd)
    const follower = leader === 0 ? 1 : 0
    const watcherAt = leader === 2 ? 1 : 2
    const watch = openWatch(natcd.endpoints[watcherAt]!)
    watch.create({ key: "traced" })
    await watch.until((rs) => rs.some((r) => r.created), 15_000)
    const { traceId, revision } = await putWithTraceId(natcd.endpoints[follower]!, "traced", "v1")
    expect(traceId).toMatch(/^[0-9a-f]{32}$/)
    await watch.until((rs) => rs.some((r) => r.events.some((e) => e.modRevision === revision)), 15_000)
    watch.close()

    // Spans are flushed to the store every 250 ms; the backend commit comes within 100 ms.
    let spans: SpanRecord[] = []
    const deadline = Date.now() + 10_000
    const names = ["KV.Put", "raft.forward", "raft.append", "wal.fsync", "raft.commit", "mvcc.apply", "mvcc.events", "watch.deliver"]
    for (;;) {
      spans = (await readSpans(join(data.dir, "traces"))).filter((s) => s.t === traceId)
      if (names.every((n) => spans.some((s) => s.n === n)) || Date.now() > deadline) break
      await sleep(250)
    }
    const members = ["m1", "m2", "m3"]
    const find = (name: string, svc: string, member?: string) =>
      spans.find((s) => s.n === name && s.svc === svc && (member === undefined || s.m === member))
    const rootSpan = find("KV.Put", "gateway", members[follower])
    expect(rootSpan, JSON.stringify(spans.map((s) => `${s.n}@${s.svc}/${s.m}`))).toBeDefined()
    expect(rootSpan!.p).toBe("")
    expect(rootSpan!.a.key).toBe("traced")
    expect(rootSpan!.a.revision).toBe(revision)
    const path = [
      rootSpan!,
      find("raft.forward", "raft", members[follower])!,
      find("raft.append", "raft", members[leader])!,
      find("wal.fsync", "wal", members[leader])!,
      find("raft.commit", "raft", members[leader])!,
      find("mvcc.apply", "mvcc", members[follower])!,
      find("mvcc.events", "watch")!,
      find("watch.deliver", "gateway", members[watcherAt])!
    ]
    expect(path.every((s) => s !== undefined), JSON.stringify(spans.map((s) => `${s.n}@${s.svc}/${s.m}`))).toBe(true)
    // Separate processes.
    expect(new Set(path.map((s) => s.pid)).size).toBeGreaterThanOrEqual(6)
    // Causal order: every span's parent is in the trace and started no later than it (one host,
    // one clock; 1 ms of slack for rounding), and the path above is ordered in time.
    const byId = new Map(spans.map((s) => [s.s, s]))
    for (const s of spans) {
      if (s.p === "") continue
      const parent = byId.get(s.p)
      expect(parent, `parent of ${s.n}@${s.svc}/${s.m}`).toBeDefined()
      expect(s.st + 1000).toBeGreaterThanOrEqual(parent!.st)
    }
    // Along the write path (gateway, forward, leader append, fsync, commit, apply on the
    // proposing member) each step starts after the previous one; the watch replica takes the
    // events from whichever member applied first, and the delivery follows that receipt.
    for (let i = 2; i < 6; i++) expect(path[i]!.st + 1000).toBeGreaterThanOrEqual(path[i - 1]!.st)
    const firstApply = Math.min(...spans.filter((s) => s.n === "mvcc.apply").map((s) => s.st))
    const firstEvents = Math.min(...spans.filter((s) => s.n === "mvcc.events").map((s) => s.st))
    expect(firstEvents + 1000).toBeGreaterThanOrEqual(firstApply)
    expect(path[7]!.st + 1000).toBeGreaterThanOrEqual(firstEvents)
    // The wal fsync reports its group commit's batch size.
    expect(path[3]!.a.batchSaves).toBeGreaterThanOrEqual(1)

    // natcd trace prints the waterfall and finds the request by key.
    const waterfall = execFileSync(process.execPath, [join(root, "services/cli/natcd.ts"), "trace", traceId, `--data-dir=${data.dir}`], { encoding: "utf8" })
    for (const n of ["KV.Put", "raft.forward", "raft.append", "wal.fsync", "raft.commit", "mvcc.apply", "watch.deliver"]) expect(waterfall).toContain(n)
    expect(waterfall).toContain(`gateway/${members[follower]}`)
    console.log(waterfall)
    const byKey = execFileSync(process.execPath, [join(root, "services/cli/natcd.ts"), "trace", "--key", "traced", "--since", "5m", `--data-dir=${data.dir}`], { encoding: "utf8" })
    expect(byKey).toContain(traceId)
    const slowest = execFileSync(process.execPath, [join(root, "services/cli/natcd.ts"), "trace", "--slowest", "3", `--data-dir=${data.dir}`], { encoding: "utf8" })
    expect(slowest.split("\n").length).toBeGreaterThanOrEqual(2)
  }, 60_000)

  it("serves /metrics with etcd's names and health on every process", async () => {
    const leader = await findLeader(natcd)
    const metrics = async (member: number, service: "gateway" | "raft" | "wal" | "mvcc" | "lease" | "watch") => {
      const r = await httpGet(metricsPort(portOffset, member, service), "/metrics")
      expect(r.status).toBe(200)
      return r.body
    }
    const raft = await metrics(leader, "raft")
    expect(raft).toMatch(/^etcd_server_has_leader\{[^}]*\} 1$/m)
    expect(raft).toMatch(/^etcd_server_is_leader\{[^}]*\} 1$/m)
    expect(raft).toMatch(/^etcd_server_leader_changes_seen_total\{[^}]*\} [1-9]/m)
    expect(raft).toMatch(/^etcd_server_proposals_committed_total\{[^}]*\} [1-9]/m)
    expect(raft).toContain("natcd_nats_handle_duration_seconds_bucket")
    const wal = await metrics(leader, "wal")
    expect(wal).toMatch(/^etcd_disk_wal_fsync_duration_seconds_count\{[^}]*\} [1-9]/m)
    const mvcc = await metrics(leader, "mvcc")
    for (const name of ["etcd_disk_backend_commit_duration_seconds_count", "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_keys_total", "etcd_server_proposals_applied_total", "natcd_mvcc_apply_queue_depth"]) {
      expect(mvcc).toContain(name)
    }
    const gateway = await metrics(0, "gateway")
    expect(gateway).toMatch(/^grpc_server_handled_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="(Put|Range)",grpc_code="OK"/m)
    expect(gateway).toContain("etcd_server_proposals_pending")
    expect(gateway).toContain("etcd_server_proposals_failed_total")
    expect(gateway).toContain("natcd_nats_request_duration_seconds_bucket")
    expect(await metrics(0, "lease")).toContain("natcd_lease_revocations_total")
    expect(await metrics(0, "watch")).toContain("etcd_debugging_mvcc_watcher_total")

    for (let m = 0; m < 3; m++) {
      for (const service of ["gateway", "raft", "wal", "mvcc", "lease"] as const) {
        const port = metricsPort(portOffset, m, service)
        expect((await httpGet(port, "/livez")).status, `${service}/m${m + 1} livez`).toBe(200)
        expect((await httpGet(port, "/readyz")).status, `${service}/m${m + 1} readyz`).toBe(200)
        const health = await httpGet(port, "/health")
        expect(JSON.parse(health.body), `${service}/m${m + 1} health`).toEqual({ health: "true", reason: "" })
      }
    }
    expect((await httpGet(metricsPort(portOffset, 0, "watch"), "/readyz")).status).toBe(200)
    expect((await httpGet(metricsPort(portOffset, 0, "gateway"), "/nothing")).status).toBe(404)
    const health = await etcdctl(natcd.endpoints.join(","), ["endpoint", "health"])
    expect(health.code, health.stderr).toBe(0)
    expect(health.stdout + health.stderr).toMatch(/is healthy/)
  }, 60_000)

  it("etcdctl endpoint health and /health report a member whose service hangs, and the supervisor restarts it", async () => {
    const ps = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" })
    const line = ps.split("\n").find((l) => l.includes("services/lease/main.ts") && l.includes("--member=m3") && l.includes(`--metrics-port=${metricsPort(portOffset, 2, "lease")}`))
    expect(line).toBeDefined()
    const pid = Number(line!.trim().split(/\s+/)[0])
    process.kill(pid, "SIGSTOP")
    try {
      // The gateway asks the member's services when a check runs, so the hang shows at once;
      // the checks below must come well before the supervisor's kill (3 failed /livez polls).
      await sleep(500)
      const gatewayHealth = await httpGet(metricsPort(portOffset, 2, "gateway"), "/health")
      expect(gatewayHealth.status).toBe(503)
      expect(JSON.parse(gatewayHealth.body).reason).toContain("lease")
      const r = await etcdctl(natcd.endpoints[2]!, ["endpoint", "health", "--command-timeout=3s"])
      expect(r.code).not.toBe(0)
      expect(r.stdout + r.stderr).toMatch(/unhealthy/)
      // The supervisor kills the hung process after 3 failed /livez polls (5 s apart; the
      // cluster runs with NATCD_LIVENESS_FAILURES=3) and restarts it.
      const deadline = Date.now() + 60_000
      for (;;) {
        const again = await etcdctl(natcd.endpoints[2]!, ["endpoint", "health", "--command-timeout=3s"])
        if (again.code === 0) break
        if (Date.now() > deadline) {
          const gw = await httpGet(metricsPort(portOffset, 2, "gateway"), "/health")
          throw new Error(`member 3 did not become healthy again: ${gw.body} ${again.stderr.slice(-300)}\n${natcd.output().slice(-3000)}`)
        }
        await sleep(1000)
      }
      let gone = false
      try {
        process.kill(pid, 0)
      } catch {
        gone = true
      }
      expect(gone).toBe(true)
    } finally {
      try {
        process.kill(pid, "SIGCONT")
      } catch {
        // Killed by the supervisor, as expected.
      }
    }
  }, 90_000)
})
