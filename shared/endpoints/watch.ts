/**
 * The watch endpoints: opening a session (on any replica through the queue group, or placed on
 * one), the per-session requests to the replica that holds it, flow control and close, each
 * replica's load for placement, and the responses relayed to a gateway process. Each
 * declaration is the single source of its subject, schemas, server and callers (see
 * ../endpoints.ts).
 */
import type * as Schema from "effect/Schema"
import * as S from "../schema.ts"
import type { FrameKind } from "../schema.ts"
import { any, pub, rr, server } from "./declare.ts"

/** watch.open: a new watch session, to one replica of the queue group. */
export const watchOpen = rr({
  name: "watch.open", subject: "natcd.{cluster}.watch.open",
  kind: "watch.open", request: S.WatchOpenBody, reply: "watch.open.reply", replySchema: S.WatchOpenReply,
  servers: [server("watch", [])], callers: [any("gateway")], queue: "watch",
  doc: "open a watch session on one replica"
})
const watchSessionEndpoint = <E extends string, Req, Rep>(endpoint: E, kind: FrameKind, request: Schema.Codec<Req, any>, reply: FrameKind, replySchema: Schema.Codec<Rep, any>, doc: string) =>
  rr({
    name: `watch.${endpoint}`, subject: `natcd.{cluster}.watch.{replica}.${endpoint}` as `natcd.{cluster}.watch.{replica}.${E}`,
    kind, request, reply, replySchema,
    servers: [server("watch", ["replica"])], callers: [any("gateway")], doc
  })
/**
 * watch.place: a new watch session on this replica, the one the gateway placed it on (the least
 * loaded it knows of, services/gateway/watch-placement.ts); same bodies as watch.open.
 */
export const watchPlace = watchSessionEndpoint("place", "watch.open", S.WatchOpenBody, "watch.open.reply", S.WatchOpenReply, "open a watch session on this replica, the least loaded the gateway knows of")
/** watch.create: add a watcher to a session. */
export const watchCreate = watchSessionEndpoint("create", "watch.create", S.WatchCreateBody, "watch.create.reply", S.WatchCtlReply, "add a watcher to a session")
/** watch.cancel: cancel a watcher. */
export const watchCancel = watchSessionEndpoint("cancel", "watch.cancel", S.WatchCancelBody, "watch.cancel.reply", S.WatchCtlReply, "cancel a watcher")
/** watch.progress: a progress notification request. */
export const watchProgress = watchSessionEndpoint("progress", "watch.progress", S.WatchProgressBody, "watch.progress.reply", S.WatchCtlReply, "request a progress notification")
/** watch.ping: which of the gateway's sessions the replica still holds. */
export const watchPing = watchSessionEndpoint("ping", "watch.ping", S.WatchPingBody, "watch.ping.reply", S.WatchPingReply, "which sessions the replica still holds")
/** watch.ack: flow control, the responses a gateway has delivered. */
export const watchAck = pub({
  name: "watch.ack", subject: "natcd.{cluster}.watch.{replica}.ack",
  kind: "watch.ack", request: S.WatchAckBody,
  servers: [server("watch", ["replica"])], callers: [any("gateway")],
  doc: "flow control: the responses a gateway delivered"
})
/** watch.close: close a session. */
export const watchClose = pub({
  name: "watch.close", subject: "natcd.{cluster}.watch.{replica}.close",
  kind: "watch.close", request: S.WatchCloseBody,
  servers: [server("watch", ["replica"])], callers: [any("gateway")],
  doc: "close a session"
})
/** watch.load: a replica's load, every {@link watchLoadEveryMs} ms, for the gateways' placement. */
export const watchLoad = pub({
  name: "watch.load", subject: "natcd.{cluster}.watch.{replica}.load",
  kind: "watch.load", request: S.WatchLoadBody,
  servers: [server("gateway", [])], callers: [{ role: "watch", self: ["replica"] }],
  doc: "a replica's load (sessions, unacknowledged bytes, draining), every second: gateways open new sessions on the least loaded"
})
/** The longest gap between two watch.load frames of a running replica, in ms. */
export const watchLoadEveryMs = 1000
/** gateway.watch: watch responses from the replicas to a gateway process. */
export const gatewayWatch = pub({
  name: "gateway.watch", subject: "natcd.{cluster}.{member}.gateway.watch.{instance}",
  kind: "watch.responses", request: S.WatchResponsesBody,
  servers: [server("gateway")], callers: [any("watch")],
  doc: "watch responses from the replicas to that gateway process: etcd WatchResponses protobuf-encoded and gRPC-framed, relayed as they are (shared/watch-relay.ts)"
})
