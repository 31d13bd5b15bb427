/**
 * The cluster configuration as the core tracks it: the voters and learners, one
 * {@link Progress} per member, and the votes of the current election. Quorum questions
 * (committed index, election outcome, CheckQuorum activity) are answered here by delegating to
 * quorum.ts over the voters only; learners never count.
 *
 * Follows etcd raft tracker/tracker.go, without joint configurations.
 *
 * Invariant: voters and learners are disjoint, and progress has exactly their union as keys.
 */
import type { Index, MemberId } from "../../../shared/ids.ts"
import type { ConfState } from "../../../shared/raft-types.ts"
import type { Progress } from "./progress.ts"
import { committedIndex, type VoteResult, voteResult } from "./quorum.ts"

const byId = (a: MemberId, b: MemberId): number => (a < b ? -1 : a > b ? 1 : 0)

/** Voters, learners and their progress (etcd tracker.ProgressTracker). */
export class ProgressTracker {
  voters: Set<MemberId> = new Set()
  learners: Set<MemberId> = new Set()
  progress: Map<MemberId, Progress> = new Map()
  votes: Map<MemberId, boolean> = new Map()
  readonly maxInflight: number

  constructor(maxInflight: number) {
    this.maxInflight = maxInflight
  }

  /** The configuration as a ConfState, ids sorted. */
  confState(): ConfState {
    return { voters: this.voterIds(), learners: this.learnerIds() }
  }

  /** True when this is a single-voter configuration. */
  isSingleton(): boolean {
    return this.voters.size === 1
  }

  /** The highest index stored on a majority of voters. */
  committed(): Index {
    return committedIndex(this.voterIds(), (id) => this.progress.get(id)?.match)
  }

  /** Calls f for every member (voters and learners) in increasing id order. */
  visit(f: (id: MemberId, pr: Progress) => void): void {
    const ids = [...this.progress.keys()].sort(byId)
    for (const id of ids) f(id, this.progress.get(id)!)
  }

  /** True when a majority of voters was recently active (CheckQuorum). */
  quorumActive(): boolean {
    const votes = new Map<MemberId, boolean>()
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) votes.set(id, pr.recentActive)
    }
    return voteResult(this.voterIds(), votes) === "VoteWon"
  }

  /** Voter ids, sorted. */
  voterIds(): MemberId[] {
    return [...this.voters].sort(byId)
  }

  /** Learner ids, sorted. */
  learnerIds(): MemberId[] {
    return [...this.learners].sort(byId)
  }

  /** Clears the votes of the previous election. */
  resetVotes(): void {
    this.votes = new Map()
  }

  /** Records the first answer of `id` in this election; later answers are ignored. */
  recordVote(id: MemberId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted)
  }

  /** Granted and rejected counts among voters, and the election's outcome so far. */
  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0
    let rejected = 0
    for (const id of this.voters) {
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    return { granted, rejected, result: voteResult(this.voterIds(), this.votes) }
  }
}
