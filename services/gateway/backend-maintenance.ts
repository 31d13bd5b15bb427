/**
 * Maintenance calls about a member's backend, served by the gateway: HashKV (compare members'
 * key spaces), Snapshot (stream the backend, for `etcdctl snapshot save`) and Defragment, as etcd's
 * server/etcdserver/api/v3rpc/maintenance.go.
 *
 * Snapshot: the member's mvcc service copies its state into a snapshot file (mvcc.snapshot) and
 * the gateway streams that file in chunks (mvcc.chunk), then, as etcd does, a last message with
 * the SHA-256 of everything sent, which `natcd snapshot restore` checks. `remaining_bytes`
 * counts down to 0 as etcd's.
 */
import { createHash } from "node:crypto"
import { MalformedFrame } from "../../shared/errors.ts"
import { mvccChunk, mvccDefragment, mvccHashKv, mvccSnapshot, mvccStatus } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, okOf } from "../runtime/rpc.ts"
import * as Convert from "./convert.ts"
import type { Wire } from "./convert.ts"
import { serverStream } from "./server.ts"
import { defragmentRestartWaitMs, defragmentTimeoutMs, mvccServingPollMs, snapshotChunkRetryMs, snapshotChunkTimeoutMs, snapshotPrepareTimeoutMs } from "./timeouts.ts"

/** What the handlers need. */
export interface BackendMaintenanceContext {
  readonly rpc: RpcClient
  readonly subjects: { readonly hashKv: string; readonly snapshot: string; readonly chunk: string; readonly defragment: string; readonly status: string }
  readonly requestTimeoutMs: number
  readonly identity: () => Promise<{ readonly clusterId: bigint; readonly memberId: bigint }>
  readonly raftTerm: () => Promise<number>
}

const chunkBytes = 1024 * 1024

/** Makes Maintenance.HashKV, Maintenance.Snapshot and Maintenance.Defragment. */
export const makeBackendMaintenanceHandlers = (ctx: BackendMaintenanceContext) => {
  const header = async (revision: number): Promise<Wire> => {
    const id = await ctx.identity()
    return Convert.headerToWire({ clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: await ctx.raftTerm() })
  }
  /**
   * Resolves once mvcc.status is answered (the call re-sends with backoff until then), or after
   * {@link defragmentRestartWaitMs}.
   */
  const mvccServingAgain = (): Promise<unknown> =>
    callEndpoint(ctx.rpc, mvccStatus, ctx.subjects.status, {}, { timeoutMs: defragmentRestartWaitMs, retryAfterMs: mvccServingPollMs }).catch(() => undefined)
  return {
    HashKV: async (w: Wire) => {
      const r = okOf(await callEndpoint(ctx.rpc, mvccHashKv, ctx.subjects.hashKv, { revision: Convert.wireInt(w.revision) }, { timeoutMs: ctx.requestTimeoutMs }))
      return { header: await header(r.revision), hash: r.hash, compact_revision: r.compactRevision, hash_revision: r.hashRevision }
    },
    Defragment: async (_w: Wire) => {
      okOf(await callEndpoint(ctx.rpc, mvccDefragment, ctx.subjects.defragment, {}, { timeoutMs: defragmentTimeoutMs, retryAfterMs: defragmentTimeoutMs }))
      // The mvcc service restarts on the compacted copy: answer once it serves again, as etcd's
      // member serves as soon as its Defragment returns (the old process no longer answers).
      await mvccServingAgain()
      return { header: await header(0) }
    },
    Snapshot: serverStream(async (_w, write) => {
      const info = okOf(await callEndpoint(ctx.rpc, mvccSnapshot, ctx.subjects.snapshot, { minIndex: 0 }, { timeoutMs: snapshotPrepareTimeoutMs }))
      const hash = createHash("sha256")
      const h = await header(0)
      for (let offset = 0; offset < info.sizeBytes; offset += chunkBytes) {
        const length = Math.min(chunkBytes, info.sizeBytes - offset)
        const data = okOf(await callEndpoint(ctx.rpc, mvccChunk, ctx.subjects.chunk, { file: info.file, offset, length }, { timeoutMs: snapshotChunkTimeoutMs, retryAfterMs: snapshotChunkRetryMs })).data
        if (data.length !== length) throw new MalformedFrame({ reason: `short snapshot chunk at ${offset}` })
        hash.update(data)
        await write({ header: h, remaining_bytes: String(info.sizeBytes - offset - length + 32), blob: data })
      }
      await write({ header: h, remaining_bytes: "0", blob: hash.digest() })
    })
  }
}
