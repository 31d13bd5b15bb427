/**
 * etcd's v3election service (package v3electionpb, service Election), served by the gateway
 * with the semantics of etcd server/etcdserver/api/v3election/election.go over
 * client/v3/concurrency/election.go. A campaigner's key is `name/<lease in hex>`; the key with
 * the lowest create revision under `name/` is the leader, its value the proclamation.
 *
 * - Campaign: puts the key with the value (or finds it there from an earlier campaign of the
 *   same lease and proclaims the new value), then waits until every key created before it is
 *   gone (./concurrency.ts). The LeaderKey it returns (name, key, create revision, lease) is
 *   what Proclaim and Resign take. A client gone while waiting resigns (etcd: Resign when the
 *   context is done).
 * - Proclaim: rewrites the value if the key still has the campaign's create revision, else
 *   "election: not leader".
 * - Resign: deletes the key if it still has the campaign's create revision.
 * - Leader: the first key by create revision, or "election: no leader".
 * - Observe: streams the leader's key-value: the current leader, each of its proclamations,
 *   and after its key goes, the next leader (etcd Election.observe). natcd follows the keys by
 *   polling the member's local store every few tens of ms rather than by a watch, so two
 *   proclamations of one leader within one poll are seen as the last of them; leader changes
 *   are seen in order as long as each leader holds for longer than a poll. etcd's observe has
 *   the same kind of gap between a leader's deletion and its next read.
 *
 * The same lease caveat as locks (./lock.ts) applies: leadership lasts only as long as the
 * lease; use the key's create revision as a fencing token.
 */
import { ConcurrencyError } from "../../shared/errors.ts"
import { LeaseId } from "../../shared/ids.ts"
import type * as Kv from "../../shared/kv.ts"
import { byCreate, createRevisionIs, keyPrefix, ownerKey, pollMs, sessionLease, sleepOrAbort, waitDeletes } from "./concurrency.ts"
import { headerToWire, kvToWire, wireBig, wireInt } from "./convert.ts"
import type { Wire } from "./convert.ts"
import type { InternalKv } from "./internal-kv.ts"
import type { Proposer } from "../runtime/proposer.ts"

const EMPTY = new Uint8Array(0)
const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : EMPTY)

const notLeader = () => new ConcurrencyError({ message: "election: not leader" })
const noLeader = () => new ConcurrencyError({ message: "election: no leader" })
const missingLeaderKey = () => new ConcurrencyError({ message: "\"leader\" field must be provided" })

/** What the election handlers need. */
export interface ElectionContext {
  readonly kv: InternalKv
  readonly proposer: Proposer
  /** Minimum lease TTL, seconds (for a session lease granted here). */
  readonly minTtl: number
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

/** Makes the Election service's handlers (Campaign and Observe abortable). */
export const makeElectionHandlers = (ctx: ElectionContext) => {
  const proclaim = async (key: Uint8Array, rev: number, lease: bigint, value: Uint8Array) => {
    const t = await ctx.kv.txn({
      compare: [createRevisionIs(key, rev)],
      success: [{ requestPut: { key, value, lease: LeaseId(lease) } }],
      failure: []
    }, "")
    if (!t.response.succeeded) throw notLeader()
    return t
  }
  const resign = (key: Uint8Array, rev: number) =>
    ctx.kv.txn({ compare: [createRevisionIs(key, rev)], success: [{ requestDeleteRange: { key } }], failure: [] }, "")
  const leaderKey = (w: Wire): { name: Uint8Array; key: Uint8Array; rev: number; lease: bigint } => {
    const l = w.leader as Wire | null | undefined
    if (l === null || l === undefined) throw missingLeaderKey()
    return { name: bytes(l.name), key: bytes(l.key), rev: wireInt(l.rev), lease: BigInt.asIntN(64, wireBig(l.lease)) }
  }

  return {
    Campaign: async (w: Wire, signal: AbortSignal): Promise<Wire> => {
      const name = bytes(w.name)
      const value = bytes(w.value)
      const lease = await sessionLease(ctx.proposer, wireBig(w.lease), ctx.minTtl, "")
      const pfx = keyPrefix(name)
      const key = ownerKey(pfx, lease)
      const t = await ctx.kv.txn({
        compare: [createRevisionIs(key, 0)],
        success: [{ requestPut: { key, value, lease } }],
        failure: [{ requestRange: { key } }]
      }, "")
      let rev = t.revision
      if (!t.response.succeeded) {
        const kv = (t.response.responses[0] as { responseRange: Kv.RangeResponse }).responseRange.kvs[0]!
        rev = kv.createRevision
        if (!sameBytes(kv.value, value)) {
          try {
            await proclaim(key, rev, lease, value)
          } catch (e) {
            await resign(key, rev).catch(() => undefined)
            throw e
          }
        }
      }
      try {
        await waitDeletes(ctx.kv, pfx, rev - 1, signal, "")
      } catch (e) {
        if (signal.aborted) await resign(key, rev).catch(() => undefined)
        throw e
      }
      return {
        header: headerToWire(await ctx.kv.header(t.revision, t.term)),
        leader: { name, key, rev, lease: lease.toString() }
      }
    },
    Proclaim: async (w: Wire): Promise<Wire> => {
      const l = leaderKey(w)
      const t = await proclaim(l.key, l.rev, l.lease, bytes(w.value))
      return { header: headerToWire(await ctx.kv.header(t.revision, t.term)) }
    },
    Resign: async (w: Wire): Promise<Wire> => {
      const l = leaderKey(w)
      const t = await resign(l.key, l.rev)
      return { header: headerToWire(await ctx.kv.header(t.revision, t.term)) }
    },
    Leader: async (w: Wire): Promise<Wire> => {
      const r = await ctx.kv.range(byCreate(keyPrefix(bytes(w.name)), "ASCEND"), "")
      const kv = r.response.kvs[0]
      if (kv === undefined) throw noLeader()
      return { header: headerToWire(await ctx.kv.header(r.revision, r.term)), kv: kvToWire(kv) }
    },
    Observe: async (w: Wire, signal: AbortSignal, write?: (response: Wire) => Promise<void>): Promise<void> => {
      const pfx = keyPrefix(bytes(w.name))
      const first = byCreate(pfx, "ASCEND")
      while (!signal.aborted) {
        let r = await ctx.kv.range(first, "")
        let kv = r.response.kvs[0]
        let headerRev = r.revision
        while (kv === undefined) {
          // No leader: wait for the first key (etcd: the first PUT under the prefix).
          await sleepOrAbort(pollMs, signal)
          r = await ctx.kv.range({ ...first, serializable: true }, "")
          kv = r.response.kvs[0]
          if (kv !== undefined) headerRev = kv.modRevision
        }
        await write!({ header: headerToWire(await ctx.kv.header(headerRev, r.term)), kv: kvToWire(kv) })
        // Follow the leader's key until it is deleted, sending each new value.
        let last = kv
        for (;;) {
          await sleepOrAbort(pollMs, signal)
          const now = await ctx.kv.range({ key: last.key, serializable: true }, "")
          const cur = now.response.kvs[0]
          if (cur === undefined || cur.createRevision !== last.createRevision) break
          if (cur.modRevision !== last.modRevision) {
            last = cur
            await write!({ header: headerToWire(await ctx.kv.header(now.revision, now.term)), kv: kvToWire(cur) })
          }
        }
      }
    }
  }
}
