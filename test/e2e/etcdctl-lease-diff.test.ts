/**
 * Differential etcdctl session for leases, locks and elections: the same commands against the
 * reference etcd 3.4 and against natcd (one member, every service a real process), both from an
 * empty store; outputs must match once what legitimately differs is normalised: cluster and
 * member ids, lease ids (random on both: each run's ids are named <L1>, <L2>, ... in the order
 * granted, other lease-looking hex ids <id>), the remaining TTL's last second (a matter of
 * timing), and the order of a lease's keys (etcd lists them from a Go map, in no fixed order). Revisions, TTLs, key lists, error texts and exit codes are compared as printed.
 *
 * Commands that block until interrupted (`lock NAME` without a command, `elect NAME VALUE`,
 * `elect -l NAME`) run for a fixed time and are compared on what they printed.
 */
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import { etcdctl, natcdBesideEtcd, normaliseStderr, sleep } from "./harness.ts"
import { etcdClients } from "./lease-client.ts"

/** One step: an etcdctl run (with {L1}.. standing for granted lease ids), a pause, or a blocking run. */
type Step =
  | { readonly args: ReadonlyArray<string> }
  | { readonly sleepMs: number }
  | { readonly blocking: ReadonlyArray<string>; readonly ms: number; readonly alongside?: ReadonlyArray<string> }

const session: ReadonlyArray<Step> = [
  { args: ["lease", "grant", "1"] },
  { args: ["lease", "grant", "9000000001"] },
  { args: ["lease", "grant", "60"] },
  { args: ["put", "--lease={L2}", "foo", "bar"] },
  { args: ["put", "--lease={L2}", "foo2", "bar2"] },
  { args: ["get", "foo", "--prefix", "-w", "json"] },
  { args: ["lease", "timetolive", "{L2}"] },
  { args: ["lease", "timetolive", "{L2}", "--keys"] },
  { args: ["lease", "timetolive", "{L2}", "--keys", "-w", "json"] },
  { args: ["lease", "timetolive", "1234abcd"] },
  { sleepMs: 3500 },
  { args: ["lease", "timetolive", "{L1}"] },
  { args: ["lease", "list"] },
  { args: ["lease", "keep-alive", "--once", "{L2}"] },
  { args: ["lease", "keep-alive", "--once", "{L1}"] },
  { args: ["put", "--lease={L1}", "x", "y"] },
  { args: ["put", "foo2", "nolease"] },
  { args: ["lease", "timetolive", "{L2}", "--keys"] },
  { args: ["lease", "revoke", "{L2}"] },
  { args: ["get", "foo", "--prefix", "-w", "json"] },
  { args: ["lease", "revoke", "{L2}"] },
  { args: ["lease", "list"] },
  { args: ["lock", "mylock", "--", "echo", "locked"] },
  { args: ["get", "mylock", "--prefix"] },
  { blocking: ["lock", "mylock"], ms: 2500 },
  { blocking: ["elect", "myelection", "proposal"], ms: 2500 },
  { blocking: ["elect", "-l", "e2"], ms: 2500, alongside: ["elect", "e2", "p1"] },
  { sleepMs: 1000 }
]

/** Starts `etcdctl args` against `endpoint`, stops it with SIGINT after `ms`; resolves with its stdout. */
const runFor = (endpoint: string, args: ReadonlyArray<string>, ms: number): Promise<string> =>
  new Promise((resolve) => {
    const child = spawn("etcdctl", [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: "3" } })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    setTimeout(() => child.kill("SIGINT"), ms)
    child.once("exit", () => resolve(out))
  })

/** Runs the session against `endpoint`; returns one normalised record per step. */
const run = async (endpoint: string): Promise<string[]> => {
  const leases: string[] = []
  const out: string[] = []
  const subst = (a: string) => a.replace(/\{L(\d)\}/g, (_, n) => leases[Number(n) - 1] ?? "0")
  const normalise = (text: string): string => {
    let t = text
      .replace(/"cluster_id":\d+/g, '"cluster_id":"<id>"')
      .replace(/"member_id":\d+/g, '"member_id":"<id>"')
      .replace(/remaining\((\d+)s\)/g, (_, s) => `remaining(${Number(s) >= 58 ? "58+" : s}s)`)
      .replace(/"ttl":(\d+)/g, (_, s) => `"ttl":${Number(s) >= 58 ? "58+" : s}`)
    leases.forEach((hex, i) => {
      t = t.split(hex).join(`<L${i + 1}>`).split(BigInt("0x" + hex).toString()).join(`<L${i + 1}>`)
    })
    // etcd lists a lease's keys from a Go map: in no fixed order. Compare them sorted.
    t = t.replace(/attached keys\(\[([^\]]*)\]\)/g, (_, k: string) => `attached keys([${k.split(" ").sort().join(" ")}])`)
    t = t.replace(/"keys":\[([^\]]*)\]/g, (_, k: string) => `"keys":[${k.split(",").sort().join(",")}]`)
    return t.replace(/\b[0-9a-f]{12,16}\b/g, "<id>")
  }
  const stderrOf = (text: string): string => normaliseStderr(text, normalise)
  for (const step of session) {
    if ("sleepMs" in step) {
      await sleep(step.sleepMs)
      continue
    }
    if ("blocking" in step) {
      let alongside: Promise<string> | undefined
      if (step.alongside !== undefined) {
        alongside = runFor(endpoint, step.alongside, step.ms + 1500)
        await sleep(1000)
      }
      const printed = await runFor(endpoint, step.blocking, step.ms)
      const other = alongside === undefined ? "" : ` | alongside: ${normalise(await alongside)}`
      out.push(`etcdctl ${step.blocking.join(" ")} (stopped after ${step.ms} ms)\n${normalise(printed)}${other}`)
      continue
    }
    const args = step.args.map(subst)
    const r = await etcdctl(endpoint, args)
    const granted = /^lease ([0-9a-f]+) granted/.exec(r.stdout)
    if (granted !== null) leases.push(granted[1]!)
    out.push(`etcdctl ${step.args.join(" ")}\n  code ${r.code}\n  out ${normalise(r.stdout)}\n  err ${stderrOf(r.stderr)}`)
  }
  return out
}

describe("etcdctl lease/lock/elect session: natcd vs etcd", () => {
  const pair = natcdBesideEtcd("lease-diff", { portOffset: 1330, clientPort: 27790, peerPort: 27791 })

  it("prints the same for every command", async () => {
    const [want, got] = await Promise.all([run(pair.etcd.endpoint), run(pair.natcd.endpoints[0]!)])
    console.log(`transcript (natcd):\n${got.join("\n")}`)
    const mismatches = want.flatMap((w, i) => (w === got[i] ? [] : [`etcd:\n${w}\nnatcd:\n${got[i]}`]))
    expect(mismatches, mismatches.join("\n\n")).toEqual([])
  }, 120_000)

  it("answers the Lease gRPC edge cases as etcd: chosen id, duplicate id, unknown ids", async () => {
    const outcome = async (endpoint: string) => {
      const c = etcdClients(endpoint)
      const call = (m: string, req: unknown) =>
        c.call(c.lease, m, req).then(
          (r: any) => ({ ok: { ID: r.ID, TTL: r.TTL, grantedTTL: r.grantedTTL, keys: r.keys?.length, leases: r.leases?.length } }),
          (e: any) => ({ code: e.code, details: e.details })
        )
      const keepAlive = () =>
        new Promise<string>((resolve) => {
          const s = (c.lease as any).LeaseKeepAlive()
          s.on("error", () => undefined)
          s.on("data", (r: { TTL: string }) => {
            resolve(r.TTL)
            s.cancel()
          })
          s.write({ ID: "987654321" })
        })
      const out = [
        await call("LeaseGrant", { ID: "4660", TTL: 5 }),
        await call("LeaseGrant", { ID: "4660", TTL: 7 }),
        await call("LeaseGrant", { ID: "-5", TTL: 0 }),
        await call("LeaseTimeToLive", { ID: "4660", keys: true }),
        await call("LeaseTimeToLive", { ID: "987654321" }),
        await call("LeaseRevoke", { ID: "987654321" }),
        await call("LeaseRevoke", { ID: "4660" }),
        await call("LeaseRevoke", { ID: "-5" }),
        await keepAlive()
      ]
      c.close()
      return out
    }
    const [want, got] = [await outcome(pair.etcd.endpoint), await outcome(pair.natcd.endpoints[0]!)]
    console.log(`lease gRPC edge cases (natcd): ${JSON.stringify(got)}`)
    expect(got).toEqual(want)
  }, 60_000)
})
