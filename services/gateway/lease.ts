/**
 * etcd's Lease service, served by the gateway (etcd server/etcdserver/api/v3rpc/lease.go and
 * v3_server.go LeaseGrant/LeaseRevoke/LeaseRenew/LeaseTimeToLive/LeaseLeases).
 *
 * - LeaseGrant and LeaseRevoke are proposed through raft like KV writes and applied by every
 *   member's mvcc service to its lease table (services/lease/core/lease-table.ts). A grant without
 *   an ID gets a random positive int64 (etcd: its request-id generator, masked to 63 bits);
 *   the TTL is raised to the minimum TTL, ceil(1.5 × election timeout), at apply time.
 * - LeaseKeepAlive (bidi stream) and LeaseTimeToLive go to the member's lease service
 *   (services/lease), which forwards them to the leader's. Keep-alives are not written
 *   through raft. An unknown lease gets TTL 0 from LeaseKeepAlive and TTL -1 from
 *   LeaseTimeToLive, without an error, as etcd answers.
 * - LeaseLeases reads the member's lease table after a ReadIndex.
 *
 * Lease IDs are int64 on the wire (decimal strings from proto-loader) and bigint inside.
 */
import type * as grpc from "@grpc/grpc-js"
import { randomBytes } from "node:crypto"
import type { EtcdErrorData } from "../../shared/errors.ts"
import { LeaseId } from "../../shared/ids.ts"
import type { LeaseWriteResponse } from "../../shared/kv.ts"
import { minLeaseTtlSec } from "../lease/core/lessor.ts"
import { leaseKeepAlive, leaseTimeToLive, mvccLeases, mvccStatus, raftReadIndex, raftStatus } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import { headerToWire, wireBig, wireInt } from "./convert.ts"
import type { Header, Wire } from "./convert.ts"
import { toGrpcError } from "./errors.ts"
import type { Proposer } from "../runtime/proposer.ts"

/** What the lease handlers need. */
export interface LeaseContext {
  readonly rpc: RpcClient
  readonly proposer: Proposer
  readonly requestTimeoutMs: number
  /** The raft election timeout, ms: sets the minimum TTL. */
  readonly electionTimeoutMs: number
  readonly subjects: {
    readonly keepAlive: string
    readonly timeToLive: string
    readonly leases: string
    readonly readIndex: string
    readonly raftStatus: string
    readonly mvccStatus: string
  }
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
}

/** How long a response header's revision and term may be reused, ms (keep-alive streams are busy). */
const headerCacheMs = 100

/** A random positive int64 lease id (etcd masks its generated ids to 63 bits). */
export const randomLeaseId = (): LeaseId => {
  for (;;) {
    const id = BigInt("0x" + randomBytes(8).toString("hex")) & ((1n << 63n) - 1n)
    if (id !== 0n) return LeaseId(id)
  }
}

/** Makes the Lease handlers. */
export const makeLeaseHandlers = (ctx: LeaseContext) => {
  const minTtl = minLeaseTtlSec(ctx.electionTimeoutMs)
  const header = async (revision: number, term: number): Promise<Wire> => {
    const id = await ctx.identity()
    const h: Header = { clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: term }
    return headerToWire(h)
  }
  // etcd fills these headers with the member's current revision and term (v3rpc header.fill).
  let cached: { at: number; value: Promise<Wire> } | undefined
  const currentHeader = (): Promise<Wire> => {
    const now = performance.now()
    if (cached !== undefined && now - cached.at < headerCacheMs) return cached.value
    const value = (async () => {
      const [m, r] = await Promise.all([
        callEndpoint(ctx.rpc, mvccStatus, ctx.subjects.mvccStatus, {}, { timeoutMs: ctx.requestTimeoutMs }),
        callEndpoint(ctx.rpc, raftStatus, ctx.subjects.raftStatus, {}, { timeoutMs: ctx.requestTimeoutMs })
      ])
      return header(m.revision, r.term)
    })()
    cached = { at: now, value }
    value.catch(() => (cached = undefined))
    return value
  }

  const renew = async (id: bigint): Promise<number> => {
    try {
      // In the try: an error frame (as an `{ err }` reply) of an unknown lease is TTL 0 too.
      return okOf(await callEndpoint(ctx.rpc, leaseKeepAlive, ctx.subjects.keepAlive, { id, forwarded: false }, { timeoutMs: ctx.requestTimeoutMs + 1000 })).ttl
    } catch (e) {
      // etcd answers a keep-alive of an unknown lease with TTL 0, not an error.
      if ((e as EtcdErrorData)._tag === "LeaseNotFound") return 0
      throw e
    }
  }

  return {
    LeaseGrant: async (w: Wire): Promise<Wire> => {
      const requested = wireBig(w.ID)
      const id = requested === 0n ? randomLeaseId() : LeaseId(BigInt.asIntN(64, requested))
      const ttl = wireInt(w.TTL)
      const r = await ctx.proposer.propose({ leaseGrant: { id, ttl, minTtl } }, "")
      const granted = (r.response as Extract<LeaseWriteResponse, { leaseGrant: unknown }>).leaseGrant
      return { header: await header(r.revision, r.term), ID: granted.id.toString(), TTL: granted.ttl, error: "" }
    },
    LeaseRevoke: async (w: Wire): Promise<Wire> => {
      const r = await ctx.proposer.propose({ leaseRevoke: { id: LeaseId(BigInt.asIntN(64, wireBig(w.ID))) } }, "")
      return { header: await header(r.revision, r.term) }
    },
    LeaseTimeToLive: async (w: Wire): Promise<Wire> => {
      const id = BigInt.asIntN(64, wireBig(w.ID))
      try {
        const r = okOf(await callEndpoint(ctx.rpc, leaseTimeToLive, ctx.subjects.timeToLive, { id, keys: w.keys === true, forwarded: false }, {
          timeoutMs: ctx.requestTimeoutMs + 1000
        }))
        return { header: await currentHeader(), ID: id.toString(), TTL: r.ttl, grantedTTL: r.grantedTtl, keys: r.keys }
      } catch (e) {
        if ((e as EtcdErrorData)._tag !== "LeaseNotFound") throw e
        return { header: await currentHeader(), ID: id.toString(), TTL: -1, grantedTTL: 0, keys: [] }
      }
    },
    LeaseLeases: async (_w: Wire): Promise<Wire> => {
      const minAppliedIndex = okOf(await callEndpoint(ctx.rpc, raftReadIndex, ctx.subjects.readIndex, {}, { timeoutMs: ctx.requestTimeoutMs })).index
      const r = await callEndpoint(ctx.rpc, mvccLeases, ctx.subjects.leases, { sinceIndex: 0, minAppliedIndex }, { timeoutMs: ctx.requestTimeoutMs })
      // etcd lists by expiry; with equal TTLs that is the order of the grants.
      const leases = [...r.leases].sort((a, b) => a.grantIndex - b.grantIndex).map((l) => ({ ID: l.id.toString() }))
      return { header: await currentHeader(), leases }
    },
    /**
     * LeaseKeepAlive: each request renews one lease and gets one response, in any order (etcd's
     * clients match responses by ID). An error other than an unknown lease ends the stream with
     * that error, as etcd's server does.
     */
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<Wire, Wire>): void => {
      let ended = false
      let pending = 0
      let halfClosed = false
      const end = (error?: unknown) => {
        if (ended) return
        ended = true
        if (error === undefined) call.end()
        else {
          const e = toGrpcError(error)
          call.destroy(Object.assign(new Error(e.details), { code: e.code, details: e.details }))
        }
      }
      call.on("data", (w: Wire) => {
        const id = BigInt.asIntN(64, wireBig(w.ID))
        pending++
        renew(id).then(
          async (ttl) => {
            const h = await currentHeader()
            if (!ended) call.write({ header: h, ID: id.toString(), TTL: ttl })
          },
          (e) => end(e)
        ).finally(() => {
          pending--
          if (halfClosed && pending === 0) end()
        })
      })
      // The client closed its side: answer what is pending, then end.
      call.on("end", () => {
        halfClosed = true
        if (pending === 0) end()
      })
      call.on("error", () => (ended = true))
      call.on("cancelled", () => (ended = true))
    }
  }
}
