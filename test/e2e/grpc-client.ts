/**
 * A plain etcd v3 gRPC client for tests (@grpc/grpc-js over natcd's etcd .proto files), so that
 * tests can drive natcd the way any etcd v3 client library does, faster than spawning etcdctl.
 */
import * as grpc from "@grpc/grpc-js"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"

/** Promise-returning KV calls on one channel. */
export interface KvClient {
  put(key: string, value: string, timeoutMs?: number): Promise<{ header: { revision: string } }>
  range(request: Record<string, unknown>, timeoutMs?: number): Promise<{ header: { revision: string }; kvs: Array<{ key: Buffer; value: Buffer; mod_revision: string; version: string }>; count: string }>
  close(): void
}

/** Connects to `endpoint` (host:port). */
export const kvClient = (endpoint: string): KvClient => {
  const services = loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>
  const client = new services.KV!(endpoint, grpc.credentials.createInsecure())
  const call = <R>(method: string, request: unknown, timeoutMs: number) =>
    new Promise<R>((resolve, reject) =>
      (client as any)[method](request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: R) =>
        err ? reject(err) : resolve(res)
      )
    )
  return {
    put: (key, value, timeoutMs = 10_000) => call("Put", { key: Buffer.from(key), value: Buffer.from(value) }, timeoutMs),
    range: (request, timeoutMs = 10_000) => call("Range", request, timeoutMs),
    close: () => client.close()
  }
}
