/**
 * Node's module compile cache for the service processes (services/supervisor/main.ts
 * `--compile-cache`, services/runtime/process.ts launch). A supervisor started without
 * NODE_COMPILE_CACHE hands every service `<data-dir>/compile-cache`; each service writes the
 * cache as soon as its modules are loaded, so the cache is complete while every process still
 * runs (none has exited to flush it); and a second start finds every module there, writing
 * nothing new.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { etcdctl, memberPids, startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const portOffset = 2300

/** Every file under `dir` with its modification time in ms. */
const entries = (dir: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const name of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    const path = join(dir, name)
    const st = statSync(path)
    if (st.isFile()) out.set(name, st.mtimeMs)
  }
  return out
}

/** The value of `name` in process `pid`'s environment, if set. */
const environOf = (pid: number, name: string): string | undefined =>
  readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((kv) => kv.startsWith(`${name}=`))?.slice(name.length + 1)

describe("compile cache", () => {
  let tmp: ReturnType<typeof tempDir>
  let natcd: Natcd | undefined
  const start = () => startNatcd({ dataDir: tmp.dir, portOffset, env: { NODE_COMPILE_CACHE: undefined } })

  beforeAll(() => {
    tmp = tempDir("compile-cache")
  })
  afterAll(async () => {
    await natcd?.stop()
    tmp.remove()
  })

  it("is <data-dir>/compile-cache by default, and written before any service exits", async () => {
    natcd = await start()
    const cacheDir = join(tmp.dir, "compile-cache")
    const pids = memberPids(natcd, "m1")
    expect(pids.length).toBe(5)
    for (const pid of pids) expect(environOf(pid, "NODE_COMPILE_CACHE")).toBe(cacheDir)
    // wal alone loads over 400 modules (its own, shared/ and the libraries').
    expect(entries(cacheDir).size).toBeGreaterThan(400)
    expect(await etcdctl(natcd.endpoints[0]!, ["put", "k", "v"])).toMatchObject({ code: 0 })
    for (const pid of pids) expect(() => process.kill(pid, 0)).not.toThrow()
  }, 90_000)

  it("serves every module of a second start from the cache", async () => {
    await natcd!.stop()
    const cacheDir = join(tmp.dir, "compile-cache")
    const before = entries(cacheDir)
    natcd = await start()
    const r = await etcdctl(natcd.endpoints[0]!, ["get", "k", "--print-value-only"])
    expect(r).toMatchObject({ code: 0, stdout: "v\n" })
    expect(entries(cacheDir)).toEqual(before)
  }, 90_000)
})
