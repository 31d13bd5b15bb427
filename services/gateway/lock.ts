/**
 * etcd's v3lock service (package v3lockpb, service Lock), served by the gateway with the
 * semantics of etcd server/etcdserver/api/v3lock/lock.go over client/v3/concurrency/mutex.go:
 *
 * - Lock(name, lease): puts the key `name/<lease in hex>` with the lease (unless this lease
 *   already has it: then it is reused) in one txn that also reads the first key by create
 *   revision under `name/`. The lowest create revision holds the lock; a later one waits until
 *   every key created before it is gone (./concurrency.ts waitDeletes), then checks that its
 *   own key still exists (etcd 3.5: "mutex: session is expired" otherwise). The response
 *   carries the key and the header of the read that saw the lock free. A client that goes away
 *   while waiting has its key deleted, as etcd's Lock deletes it when the context ends.
 * - Unlock(key): deletes the key.
 *
 * Caveat, as etcd's: a lock is only as safe as its lease. If the holder's lease expires (a
 * client paused longer than the TTL, or cut off from the cluster), its key is deleted and the
 * next waiter gets the lock while the old holder may still believe it holds it. Use the key's
 * revision (the lock response header's revision, or the key's create revision) as a fencing
 * token: a resource guarded by the lock should refuse writes carrying an older token. etcd's
 * documentation says the same (etcd.io "How to use locks", "Notes on the usage of lock and
 * lease").
 */
import { ConcurrencyError } from "../../shared/errors.ts"
import type * as Kv from "../../shared/kv.ts"
import { byCreate, createRevisionIs, keyPrefix, ownerKey, sessionLease, waitDeletes } from "./concurrency.ts"
import { headerToWire, wireBig } from "./convert.ts"
import type { Wire } from "./convert.ts"
import type { InternalKv } from "./internal-kv.ts"
import type { Proposer } from "../runtime/proposer.ts"

const EMPTY = new Uint8Array(0)
const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : EMPTY)

/** What the lock handlers need. */
export interface LockContext {
  readonly kv: InternalKv
  readonly proposer: Proposer
  /** Minimum lease TTL, seconds (for a session lease granted here). */
  readonly minTtl: number
}

/** Makes the Lock service's handlers: Lock (abortable) and Unlock. */
export const makeLockHandlers = (ctx: LockContext) => ({
  Lock: async (w: Wire, signal: AbortSignal): Promise<Wire> => {
    const name = bytes(w.name)
    const lease = await sessionLease(ctx.proposer, wireBig(w.lease), ctx.minTtl, "")
    const pfx = keyPrefix(name)
    const myKey = ownerKey(pfx, lease)
    const getOwner: Kv.RequestOp = { requestRange: byCreate(pfx, "ASCEND") }
    const t = await ctx.kv.txn({
      compare: [createRevisionIs(myKey, 0)],
      success: [{ requestPut: { key: myKey, value: EMPTY, lease } }, getOwner],
      failure: [{ requestRange: { key: myKey } }, getOwner]
    }, "")
    let myRev = t.revision
    if (!t.response.succeeded) {
      const mine = t.response.responses[0] as { responseRange: Kv.RangeResponse }
      myRev = mine.responseRange.kvs[0]!.createRevision
    }
    const owner = (t.response.responses[1] as { responseRange: Kv.RangeResponse }).responseRange.kvs
    if (owner.length === 0 || owner[0]!.createRevision === myRev) {
      return { header: headerToWire(await ctx.kv.header(t.revision, t.term)), key: myKey }
    }
    let confirmed
    try {
      confirmed = await waitDeletes(ctx.kv, pfx, myRev - 1, signal, "")
    } catch (e) {
      // Release the waiter's key (etcd Mutex.Lock: m.Unlock when the wait failed).
      await ctx.kv.deleteKey(myKey, "").catch(() => undefined)
      throw e
    }
    const still = await ctx.kv.range({ key: myKey }, "")
    if (still.response.kvs.length === 0) throw new ConcurrencyError({ message: "mutex: session is expired" })
    return { header: headerToWire(await ctx.kv.header(confirmed.revision, confirmed.term)), key: myKey }
  },
  Unlock: async (w: Wire): Promise<Wire> => {
    const r = await ctx.kv.deleteKey(bytes(w.key), "")
    return { header: headerToWire(await ctx.kv.header(r.revision, r.term)) }
  }
})
