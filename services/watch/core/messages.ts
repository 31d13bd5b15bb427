/**
 * What a watch hub (./hub.ts) takes and what it hands back: frames of the committed stream,
 * watch creation requests, history reads and their results, the responses it emits and the
 * messages that carry them to a session's gateway, and its counters.
 *
 * What it is: plain data shapes, shared by the hub's parts and by the shell
 * (../main.ts) and the encoder (../encode.ts). What it is not: wire schemas; the frames on the
 * bus are declared in shared/schema.ts and shared/endpoints.ts, and the shell converts them.
 * The response shape follows etcd's WatchResponse (api/etcdserverpb/rpc.proto).
 */
import type { RevisionEvents, WatchEvent } from "./watcher-group.ts"

/**
 * A batch of committed revisions `fromRev`..`head` (none: a heartbeat, fromRev = head + 1).
 * Revisions without events may be absent from `revs` (compacted deletes); the frame covers
 * every revision in the range regardless.
 */
export interface LiveFrame {
  readonly fromRev: number
  readonly head: number
  readonly compactRev: number
  readonly term: number
  readonly revs: ReadonlyArray<RevisionEvents>
}

/** A watch response as the hub emits it (etcd WatchResponse; the gateway adds the header ids). */
export interface WatchResponseData {
  readonly watchId: number
  /** The header revision. */
  readonly revision: number
  readonly created?: boolean
  readonly canceled?: boolean
  readonly compactRevision?: number
  readonly cancelReason?: string
  readonly events: ReadonlyArray<WatchEvent>
  /** On events responses of a watch created with `fragment`: the stream may cut it (etcd sendFragments). */
  readonly fragment?: boolean
}

/**
 * What a session's responses carry besides events, as its gateway declared at open: the
 * header's cluster and member ids (its member's), and the size past which a response of a watch
 * created with `fragment` is cut (etcd --max-request-bytes, bytes).
 */
export interface StreamFormat {
  readonly clusterId: bigint
  readonly memberId: bigint
  readonly maxRequestBytes: number
}

/** The format of a session opened without one: zero ids, etcd's default max request size (1.5 MiB). */
export const defaultStreamFormat: StreamFormat = { clusterId: 0n, memberId: 0n, maxRequestBytes: 1.5 * 1024 * 1024 }

/** One message to a session's gateway: consecutive `seq` per session, from 1. */
export interface OutgoingMessage {
  readonly session: string
  readonly gateway: string
  readonly format: StreamFormat
  readonly seq: number
  readonly term: number
  readonly responses: ReadonlyArray<WatchResponseData>
}

/** A history read the shell must make: revisions fromRev..toRev from an mvcc service. */
export interface FetchRequest {
  readonly id: number
  /** gap: revisions the live stream missed; sync: catch-up of unsynced watchers. */
  readonly purpose: "gap" | "sync"
  readonly fromRev: number
  readonly toRev: number
  readonly prevKv: boolean
  readonly maxBytes: number
}

/** What a history read returned: revisions through `toRev`, the compact revision, or failure. */
export type FetchResult =
  | { readonly revs: ReadonlyArray<RevisionEvents>; readonly toRev: number; readonly head: number; readonly compactRev: number; readonly term: number }
  | { readonly compacted: number }
  | { readonly failed: true }

/** A watch to create, as the gateway validated it (see shared/schema.ts WatchCreateBody). */
export interface CreateRequest {
  readonly watchId: number
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
  readonly startRevision: number
  readonly prevKv: boolean
  readonly noPut: boolean
  readonly noDelete: boolean
  readonly progressNotify: boolean
  /** Responses may be cut into fragments (etcd WatchCreateRequest.fragment). */
  readonly fragment?: boolean
}

/** Counters and sizes, for logs, metrics and tests. */
export interface HubStats {
  head: number
  sessions: number
  watchers: number
  synced: number
  unsynced: number
  victims: number
  ringRevs: number
  /** Responses queued or sent and not yet acknowledged, all sessions, in bytes. */
  unackedBytes: number
  eventsSent: number
  responsesSent: number
  victimMoves: number
  gapFetches: number
  historyFetches: number
  ringCatchUps: number
  droppedFrames: number
}
