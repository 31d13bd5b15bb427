/**
 * gRPC clients for the lease, lock and election tests: etcd's Lease, Lock and Election services
 * over @grpc/grpc-js with natcd's .proto files (the wire etcd's clients use), plus a keep-alive
 * loop shaped like clientv3's (one bidi stream, a keep-alive per lease every TTL/3, the stream
 * re-opened on the next endpoint when it fails).
 */
import * as grpc from "@grpc/grpc-js"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"

type Ctor = grpc.ServiceClientConstructor

const services = () => loadEtcdServices() as unknown as Record<string, Ctor>

/** A unary call as a promise, with a deadline. */
const unary = <R>(client: grpc.Client, method: string, request: unknown, timeoutMs: number): Promise<R> =>
  new Promise<R>((resolve, reject) =>
    (client as any)[method](request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: R) =>
      err ? reject(err) : resolve(res)
    )
  )

/** Clients of one endpoint. */
export interface EtcdClients {
  readonly endpoint: string
  readonly kv: grpc.Client
  readonly lease: grpc.Client
  readonly lock: grpc.Client
  readonly election: grpc.Client
  call<R = any>(client: grpc.Client, method: string, request: unknown, timeoutMs?: number): Promise<R>
  close(): void
}

/** Connects every service client to `endpoint` (host:port). */
export const etcdClients = (endpoint: string): EtcdClients => {
  const s = services()
  const creds = grpc.credentials.createInsecure()
  const kv = new s.KV!(endpoint, creds)
  const lease = new s.Lease!(endpoint, creds)
  const lock = new s.Lock!(endpoint, creds)
  const election = new s.Election!(endpoint, creds)
  return {
    endpoint,
    kv,
    lease,
    lock,
    election,
    call: (client, method, request, timeoutMs = 10_000) => unary(client, method, request, timeoutMs),
    close: () => [kv, lease, lock, election].forEach((c) => c.close())
  }
}

/**
 * Keeps `leases` (decimal id strings) alive through `endpoints`: a keep-alive for each every
 * `intervalMs`, on one stream, moving to the next endpoint when the stream fails. Counts leases
 * answered with TTL 0 (expired or unknown) in `lost`.
 */
export class KeepAliver {
  readonly lost = new Set<string>()
  readonly counters = { sent: 0, answered: 0, reopened: 0 }
  private stopped = false
  private stream: grpc.ClientDuplexStream<any, any> | undefined
  private endpointIndex = 0
  private readonly clients: ReadonlyArray<grpc.Client>
  private readonly leases: Set<string>
  private readonly intervalMs: number
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(endpoints: ReadonlyArray<string>, leases: Iterable<string>, intervalMs: number) {
    const s = services()
    this.clients = endpoints.map((e) => new s.Lease!(e, grpc.credentials.createInsecure()))
    this.leases = new Set(leases)
    this.intervalMs = intervalMs
  }

  /** Adds a lease to keep alive. */
  add(id: string): void {
    this.leases.add(id)
  }

  /** Stops keeping `id` alive. */
  remove(id: string): void {
    this.leases.delete(id)
  }

  start(): void {
    this.open()
    this.timer = setInterval(() => this.sendAll(), this.intervalMs)
    this.sendAll()
  }

  private open(): void {
    const client = this.clients[this.endpointIndex % this.clients.length]!
    const stream = (client as any).LeaseKeepAlive() as grpc.ClientDuplexStream<any, any>
    this.stream = stream
    stream.on("data", (r: { ID: string; TTL: string }) => {
      this.counters.answered++
      if (Number(r.TTL) <= 0 && this.leases.has(r.ID)) this.lost.add(r.ID)
    })
    const reopen = () => {
      if (this.stopped || this.stream !== stream) return
      this.stream = undefined
      this.endpointIndex++
      this.counters.reopened++
      setTimeout(() => {
        if (!this.stopped) {
          this.open()
          this.sendAll()
        }
      }, 200)
    }
    stream.on("error", reopen)
    stream.on("end", reopen)
  }

  private sendAll(): void {
    const stream = this.stream
    if (stream === undefined) return
    for (const id of this.leases) {
      this.counters.sent++
      stream.write({ ID: id })
    }
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.stream?.cancel()
    this.clients.forEach((c) => c.close())
  }
}
