/**
 * The leader's view of one member's log and how it replicates to it, in one of three states:
 *
 * - StateProbe: the leader does not know where the follower's log ends. It sends one append
 *   at a time (then pauses until a response or the next heartbeat response) and walks `next`
 *   back on rejections.
 * - StateReplicate: the follower is known to match up to `match`; the leader streams appends
 *   optimistically, advancing `next` as it sends, bounded by the {@link Inflights} window.
 * - StateSnapshot: the follower needs entries the leader has compacted; a snapshot is on its
 *   way and appends are paused until the follower acknowledges it.
 *
 * Follows etcd raft tracker/progress.go.
 *
 * Invariant: 0 <= match < next. In StateSnapshot, next === pendingSnapshot + 1.
 */
import type { Index } from "../../../shared/ids.ts"
import { Inflights } from "./inflights.ts"
import type { ProgressStateType, ProgressStatus } from "./types.ts"

/** Replication progress of one member, tracked by the leader (etcd tracker.Progress). */
export class Progress {
  /** Highest index known to match the leader's log. */
  match: Index
  /** Next index to send; entries in (match, next) are in flight. */
  next: Index
  /** Highest commit index sent to the follower (may regress on probe and rejection). */
  sentCommit: Index = 0 as Index
  state: ProgressStateType = "StateProbe"
  /** Index of the snapshot sent while in StateSnapshot, else 0. */
  pendingSnapshot: Index = 0 as Index
  /**
   * True when the member was heard from recently; reset by the leader every election timeout
   * for CheckQuorum. Always true for the leader itself.
   */
  recentActive = false
  /** True when appends are throttled (a probe is outstanding, or the inflight window is full). */
  msgAppFlowPaused = false
  readonly inflights: Inflights
  isLearner: boolean

  constructor(fields: { match: Index; next: Index; maxInflight: number; isLearner: boolean; recentActive?: boolean }) {
    this.match = fields.match
    this.next = fields.next
    this.inflights = new Inflights(fields.maxInflight)
    this.isLearner = fields.isLearner
    this.recentActive = fields.recentActive ?? false
  }

  private resetState(state: ProgressStateType): void {
    this.msgAppFlowPaused = false
    this.pendingSnapshot = 0 as Index
    this.state = state
    this.inflights.reset()
  }

  /**
   * Enters StateProbe. After a snapshot, probing resumes after the snapshot's index (it was
   * reported delivered); otherwise right after match.
   */
  becomeProbe(): void {
    if (this.state === "StateSnapshot") {
      const pending = this.pendingSnapshot
      this.resetState("StateProbe")
      this.next = (Math.max(this.match + 1, pending + 1)) as Index
    } else {
      this.resetState("StateProbe")
      this.next = (this.match + 1) as Index
    }
    this.sentCommit = Math.min(this.sentCommit, this.next - 1) as Index
  }

  /** Enters StateReplicate, streaming from match + 1. */
  becomeReplicate(): void {
    this.resetState("StateReplicate")
    this.next = (this.match + 1) as Index
  }

  /** Enters StateSnapshot for a snapshot at `snapshotIndex`. */
  becomeSnapshot(snapshotIndex: Index): void {
    this.resetState("StateSnapshot")
    this.pendingSnapshot = snapshotIndex
    this.next = (snapshotIndex + 1) as Index
    this.sentCommit = snapshotIndex
  }

  /**
   * Accounts for an append of `entries` entries just sent: in StateReplicate `next` moves past
   * them and the message joins the inflight window; in StateProbe a non-empty append pauses the
   * flow until a response arrives.
   */
  sentEntries(entries: number): void {
    if (this.state === "StateReplicate") {
      if (entries > 0) {
        this.next = (this.next + entries) as Index
        this.inflights.add((this.next - 1) as Index)
      }
      this.msgAppFlowPaused = this.inflights.full()
    } else if (this.state === "StateProbe") {
      if (entries > 0) this.msgAppFlowPaused = true
    } else {
      throw new Error(`sending append in unhandled state ${this.state}`)
    }
  }

  /** True when sending commit `index` could raise the follower's commit index. */
  canBumpCommit(index: Index): boolean {
    return index > this.sentCommit && this.sentCommit < this.next - 1
  }

  /** Records the commit index just sent to the follower. */
  sentCommitTo(commit: Index): void {
    this.sentCommit = commit
  }

  /** Raises match to n if it is newer; returns whether it changed. Unpauses the flow. */
  maybeUpdate(n: Index): boolean {
    if (n <= this.match) return false
    this.match = n
    this.next = Math.max(this.next, n + 1) as Index
    this.msgAppFlowPaused = false
    return true
  }

  /**
   * Handles a rejected append for index `rejected` with the follower's hint `matchHint`
   * (etcd MaybeDecrTo). Returns false when the rejection is stale. In StateReplicate, falls back
   * to match + 1; in StateProbe, jumps to min(rejected, matchHint + 1) but never below match + 1.
   */
  maybeDecrTo(rejected: Index, matchHint: Index): boolean {
    if (this.state === "StateReplicate") {
      if (rejected <= this.match) return false
      this.next = (this.match + 1) as Index
      this.sentCommit = Math.min(this.sentCommit, this.next - 1) as Index
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1) as Index
    this.sentCommit = Math.min(this.sentCommit, this.next - 1) as Index
    this.msgAppFlowPaused = false
    return true
  }

  /** True when the leader should not send appends now (etcd IsPaused). */
  isPaused(): boolean {
    return this.state === "StateSnapshot" ? true : this.msgAppFlowPaused
  }

  /** An immutable copy for {@link ProgressStatus}. */
  toStatus(): ProgressStatus {
    return {
      match: this.match,
      next: this.next,
      state: this.state,
      pendingSnapshot: this.pendingSnapshot,
      recentActive: this.recentActive,
      isLearner: this.isLearner,
      paused: this.isPaused(),
      inflight: this.inflights.size()
    }
  }
}
