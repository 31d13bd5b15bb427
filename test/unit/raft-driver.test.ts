/**
 * The raft driver's persistence of hard state (services/raft/driver.ts), on a single member
 * whose Readys alternate between "entries to persist" and "only the commit index moved": a
 * commit-only hard state is not written on its own (etcd writes it without fsync, raft's
 * MustSync); it rides on the next persist with entries, or is written at the next tick, and
 * `flushHardState` settles only once every hard state handed to the WAL is written. Then the
 * ReadIndex rounds of services/raft/ready-handler.ts: a round is answered by the leader's answer
 * to it, and never by a late answer to a round an earlier run of the member issued.
 */
import { describe, expect, it } from "vitest"
import { Index, MemberId, Term } from "../../shared/ids.ts"
import type { Entry, HardState } from "../../shared/raft-types.ts"
import { RaftDriver } from "../../services/raft/driver.ts"
import { ReadyHandler } from "../../services/raft/ready-handler.ts"
import { RawNode } from "../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"
import { makeMessage, type Message } from "../../services/raft/core/types.ts"

interface Persisted {
  readonly hardState: HardState | undefined
  readonly entries: ReadonlyArray<Entry>
  readonly done: () => void
}

const text = (b: Uint8Array): string => String.fromCharCode(...b)
const settle = () => new Promise<void>((r) => setTimeout(r, 0))

/** A single-member driver whose persist calls are recorded and settle when the test says so (or at once). */
const start = async (autoResolve: boolean) => {
  const storage = new MemoryStorage()
  RawNode.bootstrap(storage, [MemberId(1n)])
  const node = new RawNode({
    id: MemberId(1n), electionTick: 10, heartbeatTick: 1, maxSizePerMsg: 1024 * 1024, maxInflightMsgs: 256,
    preVote: true, checkQuorum: true, applied: Index(0), randomInt: () => 0
  }, storage)
  const persisted: Persisted[] = []
  const applied: string[] = []
  const failures: unknown[] = []
  const driver = new RaftDriver(node, storage, {
    persist: (hardState, entries) => new Promise<void>((resolve) => {
      persisted.push({ hardState, entries, done: resolve })
      if (autoResolve) resolve()
    }),
    send: () => undefined,
    apply: (entries) => {
      for (const e of entries) if (e.type === "Normal" && e.data.length > 0) applied.push(text(e.data))
    },
    persistSnapshot: async () => undefined
  }, (e) => failures.push(e))
  // The first Ready applies the bootstrap conf change; then the only voter can campaign.
  driver.tick()
  await settle()
  driver.campaign()
  await settle()
  expect(driver.leader()).toBe(1n)
  return { driver, storage, persisted, applied, failures }
}

const proposeAndSettle = async (driver: RaftDriver, data: string) => {
  driver.propose(Uint8Array.from(data, (c) => c.charCodeAt(0)))
  await settle()
}

describe("RaftDriver hard state", () => {
  it("keeps a commit-only hard state until the next persist with entries, which carries it", async () => {
    const { driver, storage, persisted, applied, failures } = await start(true)
    await proposeAndSettle(driver, "a")
    expect(applied).toEqual(["a"])
    const aIndex = storage.lastIndex()
    // The proposal's entries were persisted; the Ready that committed them wrote nothing.
    const last = persisted[persisted.length - 1]!
    expect(last.entries.map((e) => e.index)).toEqual([aIndex])
    expect(last.hardState === undefined || last.hardState.commit < aIndex).toBe(true)
    expect(storage.initialState().hardState.commit).toBe(aIndex)
    const before = persisted.length

    await proposeAndSettle(driver, "b")
    expect(applied).toEqual(["a", "b"])
    const next = persisted[before]!
    expect(next.entries.map((e) => e.index)).toEqual([aIndex + 1])
    expect(next.hardState?.commit).toBe(aIndex)
    expect(persisted.length).toBe(before + 1)
    expect(failures).toEqual([])
  })

  it("writes a pending commit-only hard state at the next tick, once", async () => {
    const { driver, storage, persisted, failures } = await start(true)
    await proposeAndSettle(driver, "a")
    const before = persisted.length
    driver.tick()
    await settle()
    expect(persisted.length).toBe(before + 1)
    expect(persisted[before]!.entries).toEqual([])
    expect(persisted[before]!.hardState?.commit).toBe(storage.lastIndex())
    driver.tick()
    await settle()
    expect(persisted.length).toBe(before + 1)
    expect(failures).toEqual([])
  })

  it("flushHardState settles only after every hard state handed to persist is written", async () => {
    const { driver, persisted } = await start(false)
    // Let every persist so far (bootstrap, campaign) complete.
    const release = () => {
      for (const p of persisted) p.done()
    }
    release()
    await settle()
    driver.propose(Uint8Array.from("a", (c) => c.charCodeAt(0)))
    await settle()
    release()
    await settle()
    await settle()
    const before = persisted.length
    let flushed = false
    const flush = driver.flushHardState().then(() => (flushed = true))
    expect(persisted.length).toBe(before + 1)
    await settle()
    expect(flushed).toBe(false)
    persisted[before]!.done()
    await flush
    expect(flushed).toBe(true)
  })
})

describe("ReadyHandler ReadIndex rounds", () => {
  /** Member 2 of a bootstrapped two-member cluster, following member 1 at term 1. */
  const follower = (readCtxPrefix?: string) => {
    const storage = new MemoryStorage()
    RawNode.bootstrap(storage, [MemberId(1n), MemberId(2n)])
    const node = new RawNode({
      id: MemberId(2n), electionTick: 10, heartbeatTick: 1, maxSizePerMsg: 1024 * 1024, maxInflightMsgs: 256,
      preVote: true, checkQuorum: true, applied: Index(0), randomInt: () => 0
    }, storage)
    const sent: Message[] = []
    const handler = new ReadyHandler(node, storage, { send: (ms) => sent.push(...ms), apply: () => undefined }, readCtxPrefix)
    const drain = () => {
      while (handler.hasWork()) for (const _write of handler.handleReady());
    }
    node.step(makeMessage({ type: "MsgHeartbeat", from: MemberId(1n), to: MemberId(2n), term: Term(1) }))
    drain()
    expect(handler.leader()).toBe(1n)
    /** Issues one ReadIndex round; returns its answers and the context the member sent to the leader. */
    const read = () => {
      const answers: Array<number | "NoLeader"> = []
      handler.readIndex((a) => answers.push(a))
      drain()
      const request = sent.filter((m) => m.type === "MsgReadIndex").at(-1)!
      return { answers, ctx: request.entries[0]!.data }
    }
    /** Delivers the leader's answer to the round named `ctx`. */
    const answer = (ctx: Uint8Array, index: number) => {
      node.step(makeMessage({
        type: "MsgReadIndexResp", from: MemberId(1n), to: MemberId(2n), term: Term(1), index: Index(index),
        entries: [{ term: Term(0), index: Index(0), type: "Normal", data: ctx }]
      }))
      drain()
    }
    return { read, answer }
  }

  it("answers a round with the index the leader returns for it", () => {
    const member = follower()
    const { answers, ctx } = member.read()
    member.answer(ctx, 7)
    expect(answers).toEqual([7])
  })

  it("does not take a stale answer to an earlier run's round for this run's round", () => {
    // The member's first run asks; the leader's answer (index 5) arrives only after a restart,
    // when the second run has asked a round of its own, which must wait for its own answer.
    const first = follower("run-1").read()
    const second = follower("run-2")
    const { answers, ctx } = second.read()
    expect(text(ctx)).not.toBe(text(first.ctx))
    second.answer(first.ctx, 5)
    expect(answers).toEqual([])
    second.answer(ctx, 7)
    expect(answers).toEqual([7])
  })

  it("names its rounds apart across runs by default", () => {
    expect(text(follower().read().ctx)).not.toBe(text(follower().read().ctx))
  })
})
