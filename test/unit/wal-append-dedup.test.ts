/**
 * The wal service's duplicate detection of retried appends (services/wal/append-dedup.ts): a
 * seq is recorded only after its write succeeded, a retry during the write waits for it, and a
 * failed write leaves the seq unrecorded so that its retry writes again.
 */
import { describe, expect, it } from "vitest"
import { AppendDedup } from "../../services/wal/append-dedup.ts"

/** A write whose completion the test controls, counting how often it was started. */
const controlledWrites = () => {
  const started: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
  const write = () =>
    new Promise<void>((resolve, reject) => {
      started.push({ resolve, reject })
    })
  return { started, write }
}

const flush = () => new Promise((r) => setTimeout(r, 0))

describe("AppendDedup", () => {
  it("acknowledges a duplicate after a successful write without writing again", async () => {
    const dedup = new AppendDedup(16)
    let writes = 0
    const write = async () => {
      writes++
    }
    expect(await dedup.append("w", 1, write)).toBe("written")
    expect(dedup.lastWritten("w")).toBe(1)
    expect(await dedup.append("w", 1, write)).toBe("duplicate")
    expect(writes).toBe(1)
    // Another writer's seq 1 is its own append.
    expect(await dedup.append("v", 1, write)).toBe("written")
    expect(writes).toBe(2)
  })

  it("records nothing until the write resolves, and a retry in flight waits for it", async () => {
    const dedup = new AppendDedup(16)
    const { started, write } = controlledWrites()
    const settled: string[] = []
    const first = dedup.append("w", 5, write).then((o) => settled.push(`first:${o}`))
    expect(dedup.lastWritten("w")).toBe(0)
    const retry = dedup.append("w", 5, write).then((o) => settled.push(`retry:${o}`))
    await flush()
    // One write only, and neither call is answered before it is durable.
    expect(started.length).toBe(1)
    expect(settled).toEqual([])
    expect(dedup.lastWritten("w")).toBe(0)
    started[0]!.resolve()
    await Promise.all([first, retry])
    expect(settled).toEqual(["first:written", "retry:duplicate"])
    expect(started.length).toBe(1)
    expect(dedup.lastWritten("w")).toBe(5)
  })

  it("does not record a failed write: a retry writes again", async () => {
    const dedup = new AppendDedup(16)
    const { started, write } = controlledWrites()
    const first = dedup.append("w", 3, write)
    const retryDuring = dedup.append("w", 3, write)
    await flush()
    expect(started.length).toBe(1)
    started[0]!.reject(new Error("EIO"))
    await expect(first).rejects.toThrow("EIO")
    expect(dedup.lastWritten("w")).toBe(0)
    // The retry that waited is not acknowledged as a duplicate: it writes itself.
    await flush()
    expect(started.length).toBe(2)
    started[1]!.resolve()
    expect(await retryDuring).toBe("written")
    expect(dedup.lastWritten("w")).toBe(3)
  })

  it("treats a synchronous throw of the write as a failure that records nothing", async () => {
    const dedup = new AppendDedup(16)
    await expect(dedup.append("w", 1, () => {
      throw new Error("hole")
    })).rejects.toThrow("hole")
    expect(dedup.lastWritten("w")).toBe(0)
    let writes = 0
    expect(await dedup.append("w", 1, async () => void writes++)).toBe("written")
    expect(writes).toBe(1)
  })

  it("keeps at most maxWritersTracked writers, dropping the least recently written", async () => {
    const dedup = new AppendDedup(2)
    const ok = async () => undefined
    await dedup.append("a", 1, ok)
    await dedup.append("b", 1, ok)
    await dedup.append("a", 2, ok)
    await dedup.append("c", 1, ok)
    expect(dedup.trackedWriters()).toBe(2)
    expect(dedup.lastWritten("b")).toBe(0)
    expect(dedup.lastWritten("a")).toBe(2)
    expect(dedup.lastWritten("c")).toBe(1)
  })

  it("never moves a writer's recorded seq back when an older seq settles later", async () => {
    const dedup = new AppendDedup(16)
    const { started, write } = controlledWrites()
    const older = dedup.append("w", 1, write)
    const newer = dedup.append("w", 2, write)
    await flush()
    started[1]!.resolve()
    await newer
    started[0]!.resolve()
    await older
    expect(dedup.lastWritten("w")).toBe(2)
  })
})
