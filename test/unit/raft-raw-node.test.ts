/**
 * RawNode as the shell sees it, on a single member: bootstrap, the first Ready with the
 * bootstrap conf changes, campaign, proposals committed in the next Ready, hard state and
 * status, restart from storage. Follows etcd raft rawnode_test.go (TestRawNodeStart,
 * TestRawNodeRestart, TestRawNodeProposeAndConfChange).
 */
import { describe, expect, it } from "vitest"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { decodeConfChange, encodeConfChange } from "../../services/raft/core/conf-change.ts"
import { type Config, RawNode } from "../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"
import type { Ready } from "../../services/raft/core/types.ts"
import { makeMessage } from "../../services/raft/core/types.ts"

const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))
const text = (b: Uint8Array): string => String.fromCharCode(...b)

const config = (id: bigint, applied = 0): Config => ({
  id: MemberId(id),
  electionTick: 10,
  heartbeatTick: 1,
  maxSizePerMsg: 1024 * 1024,
  maxInflightMsgs: 256,
  preVote: true,
  checkQuorum: true,
  applied: Index(applied),
  randomInt: () => 0
})

/** Performs a Ready as the shell contract says: persist, (send), apply, advance. */
const handle = (node: RawNode, storage: MemoryStorage, rd: Ready): void => {
  if (rd.snapshot !== undefined) storage.applySnapshot(rd.snapshot)
  storage.append(rd.entries)
  if (rd.hardState !== undefined) storage.setHardState(rd.hardState)
  for (const e of rd.committedEntries) {
    if (e.type === "ConfChange") node.applyConfChange(decodeConfChange(e.data))
  }
  node.advance(rd)
}

/** Performs Readies until there is none. */
const handleAll = (node: RawNode, storage: MemoryStorage): void => {
  while (node.hasReady()) handle(node, storage, node.ready())
}

const summary = (ents: ReadonlyArray<Entry>): string[] =>
  ents.map((e) => `${e.term}/${e.index} ${e.type} ${e.type === "Normal" ? JSON.stringify(text(e.data)) : ""}`.trim())

describe("RawNode, single member", () => {
  it("bootstraps, campaigns, and commits a proposal in the Ready after the one that persists it", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    expect(storage.initialState().hardState).toEqual({ term: 1, vote: 0n, commit: 1 })

    const node = new RawNode(config(1n), storage)
    expect(node.hasReady()).toBe(true)
    const rd0 = node.ready()
    expect(rd0.entries).toEqual([])
    expect(rd0.committedEntries.map((e) => decodeConfChange(e.data))).toEqual([
      { type: "AddNode", nodeId: 1n, context: new Uint8Array(0) }
    ])
    handle(node, storage, rd0)
    expect(node.hasReady()).toBe(false)

    node.campaign()
    expect(node.status().softState).toEqual({ lead: 1n, raftState: "StateLeader" })
    const rd1 = node.ready()
    expect(rd1.softState).toEqual({ lead: 1n, raftState: "StateLeader" })
    // The leader's empty entry counts only once persisted, i.e. after this Ready is handled.
    expect(rd1.hardState).toEqual({ term: 2, vote: 1n, commit: 1 })
    expect(rd1.mustSync).toBe(true)
    expect(summary(rd1.entries)).toEqual(['2/2 Normal ""'])
    expect(rd1.committedEntries).toEqual([])
    expect(rd1.messages).toEqual([])
    handle(node, storage, rd1)
    expect(node.hasReady()).toBe(true)
    const rd1b = node.ready()
    expect(rd1b.entries).toEqual([])
    expect(summary(rd1b.committedEntries)).toEqual(['2/2 Normal ""'])
    expect(rd1b.hardState).toEqual({ term: 2, vote: 1n, commit: 2 })
    expect(rd1b.mustSync).toBe(false)
    handle(node, storage, rd1b)
    expect(node.hasReady()).toBe(false)

    expect(node.propose(bytes("foo"))).toBeUndefined()
    const rd2 = node.ready()
    expect(summary(rd2.entries)).toEqual(['2/3 Normal "foo"'])
    expect(rd2.committedEntries).toEqual([])
    expect(rd2.hardState).toBeUndefined()
    expect(rd2.softState).toBeUndefined()
    handle(node, storage, rd2)
    const rd3 = node.ready()
    expect(summary(rd3.committedEntries)).toEqual(['2/3 Normal "foo"'])
    expect(rd3.hardState).toEqual({ term: 2, vote: 1n, commit: 3 })
    handle(node, storage, rd3)
    expect(node.hasReady()).toBe(false)

    const st = node.status()
    expect(st.id).toBe(1n)
    expect(st.applied).toBe(3)
    expect(st.commit).toBe(3)
    expect(st.leadTransferee).toBe(0n)
    expect(st.confState).toEqual({ voters: [1n], learners: [] })
    expect(st.progress.get(MemberId(1n))).toMatchObject({ match: 3, next: 4, state: "StateReplicate" })
  })

  it("refuses to campaign before the bootstrap conf changes are applied (etcd hup)", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    node.campaign()
    expect(node.status().softState.raftState).toBe("StateFollower")
  })

  it("drops proposals without a leader", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    expect(node.propose(bytes("x"))).toBe("ProposalDropped")
  })

  it("answers a ReadIndex at once as the only voter", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    handle(node, storage, node.ready())
    node.campaign()
    handle(node, storage, node.ready())
    node.readIndex(bytes("ctx1"))
    const rd = node.ready()
    expect(rd.readStates).toEqual([{ index: 2, requestCtx: bytes("ctx1") }])
  })

  it("restarts from storage with the persisted hard state and log", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    handle(node, storage, node.ready())
    node.campaign()
    handleAll(node, storage)
    node.propose(bytes("a"))
    handleAll(node, storage)

    // Restart with applied 0: every committed entry, conf changes included, is handed out again.
    const again = new RawNode(config(1n), storage)
    expect(again.status().hardState).toEqual({ term: 2, vote: 1n, commit: 3 })
    const rd = again.ready()
    expect(rd.hardState).toBeUndefined()
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1, 2, 3])
    handle(again, storage, rd)
    again.campaign()
    expect(again.status().softState.raftState).toBe("StateLeader")
    expect(again.status().hardState.term).toBe(3)
  })

  it("restarts with applied > 0: the applied conf changes are replayed into the configuration", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    handle(node, storage, node.ready())
    node.campaign()
    handleAll(node, storage)
    node.proposeConfChange({ type: "AddLearnerNode", nodeId: MemberId(2n), context: new Uint8Array(0) })
    handleAll(node, storage)
    expect(storage.initialState().hardState.commit).toBe(3)

    const again = new RawNode(config(1n, 3), storage)
    expect(again.status().confState).toEqual({ voters: [1n], learners: [2n] })
    expect(again.hasReady()).toBe(false)
    again.campaign()
    expect(again.status().softState.raftState).toBe("StateLeader")
  })

  it("single-member conf change: add a learner, which receives appends", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    handle(node, storage, node.ready())
    node.campaign()
    handleAll(node, storage)
    expect(node.proposeConfChange({ type: "AddLearnerNode", nodeId: MemberId(2n), context: new Uint8Array(0) })).toBeUndefined()
    const persisted = node.ready()
    expect(persisted.entries.map((e) => e.type)).toEqual(["ConfChange"])
    handle(node, storage, persisted)
    const rd = node.ready()
    expect(rd.committedEntries.map((e) => e.type)).toEqual(["ConfChange"])
    handle(node, storage, rd)
    expect(node.status().confState).toEqual({ voters: [1n], learners: [2n] })
    const rd2 = node.ready()
    expect(rd2.messages.map((m) => `${m.type} ${m.to}`)).toEqual(["MsgApp 2"])
  })

  it("step rejects local types, unknown responders and malformed messages", () => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n)])
    const node = new RawNode(config(1n), storage)
    handle(node, storage, node.ready())
    expect(node.step(makeMessage({ type: "MsgHup", from: MemberId(2n) }))).toBe("StepLocalMsg")
    expect(node.step(makeMessage({ type: "MsgAppResp", from: MemberId(9n), term: Term(1) }))).toBe("StepPeerNotFound")
    expect(
      node.step(
        makeMessage({
          type: "MsgApp",
          from: MemberId(1n),
          term: Term(5),
          index: Index(1),
          logTerm: Term(1),
          entries: [{ term: Term(5), index: Index(7), type: "Normal", data: new Uint8Array(0) }]
        })
      )
    ).toBe("InvalidMessage")
  })
})

describe("conf change codec", () => {
  it("round-trips and refuses foreign bytes", () => {
    const cc = { type: "AddLearnerNode", nodeId: MemberId((1n << 64n) - 1n), context: bytes("peer-urls") } as const
    expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc)
    expect(() => decodeConfChange(bytes("nope"))).toThrow()
  })
})
