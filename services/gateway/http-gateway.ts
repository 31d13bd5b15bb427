/**
 * The client port's HTTP side, as etcd serves it next to gRPC (etcd embed/serve.go: cmux sends
 * HTTP/1 connections to its HTTP mux): the JSON gateway (`POST /v3/...`, ./json-gateway.ts),
 * `/health` (etcd's, with `?exclude=` and `?serializable=true`), `/livez`, `/readyz`, `/version`
 * and `/metrics`. ./client-tls.ts hands it the HTTP/1.x connections of the client port; this
 * module turns each JSON request into a call to the gateway's own gRPC server through a
 * private Unix socket (a @grpc/grpc-js client), and its answer back into JSON.
 *
 * Bounds: a request body is read up to the gRPC server's limit (--max-request-bytes + 512 KiB,
 * as etcd's grpcOverheadBytes); a longer one is refused with etcd's "request is too large"
 * (code 3). A stream's queued responses are bounded by HTTP's own flow control: a client that
 * does not read pauses the gRPC stream (grpc-js stops reading, HTTP/2 flow control pushes back).
 */
import * as grpc from "@grpc/grpc-js"
import * as http from "node:http"
import type { Duplex } from "node:stream"
import type protobuf from "protobufjs"
import { registry } from "../runtime/metrics.ts"
import { probeAnswer } from "../runtime/health.ts"
import type { EtcdHealth } from "./health.ts"
import { errorBody, httpStatusOf, JsonValueSplitter, resultLine, routeOf, streamErrorLine, encodeJsonResponse, decodeJsonRequest } from "./json-gateway.ts"
import type { BadRequest, JsonRoute } from "./json-gateway.ts"
import { httpKeepAliveTimeoutMs } from "./timeouts.ts"

/** What the HTTP side needs from the gateway. */
export interface HttpGatewayOptions {
  /** The gateway's gRPC server for the JSON gateway's calls: `unix:<path>`. */
  readonly grpcTarget: string
  /** The largest request etcd accepts (--max-request-bytes); bodies up to it + 512 KiB are read. */
  readonly maxRequestBytes: number
  /** `/version`'s answer. */
  readonly version: { readonly etcdserver: string; readonly etcdcluster: string }
  /** etcd's /health of the member (./health.ts etcdHealth). */
  readonly health: (query: { readonly excluded: ReadonlySet<string>; readonly serializable: boolean }) => Promise<EtcdHealth>
}

/** The HTTP side of the client port. */
export interface HttpGateway {
  /** Serves an HTTP/1.x connection of the client port. */
  connection(socket: Duplex): void
  /** Stops serving (open connections are closed) and closes the gRPC client. */
  close(): void
}

/** grpc-gateway's CORS headers, as etcd's gateway answers every request (`--cors=*`). */
const corsHeaders = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
  "access-control-allow-headers": "accept, content-type, authorization"
}

/** etcd's request-too-large error (ErrGRPCRequestTooLarge). */
const tooLarge = { code: grpc.status.INVALID_ARGUMENT, message: "etcdserver: request is too large" }

/** The call's metadata: `Authorization` as `authorization`, `Grpc-Metadata-<k>` as `<k>` (grpc-gateway's rules). */
const metadataOf = (req: http.IncomingMessage): grpc.Metadata => {
  const md = new grpc.Metadata()
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue
    const values = Array.isArray(value) ? value : [value]
    if (name === "authorization") for (const v of values) md.add("authorization", v)
    else if (name.startsWith("grpc-metadata-")) for (const v of values) md.add(name.slice("grpc-metadata-".length), v)
  }
  return md
}

/** Makes the HTTP side (see the module comment). */
export const makeHttpGateway = (options: HttpGatewayOptions): HttpGateway => {
  const client = new grpc.Client(options.grpcTarget, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1
  })
  const maxBodyBytes = options.maxRequestBytes + 512 * 1024
  const serializer = (route: JsonRoute) => (m: protobuf.Message) => Buffer.from(route.request.encode(m).finish())
  const deserializer = (route: JsonRoute) => (b: Buffer) => route.response.decode(b)

  const send = (res: http.ServerResponse, status: number, type: string, body: string) => {
    if (res.writableEnded) return
    if (res.headersSent) return res.end()
    res.writeHead(status, { ...corsHeaders, "content-type": type })
    res.end(body)
  }
  const sendError = (res: http.ServerResponse, code: number, message: string) =>
    send(res, httpStatusOf(code), "application/json", errorBody(code, message))

  /** Reads the whole body (up to the limit); undefined when it was too large (answered). */
  const readBody = (req: http.IncomingMessage, res: http.ServerResponse): Promise<string | undefined> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = []
      let size = 0
      let over = false
      req.on("data", (chunk: Buffer) => {
        size += chunk.length
        if (size > maxBodyBytes) over = true
        if (!over) chunks.push(chunk)
      })
      req.on("end", () => {
        if (!over) return resolve(Buffer.concat(chunks).toString("utf8"))
        sendError(res, tooLarge.code, tooLarge.message)
        resolve(undefined)
      })
      req.on("error", () => resolve(undefined))
    })

  /** The body's one request; undefined when it was refused (answered). */
  const readRequest = async (route: JsonRoute, req: http.IncomingMessage, res: http.ServerResponse): Promise<protobuf.Message | undefined> => {
    const body = await readBody(req, res)
    if (body === undefined) return undefined
    const request = decodeJsonRequest(route, body)
    if ((request as BadRequest)._tag !== "BadRequest") return request as protobuf.Message
    sendError(res, grpc.status.INVALID_ARGUMENT, (request as BadRequest).message)
    return undefined
  }

  const unary = async (route: JsonRoute, req: http.IncomingMessage, res: http.ServerResponse) => {
    const request = await readRequest(route, req, res)
    if (request === undefined) return
    const call = client.makeUnaryRequest(route.grpcPath, serializer(route), deserializer(route), request, metadataOf(req), {}, (err, reply) => {
      if (err !== null) return sendError(res, err.code, err.details)
      send(res, 200, "application/json", encodeJsonResponse(route, reply!))
    })
    res.on("close", () => {
      if (!res.writableFinished) call.cancel()
    })
  }

  /** Streams `call`'s responses as result lines; an error ends the stream with an error line. */
  const streamResponses = (route: JsonRoute, call: grpc.ClientReadableStream<protobuf.Message>, res: http.ServerResponse) => {
    let failed = false
    call.on("data", (m: protobuf.Message) => {
      if (res.writableEnded) return
      if (!res.headersSent) res.writeHead(200, { ...corsHeaders, "content-type": "application/json" })
      // A client that does not read holds the gRPC stream (flow control) instead of this buffer.
      if (!res.write(`${resultLine(route, m)}\n`)) {
        call.pause()
        res.once("drain", () => call.resume())
      }
    })
    call.on("error", (e: grpc.ServiceError) => {
      failed = true
      // Cancelled by the client's leaving, or answered already (a body that could not be read).
      if (res.writableEnded || (e.code === grpc.status.CANCELLED && res.destroyed)) return
      if (!res.headersSent) res.writeHead(httpStatusOf(e.code), { ...corsHeaders, "content-type": "application/json" })
      res.end(`${streamErrorLine(e.code, e.details)}\n`)
    })
    call.on("end", () => {
      if (failed || res.writableEnded) return
      if (!res.headersSent) res.writeHead(200, { ...corsHeaders, "content-type": "application/json" })
      res.end()
    })
    res.on("close", () => {
      if (!res.writableFinished) call.cancel()
    })
  }

  const serverStream = async (route: JsonRoute, req: http.IncomingMessage, res: http.ServerResponse) => {
    const request = await readRequest(route, req, res)
    if (request === undefined) return
    streamResponses(route, client.makeServerStreamRequest(route.grpcPath, serializer(route), deserializer(route), request, metadataOf(req), {}), res)
  }

  /**
   * A bidirectional stream, as grpc-gateway's: the body's JSON values are the client's messages.
   * The first one that cannot be read fails the request (code Unknown, HTTP 500, as etcd's
   * gateway); a later one ends the client's side, as the end of the body does, and the stream
   * goes on (a watch keeps watching).
   */
  const bidiStream = (route: JsonRoute, req: http.IncomingMessage, res: http.ServerResponse) => {
    const call = client.makeBidiStreamRequest(route.grpcPath, serializer(route), deserializer(route), metadataOf(req), {})
    streamResponses(route, call, res)
    const splitter = new JsonValueSplitter(maxBodyBytes)
    let sent = 0
    let sending = true
    const endSending = () => {
      sending = false
      call.end()
    }
    const unreadable = (message: string) => {
      if (sent > 0) return endSending()
      sending = false
      call.cancel()
      sendError(res, grpc.status.UNKNOWN, message)
    }
    req.setEncoding("utf8")
    req.on("data", (text: string) => {
      if (!sending) return
      let values: string[]
      try {
        values = splitter.push(text)
      } catch (e) {
        return unreadable((e as BadRequest).message)
      }
      for (const v of values) {
        const request = decodeJsonRequest(route, v)
        if ((request as BadRequest)._tag === "BadRequest") return unreadable((request as BadRequest).message)
        sent++
        call.write(request as protobuf.Message)
      }
    })
    // The end of the body is the end of the client's side (grpc-gateway's CloseSend).
    req.on("end", () => {
      if (!sending) return
      if (splitter.incomplete) return unreadable("unexpected EOF")
      endSending()
    })
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const route = routeOf(url.pathname)
    if (route !== undefined) {
      if (req.method !== "POST") return send(res, 405, "text/plain; charset=utf-8", "Method Not Allowed\n")
      if (route.kind === "unary") return void unary(route, req, res)
      if (route.kind === "server-stream") return void serverStream(route, req, res)
      return bidiStream(route, req, res)
    }
    const get = req.method === "GET" || req.method === "HEAD"
    switch (url.pathname) {
      case "/version":
        if (!get) break
        return send(res, 200, "application/json", JSON.stringify(options.version))
      case "/health":
        if (!get) break
        options.health({
          excluded: new Set(url.searchParams.getAll("exclude").flatMap((e) => e.split(","))),
          serializable: url.searchParams.get("serializable") === "true"
        }).then(
          (h) => send(res, h.health === "true" ? 200 : 503, "application/json", JSON.stringify(h)),
          (e) => send(res, 503, "application/json", JSON.stringify({ health: "false", reason: String(e) }))
        )
        return
      case "/livez":
      case "/readyz":
        if (!get) break
        probeAnswer(url.pathname === "/readyz", url.searchParams.has("verbose")).then((a) => send(res, a.status, "text/plain; charset=utf-8", a.body))
        return
      case "/metrics":
        if (!get) break
        registry.metrics().then((text) => send(res, 200, registry.contentType, text), (e) => send(res, 500, "text/plain", `${String(e)}\n`))
        return
      default:
        // Go's http.NotFound.
        return send(res, 404, "text/plain; charset=utf-8", "404 page not found\n")
    }
    send(res, 405, "text/plain; charset=utf-8", "Method Not Allowed\n")
  }

  // No time limit on receiving a request, as etcd's gateway server has none: the body of a
  // bidirectional stream (a watch's requests) stays open as long as the stream. (Node enforces
  // its request and headers timeouts only on a server that listens itself; this one is handed
  // its connections, and says so here for when that changes.)
  const server = http.createServer({ requestTimeout: 0 }, handler)
  server.keepAliveTimeout = httpKeepAliveTimeoutMs
  return {
    connection: (socket) => server.emit("connection", socket),
    close: () => {
      server.close()
      server.closeAllConnections()
      client.close()
    }
  }
}
