/**
 * Benchmark workloads, modelled on etcd's tools/benchmark: each runs `clients` concurrent
 * workers over a connection pool until `total` operations are done, timing every operation.
 *
 * - put: random keys in a key space (8-byte keys, 256-byte values by default);
 * - range: single-key gets, linearizable or serializable;
 * - range-prefix: gets of a prefix holding 100 keys;
 * - txn-put: compare mod_revision, then put (Kubernetes' optimistic update);
 * - watch: W watchers on one prefix over S streams, then P puts; events delivered per second
 *   and put-to-event latency (from sending the put to receiving the event);
 * - lease: grant, one keep-alive, revoke.
 */
import type { Connection, ConnectionPool, WatchResponse } from "./client.ts"

/** What one workload measured. */
export interface Measurement {
  /** Operations completed (events delivered, for watch). */
  readonly ops: number
  readonly errors: number
  readonly firstError?: string
  readonly elapsedMs: number
  /** Per-operation latencies in ms (put-to-event latencies, for watch). */
  readonly latenciesMs: Float64Array
}

/** Workload parameters. */
export interface WorkloadOptions {
  readonly clients: number
  readonly total: number
  readonly keySpace: number
  readonly keyBytes: number
  readonly valueBytes: number
}

const keyOf = (i: number, bytes: number) => Buffer.from(i.toString(36).padStart(bytes, "0").slice(-bytes))

/** Runs `op` `total` times over `clients` workers and times each call. */
const drive = async (
  pool: ConnectionPool,
  options: Pick<WorkloadOptions, "clients" | "total">,
  op: (c: Connection, i: number) => Promise<unknown>,
  onProgress?: (done: number) => void
): Promise<Measurement> => {
  const latencies = new Float64Array(options.total)
  let next = 0
  let done = 0
  let errors = 0
  let firstError: string | undefined
  const started = performance.now()
  await Promise.all(Array.from({ length: options.clients }, async () => {
    const c = pool.get()
    for (;;) {
      const i = next++
      if (i >= options.total) return
      const t0 = performance.now()
      try {
        await op(c, i)
      } catch (e) {
        errors++
        firstError ??= (e as Error).message
      }
      latencies[i] = performance.now() - t0
      done++
      if (onProgress !== undefined && done % 1000 === 0) onProgress(done)
    }
  }))
  return { ops: options.total - errors, errors, ...(firstError === undefined ? {} : { firstError }), elapsedMs: performance.now() - started, latenciesMs: latencies }
}

/** Waits for `done`, at most `ms` ms; the timer does not outlive the wait (it would hold the process up). */
const within = async (done: Promise<void>, ms: number): Promise<void> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}

/** Puts random keys. */
export const putWorkload = (pool: ConnectionPool, o: WorkloadOptions, onProgress?: (n: number) => void) => {
  const value = Buffer.alloc(o.valueBytes, 0x61)
  return drive(pool, o, (c) => c.put(keyOf(Math.floor(Math.random() * o.keySpace), o.keyBytes), value), onProgress)
}

/** Fills the key space's first `count` keys so reads find data; throws when any put failed (a range over them would measure nothing). */
export const preload = async (pool: ConnectionPool, o: WorkloadOptions, count: number, prefix = "") => {
  const value = Buffer.alloc(o.valueBytes, 0x62)
  const m = await drive(pool, { clients: 16, total: count }, (c, i) => c.put(Buffer.concat([Buffer.from(prefix), keyOf(i, o.keyBytes)]), value))
  if (m.errors > 0) throw new Error(`preload: ${m.errors} of ${count} puts failed, the first with: ${m.firstError}`)
}

/** Single-key ranges over the preloaded keys. */
export const rangeWorkload = (pool: ConnectionPool, o: WorkloadOptions, serializable: boolean, preloaded: number, onProgress?: (n: number) => void) =>
  drive(pool, o, (c) => c.range({ key: keyOf(Math.floor(Math.random() * preloaded), o.keyBytes), serializable }), onProgress)

/** Prefix ranges returning 100 keys each. */
export const rangePrefixWorkload = (pool: ConnectionPool, o: WorkloadOptions, prefix: string, onProgress?: (n: number) => void) => {
  const key = Buffer.from(prefix)
  const end = Buffer.from(prefix)
  end[end.length - 1] = end[end.length - 1]! + 1
  return drive(pool, o, async (c) => {
    const r = await c.range({ key, range_end: end })
    if (Number(r.count) !== 100) throw new Error(`expected 100 keys, got ${r.count}`)
  }, onProgress)
}

/** Compare mod_revision then put, retrying on a lost race, as Kubernetes' GuaranteedUpdate. */
export const txnPutWorkload = (pool: ConnectionPool, o: WorkloadOptions, onProgress?: (n: number) => void) => {
  const value = Buffer.alloc(o.valueBytes, 0x63)
  return drive(pool, o, async (c) => {
    const key = keyOf(Math.floor(Math.random() * o.keySpace), o.keyBytes)
    for (let attempt = 0; attempt < 10; attempt++) {
      const cur = await c.range({ key, serializable: false }) as { kvs: Array<{ mod_revision: string }> }
      const mod = cur.kvs[0]?.mod_revision ?? "0"
      const r = await c.txn({
        compare: [{ result: "EQUAL", target: "MOD", key, mod_revision: mod }],
        success: [{ request_put: { key, value } }],
        failure: []
      })
      if (r.succeeded) return
    }
    throw new Error("txn-put lost 10 races")
  }, onProgress)
}

/** Grant a lease, keep it alive once, revoke it. */
export const leaseWorkload = (pool: ConnectionPool, o: WorkloadOptions, onProgress?: (n: number) => void) =>
  drive(pool, o, async (c) => {
    const g = await c.leaseGrant(60)
    await new Promise<void>((resolve, reject) => {
      const stream = c.keepAlive()
      stream.once("data", () => {
        stream.end()
        resolve()
      })
      stream.once("error", reject)
      stream.write({ ID: g.ID })
    })
    await c.leaseRevoke(g.ID)
  }, onProgress)

/**
 * W watchers on `prefix` over S streams, then P puts under the prefix by `putClients` workers.
 * Counts every event delivered and its latency from the put being sent.
 */
export const watchWorkload = async (
  pool: ConnectionPool,
  o: { readonly watchers: number; readonly streams: number; readonly puts: number; readonly putClients: number; readonly valueBytes: number },
  prefix: string,
  onProgress?: (n: number) => void
): Promise<Measurement> => {
  const key = Buffer.from(prefix)
  const end = Buffer.from(prefix)
  end[end.length - 1] = end[end.length - 1]! + 1
  const expected = o.watchers * o.puts
  const sentAt = new Map<number, number>()
  // Arrival time and revision of every event; latencies are computed at the end, since an
  // event can arrive before the response to its put.
  const arrivedAt = new Float64Array(expected)
  const arrivedRev = new Float64Array(expected)
  let delivered = 0
  let errors = 0
  let firstError: string | undefined
  let created = 0
  let resolveDone: () => void = () => {}
  const allDelivered = new Promise<void>((r) => (resolveDone = r))
  let resolveCreated: () => void = () => {}
  const allCreated = new Promise<void>((r) => (resolveCreated = r))
  const streams = Array.from({ length: o.streams }, () => pool.get().watch())
  for (const stream of streams) {
    stream.on("data", (resp: WatchResponse) => {
      if (resp.created && ++created === o.watchers) resolveCreated()
      const now = performance.now()
      for (const ev of resp.events) {
        if (delivered < expected) {
          arrivedAt[delivered] = now
          arrivedRev[delivered] = Number(ev.kv.mod_revision)
        }
        delivered++
        if (onProgress !== undefined && delivered % 100_000 === 0) onProgress(delivered)
      }
      if (delivered >= expected) resolveDone()
    })
    stream.on("error", (e: Error) => {
      errors++
      firstError ??= e.message
    })
  }
  for (let w = 0; w < o.watchers; w++) streams[w % o.streams]!.write({ create_request: { key, range_end: end } })
  await within(allCreated, 60_000)
  const started = performance.now()
  const value = Buffer.alloc(o.valueBytes, 0x64)
  let next = 0
  await Promise.all(Array.from({ length: o.putClients }, async () => {
    const c = pool.get()
    for (;;) {
      const i = next++
      if (i >= o.puts) return
      const t0 = performance.now()
      try {
        const r = await c.put(Buffer.concat([key, Buffer.from(String(i))]), value)
        sentAt.set(Number(r.header.revision), t0)
      } catch (e) {
        errors++
        firstError ??= (e as Error).message
      }
    }
  }))
  await within(allDelivered, 120_000)
  const elapsedMs = performance.now() - started
  for (const s of streams) s.end()
  const missing = Math.max(0, expected - delivered)
  const n = Math.min(delivered, expected)
  const latencies = new Float64Array(n)
  for (let i = 0; i < n; i++) latencies[i] = arrivedAt[i]! - (sentAt.get(arrivedRev[i]!) ?? arrivedAt[i]!)
  return {
    ops: Math.min(delivered, expected),
    errors: errors + missing,
    ...(firstError === undefined ? (missing > 0 ? { firstError: `${missing} events not delivered` } : {}) : { firstError }),
    elapsedMs,
    latenciesMs: latencies
  }
}
