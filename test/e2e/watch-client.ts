/**
 * A plain etcd v3 Watch client for tests (@grpc/grpc-js over natcd's etcd .proto files): one
 * bidirectional stream, many watches on it, every response recorded in arrival order. Used
 * against natcd and the reference etcd alike.
 */
import * as grpc from "@grpc/grpc-js"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"

/** One event as received (values as strings for easy comparison). */
export interface SeenEvent {
  readonly type: "PUT" | "DELETE"
  readonly key: string
  readonly value: string
  readonly modRevision: number
  readonly createRevision: number
  readonly version: number
  readonly prevValue?: string
}

/** A watch response as received. */
export interface SeenResponse {
  readonly watchId: number
  readonly revision: number
  readonly created: boolean
  readonly canceled: boolean
  readonly compactRevision: number
  readonly cancelReason: string
  readonly fragment: boolean
  readonly events: ReadonlyArray<SeenEvent>
  /** performance.now() at arrival, in ms. */
  readonly at: number
}

/** A create request (etcd WatchCreateRequest fields, camelCase, keys as strings). */
export interface CreateOptions {
  readonly key: string
  readonly rangeEnd?: string
  readonly startRevision?: number
  readonly prevKv?: boolean
  readonly progressNotify?: boolean
  readonly filters?: ReadonlyArray<"NOPUT" | "NODELETE">
  readonly watchId?: number
  readonly fragment?: boolean
}

/** One Watch stream. */
export interface WatchStream {
  readonly responses: SeenResponse[]
  create(options: CreateOptions): void
  cancel(watchId: number): void
  progress(): void
  /** Stops reading from the stream (the client stalls; HTTP/2 flow control pushes back). */
  pause(): void
  resume(): void
  /** Resolves once `predicate` holds for the responses so far (polling), rejects after timeoutMs. */
  until(predicate: (responses: ReadonlyArray<SeenResponse>) => boolean, timeoutMs?: number): Promise<void>
  /** Cancels the stream (as a client closing its watch context). */
  close(): void
  readonly ended: () => boolean
  /** The status the stream ended with ("UNAVAILABLE etcdserver: no leader"), if it ended in error. */
  readonly error: () => string | undefined
}

/** etcd's Go client receives messages of any size (clientv3 MaxCallRecvMsgSize = math.MaxInt32); so do these. */
export const unlimitedReceive: grpc.ClientOptions = { "grpc.max_receive_message_length": -1 }

const services = () => loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>

const str = (b: unknown): string => (b instanceof Uint8Array ? Buffer.from(b).toString("latin1") : "")

/** The smallest key after every key with prefix `p` (etcd clientv3.GetPrefixRangeEnd). */
export const prefixEnd = (p: string): string => {
  const b = Buffer.from(p, "latin1")
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = b.subarray(0, i + 1)
      out[i]!++
      return out.toString("latin1")
    }
  }
  return "\0"
}

/**
 * Client options that give a client its own HTTP/2 connection (grpc-js otherwise shares one
 * connection among clients of the same target, and streams that stop reading would then hold
 * up the others through the connection's flow-control window).
 */
export const ownConnection: grpc.ClientOptions = { "grpc.use_local_subchannel_pool": 1 }

/** A Watch client of `endpoint` (host:port), for {@link openWatch}'s `client` option. */
export const watchClient = (endpoint: string, options: grpc.ClientOptions = {}): grpc.Client =>
  new (services().Watch!)(endpoint, grpc.credentials.createInsecure(), { ...unlimitedReceive, ...options })

/**
 * Opens a Watch stream to `endpoint` (host:port). `requireLeader` sends etcd's `hasleader`
 * metadata (clientv3.WithRequireLeader); `ownConnection` gives it a connection of its own;
 * `client` opens it on that client (many streams on one client, as etcd's clients do) instead of
 * a client of its own, which {@link WatchStream.close} then leaves open.
 */
export const openWatch = (
  endpoint: string,
  options: { readonly requireLeader?: boolean; readonly ownConnection?: boolean; readonly client?: grpc.Client } = {}
): WatchStream => {
  const shared = options.client
  const client = (shared ?? watchClient(endpoint, options.ownConnection === true ? ownConnection : {})) as any
  const metadata = new grpc.Metadata()
  if (options.requireLeader === true) metadata.set("hasleader", "true")
  const call = client.Watch(metadata) as grpc.ClientDuplexStream<any, any>
  const responses: SeenResponse[] = []
  let ended = false
  let error: string | undefined
  call.on("data", (r: any) => {
    responses.push({
      watchId: Number(r.watch_id),
      revision: Number(r.header?.revision ?? 0),
      created: r.created === true,
      canceled: r.canceled === true,
      compactRevision: Number(r.compact_revision ?? 0),
      cancelReason: r.cancel_reason ?? "",
      fragment: r.fragment === true,
      events: (r.events ?? []).map((e: any) => ({
        type: e.type,
        key: str(e.kv?.key),
        value: str(e.kv?.value),
        modRevision: Number(e.kv?.mod_revision ?? 0),
        createRevision: Number(e.kv?.create_revision ?? 0),
        version: Number(e.kv?.version ?? 0),
        ...(e.prev_kv ? { prevValue: str(e.prev_kv.value) } : {})
      })),
      at: performance.now()
    })
  })
  const end = () => {
    ended = true
  }
  call.on("error", (e: grpc.ServiceError) => {
    error = `${grpc.status[e.code]} ${e.details}`
    end()
  })
  call.on("end", end)
  return {
    responses,
    create: (o) =>
      call.write({
        create_request: {
          key: Buffer.from(o.key, "latin1"),
          range_end: o.rangeEnd === undefined ? Buffer.alloc(0) : Buffer.from(o.rangeEnd, "latin1"),
          start_revision: o.startRevision ?? 0,
          prev_kv: o.prevKv === true,
          progress_notify: o.progressNotify === true,
          filters: o.filters ?? [],
          watch_id: o.watchId ?? 0,
          fragment: o.fragment === true
        }
      }),
    cancel: (watchId) => call.write({ cancel_request: { watch_id: watchId } }),
    progress: () => call.write({ progress_request: {} }),
    pause: () => call.pause(),
    resume: () => call.resume(),
    until: async (predicate, timeoutMs = 15_000) => {
      const deadline = performance.now() + timeoutMs
      while (!predicate(responses)) {
        if (performance.now() > deadline) throw new Error(`watch condition not met after ${timeoutMs} ms; ${responses.length} responses`)
        await new Promise((r) => setTimeout(r, 20))
      }
    },
    close: () => {
      call.cancel()
      if (shared === undefined) client.close()
    },
    ended: () => ended,
    error: () => error
  }
}

/**
 * Promise-returning Txn/Put/Range/DeleteRange/Compact on one channel, for driving writes in tests;
 * `options` are added to the client's (e.g. {@link ownConnection}).
 */
export const kvWriter = (endpoint: string, options: grpc.ClientOptions = {}) => {
  const client = new (services().KV!)(endpoint, grpc.credentials.createInsecure(), { ...unlimitedReceive, ...options }) as any
  const call = <R>(method: string, request: unknown, timeoutMs = 10_000) =>
    new Promise<R>((resolve, reject) =>
      client[method](request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: R) => (err ? reject(err) : resolve(res)))
    )
  const b = (s: string) => Buffer.from(s, "latin1")
  return {
    put: (key: string, value: string) => call<{ header: { revision: string } }>("Put", { key: b(key), value: b(value) }),
    /** A put attached to lease `lease` (decimal id). */
    putWithLease: (key: string, value: string, lease: string) => call<{ header: { revision: string } }>("Put", { key: b(key), value: b(value), lease }),
    /** A linearizable Range of [key, rangeEnd). */
    get: (key: string, rangeEnd: string) =>
      call<{ header: { revision: string }; kvs: Array<{ key: Buffer; value: Buffer; mod_revision: string }> }>("Range", { key: b(key), range_end: b(rangeEnd) }),
    del: (key: string, rangeEnd?: string) => call<{ header: { revision: string } }>("DeleteRange", { key: b(key), range_end: rangeEnd === undefined ? Buffer.alloc(0) : b(rangeEnd) }),
    /** One txn of puts (value) and deletes (no value; `end` for a range) with no compares. */
    txn: (ops: ReadonlyArray<{ key: string; value?: string; end?: string }>) =>
      call<{ header: { revision: string } }>("Txn", {
        compare: [],
        success: ops.map((o) =>
          o.value !== undefined
            ? { request_put: { key: b(o.key), value: b(o.value) } }
            : { request_delete_range: { key: b(o.key), range_end: o.end === undefined ? Buffer.alloc(0) : b(o.end) } }
        ),
        failure: []
      }),
    compact: (revision: number) => call("Compact", { revision, physical: true }),
    close: () => client.close()
  }
}
