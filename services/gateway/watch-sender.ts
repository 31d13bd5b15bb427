/**
 * How the responses of a Watch stream reach the client's HTTP/2 stream. A WatchResponse the
 * watch replica already encoded (services/watch/encode.ts) is relayed as its bytes: through
 * Watch's response serializer one message at a time, or, framed by the replica in gRPC's
 * length-prefixed framing, written to the call's HTTP/2 stream in one write for a run of them.
 * A server interceptor records the gRPC call under each Watch stream so that
 * {@link watchSender} can write to it without the stream object in between.
 *
 * What it is not: the Watch service itself (./watch.ts and ./watch-stream.ts decide what to
 * send); this is the path the bytes take.
 */
import * as grpc from "@grpc/grpc-js"
import type * as http2 from "node:http2"
import type { Wire } from "./convert.ts"
import { withMethod } from "./service-definitions.ts"

/**
 * Watch's definition whose response serializer relays bytes: a Watch response handed to the
 * stream as a Uint8Array is a WatchResponse the watch replica already encoded
 * (services/watch/encode.ts), sent as it is; wire objects (the gateway's own responses) are
 * encoded as usual.
 */
export const withRelayedResponses = (service: grpc.ServiceDefinition): grpc.ServiceDefinition =>
  withMethod(service, "Watch", (watch) => {
    const encode = watch.responseSerialize
    return {
      ...watch,
      responseSerialize: (value: Wire | Uint8Array): Buffer =>
        value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : encode(value)
    }
  })

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
export const watchCallInterceptor: grpc.ServerInterceptor = (method, call) => {
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
