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
import type * as http2 from "node:http2"
import * as protoLoader from "@grpc/proto-loader"
import { ReflectionService } from "@grpc/reflection"
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check"
import { etcdProtoFiles, protoDir } from "../../shared/protos.ts"
import protobuf from "protobufjs"
import { defaultMaxTxnOps } from "../mvcc/core/validate.ts"
import { toGrpcError } from "./errors.ts"
import { requireLeaderKey, requireLeaderValue } from "./leader.ts"
import type { Wire } from "./convert.ts"
import { counter, histogram, latencyBuckets } from "../runtime/metrics.ts"
import { endSpan, requestContext, spanTraceparent, startRootSpan } from "../runtime/tracing.ts"
import type { ActiveSpan } from "../runtime/tracing.ts"
import type { AuthInfo } from "../../shared/auth.ts"
import { invalidTokenAuthInfo, withAuthInfo } from "../runtime/auth-context.ts"

/** The response metadata key carrying a request's trace id (initial metadata, sent first). */
export const traceIdMetadataKey = "natcd-trace-id"

/** Fully qualified gRPC service names, as go-grpc-prometheus labels them. */
const qualifiedService: Record<string, string> = { Lock: "v3lockpb.Lock", Election: "v3electionpb.Election" }
const grpcServiceName = (name: string): string => qualifiedService[name] ?? `etcdserverpb.${name}`

const grpcCodeNames = new Map<number, string>(
  Object.entries(grpc.status).filter(([, v]) => typeof v === "number").map(([k, v]) => [v as number, k])
)

/** go-grpc-prometheus's server metrics, with its names and labels. */
const grpcStarted = () =>
  counter<"grpc_type" | "grpc_service" | "grpc_method">({
    name: "grpc_server_started_total",
    help: "Total number of RPCs started on the server.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"]
  })
const grpcHandled = () =>
  counter<"grpc_type" | "grpc_service" | "grpc_method" | "grpc_code">({
    name: "grpc_server_handled_total",
    help: "Total number of RPCs completed on the server, regardless of success or failure.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"]
  })
const grpcHandling = () =>
  histogram<"grpc_type" | "grpc_service" | "grpc_method">({
    name: "grpc_server_handling_seconds",
    help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    labelNames: ["grpc_type", "grpc_service", "grpc_method"],
    buckets: latencyBuckets
  })

/**
 * The go-grpc-prometheus children of one (type, service, method): looked up once, not per call
 * (a label lookup hashes the label values).
 */
interface CallMetrics {
  readonly started: ReturnType<ReturnType<typeof grpcStarted>["labels"]>
  readonly handling: ReturnType<ReturnType<typeof grpcHandling>["labels"]>
  readonly handled: Map<string, ReturnType<ReturnType<typeof grpcHandled>["labels"]>>
  readonly grpcService: string
}
const callMetricsCache = new Map<string, CallMetrics>()
const callMetrics = (type: string, service: string, method: string): CallMetrics => {
  const key = `${type}/${service}/${method}`
  let m = callMetricsCache.get(key)
  if (m === undefined) {
    const grpcService = grpcServiceName(service)
    m = { started: grpcStarted().labels(type, grpcService, method), handling: grpcHandling().labels(type, grpcService, method), handled: new Map(), grpcService }
    callMetricsCache.set(key, m)
  }
  return m
}
const countHandled = (m: CallMetrics, type: string, method: string, code: string): void => {
  let child = m.handled.get(code)
  if (child === undefined) {
    child = grpcHandled().labels(type, m.grpcService, method, code)
    m.handled.set(code, child)
  }
  child.inc()
}

/**
 * One gRPC call's observability: its root span (the request's trace, sampled or not by
 * ../runtime/tracing.ts), the trace id sent to the client as initial metadata
 * ({@link traceIdMetadataKey}), and the go-grpc-prometheus counters. `run` runs the handler
 * inside the request context, so every frame it sends carries the trace.
 */
interface CallObservation {
  readonly span: ActiveSpan | undefined
  run<A>(f: () => A): A
  finish(error?: unknown): void
}

const observeCall = (
  call: { sendMetadata(md: grpc.Metadata): void },
  service: string,
  method: string,
  type: "unary" | "server_stream"
): CallObservation => {
  const metrics = callMetrics(type, service, method)
  metrics.started.inc()
  const startedAt = performance.now()
  const span = startRootSpan(`${service}.${method}`, { "rpc.service": metrics.grpcService, "rpc.method": method })
  if (span !== undefined) {
    const md = new grpc.Metadata()
    md.set(traceIdMetadataKey, span.traceId)
    try {
      call.sendMetadata(md)
    } catch {
      // The call ended already.
    }
  }
  const context = span === undefined ? undefined : { span, traceparent: spanTraceparent(span) }
  let done = false
  return {
    span,
    run: (f) => (context === undefined ? f() : requestContext.run(context, f)),
    finish: (error) => {
      if (done) return
      done = true
      const code = error === undefined ? "OK" : grpcCodeNames.get(toGrpcError(error).code) ?? "Unknown"
      countHandled(metrics, type, method, code)
      metrics.handling.observe((performance.now() - startedAt) / 1000)
      endSpan(span, { "rpc.grpc.status_code": code }, error === undefined ? undefined : toGrpcError(error).details)
    }
  }
}


/**
 * The deepest message nesting decoded or encoded, in protobuf message levels (protobufjs's
 * default is protoc's 100, which a Txn nested 49 deep already exceeds: each level is a RequestOp
 * holding a TxnRequest). etcd decodes any depth; a valid txn is at most `--max-txn-ops` (128)
 * deep, since every level spends at least one op of its parent's budget (etcd
 * checkTxnRequest), so its request and its response fit in 2 × 128 levels plus a few. Deeper
 * requests are answered "too many operations in txn request", as etcd answers them
 * ({@link tooDeep}). Set on the one protobufjs instance that @grpc/proto-loader uses.
 */
export const maxMessageDepth = 4 * defaultMaxTxnOps
protobuf.util.recursionLimit = maxMessageDepth
protobuf.Reader.recursionLimit = maxMessageDepth

/**
 * Marks a request that nests deeper than {@link maxMessageDepth}: the Txn deserializer returns
 * it instead of failing, so that the call is answered TooManyOps (as etcd, whose budget check
 * fails first for any txn this deep) rather than gRPC's "Error deserializing request".
 */
export const tooDeep: unique symbol = Symbol("natcd.tooDeep")

/** protobufjs's errors for nesting past its limit ("max depth exceeded", "maximum nesting depth exceeded"), or a stack overflow. */
const isTooDeepError = (e: unknown): boolean => e instanceof RangeError || (e instanceof Error && /depth exceeded/.test(e.message))

/** Txn's definition with a deserializer that returns {@link tooDeep} for over-deep requests. */
const withDepthGuard = (service: grpc.ServiceDefinition): grpc.ServiceDefinition => {
  const txn = (service as Record<string, grpc.MethodDefinition<Wire, Wire>>).Txn
  if (txn === undefined) return service
  const decode = txn.requestDeserialize
  return {
    ...service,
    Txn: {
      ...txn,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes)
        } catch (e) {
          if (isTooDeepError(e)) return { [tooDeep]: true } as unknown as Wire
          throw e
        }
      }
    }
  }
}

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
 * Who a call is made by (./auth.ts resolve): resolved before its handler runs, which then runs
 * with it as the current auth info (../runtime/auth-context.ts). Rejects (InvalidAuthToken) to
 * fail the call.
 */
export type CallerResolver = (call: { readonly metadata: grpc.Metadata }) => Promise<AuthInfo>

/** Runs `f` as the caller of `call` (no resolver: as nobody, i.e. unauthenticated). */
const asCaller = <A>(resolver: CallerResolver | undefined, call: { readonly metadata: grpc.Metadata }, f: () => Promise<A>): Promise<A> =>
  resolver === undefined ? f() : resolver(call).then((info) => withAuthInfo(info, f))

/**
 * Loads etcd's service definitions: package etcdserverpb (KV, Watch, Lease, Cluster,
 * Maintenance), plus the Lock service of package v3lockpb and the Election service of package
 * v3electionpb under the names `Lock` and `Election`.
 */
export const loadEtcdServices = () => {
  const definition = protoLoader.loadSync([...etcdProtoFiles], loaderOptions)
  const pkg = grpc.loadPackageDefinition(definition) as any
  return { ...pkg.etcdserverpb, Lock: pkg.v3lockpb.Lock, Election: pkg.v3electionpb.Election } as Record<string, { service: grpc.ServiceDefinition }>
}

/**
 * Watch's definition whose response serializer relays bytes: a Watch response handed to the
 * stream as a Uint8Array is a WatchResponse the watch replica already encoded
 * (services/watch/encode.ts), sent as it is; wire objects (the gateway's own responses) are
 * encoded as usual.
 */
const withRelayedResponses = (service: grpc.ServiceDefinition): grpc.ServiceDefinition => {
  const watch = (service as Record<string, grpc.MethodDefinition<Wire, Wire>>).Watch
  if (watch === undefined) return service
  const encode = watch.responseSerialize
  return {
    ...service,
    Watch: {
      ...watch,
      responseSerialize: (value: Wire | Uint8Array): Buffer =>
        value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : encode(value)
    }
  }
}

/**
 * The gRPC call under each Watch stream, by the stream's metadata object (the handler's
 * `call.metadata`), recorded by {@link watchCallInterceptor}.
 */
const watchCalls = new WeakMap<grpc.Metadata, grpc.ServerInterceptingCallInterface>()

/** The full path of etcd's Watch method. */
const watchPath = "/etcdserverpb.Watch/Watch"

/**
 * A server interceptor (grpc-js's public interceptor API) that records the call under each
 * Watch stream, so that {@link watchSender} can hand responses to it without the stream
 * object in between. Other methods pass untouched.
 */
const watchCallInterceptor: grpc.ServerInterceptor = (method, call) => {
  // grpc-js only uses the interface of what an interceptor returns (it chains them through
  // it); other methods get their call back unwrapped, adding nothing to unary calls.
  if (method.path !== watchPath) return call as grpc.ServerInterceptingCall
  return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) =>
    next(new grpc.ServerListenerBuilder().withOnReceiveMetadata((metadata, pass) => {
      watchCalls.set(metadata, call)
      pass(metadata)
    }).build())
  ).build())
}

/**
 * How a Watch stream's responses are written: all of a stream's responses take one path, or
 * their order is lost. `sent` is called once HTTP/2 took the bytes (within the client's
 * flow-control window).
 */
export interface WatchSender {
  /** One response: a wire object (encoded here) or a WatchResponse's protobuf bytes (sent as they are). */
  message(response: Wire | Uint8Array, sent: () => void): void
  /**
   * Responses already in gRPC's length-prefixed framing (per message: a zero byte, the length
   * as 4 big-endian bytes, the protobuf bytes), written as they are in one HTTP/2 write.
   * Undefined when grpc-js does not keep the call's HTTP/2 stream where this module finds it:
   * responses then go one at a time through `message`.
   */
  readonly framed: ((bytes: Uint8Array, sent: () => void) => void) | undefined
}

/** The HTTP/2 stream under a grpc-js call, when grpc-js keeps it where 1.14 does. */
const http2StreamOf = (call: grpc.ServerInterceptingCallInterface): http2.ServerHttp2Stream | undefined => {
  const stream = (call as unknown as { readonly stream?: Partial<http2.ServerHttp2Stream> }).stream
  // node:http2 exports no stream class to test against: a server stream is what responds and writes.
  return typeof stream?.respond === "function" && typeof stream.write === "function" && typeof stream.session === "object"
    ? (stream as http2.ServerHttp2Stream)
    : undefined
}

/**
 * The {@link WatchSender} of a Watch call recorded by {@link watchCallInterceptor}; undefined
 * otherwise (the caller then writes through the stream object).
 *
 * grpc-js's duplex stream object writes one message at a time, each waiting for the previous
 * one's completion; written to the call, a delivery's responses are queued at once. Framed
 * responses go further: they are written to the call's HTTP/2 stream as they are, one write for
 * all of them, after grpc-js sent the response headers (sendMetadata, idempotent); grpc-js
 * writes its own messages and the trailers to the same stream, so the order holds. That HTTP/2
 * stream is a private field of grpc-js's call (1.14, the pinned version); when it is not there,
 * `framed` is undefined (a test checks it is defined, so that an upgrade that moves the field
 * is noticed).
 */
export const watchSender = (call: { readonly metadata: grpc.Metadata }): WatchSender | undefined => {
  const base = watchCalls.get(call.metadata)
  if (base === undefined) return undefined
  const message = (response: Wire | Uint8Array, sent: () => void) => base.sendMessage(response, sent)
  const stream = http2StreamOf(base)
  if (stream === undefined) return { message, framed: undefined }
  let headersSent = false
  return {
    message,
    framed: (bytes, sent) => {
      if (stream.destroyed || stream.closed) return
      if (!headersSent) {
        base.sendMetadata(new grpc.Metadata())
        headersSent = true
      }
      stream.write(bytes, (error) => {
        if (error === undefined || error === null) sent()
      })
    }
  }
}

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

/**
 * What the server needs to honour etcd's require-leader metadata (./leader.ts LeaderMonitor):
 * whether the member has a leader now, and a way to have a stream cancelled when the leader
 * stays lost.
 */
export interface LeaderGate {
  hasLeader(): boolean
  watchStream(cancel: () => void): () => void
}

const noLeader = toGrpcError({ _tag: "NoLeader" })

/** True when a call carries etcd's `hasleader` metadata (clientv3.WithRequireLeader). */
const requiresLeader = (call: { readonly metadata: grpc.Metadata }): boolean => call.metadata.get(requireLeaderKey)[0] === requireLeaderValue

/** An error object that grpc-js ends a stream with, carrying code and details. */
const streamError = (e: { readonly code: grpc.status; readonly details: string }) => Object.assign(new Error(e.details), { code: e.code, details: e.details })

/**
 * For a streaming call with the require-leader metadata: false (and the call ended "etcdserver:
 * no leader") when the member has no leader now; otherwise true, with the call registered to be
 * ended that way once the leader stays lost (etcd's stream interceptor and monitorLeader).
 */
const admitStream = (gate: LeaderGate | undefined, call: grpc.ServerWritableStream<Wire, Wire> | grpc.ServerDuplexStream<Wire, Wire>): boolean => {
  if (gate === undefined || !requiresLeader(call)) return true
  // grpc-js turns an 'error' event into the call's status and ends the call (destroy would not send it).
  if (!gate.hasLeader()) {
    call.emit("error", streamError(noLeader))
    return false
  }
  const unregister = gate.watchStream(() => call.emit("error", streamError(noLeader)))
  call.once("close", unregister)
  call.once("cancelled", unregister)
  call.once("error", unregister)
  return true
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

const streaming = (handler: ServerStreamHandler, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined): grpc.handleServerStreamingCall<Wire, Wire> => (call) => {
  if (!admitStream(gate, call)) return
  const observed = observeCall(call, service, method, "server_stream")
  const write = (response: Wire) =>
    new Promise<void>((resolve) => {
      if (call.write(response)) resolve()
      else call.once("drain", () => resolve())
    })
  observed.run(() => asCaller(caller, call, () => handler.handle(call.request, write))).then(
    () => {
      observed.finish()
      call.end()
    },
    (error) => {
      observed.finish(error)
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

const abortableCall = (handler: AbortableHandler, streamed: boolean, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined) =>
  (call: grpc.ServerUnaryCall<Wire, Wire> | grpc.ServerWritableStream<Wire, Wire>, callback?: grpc.sendUnaryData<Wire>) => {
    if (streamed && !admitStream(gate, call as grpc.ServerWritableStream<Wire, Wire>)) return
    if (!streamed && gate !== undefined && !gate.hasLeader() && requiresLeader(call)) {
      callback!({ code: noLeader.code, details: noLeader.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)
      return
    }
    const observed = observeCall(call, service, method, streamed ? "server_stream" : "unary")
    const controller = new AbortController()
    call.on("cancelled", () => controller.abort())
    call.on("close", () => controller.abort())
    const fail = (error: unknown) => {
      observed.finish(error)
      const e = toGrpcError(error)
      if (callback !== undefined) callback({ code: e.code, details: e.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)
      else (call as grpc.ServerWritableStream<Wire, Wire>).destroy(Object.assign(new Error(e.details), { code: e.code, details: e.details }))
    }
    if (!streamed) {
      observed.run(() => asCaller(caller, call, () => handler.handle(call.request, controller.signal))).then((response) => {
        observed.finish()
        callback!(null, response as Wire)
      }, fail)
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
    observed.run(() => asCaller(caller, call, () => handler.handle(call.request, controller.signal, write))).then(() => {
      observed.finish()
      stream.end()
    }, fail)
  }

const unary = (handler: UnaryHandler, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined): grpc.handleUnaryCall<Wire, Wire> => (call, callback) => {
  const observed = observeCall(call, service, method, "unary")
  const request = call.request as Wire & { [tooDeep]?: true }
  const handled = gate !== undefined && !gate.hasLeader() && requiresLeader(call)
    ? () => Promise.reject({ _tag: "NoLeader" })
    : request[tooDeep] === true
    ? () => Promise.reject({ _tag: "TooManyOps", ops: defaultMaxTxnOps + 1, maxOps: defaultMaxTxnOps })
    : () => asCaller(caller, call, () => handler(request))
  observed.run(handled).then(
    (response) => {
      observed.finish()
      callback(null, response)
    },
    (error) => {
      observed.finish(error)
      const e = toGrpcError(error)
      callback({ code: e.code, details: e.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)
    }
  )
}

/** A bidi handler counted in grpc_server_started_total / handled_total (no trace: a stream is many requests). */
const countedBidi = (handle: BidiStreamHandler["handle"], service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined) => (call: grpc.ServerDuplexStream<Wire, Wire>) => {
  if (!admitStream(gate, call)) return
  const metrics = callMetrics("bidi_stream", service, method)
  metrics.started.inc()
  let counted = false
  const done = (code: string) => {
    if (counted) return
    counted = true
    countHandled(metrics, "bidi_stream", method, code)
  }
  call.once("finish", () => done("OK"))
  call.once("cancelled", () => done("Canceled"))
  call.once("error", () => done("Unknown"))
  // The stream's caller is resolved once, from the metadata it opened with (as etcd's stream
  // context); requests that arrive meanwhile wait in the paused stream.
  if (caller === undefined) return handle(call)
  caller(call).then(
    (info) => {
      // The client may have gone while its caller was resolved: nothing to serve.
      if (!call.cancelled) withAuthInfo(info, () => handle(call))
    },
    (error) => {
      if (call.cancelled) return
      // etcd keeps such a stream open (see invalidTokenAuthInfo); other failures end it.
      if ((error as { _tag?: string; code?: string })?._tag === "AuthError" && (error as { code?: string }).code === "InvalidAuthToken") {
        withAuthInfo(invalidTokenAuthInfo, () => handle(call))
      } else {
        call.emit("error", streamError(toGrpcError(error)))
      }
    }
  )
}

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
  services: Record<string, Record<string, UnaryHandler | ServerStreamHandler | BidiStreamHandler | AbortableHandler>>,
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
