/**
 * The lease process: one member's lease service (./shell.ts; the expiry logic is the pure
 * ./core/lessor.ts). Only the leader's lease service tracks expiry and revokes expired leases,
 * through raft; every member's serves keep-alives and TimeToLive, forwarding them to the
 * leader's.
 *
 *   node services/lease/main.ts --member=m1 [--election-timeout=1000]
 *     [--lease-checkpoint=true] [--lease-checkpoint-interval=5m] [--lease-revoke-rate=1000]
 *     [--request-timeout-ms=7000] (+ the common flags)
 *
 * | flag | env | default | meaning |
 * |---|---|---|---|
 * | --election-timeout | NATCD_ELECTION_TIMEOUT | 1000 | ms; every lease is extended by it when a new leader takes over (etcd Promote) |
 * | --lease-checkpoint | NATCD_LEASE_CHECKPOINT | true | checkpoint remaining TTLs through raft (etcd --experimental-enable-lease-checkpoint) |
 * | --lease-checkpoint-interval | NATCD_LEASE_CHECKPOINT_INTERVAL | 5m | Go duration or ms (etcd --experimental-lease-checkpoint-interval) |
 * | --lease-revoke-rate | NATCD_LEASE_REVOKE_RATE | 1000 | expired leases revoked per second at most (etcd leaseRevokeRate) |
 * | --request-timeout-ms | | 7000 | how long a keep-alive or TimeToLive may take |
 */
import { Option } from "commander"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { durationMs, endpointOptions, launch, Nats, parseFlags, positiveInt, runDetached } from "../runtime/process.ts"
import { raftStatePollMs } from "../runtime/raft-state.ts"
import { defaultCheckpointIntervalMs, defaultLeaseRevokeRate } from "./core/lessor.ts"
import { LeaseShell } from "./shell.ts"
import { counterFrom, gaugeFrom } from "../runtime/metrics.ts"
import { syncPollMs } from "./timeouts.ts"

interface LeaseFlags {
  readonly electionTimeout: number
  readonly leaseCheckpoint: boolean
  readonly leaseCheckpointInterval: number
  readonly leaseRevokeRate: number
  readonly requestTimeoutMs: number
}

const bool = (value: string): boolean => {
  if (/^(true|1|yes|on)$/i.test(value)) return true
  if (/^(false|0|no|off)$/i.test(value)) return false
  throw new Error(`not a boolean: ${value}`)
}

const flags = parseFlags<LeaseFlags>("lease", process.argv, (c) =>
  c
    .addOption(new Option("--election-timeout <ms>", "raft election timeout (extension of every lease at a leader change)").env("NATCD_ELECTION_TIMEOUT").argParser(positiveInt).default(1000))
    .addOption(new Option("--lease-checkpoint <bool>", "checkpoint remaining lease TTLs through raft").env("NATCD_LEASE_CHECKPOINT").argParser(bool).default(true))
    .addOption(
      new Option("--lease-checkpoint-interval <duration>", "lease checkpoint interval (Go duration or ms)")
        .env("NATCD_LEASE_CHECKPOINT_INTERVAL").argParser(durationMs).default(defaultCheckpointIntervalMs)
    )
    .addOption(new Option("--lease-revoke-rate <n>", "expired leases revoked per second at most").env("NATCD_LEASE_REVOKE_RATE").argParser(positiveInt).default(defaultLeaseRevokeRate))
    .addOption(new Option("--request-timeout-ms <ms>", "time a keep-alive or TimeToLive may take").argParser(positiveInt).default(7000))
)

const LeaseLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc, instance } = yield* Nats
    const log = (level: "info" | "warn") => (message: string, fields: Record<string, unknown>) =>
      runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields)))
    const shell = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const s = new LeaseShell(nc, rpc, instance, {
          cluster: flags.cluster,
          member: flags.member,
          electionTimeoutMs: flags.electionTimeout,
          checkpointIntervalMs: flags.leaseCheckpoint ? flags.leaseCheckpointInterval : undefined,
          revokeRate: flags.leaseRevokeRate,
          requestTimeoutMs: flags.requestTimeoutMs,
          statusPollMs: raftStatePollMs,
          syncPollMs
        }, { info: log("info"), warn: log("warn") })
        s.start(endpointOptions("lease"))
        return s
      }),
      (s) => Effect.sync(() => s.stop())
    )
    // Metrics and readiness.
    gaugeFrom("natcd_lease_primary", "1 while this member's lease service is the primary lessor (the leader's), else 0.", () => (shell.isPrimary() ? 1 : 0))
    counterFrom("natcd_lease_revocations_total", "Expired leases whose revocation this lessor proposed through raft.", () => shell.counters.revokesProposed)
    counterFrom("natcd_lease_checkpoints_total", "Lease checkpoints proposed through raft.", () => shell.counters.checkpointsProposed)
    counterFrom("natcd_lease_renewals_total", "Keep-alives served by this lessor as primary.", () => shell.counters.renewals)
    counterFrom("natcd_lease_forwarded_total", "Keep-alives and TimeToLive requests forwarded to the leader's lease service.", () => shell.counters.forwarded)
    counterFrom("natcd_lease_promotions_total", "Times this lessor became primary.", () => shell.counters.promotions)
    yield* Effect.logInfo("lease service running").pipe(
      Effect.annotateLogs({ checkpoint: flags.leaseCheckpoint, checkpointIntervalMs: flags.leaseCheckpointInterval, primary: shell.isPrimary() })
    )
  })
)

launch("lease", flags, LeaseLive)
