/**
 * The member's health as its gateway sees it, for the gateway's /health and /readyz and for
 * `etcdctl endpoint health`.
 *
 * etcd answers /health by checking that the member has a leader, has no alarm that stops
 * writes, and can serve a linearizable read (server/etcdserver/api/etcdhttp/health.go); etcdctl
 * `endpoint health` issues a linearizable Get of the key "health" and counts the member healthy
 * when it succeeds. natcd's member is several processes, so the gateway also asks its member's
 * other services when a check runs: each one's NATS health endpoint
 * (`natcd.<cluster>.<member>.<service>.health`, liveness checks only), all at once. A
 * linearizable Range of exactly the key "health" (etcdctl's probe) fails with "request timed
 * out" while one of them does not answer healthy, so `etcdctl endpoint health` reports the
 * member unhealthy when any of its services is down, not only raft or mvcc (whose absence
 * already fails the read itself). Nothing is asked between checks: an idle member's services
 * are not woken for a health nobody reads.
 */
import { health, mvccAlarms, mvccStatus, raftReadIndex, raftStatus } from "../../shared/endpoints.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { callEndpoint, isUnanswered } from "../runtime/rpc.ts"
import { healthCallTimeoutMs } from "./timeouts.ts"
import { describeError } from "../../shared/errors.ts"

/** The member services the gateway asks. */
export const memberServices = ["raft", "wal", "mvcc", "lease"] as const

/**
 * Asks the member's services on demand. `problems()` lists what is wrong now (empty: healthy).
 * Checks made while a round of calls is out share it, so a burst of probes costs one round of
 * four calls; a check made after a round ended starts a new one, so no answer is older than
 * the check.
 */
export class MemberHealth {
  private inFlight: Promise<ReadonlyArray<string>> | undefined
  private readonly rpc: RpcClient
  private readonly at: { readonly cluster: string; readonly member: string }

  constructor(rpc: RpcClient, at: { readonly cluster: string; readonly member: string }) {
    this.rpc = rpc
    this.at = at
  }

  /**
   * What is wrong with the member's services, one line each (`<service>: <reasons>` or
   * `<service>: no answer` after {@link healthCallTimeoutMs} ms); [] when all answer healthy.
   * Never rejects.
   */
  problems(): Promise<ReadonlyArray<string>> {
    if (this.inFlight !== undefined) return this.inFlight
    const round = Promise.all(memberServices.map((service) =>
      callEndpoint(this.rpc, health, { ...this.at, role: service }, { ready: false }, { timeoutMs: healthCallTimeoutMs, traceparent: "" }).then(
        (r) => (r.healthy ? undefined : `${service}: ${r.reasons.join("; ")}`),
        () => `${service}: no answer`
      )
    )).then((lines) => lines.filter((l): l is string => l !== undefined)).finally(() => {
      this.inFlight = undefined
    })
    this.inFlight = round
    return round
  }
}

/**
 * The gateway's readiness check (etcd's /health): the member knows a leader and a
 * linearizable read goes through (a ReadIndex from raft, then the mvcc service's status once
 * applied), and its services answer. Resolves undefined when healthy, else the reason.
 */
export const checkMemberReady = async (
  rpc: RpcClient,
  subjects: { readonly raftStatus: string; readonly readIndex: string; readonly mvccStatus: string },
  members: MemberHealth
): Promise<string | undefined> => {
  // Asked first, so a silent service's timeout runs beside the other calls, not after them.
  const serviceProblems = members.problems()
  const status = await callEndpoint(rpc, raftStatus, subjects.raftStatus, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" })
  if (status.leader === 0n) return "no leader"
  // An error frame or `{ err }` reply is a failed read; no reply (timeout, stopping) throws as before.
  const ri = await callEndpoint(rpc, raftReadIndex, subjects.readIndex, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" }).catch((e: unknown) => {
    if (isUnanswered(e)) throw e
    return { err: e }
  })
  if ("err" in ri) return "linearizable read failed (no ReadIndex)"
  await callEndpoint(rpc, mvccStatus, subjects.mvccStatus, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" })
  const problems = await serviceProblems
  return problems.length === 0 ? undefined : problems.join("; ")
}

/** True for etcdctl `endpoint health`'s probe: a Range of exactly the key "health". */
export const isHealthProbe = (key: Uint8Array, rangeEnd: Uint8Array | undefined): boolean =>
  key.length === 6 && Buffer.from(key).toString("latin1") === "health" && (rangeEnd === undefined || rangeEnd.length === 0)

/** etcd's /health answer (server/etcdserver/api/etcdhttp/health.go Health): "true" or "false", and why not. */
export interface EtcdHealth {
  readonly health: "true" | "false"
  readonly reason: string
}

/**
 * etcd's /health of the client port, as etcd 3.5 checks it: no active alarm other than those
 * `excluded` (`?exclude=NOSPACE`; reason "ALARM NOSPACE" or "ALARM CORRUPT"), a leader unless
 * `serializable` (`?serializable=true`; reason "RAFT NO LEADER"), then a read: linearizable (a
 * ReadIndex, then the mvcc service's status) or, serializable, the mvcc service's status alone
 * (reason "RANGE ERROR:<error>"). The member's other services must answer too (see
 * {@link MemberHealth}), as for the gateway's readiness.
 */
export const etcdHealth = async (
  rpc: RpcClient,
  subjects: { readonly raftStatus: string; readonly readIndex: string; readonly mvccStatus: string; readonly mvccAlarms: string },
  members: MemberHealth,
  query: { readonly excluded: ReadonlySet<string>; readonly serializable: boolean }
): Promise<EtcdHealth> => {
  const failed = (reason: string): EtcdHealth => ({ health: "false", reason })
  const serviceProblems = members.problems()
  try {
    const { alarms } = await callEndpoint(rpc, mvccAlarms, subjects.mvccAlarms, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" })
    for (const a of alarms) {
      if (a.alarm === "NONE" || query.excluded.has(a.alarm)) continue
      return failed(`ALARM ${a.alarm}`)
    }
  } catch (e) {
    return failed(`ALARM ERROR:${describeError(e)}`)
  }
  if (!query.serializable) {
    const status = await callEndpoint(rpc, raftStatus, subjects.raftStatus, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" }).catch(() => undefined)
    if (status === undefined || status.leader === 0n) return failed("RAFT NO LEADER")
  }
  try {
    if (!query.serializable) await callEndpoint(rpc, raftReadIndex, subjects.readIndex, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" })
    await callEndpoint(rpc, mvccStatus, subjects.mvccStatus, {}, { timeoutMs: healthCallTimeoutMs, traceparent: "" })
  } catch (e) {
    return failed(`RANGE ERROR:${describeError(e)}`)
  }
  const problems = await serviceProblems
  return problems.length === 0 ? { health: "true", reason: "" } : failed(problems.join("; "))
}
