/**
 * Differential end-to-end test of the Auth API: one long etcdctl session run against the reference
 * etcd 3.4 and against natcd (real nats-server and service processes started by the supervisor),
 * both from an empty store. It manages users and roles before authentication is on (add, get,
 * list, grant and revoke permissions for a single key, a prefix, an explicit range and
 * --from-key, grant and revoke roles, passwords, deletes), turns authentication on (first without
 * a root user, then with one: etcdctl creates and grants the root role itself after etcd's
 * "root user does not have root role"), then runs KV, txn, watch, lease, lock and maintenance
 * commands with no credentials, a wrong password, root, a user reading a prefix, a key and a
 * range, a user holding a --from-key permission, after a permission or role is revoked and after
 * a user is deleted; then turns authentication off as non-root (refused) and as root, after which
 * requests without credentials work again.
 *
 * Exit codes, stdout and stderr must be identical once what legitimately differs between the two
 * servers is normalised (each rule is explained where it is applied, in `normaliser`): cluster
 * and member ids, the client endpoint's address, lease ids (random on both), the last seconds of
 * a lease's remaining TTL, and in the outputs of `endpoint status`, `member list` and
 * `endpoint health` the fields that describe the server process rather than the API (version,
 * database size, raft index, member name and URLs, a duration). Revisions, raft terms,
 * permission lists, error texts and exit codes are compared as printed. etcdctl never prints an
 * auth token, so tokens need no rule.
 *
 * `watch` blocks until interrupted: a watch step starts `etcdctl watch` from the next revision
 * (so it sees the writes made alongside it whenever its stream is set up), writes alongside it as
 * root after a second, and stops it with SIGINT once it printed the expected number of lines (or
 * after 8 s); a denied watch ends by itself. The step compares what it printed and how it ended.
 *
 * AUTH_DIFF_TRANSCRIPT=<file> appends a readable transcript of both servers' outputs.
 */
import { spawn } from "node:child_process"
import { appendFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { etcdctl, natcdBesideEtcd, normaliseIds, normaliseStderr, sleep } from "./harness.ts"

/**
 * One step: an etcdctl run (optionally with stdin), or a watch run alongside writes. Arguments
 * may hold {L1}, {L2}, ... for the lease ids granted so far (in the order granted) and {NEXT} for
 * the revision after the current one.
 */
type Step =
  | { readonly args: ReadonlyArray<string>; readonly input?: string }
  | {
      readonly watch: ReadonlyArray<string>
      /** Stop the watch once it printed this many stdout lines (a denied watch exits by itself). */
      readonly lines: number
      /** etcdctl runs made one second after the watch started. */
      readonly alongside: ReadonlyArray<ReadonlyArray<string>>
    }

const c = (...args: string[]): Step => ({ args })
const withInput = (input: string, ...args: string[]): Step => ({ args, input })
/** `etcdctl txn` with compares, success and failure ops given as lines. */
const txn = (compares: string[], success: string[], failure: string[], extra: string[] = []): Step => ({
  args: ["txn", ...extra],
  input: [...compares, "", ...success, "", ...failure, "", ""].join("\n")
})
const watch = (args: string[], lines: number, alongside: string[][] = []): Step => ({ watch: args, lines, alongside })

const root = "--user=root:rootpw"
const alice = "--user=alice:alicepw2"
const bob = "--user=bob:bobpw"
const eve = "--user=eve:evepw"

const session: ReadonlyArray<Step> = [
  // Nothing yet.
  c("user", "list"),
  c("user", "list", "-w", "json"),
  c("role", "list"),
  c("role", "list", "-w", "json"),
  // Authentication cannot be enabled without a root user.
  c("auth", "enable"),
  c("auth", "enable", "-w", "json"),
  // Users: with the password after a colon, on stdin, in a flag, and without one.
  c("user", "add", "alice:alicepw", "--interactive=false"),
  c("user", "add", "alice:other", "--interactive=false"),
  withInput("bobpw\n", "user", "add", "bob", "--interactive=false"),
  c("user", "add", "carol", "--no-password"),
  c("user", "add", "dave", "--new-user-password=davepw", "-w", "json"),
  c("user", "add", ":nameless", "--interactive=false"),
  c("user", "list"),
  c("user", "list", "-w", "json"),
  c("user", "get", "alice"),
  c("user", "get", "alice", "-w", "json"),
  c("user", "get", "nobody"),
  c("user", "delete", "nobody"),
  // Roles.
  c("role", "add", "reader"),
  c("role", "add", "writer"),
  c("role", "add", "temp", "-w", "json"),
  c("role", "add", "reader"),
  c("role", "get", "missing"),
  c("role", "get", "reader"),
  c("role", "get", "reader", "-w", "json"),
  // Permissions: a single key, a prefix, an explicit range end, --from-key; read, write, readwrite.
  c("role", "grant-permission", "reader", "read", "cfg"),
  c("role", "grant-permission", "reader", "read", "--prefix", "pub/"),
  c("role", "grant-permission", "reader", "read", "a", "c"),
  c("role", "grant-permission", "writer", "readwrite", "--from-key", "m"),
  c("role", "grant-permission", "writer", "write", "--prefix", "drop/"),
  c("role", "grant-permission", "temp", "readwrite", "tmp"),
  c("role", "get", "temp"),
  // The same key again with another type replaces the type.
  c("role", "grant-permission", "temp", "read", "tmp"),
  c("role", "grant-permission", "temp", "write", "--prefix", "tmp/"),
  c("role", "grant-permission", "temp", "readwrite", "x1", "x5"),
  c("role", "grant-permission", "temp", "read", "--from-key", "y"),
  c("role", "grant-permission", "temp", "write", "--from-key", ""),
  c("role", "grant-permission", "missing", "read", "k"),
  c("role", "grant-permission", "reader", "bogus", "k"),
  c("role", "grant-permission", "reader", "read", "a", "b", "--prefix"),
  c("role", "grant-permission", "reader", "read", "a", "--prefix", "--from-key"),
  c("role", "get", "temp"),
  c("role", "get", "temp", "-w", "json"),
  c("role", "get", "writer", "-w", "json"),
  c("role", "get", "reader"),
  c("role", "get", "reader", "-w", "json"),
  c("role", "list"),
  c("role", "list", "-w", "json"),
  // Revoking permissions: present, absent, with --prefix, a range end (matching and not), --from-key.
  c("role", "revoke-permission", "temp", "tmp"),
  c("role", "revoke-permission", "temp", "tmp"),
  c("role", "revoke-permission", "temp", "nothere"),
  c("role", "revoke-permission", "temp", "tmp/", "--prefix"),
  c("role", "revoke-permission", "temp", "x1", "x4"),
  c("role", "revoke-permission", "temp", "x1", "x5", "-w", "json"),
  c("role", "revoke-permission", "temp", "y", "--from-key"),
  c("role", "revoke-permission", "missing", "k"),
  c("role", "get", "temp"),
  c("role", "revoke-permission", "temp", "", "--from-key"),
  c("role", "get", "temp", "-w", "json"),
  // Roles granted to users.
  c("user", "grant-role", "alice", "reader"),
  c("user", "grant-role", "alice", "reader"),
  c("user", "grant-role", "alice", "missing"),
  c("user", "grant-role", "nobody", "reader"),
  c("user", "grant-role", "bob", "writer"),
  c("user", "grant-role", "bob", "temp", "-w", "json"),
  c("user", "grant-role", "dave", "reader"),
  c("user", "grant-role", "carol", "reader"),
  c("user", "get", "bob"),
  c("user", "revoke-role", "bob", "temp"),
  c("user", "revoke-role", "bob", "temp"),
  c("user", "revoke-role", "bob", "missing"),
  c("user", "revoke-role", "nobody", "temp"),
  c("user", "get", "alice"),
  c("user", "get", "bob", "-w", "json"),
  c("user", "get", "alice", "--detail"),
  c("user", "get", "bob", "--detail", "-w", "json"),
  // Passwords.
  withInput("alicepw2\n", "user", "passwd", "alice", "--interactive=false"),
  withInput("x\n", "user", "passwd", "nobody", "--interactive=false"),
  // A role granted to a user, then deleted: the user loses it.
  c("user", "grant-role", "dave", "temp"),
  c("role", "delete", "temp"),
  c("role", "delete", "temp"),
  c("user", "get", "dave"),
  c("role", "list"),
  // Data, written while anyone may.
  c("put", "cfg", "v0"),
  c("put", "pub/a", "1"),
  c("put", "pub/b", "2"),
  c("put", "a1", "x"),
  c("put", "b1", "y"),
  c("put", "c1", "z"),
  c("put", "m1", "q"),
  c("put", "zz", "last"),
  c("put", "drop/x", "d"),
  // The root user, then authentication on: etcdctl adds the root role and grants it to root.
  c("auth", "enable"),
  c("user", "add", "root:rootpw", "--interactive=false"),
  c("user", "get", "root"),
  c("role", "list"),
  c("auth", "enable", "-w", "json"),
  // Authentication is on.
  c("auth", "enable"),
  c("auth", "enable", root),
  c("user", "get", "root", root),
  c("user", "get", "root", root, "-w", "json"),
  c("role", "get", "root", root),
  c("role", "get", "root", root, "-w", "json"),
  c("role", "list", root),
  c("user", "list", root, "-w", "json"),
  // Credentials.
  c("get", "cfg"),
  c("get", "cfg", "--user=root:wrong"),
  c("get", "cfg", "--user=alice:alicepw"),
  c("get", "cfg", "--user=nobody:x"),
  c("get", "cfg", "--user=carol:x"),
  c("get", "cfg", alice),
  c("get", "cfg", "--user=alice", "--password=alicepw2"),
  c("get", "cfg", root, "-w", "json"),
  // A user reading the key cfg, the prefix pub/ and the range [a, c).
  c("get", "pub/a", alice),
  c("get", "pub/", "--prefix", alice),
  c("get", "pub/", "--prefix", "--limit=1", "-w", "json", alice),
  c("get", "pu", "--prefix", alice),
  c("get", "pub/", "--from-key", alice),
  c("get", "a", "c", alice),
  c("get", "a", "b", alice, "-w", "json"),
  c("get", "a", "d", alice),
  c("get", "b1", alice),
  c("get", "c1", alice),
  c("get", "", "--from-key", alice),
  c("get", "cfg", "--keys-only", alice, "-w", "json"),
  c("put", "pub/a", "9", alice),
  c("put", "pub/a", "9", alice, "-w", "json"),
  c("put", "cfg", "v1", alice),
  c("del", "pub/a", alice),
  c("del", "a", "c", alice),
  // A user with readwrite from m on and write (only) on the prefix drop/.
  c("put", "m2", "v", bob),
  c("put", "m3", "v", bob, "-w", "json"),
  c("put", "zz", "v2", "--prev-kv", bob),
  c("get", "m", "--from-key", bob),
  c("get", "m", "--from-key", "--keys-only", bob, "-w", "json"),
  c("get", "m1", bob),
  c("get", "m", "--prefix", bob),
  c("get", "", "--from-key", bob),
  c("get", "l", "--from-key", bob),
  c("get", "a1", bob),
  c("put", "a1", "no", bob),
  c("put", "drop/y", "v", bob),
  c("put", "drop/y", "v", "--prev-kv", bob),
  c("get", "drop/y", bob),
  c("del", "drop/y", "--prev-kv", bob),
  c("del", "drop/y", bob),
  c("del", "drop/", "--prefix", bob),
  c("del", "m2", bob),
  // Root, and nobody.
  c("put", "pub/c", "3", root, "-w", "json"),
  c("del", "c1", root),
  c("get", "", "--from-key", "--keys-only", root),
  c("put", "k", "v"),
  c("put", "k", "v", "-w", "json"),
  c("put", "k", "v", "--user=root:wrong"),
  c("del", "k"),
  c("del", "k", "--user=root:wrong"),
  // Txns: every compare and every op of both branches needs its permission.
  txn(['value("cfg") = "v0"'], ["get cfg"], ["get pub/a"]),
  txn(['value("pub/a") = "1"'], ["get pub/a"], ["get cfg"], [alice]),
  txn(['value("pub/a") = "1"'], ["get pub/a"], ["put pub/a x"], [alice]),
  txn(['value("m1") = "q"'], ["get cfg"], [], [alice]),
  txn([], ["get a1", "get b1"], [], [alice, "-w", "json"]),
  txn(['version("m1") > "0"'], ["put m4 v", "get m4"], ["put drop/q v"], [bob, "-w", "json"]),
  txn(['version("m1") > "0"'], ["put m4 v"], ["get cfg"], [bob]),
  txn(['value("cfg") = "v0"'], ["put cfg v2", "get cfg"], ["get zz"], [root, "-w", "json"]),
  txn(['value("cfg") = "v0"'], ["get cfg"], [], ["--user=root:wrong"]),
  // Watches.
  watch(["pub/", "--prefix"], 0),
  watch(["pub/a", "--user=root:wrong"], 0),
  watch(["pub/", "--prefix", "--rev={NEXT}", alice], 3, [["put", "pub/w", "1", root], ["put", "m5", "2", root]]),
  watch(["cfg", "--rev={NEXT}", bob], 0, [["put", "cfg", "v3", root]]),
  watch(["m5", "--rev={NEXT}", bob], 3, [["put", "m5", "3", root]]),
  watch(["", "--prefix", alice], 0),
  watch(["a", "c", "--rev={NEXT}", alice], 3, [["put", "b2", "w", root]]),
  watch(["", "--prefix", "--rev={NEXT}", root], 6, [["put", "b3", "r", root], ["del", "b3", root]]),
  // Leases: granting, keeping alive and reading need no permission in etcd 3.4; revoking needs
  // write permission on every key attached.
  c("lease", "grant", "60"),
  c("lease", "grant", "60", "--user=root:wrong"),
  c("lease", "grant", "60", alice),
  c("lease", "grant", "60", root),
  c("lease", "timetolive", "{L1}"),
  c("lease", "timetolive", "{L2}", alice),
  c("lease", "keep-alive", "--once", "{L1}"),
  c("lease", "keep-alive", "--once", "{L2}", bob),
  c("put", "--lease={L3}", "m9", "v", bob),
  c("put", "--lease={L2}", "b5", "v", root),
  c("put", "--lease={L2}", "pub/l2", "v", alice),
  c("lease", "timetolive", "{L3}", "--keys", alice),
  c("lease", "timetolive", "{L2}", "--keys"),
  c("lease", "revoke", "{L3}"),
  c("lease", "revoke", "{L2}", bob),
  c("lease", "revoke", "{L3}", alice),
  c("lease", "revoke", "{L3}", bob),
  c("get", "m9", root),
  c("lease", "revoke", "{L2}", root),
  c("get", "b5", root),
  c("lease", "list"),
  c("lease", "revoke", "{L1}", alice),
  c("lease", "list", root),
  // Locks: a lease, a put under the lock's prefix and reads of that prefix.
  c("lock", "lk", "--", "echo", "hi"),
  c("lock", "lk", "--user=root:wrong", "--", "echo", "hi"),
  c("lock", "lk", alice, "--", "echo", "hi"),
  c("lock", "mylock", bob, "--", "echo", "hi"),
  c("lock", "lk", root, "--", "echo", "hi"),
  c("get", "", "--from-key", "--keys-only", root),
  // Maintenance and cluster commands.
  c("endpoint", "status"),
  c("endpoint", "status", alice),
  c("endpoint", "status", root),
  c("member", "list"),
  c("member", "list", alice),
  c("member", "list", root),
  c("member", "list", "-w", "json"),
  c("alarm", "list"),
  c("alarm", "list", alice),
  c("alarm", "list", root, "-w", "json"),
  c("alarm", "disarm"),
  c("compaction", "3"),
  c("compaction", "4", "--user=root:wrong"),
  c("compaction", "5", alice),
  c("compaction", "6", root),
  c("compaction", "6", root),
  c("get", "cfg", "--rev=5", root),
  c("defrag"),
  c("defrag", alice),
  c("defrag", root),
  c("endpoint", "hashkv"),
  c("endpoint", "hashkv", alice),
  c("endpoint", "health"),
  c("endpoint", "health", alice),
  c("endpoint", "health", root),
  // User and role management with authentication on.
  c("user", "list"),
  c("user", "list", alice),
  c("role", "list", alice),
  c("role", "list", root, "-w", "json"),
  c("user", "get", "alice", alice),
  c("user", "get", "alice", "--detail", alice),
  c("user", "get", "bob", alice),
  c("role", "get", "reader", alice),
  c("role", "get", "writer", alice),
  c("user", "add", "eve:evepw", "--interactive=false"),
  c("user", "add", "eve:evepw", "--interactive=false", alice),
  c("user", "add", "eve:evepw", "--interactive=false", root),
  c("user", "grant-role", "eve", "writer", alice),
  c("user", "grant-role", "eve", "writer", root),
  c("role", "add", "extra", alice),
  c("role", "grant-permission", "reader", "readwrite", "pub/a", alice),
  withInput("x\n", "user", "passwd", "alice", "--interactive=false", alice),
  c("user", "delete", "root", root),
  c("user", "revoke-role", "root", "root", root),
  c("role", "delete", "root", root),
  c("role", "revoke-permission", "root", "k", root),
  c("get", "m1", eve),
  c("put", "drop/e", "v", eve),
  // A password changed while authentication is on.
  withInput("evepw2\n", "user", "passwd", "eve", "--interactive=false", root),
  c("get", "m1", eve),
  c("get", "m1", "--user=eve:evepw2"),
  // After a permission is revoked, after a role is revoked from a user.
  c("role", "revoke-permission", "reader", "pub/", "--prefix", root),
  c("get", "pub/a", alice),
  c("get", "pub/", "--prefix", alice),
  c("get", "cfg", alice),
  c("role", "revoke-permission", "writer", "m", "--from-key", root),
  c("role", "get", "writer", root),
  c("get", "m1", bob),
  c("get", "m1", "--user=eve:evepw2"),
  c("put", "drop/b", "v", bob),
  c("del", "m3", bob),
  txn([], ["get m1"], [], [bob]),
  watch(["m5", "--rev={NEXT}", bob], 0, [["put", "m5", "4", root]]),
  watch(["pub/", "--prefix", alice], 0),
  c("lock", "mylock", bob, "--", "echo", "hi"),
  c("user", "revoke-role", "eve", "writer", root),
  c("put", "drop/e", "v", "--user=eve:evepw2"),
  c("user", "get", "eve", "--user=eve:evepw2", "-w", "json"),
  // After a user is deleted, after a role is deleted.
  c("get", "cfg", "--user=dave:davepw"),
  c("user", "delete", "dave", root),
  c("get", "cfg", "--user=dave:davepw"),
  c("del", "cfg", "--user=dave:davepw"),
  txn([], ["get cfg"], [], ["--user=dave:davepw"]),
  watch(["cfg", "--user=dave:davepw"], 0),
  c("lease", "grant", "60", "--user=dave:davepw"),
  c("role", "delete", "writer", root),
  c("put", "drop/b", "v", bob),
  c("user", "get", "bob", root),
  c("user", "delete", "bob", root, "-w", "json"),
  c("put", "drop/b", "v", bob),
  c("lock", "mylock", bob, "--", "echo", "hi"),
  c("user", "list", root),
  c("role", "list", root),
  // Authentication off: refused without root, then by root.
  c("auth", "disable"),
  c("auth", "disable", alice),
  c("auth", "disable", "--user=root:wrong"),
  c("auth", "disable", root),
  // Without credentials again; credentials are now refused with a warning and ignored.
  c("get", "cfg"),
  c("get", "cfg", "-w", "json"),
  c("put", "free", "yes", "-w", "json"),
  c("get", "cfg", "--user=root:wrong"),
  c("get", "cfg", alice),
  c("user", "list"),
  c("role", "list"),
  c("defrag"),
  c("lock", "lk", "--", "echo", "hi"),
  watch(["free", "--rev={NEXT}"], 3, [["put", "free", "again"]]),
  // On again (root already holds the root role: no retry) and off again.
  c("auth", "enable"),
  c("get", "cfg"),
  c("get", "cfg", alice),
  c("auth", "disable", root, "-w", "json"),
  c("get", "", "--from-key", "--keys-only"),
  c("user", "list", "-w", "json"),
  c("role", "list", "-w", "json"),
  c("user", "get", "root", "-w", "json"),
  c("role", "get", "reader", "-w", "json")
]

/** What one step printed, normalised. */
interface Outcome {
  readonly code: number | string
  readonly out: string
  readonly err: string
  /** For a watch step: what the runs made alongside printed. */
  readonly alongside?: ReadonlyArray<Outcome>
}

/**
 * The normalisation of one server's outputs. `endpoint` is the server's client address; `leases`
 * the lease ids granted so far in that server's session (hex, as etcdctl prints them).
 */
const normaliser = (endpoint: string, leases: ReadonlyArray<string>) => (text: string): string => {
  // Cluster and member ids in JSON headers: random per cluster.
  let t = normaliseIds(text)
  // The servers listen on different ports (defrag, hashkv, health and endpoint status print it).
  t = t.split(endpoint).join("<endpoint>")
  // Lease ids are random on both servers: each session's are named by the order they were granted,
  // in hex (etcdctl's lease commands) and decimal (JSON).
  leases.forEach((hex, i) => {
    t = t.split(hex).join(`<L${i + 1}>`).split(BigInt("0x" + hex).toString()).join(`<L${i + 1}>`)
  })
  // A lease's remaining TTL depends on how long each server's session took since the grant.
  t = t.replace(/remaining\((\d+)s\)/g, (_, s: string) => `remaining(${Number(s) >= 50 ? "50+" : s}s)`)
  // `endpoint status`: the member id is random; server version, database size and raft index
  // describe the process, not the API (natcd reports its wire's version and its own storage's
  // size and entries). Leadership, learner, raft term and errors are compared.
  t = t.replace(
    /^<endpoint>, [0-9a-f]+, [^,]+, [^,]+, (true|false), (true|false), (\d+), \d+, \d+, (.*)$/gm,
    "<endpoint>, <id>, <version>, <db size>, $1, $2, $3, <raft index>, <raft applied index>, $4"
  )
  // `member list`: the member id is random, its name and URLs are each cluster's configuration.
  t = t.replace(/^[0-9a-f]+, (started|unstarted), [^,]*, [^,]*, [^,]*, (true|false)$/gm, "<id>, $1, <name>, <peer urls>, <client urls>, $2")
  t = t.replace(
    /"ID":\d+,"name":"[^"]*","peerURLs":\[[^\]]*\],"clientURLs":\[[^\]]*\]/g,
    '"ID":"<id>","name":"<name>","peerURLs":["<peer urls>"],"clientURLs":["<client urls>"]'
  )
  // `endpoint health`: how long the probe took.
  t = t.replace(/took = [0-9.]+[a-zµ]+/g, "took = <duration>")
  return t
}

/** The revision after `endpoint`'s current one (Maintenance.Status needs no credentials in etcd 3.4). */
const nextRevision = async (endpoint: string): Promise<string> => {
  const r = await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])
  const [s] = JSON.parse(r.stdout) as Array<{ Status: { header: { revision: number } } }>
  return String(s!.Status.header.revision + 1)
}

/**
 * Runs `etcdctl watch args` against `endpoint` and `during` one second after the watch started;
 * the watch gets SIGINT once it printed `lines` lines (and 300 ms more to print anything
 * unexpected) or after 8 s, unless it ended first. Resolves when both the watch and `during` ended.
 */
const runWatch = async (endpoint: string, args: ReadonlyArray<string>, lines: number, during: () => Promise<void>) => {
  const child = spawn("etcdctl", [`--endpoints=${endpoint}`, "watch", ...args], { env: { ...process.env, ETCDCTL_API: "3" } })
  let stdout = ""
  let stderr = ""
  let stopping = false
  const stop = (afterMs: number) => {
    if (stopping) return
    stopping = true
    setTimeout(() => child.kill("SIGINT"), afterMs)
  }
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString()
    if (lines > 0 && stdout.split("\n").length - 1 >= lines) stop(300)
  })
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
  const deadline = setTimeout(() => stop(0), 8000)
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "?")))
  const [code] = await Promise.all([exited, sleep(1000).then(during)])
  clearTimeout(deadline)
  return { code, stdout, stderr }
}

/** Runs the session against `endpoint`; returns one normalised outcome per step. */
const run = async (endpoint: string): Promise<Outcome[]> => {
  const leases: string[] = []
  const outcomes: Outcome[] = []
  const normalise = (text: string) => normaliser(endpoint, leases)(text)
  const subst = (args: ReadonlyArray<string>, next: string) =>
    args.map((a) => a.replace(/\{L(\d)\}/g, (_, n: string) => leases[Number(n) - 1] ?? "0").replace("{NEXT}", next))
  const outcome = (r: { code: number | string; stdout: string; stderr: string }): Outcome => ({
    code: r.code,
    out: normalise(r.stdout),
    err: normaliseStderr(r.stderr, normalise)
  })
  for (const step of session) {
    if ("watch" in step) {
      const next = await nextRevision(endpoint)
      const alongside: Outcome[] = []
      const r = await runWatch(endpoint, subst(step.watch, next), step.lines, async () => {
        for (const args of step.alongside) alongside.push(outcome(await etcdctl(endpoint, args)))
      })
      outcomes.push({ ...outcome(r), alongside })
      continue
    }
    const r = await etcdctl(endpoint, subst(step.args, ""), step.input)
    const granted = /^lease ([0-9a-f]+) granted/.exec(r.stdout)
    if (granted !== null) leases.push(granted[1]!)
    outcomes.push(outcome(r))
  }
  return outcomes
}

/** A step as a command line. */
const show = (step: Step): string => {
  const line = (args: ReadonlyArray<string>) => args.map((a) => (a === "" || /\s/.test(a) ? JSON.stringify(a) : a)).join(" ")
  return "watch" in step
    ? `etcdctl watch ${line(step.watch)} (stopped after ${step.lines} lines)${step.alongside.map((a) => `\n  alongside: etcdctl ${line(a)}`).join("")}`
    : `etcdctl ${line(step.args)}${step.input === undefined ? "" : ` <<< ${JSON.stringify(step.input)}`}`
}

/**
 * An outcome as transcript lines: exit code, stdout lines after "|", stderr lines after "!";
 * control characters other than tab (a NUL in a key) as \xNN.
 */
const showOutcome = (name: string, o: Outcome): string => {
  const escape = (l: string) => l.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`)
  const lines = (text: string, mark: string) => (text === "" ? [] : text.replace(/\n$/, "").split("\n").map((l) => `    ${mark} ${escape(l)}`))
  return [
    `  ${name} (exit ${o.code})`,
    ...lines(o.out, "|"),
    ...lines(o.err, "!"),
    ...(o.alongside ?? []).flatMap((a, i) => [`    alongside ${i + 1} (exit ${a.code})`, ...lines(a.out, "  |"), ...lines(a.err, "  !")])
  ].join("\n")
}

describe("etcdctl auth session: natcd vs etcd", () => {
  const pair = natcdBesideEtcd("auth-diff", { portOffset: 2140, clientPort: 28410, peerPort: 28420 })

  it(`gives the same output, exit codes and errors for all ${session.length} steps`, async () => {
    // The two sessions are independent: they run side by side.
    const [want, got] = await Promise.all([run(pair.etcd.endpoint), run(pair.natcd.endpoints[0]!)])
    const mismatches: string[] = []
    session.forEach((step, i) => {
      const [w, g] = [want[i]!, got[i]!]
      if (process.env.AUTH_DIFF_TRANSCRIPT) {
        appendFileSync(process.env.AUTH_DIFF_TRANSCRIPT, `$ ${show(step)}\n${showOutcome("etcd ", w)}\n${showOutcome("natcd", g)}\n`)
      }
      if (JSON.stringify(w) !== JSON.stringify(g)) {
        mismatches.push(`${i + 1}. ${show(step)}\n  etcd:  ${JSON.stringify(w)}\n  natcd: ${JSON.stringify(g)}`)
      }
    })
    expect(mismatches, mismatches.join("\n")).toEqual([])
  }, 600_000)
})
