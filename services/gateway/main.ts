/**
 * The gateway process: etcd's v3 gRPC API for one member.
 *
 *   node services/gateway/main.ts --member=m1 [--listen-client-urls=http://127.0.0.1:2379]
 *     [--request-timeout-ms=7000] [--max-request-bytes=1572864] (+ the common flags)
 */
import { Option } from "commander"
import { Effect, Layer, Schema } from "effect"
import { RaftStatus } from "../../shared/schema.ts"
import { subject } from "../../shared/subjects.ts"
import { launch, Nats, parseFlags, positiveInt } from "../runtime/process.ts"
import { makeBackendMaintenanceHandlers } from "./backend-maintenance.ts"
import { makeClusterHandlers } from "./cluster.ts"
import { makeKvHandlers } from "./kv.ts"
import { makeMaintenanceHandlers, quotaBytes } from "./maintenance.ts"
import { Proposer } from "./proposer.ts"
import { startGrpcServer } from "./server.ts"

interface GatewayFlags {
  readonly listenClientUrls: string
  readonly requestTimeoutMs: number
  readonly maxRequestBytes: number
  readonly quotaBackendBytes: number
}

const flags = parseFlags<GatewayFlags>("gateway", process.argv, (c) =>
  c
    .addOption(new Option("--listen-client-urls <url>", "client URL to serve gRPC on").env("NATCD_LISTEN_CLIENT_URLS").default("http://127.0.0.1:2379"))
    .addOption(new Option("--request-timeout-ms <ms>", "write/read timeout (etcd: 5 s + 2 x election timeout)").argParser(positiveInt).default(7000))
    .addOption(new Option("--max-request-bytes <n>", "largest request accepted, as etcd").argParser(positiveInt).default(1572864))
    .addOption(
      new Option("--quota-backend-bytes <n>", "backend quota (0: etcd's 2 GiB default, negative: none)")
        .env("NATCD_QUOTA_BACKEND_BYTES").argParser((v) => Number.parseInt(v, 10)).default(0)
    )
)

const GatewayLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc, instance } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const proposer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Proposer(nc, rpc, {
          member: flags.member,
          proposeSubject: subject({ ...at, service: "raft", endpoint: "propose" }),
          resultSubject: subject({ ...at, service: "gateway", endpoint: "result", instance }),
          requestTimeoutMs: flags.requestTimeoutMs,
          resultWaitMs: 3000,
          maxRequestBytes: flags.maxRequestBytes
        })
      ),
      (p) => Effect.sync(() => p.close())
    )
    const raftStatusSubject = subject({ ...at, service: "raft", endpoint: "status" })
    let identity: Promise<{ clusterId: bigint; memberId: bigint }> | undefined
    const fetchIdentity = async () => {
      const frame = await rpc.call(raftStatusSubject, "raft.status", {}, { timeoutMs: flags.requestTimeoutMs })
      const s = Schema.decodeUnknownSync(RaftStatus)(frame.body)
      return { clusterId: s.clusterId, memberId: s.memberId }
    }
    // The quota check needs the member id, learned lazily through the KV handlers' cache.
    let memberIdentity: () => Promise<{ memberId: bigint }> = () => Promise.reject(new Error("not ready"))
    const maintenance = makeMaintenanceHandlers({
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      subjects: {
        mvccStatus: subject({ ...at, service: "mvcc", endpoint: "status" }),
        mvccAlarms: subject({ ...at, service: "mvcc", endpoint: "alarms" })
      },
      quotaBytes: quotaBytes(flags.quotaBackendBytes),
      identity: () => memberIdentity()
    })
    const handlers = makeKvHandlers({
      checkQuota: maintenance.checkQuota,
      statusErrors: maintenance.statusErrors,
      rpc,
      proposer,
      requestTimeoutMs: flags.requestTimeoutMs,
      subjects: {
        readIndex: subject({ ...at, service: "raft", endpoint: "readindex" }),
        range: subject({ ...at, service: "mvcc", endpoint: "range" }),
        raftStatus: raftStatusSubject,
        mvccStatus: subject({ ...at, service: "mvcc", endpoint: "status" })
      },
      identity: () => {
        identity ??= fetchIdentity().catch((e) => {
          identity = undefined
          throw e
        })
        return identity
      }
    })
    memberIdentity = handlers.identity
    const cluster = makeClusterHandlers({
      rpc,
      cluster: flags.cluster,
      member: flags.member,
      requestTimeoutMs: flags.requestTimeoutMs,
      identity: handlers.identity
    })
    const backendMaintenance = makeBackendMaintenanceHandlers({
      rpc,
      requestTimeoutMs: flags.requestTimeoutMs,
      identity: handlers.identity,
      raftTerm: async () => {
        const frame = await rpc.call(raftStatusSubject, "raft.status", {}, { timeoutMs: flags.requestTimeoutMs })
        return Schema.decodeUnknownSync(RaftStatus)(frame.body).term
      },
      subjects: {
        hashKv: subject({ ...at, service: "mvcc", endpoint: "hashkv" }),
        snapshot: subject({ ...at, service: "mvcc", endpoint: "snapshot" }),
        chunk: subject({ ...at, service: "mvcc", endpoint: "chunk" }),
        defragment: subject({ ...at, service: "mvcc", endpoint: "defragment" })
      }
    })
    const url = new URL(flags.listenClientUrls.split(",")[0]!)
    const address = `${url.hostname}:${url.port || "2379"}`
    yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        startGrpcServer(address, {
          KV: { Range: handlers.Range, Put: handlers.Put, DeleteRange: handlers.DeleteRange, Txn: handlers.Txn, Compact: handlers.Compact },
          Cluster: { MemberList: cluster.MemberList, MemberAdd: cluster.MemberAdd, MemberRemove: cluster.MemberRemove, MemberUpdate: cluster.MemberUpdate, MemberPromote: cluster.MemberPromote },
          Maintenance: {
            Status: handlers.Status,
            MoveLeader: cluster.MoveLeader,
            Alarm: maintenance.Alarm,
            HashKV: backendMaintenance.HashKV,
            Defragment: backendMaintenance.Defragment,
            Snapshot: backendMaintenance.Snapshot
          }
        }, flags.maxRequestBytes)
      ).pipe(Effect.orDie),
      (server) => Effect.promise(() => new Promise<void>((r) => server.tryShutdown(() => r())))
    )
    yield* Effect.logInfo("serving etcd v3 gRPC").pipe(Effect.annotateLogs({ address }))
  })
)

launch("gateway", flags, GatewayLive)
