/**
 * Quorum arithmetic against brute force, as etcd raft's quorum/quick_test.go: the committed
 * index of a majority configuration is the largest index that a majority of voters has
 * acknowledged, and a vote is won, lost or pending exactly when counting every way the missing
 * voters could still answer says so.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Index, MemberId } from "../../shared/ids.ts"
import { committedIndex, voteResult } from "../../services/raft/core/quorum.ts"

/** The largest index acked by more than half of the voters, found by trying every candidate. */
const bruteCommitted = (voters: ReadonlyArray<MemberId>, acked: ReadonlyMap<MemberId, number>): number => {
  if (voters.length === 0) return 0
  const candidates = [0, ...voters.map((v) => acked.get(v) ?? 0)]
  let best = 0
  for (const c of candidates) {
    const n = voters.filter((v) => (acked.get(v) ?? 0) >= c).length
    if (n > voters.length / 2) best = Math.max(best, c)
  }
  return best
}

/** The vote's outcome, found by enumerating every way the missing voters could answer. */
const bruteVote = (voters: ReadonlyArray<MemberId>, votes: ReadonlyMap<MemberId, boolean>): string => {
  if (voters.length === 0) return "VoteWon"
  const missing = voters.filter((v) => !votes.has(v))
  const granted = voters.filter((v) => votes.get(v) === true).length
  const outcomes = new Set<boolean>()
  for (let extra = 0; extra <= missing.length; extra++) outcomes.add(granted + extra > voters.length / 2)
  if (outcomes.size === 2) return "VotePending"
  return outcomes.has(true) ? "VoteWon" : "VoteLost"
}

const config = fc.uniqueArray(fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }), { maxLength: 9 }).map((ids) => ids.map(MemberId))

describe("quorum", () => {
  it("committedIndex matches brute force", () => {
    fc.assert(
      fc.property(
        config,
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 9, maxLength: 9 }),
        fc.array(fc.boolean(), { minLength: 9, maxLength: 9 }),
        (voters, idxs, present) => {
          const acked = new Map<MemberId, number>()
          voters.forEach((v, i) => {
            if (present[i]) acked.set(v, idxs[i]!)
          })
          expect(committedIndex(voters, (id) => acked.get(id) as Index | undefined)).toBe(bruteCommitted(voters, acked))
        }
      ),
      { numRuns: 20_000 }
    )
  })

  it("voteResult matches brute force", () => {
    fc.assert(
      fc.property(config, fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), { minLength: 9, maxLength: 9 }), (voters, answers) => {
        const votes = new Map<MemberId, boolean>()
        voters.forEach((v, i) => {
          const a = answers[i]
          if (a !== undefined) votes.set(v, a)
        })
        expect(voteResult(voters, votes)).toBe(bruteVote(voters, votes))
      }),
      { numRuns: 20_000 }
    )
  })

  // The table from the docstring of committedIndex, and etcd's majority_commit.txt basics.
  const table: Array<[number[], number]> = [
    [[], 0],
    [[5], 5],
    [[5, 3], 3],
    [[5, 3, 3, 1, 0], 3],
    [[100, 101, 103, 104], 101],
    [[0, 0, 7], 0]
  ]
  for (const [acks, want] of table) {
    it(`committedIndex of acks [${acks}] is ${want}`, () => {
      const voters = acks.map((_, i) => MemberId(BigInt(i + 1)))
      expect(committedIndex(voters, (id) => acks[Number(id) - 1] as Index)).toBe(want)
    })
  }
})
