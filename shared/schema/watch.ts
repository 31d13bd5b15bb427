/**
 * Schemas of watch: the committed event stream every member's mvcc service publishes to the
 * watch replicas (mvcc.events), history catch-up (mvcc.history), the watch sessions between
 * gateways and watch replicas (open/place, create, cancel, progress, ping, ack, close, load) and
 * the responses relayed to a gateway (services/watch, services/mvcc/events.ts,
 * shared/watch-relay.ts). Events follow etcd mvccpb.Event and mvccpb.KeyValue.
 */
import * as Schema from "effect/Schema"
import { Bytes, Int, okOrErr, opt, U64 } from "./codec.ts"

/** A key-value pair as events carry it (etcd mvccpb.KeyValue). */
export const EventKeyValue = Schema.Struct({
  key: Bytes,
  createRevision: Int,
  modRevision: Int,
  version: Int,
  value: Bytes,
  lease: U64
})

/** One key change (etcd mvccpb.Event); `prevKv` only where the sender filled it. */
export const WatchEvent = Schema.Struct({
  type: Schema.Literals(["PUT", "DELETE"]),
  kv: EventKeyValue,
  prevKv: opt(EventKeyValue)
})
export type WatchEvent = typeof WatchEvent.Type

/** The events of one main revision (one write request), in sub-revision order. */
export const RevisionEvents = Schema.Struct({ rev: Int, events: Schema.Array(WatchEvent) })
export type RevisionEvents = typeof RevisionEvents.Type

/**
 * The `revs` payload of {@link MvccEventsBody} and {@link HistoryReply}: contiguous revisions in
 * order, msgpack-packed on their own so that a receiver that already has them (a watch replica
 * gets every member's copy) skips decoding them.
 */
export const PackedRevisions = Schema.Array(RevisionEvents)

/**
 * mvcc.events (publish): the revisions `fromRev`..`head` one applied batch produced, with
 * `prevKv` filled for every event that replaced or deleted a version. A heartbeat (sent when
 * idle) has no revisions and `fromRev` = `head` + 1. `compactRev` is the store's compact
 * revision (-1 before the first compaction), `term` the raft term of the last applied batch.
 */
export const MvccEventsBody = Schema.Struct({
  member: Schema.String,
  term: Int,
  head: Int,
  compactRev: Int,
  fromRev: Int,
  revs: Bytes
})

/**
 * mvcc.history: the revisions `fromRev`..`toRev` (inclusive) read from the backend, whole
 * revisions only, stopping after the first revision that brings the payload to `maxBytes`.
 * With `prevKv` each non-create event carries the version before it (etcd fills it the same
 * way, by a range at mod_revision - 1). Error: Compacted when `fromRev` < compact revision.
 */
export const HistoryBody = Schema.Struct({ fromRev: Int, toRev: Int, maxBytes: Int, prevKv: Schema.Boolean })
/** `toRev`: the last revision included (fromRev - 1 when none); `head`: the store revision. */
export const HistoryReply = okOrErr(Schema.Struct({ head: Int, compactRev: Int, term: Int, toRev: Int, revs: Bytes }))

/**
 * watch.open (queue group): gateway asks some replica to hold watch session `session`, whose
 * responses go to subject `gateway`. Idempotent per session id. `windowBytes`: the most
 * unacknowledged response bytes the gateway wants in flight for it (its own budget shared by
 * its streams). `clusterId` and `memberId`: the ids the responses' headers carry (the gateway's
 * member); `maxRequestBytes`: the fragment limit of the stream (the gateway's --max-request-bytes).
 */
export const WatchOpenBody = Schema.Struct({
  session: Schema.String,
  gateway: Schema.String,
  windowBytes: opt(Int),
  clusterId: opt(U64),
  memberId: opt(U64),
  maxRequestBytes: opt(Int)
})
export const WatchOpenReply = okOrErr(Schema.Struct({ replica: Schema.String, head: Int }))

/**
 * watch.create: a watcher with the gateway-assigned id `watchId` (unique in its session).
 * `rangeEnd` absent: the single key; empty: every key >= key; else [key, rangeEnd).
 * `startRevision` 0: from the replica's head + 1. Idempotent per (session, watchId).
 */
export const WatchCreateBody = Schema.Struct({
  session: Schema.String,
  watchId: Int,
  key: Bytes,
  rangeEnd: opt(Bytes),
  startRevision: Int,
  prevKv: Schema.Boolean,
  noPut: Schema.Boolean,
  noDelete: Schema.Boolean,
  progressNotify: Schema.Boolean,
  fragment: opt(Schema.Boolean)
})
/** watch.cancel: remove watcher `watchId` of `session` (its canceled response follows on the session). */
export const WatchCancelBody = Schema.Struct({ session: Schema.String, watchId: Int })
/** watch.progress: a progress request for every watcher of `session`. */
export const WatchProgressBody = Schema.Struct({ session: Schema.String })
/** watch.close: the gateway's stream ended; drop the session. */
export const WatchCloseBody = Schema.Struct({ session: Schema.String })
/** Reply of create, cancel, progress: `unknown` when the replica does not hold the session. */
export const WatchCtlReply = okOrErr(Schema.Struct({ known: Schema.Boolean }))
/**
 * watch.ack (publish): per session, the gateway has written every response message up to
 * `seq` to its client. A gateway sends one per replica per event-loop turn, for every session
 * on that replica that took messages in the turn.
 */
export const WatchAckBody = Schema.Struct({ acks: Schema.Array(Schema.Struct({ session: Schema.String, seq: Int })) })
/** watch.ping: the sessions gateway `gateway` holds on this replica, with their acked seqs and windows (bytes). */
export const WatchPingBody = Schema.Struct({
  gateway: Schema.String,
  sessions: Schema.Array(Schema.Struct({ session: Schema.String, acked: Int, windowBytes: opt(Int) }))
})
/**
 * The pinged sessions the replica does not hold (lost or never opened); `draining` once the
 * replica is handing its sessions over (it is stopping): the gateway moves them elsewhere.
 */
export const WatchPingReply = Schema.Struct({ unknown: Schema.Array(Schema.String), draining: opt(Schema.Boolean) })
/**
 * watch.load (publish, every second and at once when it starts or stops taking sessions): the
 * load of replica `replica` (the subject's replica token, which the publisher's permission
 * binds; a body naming another is dropped), by which gateways place new sessions: the
 * `sessions` it holds, the response bytes in flight to gateways (`unackedBytes`), `draining`
 * once it takes no new sessions and hands its own over (SIGTERM).
 */
export const WatchLoadBody = Schema.Struct({ replica: Schema.String, sessions: Int, unackedBytes: Int, draining: Schema.Boolean })

/**
 * One numbered message of a session inside a gateway.watch frame: message `seq` (1, 2, ... per
 * session, no gaps: a gap means a lost message and the gateway moves the session) of session
 * `session`. `marks` and `responses`: the responses, as the client's stream receives them,
 * packed as shared/watch-relay.ts describes (the gateway relays their bytes as they are).
 */
export const WatchSessionMessage = Schema.Struct({
  session: Schema.String,
  seq: Int,
  marks: Bytes,
  responses: Bytes
})

/**
 * gateway.watch.<instance> (publish): replica `replica`'s messages to that gateway process,
 * for one or more of its sessions, in the order each session's messages are to be taken. A
 * replica puts into one frame what one delivery round has for the gateway, up to its message
 * size (services/watch/main.ts), so that a revision delivered to several streams of one gateway
 * costs the gateway one NATS message, not one per stream.
 */
export const WatchResponsesBody = Schema.Struct({
  replica: Schema.String,
  messages: Schema.Array(WatchSessionMessage)
})
