/**
 * The gateway's gRPC server: @grpc/grpc-js serving the .proto files in shared/proto (etcd's
 * wire names and numbers, ./service-definitions.ts), with handlers that return promises of wire
 * objects (./call-handlers.ts). Errors become gRPC statuses through the table in ./errors.ts.
 * This file composes the server: the definitions as served (Txn's depth guard, Watch's relayed
 * bytes, ./watch-sender.ts), the handlers, the health and reflection services, the bind.
 *
 * Message size: like etcd, the server accepts messages up to max-request-bytes + 512 KiB
 * (etcd's grpcOverheadBytes), so that a request a little over the limit reaches the handler and
 * gets etcd's "request is too large" rather than a transport error.
 */
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { ReflectionService } from "@grpc/reflection"
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check"
import { etcdProtoFiles } from "../../shared/protos.ts"
import { abortableCall, countedBidi, streaming, unary } from "./call-handlers.ts"
import type { AbortableHandler, BidiStreamHandler, CallerResolver, LeaderGate, ServerStreamHandler, UnaryHandler } from "./call-handlers.ts"
import { loadEtcdServices, loaderOptions, withDepthGuard } from "./service-definitions.ts"
import { watchCallInterceptor, withRelayedResponses } from "./watch-sender.ts"

/** Kept here for the modules that import it from the server (./backend-maintenance.ts). */
export { serverStream } from "./call-handlers.ts"

/** {@link loadEtcdServices} as the server uses them: Txn with the depth guard, Watch relaying bytes. */
const serverDefinitions = (): Record<string, { service: grpc.ServiceDefinition }> => {
  const definitions = loadEtcdServices()
  const { KV: kv, Watch: watch } = definitions
  return {
    ...definitions,
    ...(kv === undefined ? {} : { KV: { ...kv, service: withDepthGuard(kv.service) } }),
    ...(watch === undefined ? {} : { Watch: { ...watch, service: withRelayedResponses(watch.service) } })
  }
}

/** The handlers of each etcd service served, by service name (KV, Maintenance, ...) and method name. */
export type EtcdServiceHandlers = Record<string, Record<string, UnaryHandler | ServerStreamHandler | BidiStreamHandler | AbortableHandler>>

/** Limits of the client port's gRPC server. */
export interface GrpcServerLimits {
  /** Largest request accepted, bytes (etcd --max-request-bytes); gRPC's own limit is 512 KiB above it. */
  readonly maxRequestBytes: number
  /** Concurrent HTTP/2 streams per client connection (etcd 3.5 --max-concurrent-streams). */
  readonly maxConcurrentStreams: number
}

/**
 * Starts a gRPC server on `address` (host:port, plain text) serving `services`: a map from etcd
 * service name (KV, Maintenance, ...) to method handlers, plus grpc.health.v1.Health and server
 * reflection. With `caller`, every handler runs as the call's resolved caller (a call whose
 * caller does not resolve fails with that error). With `leader`, calls carrying etcd's
 * `hasleader` metadata are refused "etcdserver: no leader" while the member has none, and such
 * streams are ended that way when the leader stays lost (./leader.ts). Resolves with the server
 * once bound; rejects when the address cannot be bound. With `address` undefined nothing is
 * bound: connections come through `server.createConnectionInjector` (a TLS listener, ./client-tls.ts).
 */
export const startGrpcServer = async (
  address: string | undefined,
  services: EtcdServiceHandlers,
  limits: GrpcServerLimits,
  leader?: LeaderGate,
  caller?: CallerResolver
): Promise<grpc.Server> => {
  const definitions = serverDefinitions()
  const server = new grpc.Server({
    "grpc.max_receive_message_length": limits.maxRequestBytes + 512 * 1024,
    "grpc.max_send_message_length": 2 ** 31 - 1,
    "grpc.max_concurrent_streams": limits.maxConcurrentStreams,
    interceptors: [watchCallInterceptor]
  })
  for (const [name, methods] of Object.entries(services)) {
    const def = definitions[name]
    if (def === undefined) throw new Error(`no service ${name} in etcdserverpb`)
    const impl: grpc.UntypedServiceImplementation = {}
    for (const [method, handler] of Object.entries(methods)) {
      if (typeof handler !== "function" && handler.kind === "abortable") {
        const streamed = (def.service as Record<string, { responseStream?: boolean }>)[method]?.responseStream === true
        impl[method] = abortableCall(handler, streamed, name, method, leader, caller) as grpc.UntypedHandleCall
        continue
      }
      impl[method] = typeof handler === "function"
        ? unary(handler, name, method, leader, caller)
        : handler.kind === "bidi"
        ? countedBidi(handler.handle, name, method, leader, caller)
        : streaming(handler, name, method, leader, caller)
    }
    server.addService(def.service, impl)
  }
  // The standard gRPC health service (grpc.health.v1.Health, Check and Watch) for the whole
  // server (service ""): SERVING while the server serves, also without a leader, as etcd 3.4
  // answers (test/e2e/no-leader.test.ts; HTTP /health is the check that judges the leader); and
  // server reflection (v1 and v1alpha), so that tools like grpcurl list and call the services
  // without .proto files.
  new HealthImplementation({ "": "SERVING" }).addToServer(server)
  new ReflectionService(protoLoader.loadSync([...etcdProtoFiles, healthProtoPath], loaderOptions)).addToServer(server)
  if (address !== undefined) {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
    )
  }
  return server
}
