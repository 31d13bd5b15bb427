/**
 * Any size etcd serves, natcd serves: results and revisions larger than one NATS message
 * (8 MiB) cross the bus in chunks, compared with the reference etcd 3.4 from the same empty
 * store (so revisions line up):
 * - 12 values of 1 MiB deleted in one revision reach two watchers (one with prev_kv, 24 MiB in
 *   one WatchResponse) and a watcher that asked for fragments (etcd's fragmenting), and a put
 *   after it reaches a fourth watcher; `etcdctl get --prefix` of the 12 MiB before the delete;
 * - 9000 keys of 1 KiB deleted in one revision (DeleteRange with prev_kv: a 9 MiB result; the
 *   watcher on the prefix gets all 9000 events in one response), then a watch on another key
 *   still works;
 * - a 200 MiB range;
 * - a lease's 9000 keys (9 MiB of key names) listed by LeaseTimeToLive, then revoked;
 * and deeply nested Txns (depths 10 to 2000), answered as etcd answers them: committed and
 * acknowledged up to etcd's --max-txn-ops depth, "too many operations in txn request" beyond it,
 * never a committed write reported as a failure.
 */
import * as grpc from "@grpc/grpc-js"
import { createHash } from "node:crypto"
import protobuf from "protobufjs"
import { describe, expect, it } from "vitest"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { etcdctl, natcdBesideEtcd } from "./harness.ts"
import { openWatch, prefixEnd, unlimitedReceive } from "./watch-client.ts"
import type { SeenResponse, WatchStream } from "./watch-client.ts"

const MiB = 1024 * 1024
const b = (s: string) => Buffer.from(s, "latin1")

/** A value of `size` bytes that differs per `seed` all along its length. */
const valueOf = (seed: string, size: number): string => {
  const unit = createHash("sha256").update(seed).digest("hex")
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size)
}

/** Promise-returning KV calls with etcd's full request shapes. */
const kv = (endpoint: string) => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const client = new services.KV!(endpoint, grpc.credentials.createInsecure(), unlimitedReceive) as any
  const call = <R>(method: string, request: unknown, timeoutMs = 60_000) =>
    new Promise<R>((resolve, reject) =>
      client[method](request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: R) => (err ? reject(err) : resolve(res)))
    )
  return {
    put: (key: string, value: string) => call<{ header: { revision: string } }>("Put", { key: b(key), value: b(value) }),
    txnPuts: (ops: ReadonlyArray<readonly [string, string]>) =>
      call("Txn", { compare: [], success: ops.map(([k, v]) => ({ request_put: { key: b(k), value: b(v) } })), failure: [] }),
    delPrefix: (prefix: string, prevKv: boolean) =>
      call<{ header: { revision: string }; deleted: string; prev_kvs: Array<{ key: Buffer; value: Buffer }> }>("DeleteRange", {
        key: b(prefix),
        range_end: b(prefixEnd(prefix)),
        prev_kv: prevKv
      }),
    rangePrefix: (prefix: string) =>
      call<{ header: { revision: string }; count: string; kvs: Array<{ key: Buffer; value: Buffer; mod_revision: string }> }>("Range", {
        key: b(prefix),
        range_end: b(prefixEnd(prefix))
      }),
    close: () => client.close()
  }
}

/** What a test compares between natcd and etcd: one line per response, values by length and digest. */
const summary = (responses: ReadonlyArray<SeenResponse>): string[] =>
  responses.map((r) => {
    const events = r.events.map((e) => `${e.type} ${e.key} mod=${e.modRevision} value=${e.value.length}${e.prevValue === undefined ? "" : ` prev=${e.prevValue.length}:${createHash("sha1").update(e.prevValue).digest("hex").slice(0, 8)}`}`)
    return `rev=${r.revision} created=${r.created} canceled=${r.canceled} fragment=${r.fragment} events=${events.length}: ${events.slice(0, 3).join(", ")}${events.length > 3 ? ` … ${events[events.length - 1]}` : ""}`
  })

const untilCreated = (w: WatchStream, n: number) => w.until((rs) => rs.filter((r) => r.created).length >= n, 20_000)

// One natcd and one etcd for the whole file; each test runs the same steps on both at once.
const pair = natcdBesideEtcd("large-frames", { portOffset: 2000, clientPort: 28790, peerPort: 28791 })

/** Runs `f` against etcd and natcd concurrently (independent clusters, independent keys). */
const onBoth = <A>(f: (endpoint: string) => Promise<A>) => Promise.all([f(pair.etcd.endpoint), f(pair.natcd.endpoints[0]!)])

describe("frames larger than one NATS message, as etcd", () => {
  const bigDelete = async (endpoint: string) => {
    const c = kv(endpoint)
    for (let i = 0; i < 12; i++) await c.put(`big/${String(i).padStart(2, "0")}`, valueOf(`big${i}`, MiB))
    const get = await etcdctl(endpoint, ["get", "--prefix", "big/"])
    const plain = openWatch(endpoint)
    const withPrev = openWatch(endpoint)
    const fragmented = openWatch(endpoint)
    plain.create({ key: "big/", rangeEnd: prefixEnd("big/") })
    withPrev.create({ key: "big/", rangeEnd: prefixEnd("big/"), prevKv: true })
    fragmented.create({ key: "big/", rangeEnd: prefixEnd("big/"), prevKv: true, fragment: true })
    await Promise.all([untilCreated(plain, 1), untilCreated(withPrev, 1), untilCreated(fragmented, 1)])
    const del = await c.delPrefix("big/", false)
    await Promise.all([plain, withPrev].map((w) => w.until((rs) => rs.some((r) => r.events.length > 0), 30_000)))
    await fragmented.until((rs) => rs.reduce((n, r) => n + r.events.length, 0) >= 12, 30_000)
    // A watcher created after the big revision still hears later writes.
    const third = openWatch(endpoint)
    third.create({ key: "after" })
    await untilCreated(third, 1)
    await c.put("after", "x")
    await third.until((rs) => rs.some((r) => r.events.length > 0), 20_000)
    const out = {
      get: { code: get.code, bytes: get.stdout.length, digest: createHash("sha256").update(get.stdout).digest("hex"), stderr: get.stderr },
      deleted: del.deleted,
      plain: summary(plain.responses),
      withPrev: summary(withPrev.responses),
      fragmented: summary(fragmented.responses),
      third: summary(third.responses)
    }
    for (const w of [plain, withPrev, fragmented, third]) w.close()
    c.close()
    return out
  }

  it("12 values of 1 MiB deleted in one revision reach a plain, a prev_kv and a fragmenting watcher as in etcd; a later put reaches a fourth", async () => {
    const [etcd, natcd] = await onBoth(bigDelete)
    expect(etcd.get.bytes).toBeGreaterThan(12 * MiB)
    expect(etcd.withPrev.some((l) => l.includes("events=12") && l.includes(`prev=${MiB}`))).toBe(true)
    expect(natcd).toEqual(etcd)
  }, 180_000)

  const manyDelete = async (endpoint: string) => {
    const c = kv(endpoint)
    const value = valueOf("many", 1024)
    for (let start = 0; start < 9000; start += 128) {
      const ops: Array<readonly [string, string]> = []
      for (let i = start; i < Math.min(9000, start + 128); i++) ops.push([`many/${String(i).padStart(5, "0")}`, value])
      await c.txnPuts(ops)
    }
    const onPrefix = openWatch(endpoint)
    onPrefix.create({ key: "many/", rangeEnd: prefixEnd("many/"), prevKv: true })
    await untilCreated(onPrefix, 1)
    const del = await c.delPrefix("many/", true)
    await onPrefix.until((rs) => rs.some((r) => r.events.length > 0), 30_000)
    const other = openWatch(endpoint)
    other.create({ key: "other" })
    await untilCreated(other, 1)
    await c.put("other", "y")
    await other.until((rs) => rs.some((r) => r.events.length > 0), 20_000)
    const out = {
      deleted: del.deleted,
      prevKvs: del.prev_kvs.length,
      prevBytes: del.prev_kvs.reduce((n, kv) => n + kv.value.length, 0),
      onPrefix: summary(onPrefix.responses),
      other: summary(other.responses)
    }
    for (const w of [onPrefix, other]) w.close()
    c.close()
    return out
  }

  it("9000 keys of 1 KiB deleted in one revision with prev_kv; a watch on another key still works", async () => {
    const [etcd, natcd] = await onBoth(manyDelete)
    expect(etcd.deleted).toBe("9000")
    expect(etcd.onPrefix.some((l) => l.includes("events=9000"))).toBe(true)
    expect(natcd).toEqual(etcd)
  }, 300_000)

  const hugeRange = async (endpoint: string) => {
    const c = kv(endpoint)
    // 8 puts in flight: the values, not the order, matter here.
    for (let i = 0; i < 200; i += 8) {
      await Promise.all(Array.from({ length: Math.min(8, 200 - i) }, (_, j) => c.put(`huge/${String(i + j).padStart(3, "0")}`, valueOf(`huge${i + j}`, MiB))))
    }
    const r = await c.rangePrefix("huge/")
    const digest = createHash("sha256")
    for (const kv of r.kvs) digest.update(kv.key).update(kv.value)
    const out = { count: r.count, kvs: r.kvs.length, bytes: r.kvs.reduce((n, kv) => n + kv.value.length, 0), digest: digest.digest("hex"), revision: r.header.revision }
    c.close()
    return out
  }

  it("serves a range of 200 MiB", async () => {
    const [etcd, natcd] = await onBoth(hugeRange)
    expect(etcd.bytes).toBe(200 * MiB)
    expect(natcd).toEqual(etcd)
  }, 300_000)

  const leaseKeys = async (endpoint: string) => {
    const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
    const lease = new services.Lease!(endpoint, grpc.credentials.createInsecure(), unlimitedReceive) as any
    const c = new services.KV!(endpoint, grpc.credentials.createInsecure(), unlimitedReceive) as any
    const call = <R>(client: any, method: string, request: unknown) =>
      new Promise<R>((resolve, reject) =>
        client[method](request, { deadline: Date.now() + 60_000 }, (err: grpc.ServiceError | null, res: R) => (err ? reject(err) : resolve(res)))
      )
    const g = await call<{ ID: string }>(lease, "LeaseGrant", { TTL: 600 })
    const name = (i: number) => `lk/${String(i).padStart(5, "0")}/${"n".repeat(1024)}`
    for (let t = 0; t < 90; t++) {
      const success = Array.from({ length: 100 }, (_, j) => ({ request_put: { key: b(name(t * 100 + j)), value: b("v"), lease: g.ID } }))
      await call(c, "Txn", { compare: [], success, failure: [] })
    }
    const ttl = await call<{ grantedTTL: string; keys: Buffer[] }>(lease, "LeaseTimeToLive", { ID: g.ID, keys: true })
    // etcd lists a lease's keys in no particular order.
    const names = ttl.keys.map((k) => k.toString("latin1")).sort()
    await call(lease, "LeaseRevoke", { ID: g.ID })
    const after = await call<{ count: string }>(c, "Range", { key: b("lk/"), range_end: b(prefixEnd("lk/")), count_only: true })
    lease.close()
    c.close()
    return {
      grantedTTL: ttl.grantedTTL,
      keys: names.length,
      bytes: names.reduce((n, k) => n + k.length, 0),
      digest: createHash("sha256").update(names.join("\n")).digest("hex"),
      afterRevoke: after.count
    }
  }

  it("lists the 9000 keys (9 MiB of names) of one lease and revokes them, as etcd", async () => {
    const [etcd, natcd] = await onBoth(leaseKeys)
    expect(etcd.keys).toBe(9000)
    expect(etcd.bytes).toBeGreaterThan(9 * MiB - MiB / 4)
    expect(natcd).toEqual(etcd)
  }, 300_000)
})

describe("deeply nested txns, as etcd", () => {
  /** A txn nested `depth` deep whose innermost success branch puts `nest` = depth. */
  const nested = (depth: number): unknown => {
    let txn: unknown = { compare: [], success: [{ request_put: { key: b("nest"), value: b(String(depth)) } }], failure: [] }
    for (let d = 1; d < depth; d++) txn = { compare: [], success: [{ request_txn: txn }], failure: [] }
    return txn
  }

  /** How deep a TxnResponse nests (1: no nested txn). */
  const responseDepth = (r: any): number => {
    let depth = 1
    while (r?.responses?.[0]?.response_txn !== undefined && r.responses[0].response_txn !== null) {
      r = r.responses[0].response_txn
      depth++
    }
    return depth
  }

  const answers = async (endpoint: string) => {
    // This client encodes and decodes any depth (etcd's Go client does).
    protobuf.util.recursionLimit = 100_000
    protobuf.Reader.recursionLimit = 100_000
    const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
    const client = new services.KV!(endpoint, grpc.credentials.createInsecure(), unlimitedReceive) as any
    const out: string[] = []
    for (const depth of [10, 48, 49, 50, 100, 128, 129, 130, 2000]) {
      const answer = await new Promise<string>((resolve) =>
        client.Txn(nested(depth), { deadline: Date.now() + 20_000 }, (err: grpc.ServiceError | null, res: any) =>
          resolve(err ? `error ${grpc.status[err.code]} ${err.details}` : `ok succeeded=${res.succeeded} depth=${responseDepth(res)}`)
        )
      )
      const get = await new Promise<string>((resolve) =>
        client.Range({ key: b("nest") }, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: any) =>
          resolve(err ? `error ${err.details}` : `nest=${res.kvs[0]?.value?.toString() ?? "(none)"} rev=${res.header.revision}`)
        )
      )
      out.push(`depth ${depth}: ${answer}; ${get}`)
    }
    client.close()
    return out
  }

  it("answers txns nested 10 to 2000 deep as etcd 3.4 does", async () => {
    const [etcd, natcd] = await onBoth(answers)
    expect(etcd[0]).toMatch(/^depth 10: ok succeeded=true depth=10; nest=10/)
    expect(natcd).toEqual(etcd)
  }, 120_000)
})
