/**
 * Differential end-to-end test of the KV API, Txn, compaction and alarms: one long etcdctl
 * session run against the reference etcd 3.4 and against natcd (real nats-server and service
 * processes started by the supervisor), both from an empty store, and a gRPC session for what
 * etcdctl does not expose (min/max mod/create revision filters, nested txns, lease compares,
 * the 128-op limit at its edge). Outputs must be identical once cluster and member ids are
 * normalised: revisions, versions, counts, raft terms and error texts are compared as they are.
 *
 * etcdctl 3.4 cannot send a lease compare (its txn parser panics on `lease("k") = "0"` for
 * either server), so lease compares are in the gRPC part.
 */
import * as grpc from "@grpc/grpc-js"
import { appendFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { etcdctl, natcdBesideEtcd, normaliseIds, normaliseStderr } from "./harness.ts"

/** One etcdctl invocation: arguments, and optionally what goes to its stdin. */
interface Step {
  readonly args: ReadonlyArray<string>
  readonly input?: string
}

const c = (...args: string[]): Step => ({ args })
/** `etcdctl txn` with compares, success and failure ops given as lines. */
const txn = (compares: string[], success: string[], failure: string[], extra: string[] = []): Step => ({
  args: ["txn", ...extra],
  input: [...compares, "", ...success, "", ...failure, "", ""].join("\n")
})

const session: ReadonlyArray<Step> = [
  // An empty store.
  c("get", "foo", "-w", "json"),
  c("get", "", "--from-key", "-w", "json"),
  c("alarm", "list"),
  c("alarm", "list", "-w", "json"),
  // Puts.
  c("put", "foo", "bar"),
  c("put", "foo", "baz", "--prev-kv"),
  c("put", "foo", "qux", "--prev-kv", "-w", "json"),
  c("put", "foo1", "1"),
  c("put", "foo2", "22"),
  c("put", "fop", "y"),
  c("put", "zeta", "z"),
  c("put", "a", "3"),
  c("put", "b", "1", "-w", "json"),
  c("put", "c", "2"),
  c("put", "\u00e9t\u00e9", "summer"),
  // Gets with every flag.
  c("get", "foo"),
  c("get", "foo", "-w", "json"),
  c("get", "foo", "--print-value-only"),
  c("get", "foo", "--prefix"),
  c("get", "foo", "--prefix", "--keys-only"),
  c("get", "foo", "--prefix", "--print-value-only"),
  c("get", "foo", "--prefix", "--count-only", "-w", "json"),
  c("get", "foo", "--prefix", "--count-only"),
  c("get", "foo", "--prefix", "--limit", "1", "-w", "json"),
  c("get", "foo", "--prefix", "--limit", "2"),
  c("get", "foo", "--prefix", "--limit", "2", "--keys-only", "-w", "json"),
  c("get", "fo", "--from-key", "-w", "json"),
  c("get", "fo", "--from-key", "--limit", "3", "--keys-only"),
  c("get", "", "--from-key", "--keys-only"),
  c("get", "a", "c"),
  c("get", "a", "c", "-w", "json"),
  c("get", "foo", "fop", "--keys-only"),
  c("get", "foo", "--rev", "2", "-w", "json"),
  c("get", "foo", "--rev", "3"),
  c("get", "foo", "--prefix", "--rev", "5", "-w", "json"),
  c("get", "", "--from-key", "--rev", "7", "--keys-only"),
  c("get", "foo", "--rev", "100"),
  c("get", "foo", "--rev", "13"),
  c("get", "foo", "--rev", "14"),
  c("get", "nothing", "-w", "json"),
  c("get", "foo", "--consistency=s", "-w", "json"),
  c("get", "\u00e9t\u00e9", "-w", "json"),
  c("get", "\u00e9t\u00e9", "--hex"),
  ...(["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] as const).flatMap((by) => [
    c("get", "", "--from-key", `--sort-by=${by}`, "--order=ASCEND", "--keys-only"),
    c("get", "", "--from-key", `--sort-by=${by}`, "--order=DESCEND", "-w", "json"),
    c("get", "", "--from-key", `--sort-by=${by}`, "--limit", "2", "--keys-only")
  ]),
  c("get", "foo", "--prefix", "--order=DESCEND", "--keys-only"),
  c("get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--limit", "2", "-w", "json"),
  c("get", "", "--from-key", "--order=DESCEND", "--limit", "3", "--rev", "9", "--keys-only"),
  c("get", "foo", "--sort-by=NOPE"),
  c("get", "foo", "--order=SIDEWAYS"),
  // Txn from stdin: compares on value, version, create and mod; both branches.
  txn(['value("a") = "3"'], ["put t1 one", "get t1", "get a"], ["put t2 two"]),
  txn(['value("a") = "3"'], ["put t1 one", "get t1"], ["put t2 two"], ["-w", "json"]),
  txn(['value("a") != "3"'], ["put t1 x"], ["put t2 two", "get t", "--prefix"]),
  txn(['value("a") > "2"', 'value("b") < "2"'], ["get a"], ["get b"], ["-w", "json"]),
  txn(['version("foo") = "3"', 'create("foo") = "2"', 'mod("foo") = "4"'], ["get foo"], ["del foo"], ["-w", "json"]),
  txn(['version("foo") > "5"'], ["get foo"], ["get foo1", "put foo1 again"], ["-w", "json"]),
  txn(['mod("fop") < "7"'], ["del fop --prev-kv"], ["get fop"]),
  txn(['create("missing") = "0"', 'version("missing") = "0"'], ["put missing now"], []),
  txn(['value("missing2") = ""'], ["put m2 yes"], ["put m2 no"], ["-w", "json"]),
  txn(['version("zz") > "0"'], [], []),
  txn([], ["get a", "get b", "del c"], []),
  txn([], ["get a"], [], ["-w", "json"]),
  txn([], ["del nothing", "put d 4", "del nothing"], [], ["-w", "json"]),
  // Keys written twice, and too many operations.
  txn([], ["put dup 1", "put dup 2"], []),
  txn([], ["put dup 1", "del dup"], []),
  txn([], ["del dup", "put dup 1"], []),
  txn([], [], ["put dup 1", "put dup 2"]),
  txn([], ["put dup 1"], ["put dup 2"]),
  txn([], Array.from({ length: 129 }, (_, i) => `put many${i} v`), []),
  txn([], Array.from({ length: 128 }, (_, i) => `put many${i} v`), []),
  c("get", "many", "--prefix", "--count-only", "-w", "json"),
  { args: ["txn", "-i"], input: 'value("a") = "3"\n\nput inter 1\n\nput inter 2\n\n' },
  { args: ["txn", "-i", "-w", "json"], input: '\nget inter\n\n\n' },
  // Deletes.
  c("del", "many", "--prefix"),
  c("del", "nothing"),
  c("del", "zeta", "--prev-kv"),
  c("del", "foo", "--prefix", "--prev-kv", "-w", "json"),
  c("del", "t", "--from-key", "--prev-kv"),
  c("get", "", "--from-key", "-w", "json"),
  c("put", "foo", "again", "-w", "json"),
  c("get", "foo", "-w", "json"),
  // Compaction and its errors.
  c("compact", "0"),
  c("compact", "10000"),
  c("compact", "5"),
  c("compact", "5"),
  c("compact", "4"),
  c("get", "foo", "--rev", "4"),
  c("get", "foo", "--rev", "5", "-w", "json"),
  c("get", "", "--from-key", "--rev", "5", "--keys-only"),
  c("compact", "12", "--physical"),
  c("compact", "12", "--physical", "-w", "json"),
  c("get", "", "--from-key", "--rev", "12", "-w", "json"),
  txn([], ["get a --rev=3"], []),
  txn([], ["get a --rev=12"], [], ["-w", "json"]),
  txn([], ["get a --rev=1000"], []),
  c("put", "after", "compaction", "-w", "json"),
  // Alarms (none active).
  c("alarm", "list"),
  c("alarm", "disarm"),
  c("alarm", "disarm", "-w", "json"),
  c("get", "", "--from-key", "--keys-only", "-w", "json")
]

const normalise = normaliseIds

/** A raw etcd gRPC client: KV and Maintenance calls returning wire objects. */
const rawClient = (endpoint: string) => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const kv = new services.KV!(endpoint, grpc.credentials.createInsecure())
  const call = (method: string, request: unknown) =>
    new Promise<unknown>((resolve) =>
      (kv as any)[method](request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: unknown) =>
        resolve(err ? { code: err.code, details: err.details } : res)
      )
    )
  return { call, close: () => kv.close() }
}

const b = (s: string) => Buffer.from(s)
const put = (key: string, value: string) => ({ request_put: { key: b(key), value: b(value) } })
const get = (key: string, extra: Record<string, unknown> = {}) => ({ request_range: { key: b(key), ...extra } })

/** gRPC requests: [method, request]. */
const grpcSession: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
  ["Put", { key: b("g1"), value: b("a") }],
  ["Put", { key: b("g2"), value: b("b") }],
  ["Put", { key: b("g1"), value: b("c") }],
  ["Put", { key: b("g3"), value: b("d") }],
  ["Range", { key: b("g"), range_end: b("h"), min_mod_revision: 4 }],
  ["Range", { key: b("g"), range_end: b("h"), max_mod_revision: 4 }],
  ["Range", { key: b("g"), range_end: b("h"), min_create_revision: 3 }],
  ["Range", { key: b("g"), range_end: b("h"), max_create_revision: 3, keys_only: true }],
  ["Range", { key: b("g"), range_end: b("h"), min_mod_revision: 3, max_mod_revision: 4, count_only: true }],
  ["Range", { key: b("g"), range_end: b("h"), min_create_revision: 2, max_create_revision: 3, limit: 1 }],
  ["Range", { key: b("g"), range_end: b("h"), sort_order: "DESCEND", sort_target: "MOD", min_mod_revision: 2 }],
  // Lease compares (no key has a lease: lease 0).
  ["Txn", { compare: [{ key: b("g1"), target: "LEASE", result: "EQUAL", lease: 0 }], success: [get("g1")], failure: [] }],
  ["Txn", { compare: [{ key: b("g1"), target: "LEASE", result: "GREATER", lease: 0 }], success: [], failure: [get("g2")] }],
  ["Txn", { compare: [{ key: b("nope"), target: "LEASE", result: "EQUAL", lease: 0 }], success: [put("l", "1")], failure: [] }],
  // Compares over a range.
  ["Txn", { compare: [{ key: b("g"), range_end: b("h"), target: "VERSION", result: "GREATER", version: 0 }], success: [get("g", { range_end: b("h") })], failure: [] }],
  ["Txn", { compare: [{ key: b("g"), range_end: b("h"), target: "MOD", result: "LESS", mod_revision: 5 }], success: [], failure: [put("g4", "x")] }],
  // Nested txns.
  ["Txn", {
    compare: [{ key: b("g1"), target: "VALUE", result: "EQUAL", value: b("c") }],
    success: [
      get("g1"),
      { request_txn: { compare: [{ key: b("g2"), target: "VERSION", result: "EQUAL", version: 1 }], success: [put("n1", "1"), get("n1")], failure: [put("n1", "0")] } },
      { request_txn: { compare: [], success: [{ request_delete_range: { key: b("g3"), prev_kv: true } }], failure: [] } },
      get("g", { range_end: b("h") })
    ],
    failure: []
  }],
  ["Txn", { compare: [], success: [{ request_txn: { compare: [], success: [put("dup", "1")], failure: [put("dup", "2")] } }], failure: [] }],
  ["Txn", { compare: [], success: [put("dup", "0"), { request_txn: { compare: [], success: [put("dup", "1")], failure: [] } }], failure: [] }],
  ["Txn", { compare: [], success: [{ request_delete_range: { key: b("a"), range_end: b("z") } }, { request_txn: { compare: [], success: [put("m", "1")], failure: [] } }], failure: [] }],
  ["Txn", { compare: [], success: [{ request_txn: { compare: [], success: [], failure: [] } }], failure: [] }],
  // The 128-op limit, counted per list and for nested txns with the parent's budget.
  ["Txn", { compare: Array.from({ length: 128 }, () => ({ key: b("g1"), target: "VERSION", result: "GREATER", version: 0 })), success: [], failure: [] }],
  ["Txn", { compare: Array.from({ length: 129 }, () => ({ key: b("g1"), target: "VERSION", result: "GREATER", version: 0 })), success: [], failure: [] }],
  ["Txn", { compare: [], success: [], failure: Array.from({ length: 129 }, (_, i) => get(`f${i}`)) }],
  ["Txn", { compare: [], success: Array.from({ length: 100 }, (_, i) => get(`s${i}`)).concat([{ request_txn: { compare: [], success: Array.from({ length: 29 }, (_, i) => get(`n${i}`)), failure: [] } } as any]), failure: [] }],
  ["Txn", { compare: [], success: Array.from({ length: 100 }, (_, i) => get(`s${i}`)).concat([{ request_txn: { compare: [], success: Array.from({ length: 28 }, (_, i) => get(`n${i}`)), failure: [] } } as any]), failure: [] }],
  ["Txn", { compare: [], success: [{ request_put: { key: b(""), value: b("x") } }], failure: [] }],
  ["Compact", { revision: 3, physical: true }],
  ["Compact", { revision: 3 }],
  ["Compact", { revision: 1000 }],
  ["Range", { key: b("g1"), revision: 2 }],
  ["Range", { key: b("g1"), revision: 3 }],
  ["Txn", { compare: [], success: [get("g1", { revision: 2 })], failure: [] }]
]

/** Wire objects as comparable JSON: buffers as text, ids replaced. */
const showWire = (x: unknown): string =>
  JSON.stringify(x, (k, v) => {
    if (k === "cluster_id" || k === "member_id") return "<id>"
    if (v !== null && typeof v === "object" && (v as { type?: string }).type === "Buffer") return Buffer.from((v as { data: number[] }).data).toString("latin1")
    return v
  })

describe("etcdctl KV, txn, compaction and alarm session: natcd vs etcd", () => {
  const pair = natcdBesideEtcd("kv-diff", { portOffset: 410, clientPort: 25810, peerPort: 25820 })

  it(`gives the same output, revisions and errors for all ${session.length} etcdctl commands`, async () => {
    const mismatches: string[] = []
    for (const step of session) {
      const want = await etcdctl(pair.etcd.endpoint, step.args, step.input)
      const got = await etcdctl(pair.natcd.endpoints[0]!, step.args, step.input)
      const w = { code: want.code, out: normalise(want.stdout), err: normalise(normaliseStderr(want.stderr)) }
      const g = { code: got.code, out: normalise(got.stdout), err: normalise(normaliseStderr(got.stderr)) }
      // KV_DIFF_TRANSCRIPT=<file> keeps a side-by-side transcript for reading.
      if (process.env.KV_DIFF_TRANSCRIPT) {
        appendFileSync(process.env.KV_DIFF_TRANSCRIPT, `$ etcdctl ${step.args.join(" ")}\n  etcd:  ${JSON.stringify(w)}\n  natcd: ${JSON.stringify(g)}\n`)
      }
      if (JSON.stringify(w) !== JSON.stringify(g)) {
        mismatches.push(`etcdctl ${step.args.join(" ")}${step.input === undefined ? "" : ` <<< ${JSON.stringify(step.input.slice(0, 80))}`}\n  etcd:  ${JSON.stringify(w)}\n  natcd: ${JSON.stringify(g)}`)
      }
    }
    expect(mismatches, mismatches.join("\n")).toEqual([])
  }, 600_000)

  it(`gives the same responses for all ${grpcSession.length} gRPC requests (filters, nested txns, lease compares, op limits)`, async () => {
    const ref = rawClient(pair.etcd.endpoint)
    const ours = rawClient(pair.natcd.endpoints[0]!)
    try {
      const mismatches: string[] = []
      for (const [method, request] of grpcSession) {
        const w = showWire(await ref.call(method, request))
        const g = showWire(await ours.call(method, request))
        if (process.env.KV_DIFF_TRANSCRIPT) appendFileSync(process.env.KV_DIFF_TRANSCRIPT, `> ${method}\n  etcd:  ${w}\n  natcd: ${g}\n`)
        if (w !== g) mismatches.push(`${method} ${showWire(request).slice(0, 200)}\n  etcd:  ${w}\n  natcd: ${g}`)
      }
      expect(mismatches, mismatches.join("\n")).toEqual([])
    } finally {
      ref.close()
      ours.close()
    }
  }, 120_000)
})
