/**
 * Differential end-to-end test of Watch: the same etcdctl watch session against the reference
 * etcd 3.4 and against natcd (supervisor, nats-server, every service and one watch replica),
 * both from an empty store, so revisions line up. Every transcript must be identical:
 * - live watches running in the background while puts, deletes and a txn happen: a key, a
 *   prefix, a range, with --prev-kv, and the interactive mode (-i) reading watch commands from
 *   stdin;
 * - watches from a past revision (--rev), with and without --prev-kv;
 * - a watch from a compacted revision (the cancel message and exit code);
 * and at the gRPC level, the created/canceled responses etcd sends for a compacted start, a
 * negative start, an empty range and a duplicate watch id.
 */
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import { etcdctl, natcdBesideEtcd, sleep } from "./harness.ts"
import { openWatch } from "./watch-client.ts"

/** Runs `etcdctl watch <args>` in the background; `stop` ends it and returns what it printed. */
const background = (endpoint: string, args: ReadonlyArray<string>, stdin?: string) => {
  const child = spawn("etcdctl", [`--endpoints=${endpoint}`, "watch", ...args], { env: { ...process.env, ETCDCTL_API: "3" } })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()))
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
  if (stdin !== undefined) child.stdin.write(stdin)
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  return {
    stop: async (): Promise<{ stdout: string; stderr: string }> => {
      if (stdin !== undefined) child.stdin.end()
      await Promise.race([exited, sleep(1000)])
      child.kill("SIGTERM")
      await exited
      return { stdout, stderr: stderr.split("\n").filter((l) => !l.startsWith("{")).join("\n") }
    }
  }
}

/** Runs a watch that may never end on its own, for `ms`, and returns its transcript. */
const watchFor = async (endpoint: string, args: ReadonlyArray<string>, ms: number) => {
  const b = background(endpoint, args)
  await sleep(ms)
  return b.stop()
}

const liveWatches: ReadonlyArray<ReadonlyArray<string>> = [
  ["foo"],
  ["--prefix", "foo"],
  ["foo", "fop"],
  ["--prev-kv", "foo"],
  ["--prev-kv", "--prefix", ""]
]

const writes: ReadonlyArray<{ args: ReadonlyArray<string>; stdin?: string }> = [
  { args: ["put", "foo", "1"] },
  { args: ["put", "foo", "2"] },
  { args: ["put", "foo1", "x"] },
  { args: ["put", "bar", "b"] },
  { args: ["del", "foo"] },
  { args: ["txn"], stdin: "\nput foo 3\nput foo2 y\ndel foo1\nput bar c\n\n" },
  { args: ["put", "fop", "z"] },
  { args: ["del", "--prefix", "foo"] },
  { args: ["put", "foo", "4"] }
]

/** The whole session against one endpoint: every transcript, in order. */
const session = async (endpoint: string): Promise<Record<string, unknown>> => {
  const out: Record<string, unknown> = {}
  const live = liveWatches.map((args) => background(endpoint, args))
  const interactive = background(endpoint, ["-i"], "watch foo\nwatch --prefix bar\n")
  await sleep(2000)
  for (const w of writes) {
    const r = await etcdctl(endpoint, w.args, w.stdin)
    out[`write ${w.args.join(" ")}`] = [r.code, r.stdout]
  }
  await sleep(1500)
  for (const [i, l] of live.entries()) out[`live watch ${liveWatches[i]!.join(" ")}`] = await l.stop()
  out["watch -i"] = await interactive.stop()
  for (const args of [["--rev=2", "foo"], ["--rev=3", "--prev-kv", "--prefix", "foo"], ["--rev=1", "--prefix", ""], ["--rev=6", "bar"]]) {
    out[`history watch ${args.join(" ")}`] = await watchFor(endpoint, args, 1500)
  }
  const compact = await etcdctl(endpoint, ["compact", "8"])
  out["compact"] = [compact.code, compact.stdout]
  const compacted = await etcdctl(endpoint, ["watch", "--rev=3", "foo"])
  out["compacted watch"] = [compacted.code, compacted.stdout, compacted.stderr.split("\n").filter((l) => !l.startsWith("{")).join("\n")]
  out["watch at compact revision"] = await watchFor(endpoint, ["--rev=8", "--prefix", ""], 1500)

  // gRPC level: responses etcd sends at creation for the special cases.
  const s = openWatch(endpoint)
  s.create({ key: "foo", startRevision: 3 }) // compacted
  s.create({ key: "foo", startRevision: -1 }) // negative
  s.create({ key: "b", rangeEnd: "a" }) // empty range
  s.create({ key: "foo", watchId: 7 })
  s.create({ key: "foo", watchId: 7 }) // duplicate
  s.create({ key: "foo", rangeEnd: "\0", startRevision: 9, prevKv: true }) // from key, from the present
  await s.until((r) => r.length >= 7, 10_000).catch(() => undefined)
  await sleep(500)
  // Responses of different watches may interleave differently (etcd syncs unsynced watchers
  // every 100 ms): compare each watch's own sequence.
  const byWatch = [...s.responses].sort((a, b) => a.watchId - b.watchId)
  out["grpc special creates"] = byWatch.map((r) => ({
    watchId: r.watchId, created: r.created, canceled: r.canceled, compactRevision: r.compactRevision, cancelReason: r.cancelReason,
    events: r.events.map((e) => [e.type, e.key, e.value, e.modRevision, e.prevValue ?? null])
  }))
  s.close()
  return out
}

describe("etcdctl watch transcripts: natcd vs etcd 3.4", () => {
  const pair = natcdBesideEtcd("watch-etcdctl", { portOffset: 810, clientPort: 26790, peerPort: 26791 })

  it("prints the same for the same session", async () => {
    const [want, got] = await Promise.all([session(pair.etcd.endpoint), session(pair.natcd.endpoints[0]!)])
    for (const key of Object.keys(want)) {
      expect.soft(got[key], key).toEqual(want[key])
    }
    expect(Object.keys(got)).toEqual(Object.keys(want))
  }, 120_000)
})
