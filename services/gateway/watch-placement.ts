/**
 * Where a gateway opens a new watch session: on the least-loaded live replica of the watch
 * service (pure: no IO, no clock; the caller passes the time).
 *
 * Every replica publishes its load on `watch.load` every second (shared/endpoints.ts
 * watchLoadEveryMs) and at once when it starts taking sessions or starts draining. A replica is
 * a candidate while its latest report is younger than {@link loadStaleMs} and it is not
 * draining. Between two reports the gateway adds the sessions it placed there itself and takes
 * off those it closed there, so that a burst of new streams spreads instead of piling onto the
 * replica that looked emptiest at the last report, and streams opened right after many closed
 * (a client reconnecting its watches) are not placed by counts that still hold the closed ones;
 * ties go to the fewer unacknowledged bytes, then to the smaller name. A replica
 * started under load reports 0 sessions and so takes the new streams at once. When no replica
 * is known (a gateway just started, or every report is stale) the caller falls back to the
 * queue group `watch.open`, where NATS picks one.
 */

/** A replica's load as it reports it (shared/schema.ts WatchLoadBody). */
export interface ReplicaLoad {
  /** Watch sessions (client streams) it holds. */
  readonly sessions: number
  /** Response bytes in flight to gateways, not yet acknowledged. */
  readonly unackedBytes: number
  /** It takes no new sessions and hands its own over (stopping). */
  readonly draining: boolean
}

/** A report older than this (ms, three missed reports) no longer makes its replica a candidate. */
export const loadStaleMs = 3000

/** Replicas a gateway tracks at most; a report from a new one beyond it evicts the stalest. */
export const maxTrackedReplicas = 1024

interface Tracked {
  load: ReplicaLoad
  /** When the latest report arrived (ms, the caller's clock). */
  atMs: number
  /** Sessions this gateway placed there since that report. */
  placed: number
  /** Sessions this gateway closed there since that report. */
  closed: number
}

/** The replicas a gateway has heard of and their load, for {@link ReplicaPlacement.pick}. */
export class ReplicaPlacement {
  private readonly replicas = new Map<string, Tracked>()

  /**
   * Records `replica`'s report received at `nowMs`. Returns true when it is the first report of
   * it draining (the caller then moves its sessions elsewhere).
   */
  report(replica: string, load: ReplicaLoad, nowMs: number): boolean {
    const before = this.replicas.get(replica)
    if (before === undefined && this.replicas.size >= maxTrackedReplicas) this.evictStalest()
    this.replicas.set(replica, { load, atMs: nowMs, placed: 0, closed: 0 })
    return load.draining && before?.load.draining !== true
  }

  /** Notes that this gateway opened a session on `replica` (counted until its next report). */
  placed(replica: string): void {
    const t = this.replicas.get(replica)
    if (t !== undefined) t.placed++
  }

  /** Notes that this gateway closed a session on `replica` (counted until its next report). */
  closed(replica: string): void {
    const t = this.replicas.get(replica)
    if (t !== undefined) t.closed++
  }

  /**
   * Forgets `replica` until it reports again (it stopped answering, or refused a session), so
   * that new sessions go elsewhere meanwhile.
   */
  forget(replica: string): void {
    this.replicas.delete(replica)
  }

  /** True while `replica`'s latest report says it is draining. */
  draining(replica: string): boolean {
    return this.replicas.get(replica)?.load.draining === true
  }

  /**
   * The replica to open a new session on at `nowMs`: the live, non-draining one with the fewest
   * sessions (reported + placed since − closed since, at least 0), then the fewest unacknowledged bytes, then the smallest
   * name; never one of `exclude`. Undefined when there is none (use the queue group).
   */
  pick(nowMs: number, exclude: ReadonlySet<string> = new Set()): string | undefined {
    let best: string | undefined
    let bestTracked: Tracked | undefined
    for (const [name, t] of this.replicas) {
      if (t.load.draining || nowMs - t.atMs > loadStaleMs || exclude.has(name)) continue
      if (bestTracked === undefined || better(name, t, best!, bestTracked)) {
        best = name
        bestTracked = t
      }
    }
    return best
  }

  /** Replicas tracked (bounded by {@link maxTrackedReplicas}). */
  get size(): number {
    return this.replicas.size
  }

  private evictStalest(): void {
    let stalest: string | undefined
    let atMs = Infinity
    for (const [name, t] of this.replicas) {
      if (t.atMs < atMs) {
        stalest = name
        atMs = t.atMs
      }
    }
    if (stalest !== undefined) this.replicas.delete(stalest)
  }
}

/** Sessions on a replica as this gateway estimates them: its report, corrected by this gateway's own opens and closes since. */
const sessionsOf = (t: Tracked): number => Math.max(0, t.load.sessions + t.placed - t.closed)

const better = (name: string, t: Tracked, bestName: string, best: Tracked): boolean => {
  const sessions = sessionsOf(t)
  const bestSessions = sessionsOf(best)
  if (sessions !== bestSessions) return sessions < bestSessions
  if (t.load.unackedBytes !== best.load.unackedBytes) return t.load.unackedBytes < best.load.unackedBytes
  return name < bestName
}
