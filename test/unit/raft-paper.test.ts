/**
 * Paper tests: each checks one rule of the Raft paper ("In Search of an Understandable
 * Consensus Algorithm", extended version) on the raft state machine, as etcd raft's
 * raft_paper_test.go does, and names the section. Where natcd follows etcd rather than the
 * paper, the test says so.
 *
 * Members are driven through Raft directly (no Ready loop): messages are read from `msgs`.
 */
import { describe, expect, it } from "vitest"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Raft } from "../../services/raft/core/raft.ts"
import type { Config } from "../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"
import { makeMessage, type Message, type MessageType } from "../../services/raft/core/types.ts"

const id = (n: number): MemberId => MemberId(BigInt(n))
const ent = (term: number, index: number, data = ""): Entry => ({
  term: Term(term),
  index: Index(index),
  type: "Normal",
  data: Uint8Array.from(data, (c) => c.charCodeAt(0))
})

interface TestRaftOptions {
  readonly electionTick?: number
  readonly heartbeatTick?: number
  readonly storage?: MemoryStorage
  readonly randomInt?: (n: number) => number
  readonly preVote?: boolean
  readonly checkQuorum?: boolean
}

/** A member `self` of a configuration of voters `peers`, with an empty (or given) log. */
const newTestRaft = (self: number, peers: ReadonlyArray<number>, o: TestRaftOptions = {}): Raft => {
  const config: Config = {
    id: id(self),
    electionTick: o.electionTick ?? 10,
    heartbeatTick: o.heartbeatTick ?? 1,
    maxSizePerMsg: Number.MAX_SAFE_INTEGER,
    maxInflightMsgs: 256,
    preVote: o.preVote ?? false,
    checkQuorum: o.checkQuorum ?? false,
    applied: Index(0),
    randomInt: o.randomInt ?? (() => 0)
  }
  const r = new Raft(config, o.storage ?? new MemoryStorage())
  for (const p of peers) r.applyConfChange({ type: "AddNode", nodeId: id(p), context: new Uint8Array(0) })
  return r
}

const take = (r: Raft): Message[] => {
  const out = r.msgs
  r.msgs = []
  return out
}

const msg = (type: MessageType, from: number, to: number, fields: Partial<Message> = {}): Message =>
  makeMessage({ type, from: id(from), to: id(to), ...fields })

const summary = (ms: ReadonlyArray<Message>): string[] =>
  ms.map((m) => `${m.from}->${m.to} ${m.type} term=${m.term} index=${m.index} logTerm=${m.logTerm} commit=${m.commit} reject=${m.reject}`)

/** Makes `r` the leader of `term` by electing it with the votes of every peer. */
const electLeader = (r: Raft): void => {
  r.step(msg("MsgHup", Number(r.id), Number(r.id)))
  for (const v of r.trk.voterIds()) {
    if (v !== r.id) r.step(msg("MsgVoteResp", Number(v), Number(r.id), { term: r.term }))
  }
  take(r)
}

/**
 * What the shell's acknowledgement of a Ready (RawNode.advance) tells a leader: its log is
 * durable up to its last entry, which from then on counts towards commitment.
 */
const persistLeader = (r: Raft): void => {
  const last = r.raftLog.lastIndex()
  r.localAppendPersisted(last, r.raftLog.term(last) as Term)
}

/** Commits the leader's empty entry of its term by acknowledging it from every peer. */
const commitNoop = (r: Raft): void => {
  persistLeader(r)
  for (const v of r.trk.voterIds()) {
    if (v !== r.id) r.step(msg("MsgAppResp", Number(v), Number(r.id), { term: r.term, index: r.raftLog.lastIndex() }))
  }
  take(r)
}

describe("§5.1 terms", () => {
  // "If one server's current term is smaller than the other's, then it updates its current term
  // to the larger value. If a candidate or leader discovers that its term is out of date, it
  // immediately reverts to follower state."
  for (const role of ["follower", "candidate", "leader"] as const) {
    it(`a ${role} receiving a higher term becomes a follower at that term`, () => {
      const r = newTestRaft(1, [1, 2, 3])
      if (role === "candidate") r.becomeCandidate()
      if (role === "leader") electLeader(r)
      r.step(msg("MsgApp", 2, 1, { term: Term(5) }))
      expect(r.term).toBe(5)
      expect(r.state).toBe("StateFollower")
      expect(r.lead).toBe(2n)
    })
  }

  // "If a server receives a request with a stale term number, it rejects the request." etcd,
  // and natcd, ignore it (and, with CheckQuorum or PreVote, answer a stale leader so it learns
  // the new term).
  it("ignores a message with a stale term", () => {
    const r = newTestRaft(1, [1, 2, 3])
    r.becomeFollower(Term(2), id(2))
    r.step(msg("MsgApp", 2, 1, { term: Term(1), entries: [ent(1, 1)] }))
    expect(r.raftLog.lastIndex()).toBe(0)
    expect(take(r)).toEqual([])
  })
})

describe("§5.2 leader election", () => {
  it("starts as a follower", () => {
    const r = newTestRaft(1, [1, 2, 3])
    expect(r.state).toBe("StateFollower")
  })

  // "To begin an election, a follower increments its current term and transitions to candidate
  // state. It then votes for itself and issues RequestVote RPCs in parallel to each of the other
  // servers."
  for (const role of ["follower", "candidate"] as const) {
    it(`a ${role} starts an election after the election timeout`, () => {
      const r = newTestRaft(1, [1, 2, 3])
      if (role === "candidate") r.becomeCandidate()
      const term = r.term
      for (let i = 0; i < 10; i++) r.tick()
      expect(r.term).toBe(term + 1)
      expect(r.state).toBe("StateCandidate")
      expect(r.vote).toBe(1n)
      expect(summary(take(r))).toEqual([
        `1->2 MsgVote term=${term + 1} index=0 logTerm=0 commit=0 reject=false`,
        `1->3 MsgVote term=${term + 1} index=0 logTerm=0 commit=0 reject=false`
      ])
    })
  }

  // "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all
  // followers in order to maintain their authority."
  it("a leader broadcasts heartbeats every heartbeat timeout", () => {
    const r = newTestRaft(1, [1, 2, 3], { heartbeatTick: 2 })
    electLeader(r)
    r.tick()
    expect(take(r)).toEqual([])
    r.tick()
    expect(summary(take(r))).toEqual([
      "1->2 MsgHeartbeat term=1 index=0 logTerm=0 commit=0 reject=false",
      "1->3 MsgHeartbeat term=1 index=0 logTerm=0 commit=0 reject=false"
    ])
  })

  // "A candidate wins an election if it receives votes from a majority of the servers in the
  // full cluster for the same term." and "if many followers become candidates at the same time,
  // votes could be split so that no candidate obtains a majority."
  const rounds: Array<[number, Record<number, boolean>, string]> = [
    [1, {}, "StateLeader"],
    [3, { 2: true, 3: true }, "StateLeader"],
    [3, { 2: true }, "StateLeader"],
    [5, { 2: true, 3: true, 4: true, 5: true }, "StateLeader"],
    [5, { 2: true, 3: true, 4: true }, "StateLeader"],
    [5, { 2: true, 3: true }, "StateLeader"],
    [3, { 2: false, 3: false }, "StateFollower"],
    [5, { 2: false, 3: false, 4: false, 5: false }, "StateFollower"],
    [5, { 2: true, 3: false, 4: false, 5: false }, "StateFollower"],
    [3, {}, "StateCandidate"],
    [5, { 2: true }, "StateCandidate"],
    [5, { 2: false, 3: false }, "StateCandidate"],
    [5, {}, "StateCandidate"]
  ]
  for (const [size, votes, want] of rounds) {
    it(`one round of votes: ${size} members, votes ${JSON.stringify(votes)} -> ${want}`, () => {
      const peers = Array.from({ length: size }, (_, i) => i + 1)
      const r = newTestRaft(1, peers)
      r.step(msg("MsgHup", 1, 1))
      for (const [from, granted] of Object.entries(votes)) {
        r.step(msg("MsgVoteResp", Number(from), 1, { term: r.term, reject: !granted }))
      }
      expect(r.state).toBe(want)
      expect(r.term).toBe(1)
    })
  }

  // "Each server will vote for at most one candidate in a given term, on a first-come-first-served
  // basis."
  const votes: Array<[number, number, boolean]> = [
    [0, 2, false],
    [0, 3, false],
    [2, 2, false],
    [3, 3, false],
    [2, 3, true],
    [3, 2, true]
  ]
  for (const [vote, from, reject] of votes) {
    it(`a follower that voted for ${vote} ${reject ? "rejects" : "grants"} ${from}`, () => {
      const r = newTestRaft(1, [1, 2, 3])
      r.term = Term(1)
      r.vote = id(vote)
      r.step(msg("MsgVote", from, 1, { term: Term(1) }))
      expect(summary(take(r))).toEqual([`1->${from} MsgVoteResp term=1 index=0 logTerm=0 commit=0 reject=${reject}`])
    })
  }

  // "While waiting for votes, a candidate may receive an AppendEntries RPC from another server
  // claiming to be leader. If the leader's term is at least as large as the candidate's current
  // term, then the candidate recognizes the leader as legitimate and returns to follower state."
  for (const term of [1, 2]) {
    it(`a candidate falls back to follower on an append at term ${term}`, () => {
      const r = newTestRaft(1, [1, 2, 3])
      r.step(msg("MsgHup", 1, 1))
      r.step(msg("MsgApp", 2, 1, { term: Term(term) }))
      expect(r.state).toBe("StateFollower")
      expect(r.term).toBe(term)
      expect(r.lead).toBe(2n)
    })
  }

  // "Raft uses randomized election timeouts to ensure that split votes are rare": every timeout
  // drawn lies in [electionTick, 2 * electionTick).
  for (const role of ["follower", "candidate"] as const) {
    it(`a ${role}'s election timeout is randomized in [et, 2et)`, () => {
      const seen = new Set<number>()
      for (let k = 0; k < 10; k++) {
        const r = newTestRaft(1, [1, 2, 3], { randomInt: (n) => k % n })
        if (role === "candidate") r.becomeCandidate()
        const term = r.term
        let ticks = 0
        while (r.term === term) {
          r.tick()
          ticks++
        }
        seen.add(ticks)
      }
      expect([...seen].sort((a, b) => a - b)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    })
  }
})

describe("§5.3 log replication", () => {
  // "Once a leader has been elected, it begins servicing client requests. The leader appends the
  // command to its log as a new entry, then issues AppendEntries RPCs in parallel to each of the
  // other servers to replicate the entry."
  it("a leader appends a proposal and replicates it", () => {
    const r = newTestRaft(1, [1, 2, 3])
    electLeader(r)
    commitNoop(r)
    r.step(msg("MsgProp", 1, 1, { entries: [ent(0, 0, "some data")] }))
    expect(r.raftLog.unstableEntries().at(-1)).toEqual(ent(1, 2, "some data"))
    expect(summary(take(r))).toEqual([
      "1->2 MsgApp term=1 index=1 logTerm=1 commit=1 reject=false",
      "1->3 MsgApp term=1 index=1 logTerm=1 commit=1 reject=false"
    ])
  })

  // "A log entry is committed once the leader that created the entry has replicated it on a
  // majority of the servers." The leader's own copy counts once it is durable (it writes its
  // log in parallel with replicating it, thesis §10.2.1).
  const acks: Array<[number, number[], boolean, boolean]> = [
    [1, [], true, true],
    [3, [], true, false],
    [3, [2], true, true],
    [3, [2, 3], true, true],
    [5, [], true, false],
    [5, [2], true, false],
    [5, [2, 3], true, true],
    [5, [2, 3, 4, 5], true, true],
    // The leader's copy not yet persisted: only followers' durable copies count.
    [1, [], false, false],
    [3, [2], false, false],
    [3, [2, 3], false, true],
    [5, [2, 3], false, false],
    [5, [2, 3, 4], false, true]
  ]
  for (const [size, ackers, leaderPersisted, committed] of acks) {
    it(`commit with ${size} members, acks from [${ackers}], leader's copy ${leaderPersisted ? "persisted" : "not persisted"}: ${committed}`, () => {
      const r = newTestRaft(1, Array.from({ length: size }, (_, i) => i + 1))
      electLeader(r)
      commitNoop(r)
      r.step(msg("MsgProp", 1, 1, { entries: [ent(0, 0, "x")] }))
      take(r)
      if (leaderPersisted) persistLeader(r)
      for (const a of ackers) r.step(msg("MsgAppResp", a, 1, { term: r.term, index: Index(2) }))
      expect(r.raftLog.committed === 2).toBe(committed)
    })
  }

  // "When sending an AppendEntries RPC, the leader includes the index and term of the entry in
  // its log that immediately precedes the new entries. If the follower does not find an entry in
  // its log with the same index and term, then it refuses the new entries."
  const checks: Array<[number, number, boolean]> = [
    [0, 0, false],
    [1, 1, false],
    [2, 2, false],
    [1, 2, true],
    [3, 3, true]
  ]
  for (const [term, index, reject] of checks) {
    it(`a follower with log 1/1 2/2 ${reject ? "rejects" : "accepts"} an append after ${term}/${index}`, () => {
      const storage = new MemoryStorage()
      storage.append([ent(1, 1), ent(2, 2)])
      const r = newTestRaft(1, [1, 2, 3], { storage })
      r.raftLog.commitTo(Index(1))
      r.becomeFollower(Term(2), id(2))
      r.step(msg("MsgApp", 2, 1, { term: Term(2), logTerm: Term(term), index: Index(index), commit: Index(1) }))
      const [resp] = take(r)
      expect(resp?.type).toBe("MsgAppResp")
      expect(resp?.reject).toBe(reject)
      // An accepted append is answered with the last index it covers, or the commit index if higher.
      if (!reject) expect(resp?.index).toBe(Math.max(index, 1))
    })
  }

  // "If an existing entry conflicts with a new one (same index but different terms), delete the
  // existing entry and all that follow it; append any new entries not already in the log."
  it("a follower replaces a conflicting suffix and keeps a matching prefix", () => {
    const storage = new MemoryStorage()
    storage.append([ent(1, 1), ent(2, 2)])
    const r = newTestRaft(1, [1, 2, 3], { storage })
    r.becomeFollower(Term(3), id(2))
    r.step(msg("MsgApp", 2, 1, { term: Term(3), logTerm: Term(1), index: Index(1), entries: [ent(3, 2), ent(4, 3)] }))
    expect(r.raftLog.allEntries().map((e) => `${e.term}/${e.index}`)).toEqual(["1/1", "3/2", "4/3"])
    expect(r.raftLog.unstableEntries().map((e) => `${e.term}/${e.index}`)).toEqual(["3/2", "4/3"])
  })

  // "The leader keeps track of the highest index it knows to be committed, and it includes that
  // index in future AppendEntries RPCs so that the other servers eventually find out."
  it("a follower commits up to the leader's commit, within what it received", () => {
    const r = newTestRaft(1, [1, 2, 3])
    r.becomeFollower(Term(1), id(2))
    r.step(msg("MsgApp", 2, 1, { term: Term(1), entries: [ent(1, 1), ent(1, 2)], commit: Index(5) }))
    expect(r.raftLog.committed).toBe(2)
  })
})

describe("§5.4 safety", () => {
  // §5.4.1: "Raft determines which of two logs is more up-to-date by comparing the index and
  // term of the last entries in the logs."
  const voter: Array<[number, number, boolean]> = [
    // follower log: 1/1 1/2; candidate's last entry term/index -> granted
    [1, 2, true],
    [1, 3, true],
    [1, 1, false],
    [2, 1, true],
    [2, 2, true],
    [0, 5, false]
  ]
  for (const [logTerm, index, granted] of voter) {
    it(`§5.4.1 a voter with log ending 1/2 ${granted ? "grants" : "rejects"} a candidate ending ${logTerm}/${index}`, () => {
      const storage = new MemoryStorage()
      storage.append([ent(1, 1), ent(1, 2)])
      const r = newTestRaft(1, [1, 2], { storage })
      r.step(msg("MsgVote", 2, 1, { term: Term(3), logTerm: Term(logTerm), index: Index(index) }))
      const [resp] = take(r)
      expect(resp?.type).toBe("MsgVoteResp")
      expect(resp?.reject).toBe(!granted)
    })
  }

  // §5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only log
  // entries from the leader's current term are committed by counting replicas."
  it("§5.4.2 a leader commits earlier-term entries only with an entry of its own term", () => {
    const storage = new MemoryStorage()
    storage.append([ent(1, 1), ent(2, 2)])
    const r = newTestRaft(1, [1, 2, 3], { storage })
    r.term = Term(2)
    electLeader(r) // term 3, empty entry at index 3
    persistLeader(r)
    r.step(msg("MsgAppResp", 2, 1, { term: r.term, index: Index(2) }))
    expect(r.raftLog.committed).toBe(0)
    r.step(msg("MsgAppResp", 2, 1, { term: r.term, index: Index(3) }))
    expect(r.raftLog.committed).toBe(3)
  })

  // §5.4.2 together with §8: the leader appends an empty entry when it takes office.
  it("§5.4.2 a new leader appends an empty entry of its term", () => {
    const r = newTestRaft(1, [1, 2, 3])
    electLeader(r)
    expect(r.raftLog.unstableEntries()).toEqual([ent(1, 1)])
  })
})
