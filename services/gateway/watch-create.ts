/**
 * A Watch create request as the gateway reads it, before any replica sees it: what it watches
 * (etcd's key and range_end conventions), the checks etcd's v3rpc watch server makes at the
 * stream's edge (an empty range, a duplicate watch id; server/etcdserver/api/v3rpc/watch.go
 * recvLoop, mvcc ErrEmptyWatcherRange and ErrWatcherDuplicateID), the state the gateway keeps
 * for each watch to resume it after a failover, and the cancel reason of a watch refused by
 * the auth check.
 *
 * What it is not: the watch id assignment and the request order (./watch-stream.ts), or the
 * watch itself (the replica's, services/watch). Pure: no IO.
 */
import type { Wire } from "./convert.ts"
import { toGrpcError } from "./errors.ts"

/** etcd mvcc.ErrEmptyWatcherRange. */
export const emptyRangeReason = "mvcc: watcher range is empty"
/** etcd mvcc.ErrWatcherDuplicateID. */
export const duplicateIdReason = "mvcc: duplicate watch ID provided on the WatchStream"

/** Go's names of the gRPC codes a refused watch's cancel reason can carry (etcd: status.Error's text). */
const goCodeNames: Readonly<Record<number, string>> = { 3: "InvalidArgument", 7: "PermissionDenied", 16: "Unauthenticated" }
const grpcCodeName = (code: number): string => goCodeNames[code] ?? `Code(${code})`

/** One watch of a stream, as the gateway tracks it for resumption. */
export interface WatchState {
  readonly id: number
  readonly key: Uint8Array
  readonly rangeEnd: Uint8Array | undefined
  readonly startRevision: number
  readonly prevKv: boolean
  readonly noPut: boolean
  readonly noDelete: boolean
  readonly progressNotify: boolean
  readonly fragment: boolean
  /** True once the client got the created response. */
  announced: boolean
  /** The first revision the client has not seen for this watch (valid once announced). */
  nextRev: number
  canceling: boolean
}

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/** The watched key of create request `c` (an empty or absent key is "\0", as etcd reads it). */
export const createKey = (c: Wire): Uint8Array => c.key instanceof Uint8Array && c.key.length > 0 ? c.key : new Uint8Array([0])

/** The range end of create request `c`: undefined for the single key, empty for every key >= key. */
export const createRangeEnd = (c: Wire): Uint8Array | undefined => {
  const endRaw: Uint8Array = c.range_end instanceof Uint8Array ? c.range_end : new Uint8Array()
  // etcd: empty range_end is the single key; "\0" is every key >= key.
  return endRaw.length === 0 ? undefined : endRaw.length === 1 && endRaw[0] === 0 ? new Uint8Array() : endRaw
}

/** True when [key, rangeEnd) holds no key (refused with {@link emptyRangeReason}). */
export const isEmptyRange = (key: Uint8Array, rangeEnd: Uint8Array | undefined): boolean =>
  rangeEnd !== undefined && rangeEnd.length > 0 && compareBytes(key, rangeEnd) >= 0

/** The state of a new watch `id` made by create request `c`, not yet announced to the client. */
export const newWatchState = (c: Wire, id: number, key: Uint8Array, rangeEnd: Uint8Array | undefined, start: number): WatchState => {
  const filters: string[] = Array.isArray(c.filters) ? c.filters : []
  return {
    id,
    key,
    rangeEnd,
    startRevision: start,
    prevKv: c.prev_kv === true,
    noPut: filters.includes("NOPUT"),
    noDelete: filters.includes("NODELETE"),
    progressNotify: c.progress_notify === true,
    fragment: c.fragment === true,
    announced: false,
    nextRev: start,
    canceling: false
  }
}

/**
 * The cancel reason of a watch the auth check refused with `denied`: etcd recvLoop's text of
 * the auth store's error as a gRPC status (other failures read as permission denied).
 */
export const refusalReason = (denied: unknown): string => {
  const tag = (denied as { _tag?: string; code?: string })
  const e = toGrpcError(tag._tag === "AuthError" && ["InvalidAuthToken", "AuthOldRevision", "UserEmpty"].includes(tag.code ?? "") ? denied : { _tag: "AuthError", code: "PermissionDenied" })
  return `rpc error: code = ${grpcCodeName(e.code)} desc = ${e.details}`
}
