/**
 * Differential end-to-end test: the same etcdctl session against the reference etcd and against
 * natcd (a real nats-server and real service processes started by the supervisor), both from an
 * empty store. Outputs must match exactly once cluster and member ids are normalised: same
 * values, revisions, versions, counts, raft terms and error texts.
 */
import { describe, expect, it } from "vitest"
import { etcdctl, natcdBesideEtcd, normaliseIds, normaliseStderr } from "./harness.ts"

/** The session: each line is one etcdctl invocation (arguments split on spaces, quotes kept simple). */
const session: ReadonlyArray<ReadonlyArray<string>> = [
  ["put", "foo", "bar"],
  ["get", "foo"],
  ["get", "foo", "-w", "json"],
  ["put", "foo", "baz", "--prev-kv"],
  ["put", "foo", "qux", "--prev-kv", "-w", "json"],
  ["put", "foo2", "x"],
  ["put", "fop", "y"],
  ["put", "zeta", "z"],
  ["get", "foo", "--prefix"],
  ["get", "foo", "--prefix", "-w", "json"],
  ["get", "foo", "--prefix", "--keys-only"],
  ["get", "foo", "--prefix", "--count-only", "-w", "json"],
  ["get", "foo", "--prefix", "--limit", "1", "-w", "json"],
  ["get", "fo", "--from-key", "-w", "json"],
  ["get", "", "--from-key", "--keys-only"],
  ["get", "foo", "fop"],
  ["get", "foo", "--rev", "2", "-w", "json"],
  ["get", "foo", "--rev", "3"],
  ["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "-w", "json"],
  ["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND"],
  ["get", "foo", "--prefix", "--sort-by=VERSION", "--order=DESCEND", "--keys-only"],
  ["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--keys-only"],
  ["get", "foo", "--rev", "100"],
  ["get", "nothing", "-w", "json"],
  ["get", "foo", "--consistency=s", "-w", "json"],
  ["del", "fop"],
  ["del", "nothing"],
  ["del", "foo", "--prefix", "--prev-kv", "-w", "json"],
  ["get", "foo", "--prefix", "-w", "json"],
  ["put", "foo", "again", "-w", "json"],
  ["get", "foo", "-w", "json"],
  ["get", "foo", "--rev", "4", "-w", "json"],
  ["put", "a", "1"],
  ["put", "b", "2"],
  ["del", "a", "c", "-w", "json"],
  ["del", "", "--from-key", "-w", "json"],
  ["get", "", "--from-key", "-w", "json"]
]

const normalise = normaliseIds

describe("etcdctl session: natcd vs etcd", () => {
  const pair = natcdBesideEtcd("diff", { portOffset: 100, clientPort: 24790, peerPort: 24800 })

  it("gives the same output, revisions and errors for every command", async () => {
    const mismatches: string[] = []
    for (const args of session) {
      const [want, got] = [await etcdctl(pair.etcd.endpoint, args), await etcdctl(pair.natcd.endpoints[0]!, args)]
      const w = { code: want.code, out: normalise(want.stdout), err: normaliseStderr(want.stderr) }
      const g = { code: got.code, out: normalise(got.stdout), err: normaliseStderr(got.stderr) }
      if (JSON.stringify(w) !== JSON.stringify(g)) {
        mismatches.push(`etcdctl ${args.join(" ")}\n  etcd:  ${JSON.stringify(w)}\n  natcd: ${JSON.stringify(g)}`)
      }
    }
    expect(mismatches, mismatches.join("\n")).toEqual([])
  }, 120_000)

  it("reports endpoint status with etcd's fields", async () => {
    const r = await etcdctl(pair.natcd.endpoints[0]!, ["endpoint", "status", "-w", "json"])
    expect(r.code, r.stderr).toBe(0)
    const [status] = JSON.parse(r.stdout) as Array<{ Endpoint: string; Status: Record<string, any> }>
    expect(status!.Endpoint).toBe(pair.natcd.endpoints[0])
    const s = status!.Status
    expect(s.header.revision).toBeGreaterThan(1)
    expect(s.leader).toBe(s.header.member_id)
    expect(s.raftTerm).toBe(2)
    expect(s.raftIndex).toBeGreaterThan(0)
    expect(s.raftAppliedIndex).toBe(s.raftIndex)
    expect(s.dbSize).toBeGreaterThan(0)
  })

  it("rejects an empty key and an oversized request with etcd's messages", async () => {
    const empty = await etcdctl(pair.natcd.endpoints[0]!, ["put", "", "x"])
    const emptyRef = await etcdctl(pair.etcd.endpoint, ["put", "", "x"])
    expect(normaliseStderr(empty.stderr)).toBe(normaliseStderr(emptyRef.stderr))
    expect(empty.code).toBe(emptyRef.code)

    const big = "v".repeat(1_600_000)
    const tooLarge = await etcdctl(pair.natcd.endpoints[0]!, ["put", "big"], big)
    const tooLargeRef = await etcdctl(pair.etcd.endpoint, ["put", "big"], big)
    expect(normaliseStderr(tooLarge.stderr)).toBe(normaliseStderr(tooLargeRef.stderr))
    expect(tooLarge.stderr).toContain("etcdserver: request is too large")
  }, 60_000)
})
