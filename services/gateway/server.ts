/**
 * The gateway's gRPC server: @grpc/grpc-js serving the .proto files in ./proto (etcd's wire
 * names and numbers), with handlers that return promises of wire objects. Errors become gRPC
 * statuses through the table in ./errors.ts.
 *
 * Message size: like etcd, the server accepts messages up to max-request-bytes + 512 KiB
 * (etcd's grpcOverheadBytes), so that a request a little over the limit reaches the handler and
 * gets etcd's "request is too large" rather than a transport error.
 */
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { fileURLToPath } from "node:url"
import { toGrpcError } from "./errors.ts"
import type { Wire } from "./convert.ts"

const protoDir = fileURLToPath(new URL("./proto/", import.meta.url))

/** proto-loader options: etcd's field names as written, int64 as decimal strings, enums by name. */
const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir]
}

/**
 * Loads etcd's service definitions: package etcdserverpb (KV, Watch, Lease, Cluster,
 * Maintenance), plus the Lock service of package v3lockpb and the Election service of package
 * v3electionpb under the names `Lock` and `Election`.
 */
export const loadEtcdServices = () => {
  const definition = protoLoader.loadSync(["etcdserverpb/rpc.proto", "v3lockpb/v3lock.proto", "v3electionpb/v3election.proto"], loaderOptions)
  const pkg = grpc.loadPackageDefinition(definition) as any
  return { ...pkg.etcdserverpb, Lock: pkg.v3lockpb.Lock, Election: pkg.v3electionpb.Election } as Record<string, { service: grpc.ServiceDefinition }>
}

/** A unary handler: wire request in, promise of wire response out (rejections are errors). */
export type UnaryHandler = (request: Wire) => Promise<Wire>

/**
 * A server-streaming handler: writes responses with `write` (which resolves once the stream
 * accepted more, for backpressure) and resolves when done; a rejection ends the stream with
 * that error.
 */
export interface ServerStreamHandler {
  readonly kind: "serverStream"
  readonly handle: (request: Wire, write: (response: Wire) => Promise<void>) => Promise<void>
}

/** Marks `handle` as a server-streaming method. */
export const serverStream = (handle: ServerStreamHandler["handle"]): ServerStreamHandler => ({ kind: "serverStream", handle })

const streaming = (handler: ServerStreamHandler): grpc.handleServerStreamingCall<Wire, Wire> => (call) => {
  const write = (response: Wire) =>
    new Promise<void>((resolve) => {
      if (call.write(response)) resolve()
      else call.once("drain", () => resolve())
    })
  handler.handle(call.request, write).then(
    () => call.end(),
    (error) => {
      const e = toGrpcError(error)
      call.destroy(Object.assign(new Error(e.details), { code: e.code, details: e.details }))
    }
  )
}

/**
 * A bidirectional-streaming handler (etcd's Watch): it owns the call, a Node duplex stream of
 * wire objects; it reads requests from its 'data' events, writes responses with `write`
 * (whose return value and 'drain' event are the client's backpressure), and learns of the end
 * from 'cancelled', 'error' or 'close'.
 */
export interface BidiStreamHandler {
  readonly kind: "bidi"
  readonly handle: (call: grpc.ServerDuplexStream<Wire, Wire>) => void
}

/** Marks `handle` as a bidirectional-streaming method. */
export const bidiStream = (handle: BidiStreamHandler["handle"]): BidiStreamHandler => ({ kind: "bidi", handle })

/**
 * A unary or server-streaming handler that learns when the client goes away: `signal` aborts
 * when the call is cancelled (client gone, deadline passed) or has ended. For methods that wait
 * (v3lock Lock, v3election Campaign and Observe), which etcd abandons with the call's context.
 * `write` is undefined for a unary method, whose result is the promise's value.
 */
export interface AbortableHandler {
  readonly kind: "abortable"
  readonly handle: (request: Wire, signal: AbortSignal, write?: (response: Wire) => Promise<void>) => Promise<Wire | void>
}

/** Marks `handle` as an {@link AbortableHandler}. */
export const abortable = (handle: AbortableHandler["handle"]): AbortableHandler => ({ kind: "abortable", handle })

const abortableCall = (handler: AbortableHandler, streamed: boolean) =>
  (call: grpc.ServerUnaryCall<Wire, Wire> | grpc.ServerWritableStream<Wire, Wire>, callback?: grpc.sendUnaryData<Wire>) => {
    const controller = new AbortController()
    call.on("cancelled", () => controller.abort())
    call.on("close", () => controller.abort())
    const fail = (error: unknown) => {
      const e = toGrpcError(error)
      if (callback !== undefined) callback({ code: e.code, details: e.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)
      else (call as grpc.ServerWritableStream<Wire, Wire>).destroy(Object.assign(new Error(e.details), { code: e.code, details: e.details }))
    }
    if (!streamed) {
      handler.handle(call.request, controller.signal).then((response) => callback!(null, response as Wire), fail)
      return
    }
    const stream = call as grpc.ServerWritableStream<Wire, Wire>
    const write = (response: Wire) =>
      new Promise<void>((resolve) => {
        if (controller.signal.aborted) return resolve()
        if (stream.write(response)) resolve()
        else {
          stream.once("drain", () => resolve())
          controller.signal.addEventListener("abort", () => resolve(), { once: true })
        }
      })
    handler.handle(call.request, controller.signal, write).then(() => stream.end(), fail)
  }

const unary = (handler: UnaryHandler): grpc.handleUnaryCall<Wire, Wire> => (call, callback) => {
  handler(call.request).then(
    (response) => callback(null, response),
    (error) => {
      const e = toGrpcError(error)
      callback({ code: e.code, details: e.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)
    }
  )
}

/**
 * Starts a gRPC server on `address` (host:port) serving `services`: a map from etcd service name
 * (KV, Maintenance, ...) to method handlers. Resolves with the server once bound; rejects when
 * the address cannot be bound.
 */
export const startGrpcServer = async (
  address: string,
  services: Record<string, Record<string, UnaryHandler | ServerStreamHandler | BidiStreamHandler | AbortableHandler>>,
  maxRequestBytes: number
): Promise<grpc.Server> => {
  const definitions = loadEtcdServices()
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxRequestBytes + 512 * 1024,
    "grpc.max_send_message_length": 2 ** 31 - 1
  })
  for (const [name, methods] of Object.entries(services)) {
    const def = definitions[name]
    if (def === undefined) throw new Error(`no service ${name} in etcdserverpb`)
    const impl: grpc.UntypedServiceImplementation = {}
    for (const [method, handler] of Object.entries(methods)) {
      if (typeof handler !== "function" && handler.kind === "abortable") {
        const streamed = (def.service as Record<string, { responseStream?: boolean }>)[method]?.responseStream === true
        impl[method] = abortableCall(handler, streamed) as grpc.UntypedHandleCall
        continue
      }
      impl[method] = typeof handler === "function" ? unary(handler) : handler.kind === "bidi" ? handler.handle : streaming(handler)
    }
    server.addService(def.service, impl)
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
  )
  return server
}
