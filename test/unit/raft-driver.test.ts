/**
 * The raft driver's persistence of hard state (services/raft/driver.ts), on a single member
 * whose Readys alternate between "entries to persist" and "only the commit index moved": a
 * commit-only hard state is not written on its own (etcd writes it without fsync, raft's
 * MustSync); it rides on the next persist with entries, or is written at the next tick, and
 * `flushHardState` settles only once every hard state handed to the WAL is written.
 */
import { describe, expect, it } from "vitest"
import { Index, MemberId } from "../../shared/ids.ts"
import type { Entry, HardState } from "../../shared/raft-types.ts"
import { RaftDriver } from "../../services/raft/driver.ts"
import { RawNode } from "../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../services/raft/core/storage.ts"

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
