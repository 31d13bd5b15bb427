/**
 * The mvcc service's endpoints that copy or replace its database: `mvcc.snapshot` (copy the
 * state into a snapshot file, for raft snapshots and Maintenance.Snapshot), `mvcc.chunk` (a
 * piece of such a file, for a member installing it or a client downloading it),
 * `mvcc.defragment` (a compacted copy, then a restart on it) and `mvcc.install` (fetch a raft
 * snapshot's state from another member, then a restart on it). The snapshot files themselves
 * and the checks an install passes are ./snapshot.ts; this module answers the requests and
 * owns the process's restart state.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import * as Effect from "effect/Effect"
import { statSync } from "node:fs"
import { mvccChunk, mvccDefragment, mvccInstall, mvccSnapshot, raftMembers, subjectOf } from "../../shared/endpoints.ts"
import { MalformedFrame, toErrorData, describeError } from "../../shared/errors.ts"
import { runDetached } from "../runtime/process.ts"
import type { RpcClient, ServeOptions } from "../runtime/rpc.ts"
import { callEndpoint, okOf, serveEndpoint } from "../runtime/rpc.ts"
import type { Applier } from "./apply.ts"
import type { LmdbBackend } from "./backend-lmdb.ts"
import { installRefusal, type SnapshotFiles } from "./snapshot.ts"
import { raftCallTimeoutMs, restartAfterReplyMs, snapshotChunkRetryMs, snapshotChunkTimeoutMs } from "./timeouts.ts"

/**
 * Whether the process only waits to restart on a new backend (after a defragment or a fetched
 * snapshot): it then takes no more applies, does not answer mvcc.status and is not ready.
 */
export interface Lifecycle {
  restarting: boolean
}

/** What the maintenance endpoints work on. */
export interface MaintenanceContext {
  readonly nc: NatsConnection
  readonly rpc: RpcClient
  /** The member whose endpoints these are. */
  readonly at: { readonly cluster: string; readonly member: string }
  readonly backend: LmdbBackend
  /** The path of the LMDB file (a copy to restart on goes beside it, as `<dbPath>.install`). */
  readonly dbPath: string
  readonly snapshots: SnapshotFiles
  /** Snapshot files of the state to keep (--max-snapshots). */
  readonly maxSnapshots: number
  readonly applier: Applier
  readonly lifecycle: Lifecycle
  readonly options: ServeOptions
}

/** Serves mvcc.snapshot, mvcc.chunk, mvcc.defragment and mvcc.install; returns the subscriptions. */
export const serveMaintenanceEndpoints = (ctx: MaintenanceContext) => {
  const { nc, rpc, at, backend, dbPath, snapshots, applier, lifecycle, options: opts } = ctx
  let installing = false
  return [
    serveEndpoint(nc, mvccSnapshot, at, (req) => {
      snapshots.create(() => applier.commit(), () => applier.appliedIndex(), (path) => backend.backup(path), ctx.maxSnapshots).then(
        (info) => req.reply({ ok: info }),
        (e) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `snapshot failed: ${String(e)}` })) })
      )
    }, opts),
    serveEndpoint(nc, mvccChunk, at, (req) => {
      snapshots.readChunk(req.body.file, req.body.offset, req.body.length).then(
        (data) => req.reply({ ok: { data } }),
        (e) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `chunk failed: ${String(e)}` })) })
      )
    }, opts),
    serveEndpoint(nc, mvccDefragment, at, (req) => {
      // etcd rewrites the bbolt file; natcd writes a compacted LMDB copy (everything committed
      // first) and restarts on it, as after installing a snapshot. Entries applied meanwhile
      // are applied again from raft after the restart.
      if (lifecycle.restarting) return req.reply({ err: toErrorData(new MalformedFrame({ reason: "restarting" })) })
      // A compaction's dropped records still waiting for deletion would go into the copy.
      try {
        applier.finishCompaction()
      } catch (e) {
        return req.reply({ err: toErrorData(new MalformedFrame({ reason: `defragment failed: ${String(e)}` })) })
      }
      applier.commit()
      lifecycle.restarting = true
      backend.backup(`${dbPath}.install`, true).then(
        () => {
          req.reply({ ok: { sizeBytes: statSync(`${dbPath}.install`).size } })
          runDetached(Effect.logInfo("defragmented; restarting on the compacted copy"))
          setTimeout(() => process.kill(process.pid, "SIGTERM"), restartAfterReplyMs)
        },
        (e) => {
          lifecycle.restarting = false
          req.reply({ err: toErrorData(new MalformedFrame({ reason: `defragment failed: ${String(e)}` })) })
        }
      )
    }, opts),
    serveEndpoint(nc, mvccInstall, at, (req) => {
      const { fromMember, snapshot } = req.body
      const refuse = (reason: string) => req.reply({ err: toErrorData(new MalformedFrame({ reason: `install refused: ${reason}` })) })
      if (lifecycle.restarting) return refuse("restarting")
      if (installing) return refuse("another install is under way")
      installing = true
      // Only a snapshot of a current member, above what is applied, is fetched (./snapshot.ts
      // installRefusal); the fetched file must match its size, SHA-256 and index before it is
      // put in place. On any failure the current database stays and the error is returned.
      const install = async () => {
        const { members, leader } = await callEndpoint(rpc, raftMembers, at, {}, { timeoutMs: raftCallTimeoutMs })
        const refusal = installRefusal(fromMember, snapshot, { cluster: at.cluster, members, leader, appliedIndex: applier.appliedIndex() })
        if (refusal !== undefined) throw new Error(refusal)
        const source = subjectOf(mvccChunk, { cluster: at.cluster, member: fromMember })
        await snapshots.fetch(snapshot, async (offset, length) => {
          return okOf(await callEndpoint(rpc, mvccChunk, source, { file: snapshot.file, offset, length }, { timeoutMs: snapshotChunkTimeoutMs, retryAfterMs: snapshotChunkRetryMs })).data
        })
      }
      install().then(
        () => {
          // The fetched state is in place for the next start: answer, then restart on it.
          lifecycle.restarting = true
          req.reply({ ok: { appliedIndex: snapshot.index } })
          runDetached(Effect.logInfo("snapshot fetched; restarting on it").pipe(Effect.annotateLogs({ index: snapshot.index, sizeBytes: snapshot.sizeBytes, fromMember })))
          setTimeout(() => process.kill(process.pid, "SIGTERM"), restartAfterReplyMs)
        },
        (e) => {
          runDetached(Effect.logWarning("snapshot install refused or failed; kept the current database").pipe(Effect.annotateLogs({ fromMember, index: snapshot.index, error: String(e) })))
          // A refusal is an Error with the reason as its message; an answered error (an instance with no message of its own) goes by its tag.
          refuse(describeError(e))
        }
      ).finally(() => (installing = false))
    }, opts)
  ]
}
