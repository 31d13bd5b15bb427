/**
 * The mvcc service's read endpoints, answered from the applied store: `mvcc.range` (a gateway's
 * Ranges of one event-loop turn, each once the member applied its `minAppliedIndex`, the
 * ReadIndex of a linearizable read; etcd v3_server Range after linearizableReadNotify), the
 * member's `mvcc.status` and `mvcc.alarms`, and `mvcc.hashkv` (etcd HashKV, asked by clients and
 * by the peers' corruption check). Nothing here writes; the apply path is ./apply.ts.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { mvccAlarms, mvccHashKv, mvccRange, mvccStatus } from "../../shared/endpoints.ts"
import { MalformedFrame, toErrorData } from "../../shared/errors.ts"
import type { MvccStatus } from "../../shared/schema.ts"
import type { ServeOptions } from "../runtime/rpc.ts"
import { serveEndpoint } from "../runtime/rpc.ts"
import type { Applier } from "./apply.ts"
import { waitError } from "./apply-waiters.ts"
import type { LmdbBackend } from "./backend-lmdb.ts"
import type { AuthStore } from "./core/auth-store.ts"
import type { KvStore } from "./core/store.ts"
import { hashKv } from "./hash.ts"

/** How long a read may wait for its index before the service fetches missing entries itself. */
const lagCheckMs = 100

/**
 * Largest sum of response sizes in one range reply with several results (nats-server's
 * max_payload is 8 MiB); later results come back as `retry` and are asked for alone.
 */
const maxRangeReplyBytes = 4 * 1024 * 1024

/** About the encoded size of a Range response: its keys and values plus per-record overhead. */
const responseBytes = (response: { readonly kvs: ReadonlyArray<{ readonly key: Uint8Array; readonly value: Uint8Array }> }): number =>
  response.kvs.reduce((sum, kv) => sum + kv.key.length + kv.value.length + 48, 64)

/** What the read endpoints read. */
export interface ReadEndpointsContext {
  readonly nc: NatsConnection
  /** The member whose endpoints these are. */
  readonly at: { readonly cluster: string; readonly member: string }
  readonly backend: LmdbBackend
  readonly store: KvStore
  readonly applier: Applier
  readonly auth: AuthStore
  /** Asks the apply fiber to fetch missing committed entries from raft (a lost apply frame). */
  readonly catchUp: () => void
  /** True once the process only waits to restart on a new backend (./maintenance-endpoints.ts). */
  readonly restarting: () => boolean
  readonly options: ServeOptions
}

/** Serves mvcc.range, mvcc.status, mvcc.alarms and mvcc.hashkv; returns the subscriptions. */
export const serveReadEndpoints = (ctx: ReadEndpointsContext) => {
  const { nc, at, backend, store, applier, auth, options: opts } = ctx
  return [
    serveEndpoint(nc, mvccRange, at, (req) => {
      const { requests } = req.body
      const minAppliedIndex = requests.reduce((max, r) => Math.max(max, r.minAppliedIndex), 0)
      // One reply for the batch, once the member applied what its most recent read needs.
      const serveRanges = () => {
        let bytes = 0
        const results = requests.map(({ request, authInfo }, i) => {
          // etcd doSerialize: the reader's READ permission on the range, at the auth revision it was authorised at.
          const denied = auth.checkRange(authInfo, request, "READ")
          if (denied !== undefined) return denied
          let r
          try {
            r = store.range(backend.read, request)
          } catch (e) {
            return { err: toErrorData(new MalformedFrame({ reason: `range failed: ${String(e)}` })) }
          }
          if ("err" in r) return { err: r.err }
          bytes += responseBytes(r.ok)
          if (i > 0 && bytes > maxRangeReplyBytes) return { retry: true as const }
          return { ok: { response: r.ok, revision: r.revision, term: applier.currentTerm() } }
        })
        req.reply({ ok: { results } })
      }
      const wait = applier.waitApplied(minAppliedIndex)
      if (wait === undefined) return serveRanges()
      wait.then((outcome) => {
        if (outcome === "applied") return serveRanges()
        // Each read of the batch fails alike.
        const err = waitError(outcome)
        req.reply({ ok: { results: requests.map(() => ({ err })) } })
      })
      // If the entries the read needs were lost in transit, fetch them rather than wait.
      setTimeout(() => {
        if (applier.appliedIndex() < minAppliedIndex) ctx.catchUp()
      }, lagCheckMs)
    }, opts),
    serveEndpoint(nc, mvccStatus, at, (req) => {
      // A process about to restart on a new backend does not answer: a caller waiting for the
      // mvcc service to serve again (the gateway after a defragment) waits for the new one.
      if (ctx.restarting()) return
      const size = backend.size()
      const status: typeof MvccStatus.Type = {
        appliedIndex: applier.appliedIndex(),
        revision: store.currentRevision(),
        compactRevision: store.compactRevision(),
        dbSizeBytes: size.fileBytes,
        dbSizeInUseBytes: size.inUseBytes
      }
      req.reply(status)
    }, opts),
    serveEndpoint(nc, mvccAlarms, at, (req) => {
      req.reply({ alarms: store.activeAlarms() })
    }, opts),
    serveEndpoint(nc, mvccHashKv, at, (req) => {
      const current = store.currentRevision()
      const revision = req.body.revision <= 0 ? current : req.body.revision
      const compactRevision = store.compactRevision()
      if (revision > current) return req.reply({ err: { _tag: "FutureRevision", requestedRevision: revision, currentRevision: current } })
      if (revision < compactRevision) return req.reply({ err: { _tag: "Compacted", requestedRevision: revision, compactRevision } })
      const hash = hashKv(backend.read, revision, (k, v) => store.isLiveRecord(k, v))
      req.reply({ ok: { hash, compactRevision, hashRevision: revision, revision: current } })
    }, opts)
  ]
}
