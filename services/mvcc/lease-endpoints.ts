/**
 * The mvcc service's lease table endpoints (declared in shared/endpoints.ts):
 *
 * - `mvcc.leases`: the table's changes after a raft index, or the whole table; the leader's
 *   lease service polls it to track the leases it must expire, the gateway reads it for
 *   LeaseLeases;
 * - `mvcc.lease`: one lease with its attached keys, for LeaseTimeToLive.
 *
 * Both wait until the member applied the request's `minAppliedIndex` (a ReadIndex or the
 * leader's commit index), as linearizable ranges do, and then answer from memory.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import type { EtcdErrorData } from "../../shared/errors.ts"
import type { MvccLeaseReply, MvccLeasesReply } from "../../shared/schema.ts"
import { mvccLease, mvccLeases } from "../../shared/endpoints.ts"
import type { ServeOptions } from "../runtime/rpc.ts"
import { serveEndpoint } from "../runtime/rpc.ts"
import type { Applier } from "./apply.ts"
import { waitError } from "./apply-waiters.ts"
import type { KvStore } from "./core/store.ts"
import type { LeaseTable } from "../lease/core/lease-table.ts"

/** What the endpoints need. */
export interface LeaseEndpointsContext {
  readonly nc: NatsConnection
  /** The member whose endpoints these are. */
  readonly at: { readonly cluster: string; readonly member: string }
  readonly leases: LeaseTable
  readonly applier: Applier
  readonly store: KvStore
  /** Asks the apply fiber to fetch entries it may have missed (called when a request waits too long). */
  readonly catchUp: () => void
  readonly options: ServeOptions
}

/** How long a request may wait for its index before the service fetches missing entries. */
const lagCheckMs = 100

/** Starts both endpoints; returns their stop functions. */
export const serveLeaseEndpoints = (ctx: LeaseEndpointsContext): Array<{ readonly stop: () => void }> => {
  // A wait that times out or is refused (./apply.ts waitApplied) is answered with its error
  // (./apply.ts waitError) as an error frame.
  const whenApplied = (index: number, req: { replyError: (err: EtcdErrorData) => void }, f: () => void) => {
    const wait = ctx.applier.waitApplied(index)
    if (wait === undefined) return f()
    wait.then((outcome) => {
      if (outcome === "applied") f()
      else req.replyError(waitError(outcome))
    })
    setTimeout(() => {
      if (ctx.applier.appliedIndex() < index) ctx.catchUp()
    }, lagCheckMs)
  }
  return [
    serveEndpoint(ctx.nc, mvccLeases, ctx.at, (req) => {
      whenApplied(req.body.minAppliedIndex, req, () => {
        const appliedIndex = ctx.applier.appliedIndex()
        const changes = ctx.leases.changesSince(req.body.sinceIndex)
        const reply: typeof MvccLeasesReply.Type = { appliedIndex, ...changes }
        req.reply(reply)
      })
    }, ctx.options),
    serveEndpoint(ctx.nc, mvccLease, ctx.at, (req) => {
      whenApplied(req.body.minAppliedIndex, req, () => {
        const lease = ctx.leases.get(req.body.id)
        const reply: typeof MvccLeaseReply.Type = {
          ...(lease === undefined ? {} : { lease }),
          keys: req.body.keys && lease !== undefined ? ctx.leases.keys(req.body.id) : [],
          revision: ctx.store.currentRevision(),
          term: ctx.applier.currentTerm()
        }
        req.reply(reply)
      })
    }, ctx.options)
  ]
}
