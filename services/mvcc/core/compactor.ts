/**
 * Auto-compaction decisions, as etcd's v3compactor makes them (etcd 3.4
 * etcdserver/api/v3compactor: compactor.go, periodic.go, revision.go), without clocks or IO:
 * the shell (../compactor.ts) calls these at the intervals named here, passing the time (ms)
 * and the store revision, proposes the compaction they return, and reports how it went.
 *
 * Modes (`--auto-compaction-mode`, `--auto-compaction-retention`, see
 * {@link parseCompactionRetention}):
 * - revision: every {@link revisionCheckIntervalMs} (5 min), compact at
 *   currentRevision - retention, unless that is <= 0 or the revision compacted last time.
 * - periodic with period P: every min(P, 1 h) / 10 the current revision is recorded (a window
 *   of P / interval + 1 revisions); after P has passed since the start (then every min(P, 1 h)
 *   since the last success), compact at the oldest recorded revision, i.e. the revision of
 *   about P ago.
 *
 * A compaction that fails as already compacted counts as a success (etcd does the same). Only
 * the leader compacts: while the member is not the leader a check does nothing (etcd pauses
 * its compactor on leadership changes).
 */

/** etcd revInterval: how often the revision compactor checks, in ms (5 minutes). */
export const revisionCheckIntervalMs = 5 * 60 * 1000

const hourMs = 60 * 60 * 1000

/** How a proposed compaction ended. */
export type CompactionOutcome = "ok" | "compacted" | "failed"

/** The settings of an auto compactor. */
export type AutoCompaction =
  | { readonly mode: "periodic"; readonly periodMs: number }
  | { readonly mode: "revision"; readonly retention: number }

/** etcd's revision compactor (revision.go). Invariant: prev is the last revision compacted, 0 for none. */
export class RevisionCompactor {
  private prev = 0
  private readonly retention: number

  constructor(retention: number) {
    this.retention = retention
  }

  /** The revision to compact at this check, or undefined. `currentRev` is the store revision. */
  due(currentRev: number, leader: boolean): number | undefined {
    if (!leader) return undefined
    const rev = currentRev - this.retention
    if (rev <= 0 || rev === this.prev) return undefined
    return rev
  }

  /** Records the outcome of compacting at `rev`. */
  done(rev: number, outcome: CompactionOutcome): void {
    if (outcome !== "failed") this.prev = rev
  }
}

/**
 * etcd's periodic compactor (periodic.go). Invariants: revs holds at most `retentions`
 * revisions, oldest first; baseInterval is the period until the first compaction, then
 * min(period, 1 h).
 */
export class PeriodicCompactor {
  private revs: number[] = []
  private lastSuccessMs: number
  private baseIntervalMs: number
  private readonly periodMs: number

  /** `periodMs` > 0; `nowMs` is the start time. */
  constructor(periodMs: number, nowMs: number) {
    this.periodMs = periodMs
    this.lastSuccessMs = nowMs
    this.baseIntervalMs = periodMs
  }

  /** min(period, 1 h): the interval between compactions after the first. */
  compactIntervalMs(): number {
    return Math.min(this.periodMs, hourMs)
  }

  /** min(period, 1 h) / 10: how often the shell calls {@link record} then {@link due}. */
  checkIntervalMs(): number {
    return this.compactIntervalMs() / 10
  }

  private retentions(): number {
    return Math.floor(this.periodMs / this.checkIntervalMs()) + 1
  }

  /** Records the store revision at the start of a check interval. */
  record(currentRev: number): void {
    this.revs.push(currentRev)
    if (this.revs.length > this.retentions()) this.revs = this.revs.slice(1)
  }

  /** The revision to compact at the end of a check interval, or undefined. */
  due(nowMs: number, leader: boolean): number | undefined {
    if (!leader) return undefined
    if (nowMs - this.lastSuccessMs < this.baseIntervalMs) return undefined
    if (this.baseIntervalMs === this.periodMs) this.baseIntervalMs = this.compactIntervalMs()
    return this.revs[0]
  }

  /** Records the outcome of the compaction {@link due} asked for. */
  done(nowMs: number, outcome: CompactionOutcome): void {
    if (outcome !== "failed") this.lastSuccessMs = nowMs
  }
}

const units: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: hourMs }

/**
 * Parses a Go duration ("100ms", "1h30m", "0.5s", "0") into ms. Returns undefined when the
 * text is not one.
 */
export const parseGoDurationMs = (text: string): number | undefined => {
  if (text === "0") return 0
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y
  let total = 0
  let i = 0
  if (text.length === 0) return undefined
  while (i < text.length) {
    re.lastIndex = i
    const m = re.exec(text)
    if (m === null) return undefined
    total += Number(m[1]) * units[m[2]!]!
    i = re.lastIndex
  }
  return total
}

/**
 * Parses `--auto-compaction-retention` as etcd does (embed/config.go
 * parseCompactionRetention): a non-negative integer means hours in periodic mode and revisions
 * in revision mode; anything else must be a Go duration (periodic mode). Returns undefined for
 * a retention of zero (auto-compaction off, etcd's default), or an error message.
 */
export const parseCompactionRetention = (
  mode: string,
  retention: string
): AutoCompaction | undefined | { readonly error: string } => {
  if (mode !== "periodic" && mode !== "revision") return { error: `unsupported compaction mode ${mode}` }
  const n = /^\d+$/.test(retention) ? Number(retention) : undefined
  if (n !== undefined) {
    if (n === 0) return undefined
    return mode === "revision" ? { mode, retention: n } : { mode, periodMs: n * hourMs }
  }
  const ms = parseGoDurationMs(retention)
  if (ms === undefined) return { error: `error parsing CompactionRetention: time: invalid duration ${JSON.stringify(retention)}` }
  if (ms === 0) return undefined
  // etcd keeps the duration's nanoseconds as the revision count in revision mode; natcd
  // accepts only integers there.
  if (mode === "revision") return { error: `revision retention must be an integer: ${JSON.stringify(retention)}` }
  return { mode, periodMs: ms }
}
