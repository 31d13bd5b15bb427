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

  it("lists members with http:// client URLs and answers etcdctl's --cluster commands, as etcd", async () => {
    // What legitimately differs: ids, the member's name and URLs (each cluster's configuration),
    // the server version, database sizes and raft indexes (each server's own storage and log),
    // how long a health probe took, and the HashKV value (a CRC over each server's own record
    // encoding; members of one cluster agree, which bus-security.test.ts checks). Exit codes,
    // output layout, field names, revisions, raft terms, leadership and learner flags are compared.
    const normaliseCluster = (text: string, clientUrl: string, peerUrl: string, name: string): string =>
      normaliseIds(text)
        .split(clientUrl).join("<client url>")
        .split(clientUrl.replace(/^http:\/\//, "")).join("<endpoint>")
        .split(peerUrl).join("<peer url>")
        .replace(/"ID":\d+/g, '"ID":"<id>"')
        .replace(/"leader":\d+/g, '"leader":"<id>"')
        .replace(/^[0-9a-f]+, (started|unstarted), /gm, "<id>, $1, ")
        .replace(new RegExp(`(, |"name":")${name}\\b`, "g"), "$1<name>")
        .replace(/(<client url>, )[0-9a-f]+, [^,]+, [^,]+, /g, "$1<id>, <version>, <db size>, ")
        .replace(/(true|false), (true|false), (\d+), \d+, \d+, /g, "$1, $2, $3, <raft index>, <raft applied index>, ")
        .replace(/"(version|dbSize|dbSizeInUse|raftIndex|raftAppliedIndex|hash|took)":("[^"]*"|\d+)/g, '"$1":"<$1>"')
        .replace(/took = [0-9.]+[a-zµ]+/g, "took = <duration>")
        .replace(/(<client url>, )\d+$/gm, "$1<hash>")
    const listOf = async (endpoint: string) => {
      const r = await etcdctl(endpoint, ["member", "list", "-w", "json"])
      expect(r.code, r.stderr).toBe(0)
      const [m] = (JSON.parse(r.stdout) as { members: Array<{ name: string; peerURLs: string[]; clientURLs: string[] }> }).members
      return { clientUrl: m!.clientURLs[0]!, peerUrl: m!.peerURLs[0]!, name: m!.name }
    }
    const etcd = await listOf(pair.etcd.endpoint)
    const natcd = await listOf(pair.natcd.endpoints[0]!)
    expect(natcd.clientUrl).toBe(`http://${pair.natcd.endpoints[0]}`)
    const commands = [
      ["member", "list"],
      ["member", "list", "-w", "json"],
      ["endpoint", "status", "--cluster"],
      ["endpoint", "status", "--cluster", "-w", "json"],
      ["endpoint", "health", "--cluster"],
      ["endpoint", "health", "--cluster", "-w", "json"],
      ["endpoint", "hashkv", "--cluster"],
      ["endpoint", "hashkv", "--cluster", "-w", "json"],
      // The member's published URL as an endpoint, scheme included (etcdctl adds it to the
      // --endpoints the harness gives).
      ["endpoint", "status", "--endpoints={url}", "-w", "json"]
    ]
    const mismatches: string[] = []
    for (const command of commands) {
      const run = (endpoint: string, m: typeof etcd) =>
        etcdctl(endpoint, command.map((a) => a.replace("{url}", m.clientUrl))).then((r) => ({
          code: r.code,
          out: normaliseCluster(r.stdout, m.clientUrl, m.peerUrl, m.name),
          err: normaliseCluster(normaliseStderr(r.stderr), m.clientUrl, m.peerUrl, m.name)
        }))
      const [w, g] = [await run(pair.etcd.endpoint, etcd), await run(pair.natcd.endpoints[0]!, natcd)]
      expect(g.code, `natcd: etcdctl ${command.join(" ")}: ${g.err}`).toBe(0)
      if (JSON.stringify(w) !== JSON.stringify(g)) {
        mismatches.push(`etcdctl ${command.join(" ")}\n  etcd:  ${JSON.stringify(w)}\n  natcd: ${JSON.stringify(g)}`)
      }
    }
    expect(mismatches, mismatches.join("\n")).toEqual([])
  }, 60_000)

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
