/**
 * The benchmark's etcd v3 client: @grpc/grpc-js over natcd's copy of etcd's .proto files, the
 * same code against natcd and the real etcd. `conns` channels per endpoint list are shared
 * round-robin by the workers, as etcd's benchmark tool shares --conns connections among
 * --clients.
 */
import * as grpc from "@grpc/grpc-js"
import { loadEtcdServices } from "../services/gateway/service-definitions.ts"

type Callback<R> = (err: grpc.ServiceError | null, res: R) => void
type Unary = (request: unknown, options: grpc.CallOptions, callback: Callback<any>) => void

/** One connection: typed promise wrappers over the generated stubs. */
export interface Connection {
  put(key: Buffer, value: Buffer): Promise<{ header: { revision: string } }>
  range(request: Record<string, unknown>): Promise<{ header: { revision: string }; count: string; kvs: unknown[] }>
  txn(request: Record<string, unknown>): Promise<{ header: { revision: string }; succeeded: boolean }>
  leaseGrant(ttlSeconds: number): Promise<{ ID: string; TTL: string }>
  leaseRevoke(id: string): Promise<unknown>
  /** A bidi LeaseKeepAlive stream. */
  keepAlive(): grpc.ClientDuplexStream<{ ID: string }, { ID: string; TTL: string }>
  /** A bidi Watch stream. */
  watch(): grpc.ClientDuplexStream<Record<string, unknown>, WatchResponse>
  close(): void
}

/** The fields of a WatchResponse the benchmark reads. */
export interface WatchResponse {
  readonly watch_id: string
  readonly created: boolean
  readonly canceled: boolean
  readonly events: ReadonlyArray<{ readonly kv: { readonly mod_revision: string } }>
}

const timeoutMs = 30_000

/**
 * Opens a connection to `endpoint` (host:port); with `token`, every call carries it (the `token`
 * metadata etcd's clients send once authenticated).
 */
export const connect = (endpoint: string, token?: string): Connection => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const options = { "grpc.max_receive_message_length": 64 * 1024 * 1024 }
  const channel = new grpc.Channel(endpoint, grpc.credentials.createInsecure(), options)
  const make = (name: string) => new services[name]!(endpoint, grpc.credentials.createInsecure(), { ...options, channelOverride: channel })
  const kv = make("KV") as unknown as Record<string, Unary>
  const lease = make("Lease") as unknown as Record<string, Unary> & { LeaseKeepAlive(md: grpc.Metadata): any }
  const watch = make("Watch") as unknown as { Watch(md: grpc.Metadata): any }
  const md = new grpc.Metadata()
  if (token !== undefined) md.set("token", token)
  const call = <R>(stub: Record<string, Unary>, method: string, request: unknown) =>
    new Promise<R>((resolve, reject) =>
      (stub[method] as unknown as (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: Callback<any>) => void).call(
        stub, request, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as R))
      )
    )
  return {
    put: (key, value) => call(kv, "Put", { key, value }),
    range: (request) => call(kv, "Range", request),
    txn: (request) => call(kv, "Txn", request),
    leaseGrant: (ttlSeconds) => call(lease, "LeaseGrant", { TTL: ttlSeconds }),
    leaseRevoke: (id) => call(lease, "LeaseRevoke", { ID: id }),
    keepAlive: () => lease.LeaseKeepAlive(md),
    watch: () => watch.Watch(md),
    close: () => channel.close()
  }
}

/** `conns` connections spread over `endpoints`, handed out round-robin. */
export class ConnectionPool {
  private readonly connections: Connection[]
  private next = 0

  constructor(endpoints: ReadonlyArray<string>, conns: number, token?: string) {
    this.connections = Array.from({ length: Math.max(1, conns) }, (_, i) => connect(endpoints[i % endpoints.length]!, token))
  }

  /** The next connection. */
  get(): Connection {
    const c = this.connections[this.next % this.connections.length]!
    this.next++
    return c
  }

  close(): void {
    for (const c of this.connections) c.close()
  }
}

/**
 * Turns authentication on (`on`) or off on the cluster at `endpoint`, as an operator would with
 * etcdctl: a root user, a user `bench` whose role may read and write every key, AuthEnable.
 * Resolves with a simple token of `bench` (on), after AuthDisable as root (off). Calls that
 * find their work done already (a user that exists) are ignored.
 */
export const benchAuth = async (endpoint: string, on: boolean): Promise<string | undefined> => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const auth = new services.Auth!(endpoint, grpc.credentials.createInsecure()) as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: Callback<any>) => void>
  const call = <R>(method: string, request: unknown, token?: string) =>
    new Promise<R>((resolve, reject) => {
      const md = new grpc.Metadata()
      if (token !== undefined) md.set("token", token)
      auth[method]!.call(auth, request, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as R)))
    })
  const tolerate = (p: Promise<unknown>) => p.catch(() => undefined)
  try {
    if (!on) {
      const { token } = await call<{ token: string }>("Authenticate", { name: "root", password: "rootpw" })
      await call("AuthDisable", {}, token)
      return undefined
    }
    await tolerate(call("UserAdd", { name: "root", password: "rootpw" }))
    await tolerate(call("UserGrantRole", { user: "root", role: "root" }))
    await tolerate(call("UserAdd", { name: "bench", password: "benchpw" }))
    await tolerate(call("RoleAdd", { name: "bench" }))
    await call("RoleGrantPermission", { name: "bench", perm: { permType: "READWRITE", key: Buffer.from([0]), range_end: Buffer.from([0]) } })
    await tolerate(call("UserGrantRole", { user: "bench", role: "bench" }))
    await call("AuthEnable", {})
    return (await call<{ token: string }>("Authenticate", { name: "bench", password: "benchpw" })).token
  } finally {
    ;(auth as unknown as grpc.Client).close()
  }
}
