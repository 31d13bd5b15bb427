/**
 * Majority quorum arithmetic: the commit index a set of voters has reached, and the outcome of
 * a vote. Pure functions over member ids; they know nothing of terms or logs.
 *
 * Follows etcd raft quorum/majority.go. natcd uses one majority configuration at a time (no
 * joint consensus), so quorum/joint.go has no counterpart; see {@link committedIndex} for the
 * one place where that changes a result.
 */
import type { Index, MemberId } from "../../../shared/ids.ts"

/** Outcome of a vote or of an activity check (etcd quorum.VoteResult). */
export type VoteResult = "VotePending" | "VoteLost" | "VoteWon"

/**
 * The largest index acknowledged by a majority of `voters`: sort the acknowledged indexes
 * (0 for a voter that has not acknowledged) in descending order and take the one at position
 * n/2. For voters acking 5, 3, 3, 1 and 0: sorted 5 3 3 1 0, majority 3, result 3.
 *
 * An empty configuration yields 0. (etcd returns MaxUint64 so that an empty half of a joint
 * configuration never constrains the other half; natcd has no joint configurations, and 0 keeps
 * the commit index where it is.)
 */
export const committedIndex = (
  voters: ReadonlyArray<MemberId>,
  ackedIndex: (id: MemberId) => Index | undefined
): Index => {
  const n = voters.length
  if (n === 0) return 0 as Index
  const srt = voters.map((id) => ackedIndex(id) ?? 0).sort((a, b) => b - a)
  return srt[Math.floor(n / 2)]! as Index
}

/**
 * Whether `votes` (true: granted, false: rejected, absent: not yet answered) make a majority
 * of `voters` (etcd MajorityConfig.VoteResult). Votes from non-voters are ignored. An empty
 * configuration wins, as in etcd.
 */
export const voteResult = (voters: ReadonlyArray<MemberId>, votes: ReadonlyMap<MemberId, boolean>): VoteResult => {
  if (voters.length === 0) return "VoteWon"
  let granted = 0
  let missing = 0
  for (const id of voters) {
    const v = votes.get(id)
    if (v === undefined) missing++
    else if (v) granted++
  }
  const q = Math.floor(voters.length / 2) + 1
  if (granted >= q) return "VoteWon"
  if (granted + missing >= q) return "VotePending"
  return "VoteLost"
}
