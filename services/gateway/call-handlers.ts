/**
 * The kinds of handler the gateway's services are written as (unary, server-streaming,
 * bidirectional, abortable), and their adaptation to grpc-js call handlers: each call is
 * observed (./call-observation.ts), run as its resolved caller (../runtime/auth-context.ts),
 * refused "etcdserver: no leader" when it requires a leader the member lacks (./leader.ts), and
 * ended with the gRPC status of its error (./errors.ts).
 *
 * What it is not: the server or its definitions (./server.ts, ./service-definitions.ts). Follows
 * etcd server/etcdserver/api/v3rpc/interceptor.go (the unary and stream interceptors,
 * monitorLeader) for require-leader; the metrics are go-grpc-prometheus's.
 */
import * as grpc from "@grpc/grpc-js"
import { defaultMaxTxnOps } from "../mvcc/core/validate.ts"
import { NoLeader, TooManyOps } from "../../shared/errors.ts"
import { toGrpcError } from "./errors.ts"
import { requireLeaderKey, requireLeaderValue } from "./leader.ts"
import type { Wire } from "./convert.ts"
import type { AuthInfo } from "../../shared/auth.ts"
import { invalidTokenAuthInfo, withAuthInfo } from "../runtime/auth-context.ts"
import { callMetrics, countHandled, observeCall } from "./call-observation.ts"
import { tooDeep } from "./service-definitions.ts"

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

/** The grpc-js handler of a server-streaming method (a rejection ends the stream with its status). */
export const streaming = (handler: ServerStreamHandler, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined): grpc.handleServerStreamingCall<Wire, Wire> => (call) => {
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

/** The grpc-js handler of an {@link AbortableHandler}: unary, or server-streaming when `streamed`. */
export const abortableCall = (handler: AbortableHandler, streamed: boolean, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined) =>
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

/** The grpc-js handler of a unary method; a request marked {@link tooDeep} is answered TooManyOps without running it. */
export const unary = (handler: UnaryHandler, service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined): grpc.handleUnaryCall<Wire, Wire> => (call, callback) => {
  const observed = observeCall(call, service, method, "unary")
  const request = call.request as Wire & { [tooDeep]?: true }
  const handled = gate !== undefined && !gate.hasLeader() && requiresLeader(call)
    ? () => Promise.reject(new NoLeader())
    : request[tooDeep] === true
    ? () => Promise.reject(new TooManyOps({ ops: defaultMaxTxnOps + 1, maxOps: defaultMaxTxnOps }))
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
export const countedBidi = (handle: BidiStreamHandler["handle"], service: string, method: string, gate: LeaderGate | undefined, caller: CallerResolver | undefined) => (call: grpc.ServerDuplexStream<Wire, Wire>) => {
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
