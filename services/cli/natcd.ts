/**
 * The `natcd` command (bin/natcd): operator commands.
 *
 *   natcd run [--members=3] [--data-dir=./data] ...      run a local cluster (services/supervisor)
 *   natcd snapshot restore <file> [--data-dir=./data] [--members=3 | --initial-cluster=m1,m2,m3]
 *                                 [--skip-hash-check]
 *
 *   natcd trace [<trace-id>] [--slowest N] [--key K] [--since 10m] [--data-dir=./data] [--json]
 *
 *   natcd subjects [--permissions] [--cluster=natcd]
 *   natcd creds list|add|rotate [<role>.<name> | cli] [--data-dir=./data] [--cluster=natcd]
 *   natcd creds init [--members=m1,m2,m3] [--watch-replicas=w1] [--data-dir=./data]
 *
 * `subjects` prints the table of NATS endpoints from their declarations (shared/endpoints.ts),
 * and with --permissions each identity's NATS permissions derived from them.
 *
 * `creds` manages the NATS identities under `<data-dir>/creds/` of a cluster started by
 * `natcd run` (services/supervisor/nats-security.ts), or of a deployment (`init` creates every
 * identity of the given members and replicas and the users file for nats-server): `add` creates one (e.g. `watch.w3` before
 * starting a third watch replica), `rotate` replaces one's key; both rewrite the users file and
 * have the running nats-servers reload it, so no natcd process restarts.
 *
 * `trace` prints a request's path from the embedded trace store (./trace.ts).
 *
 * `snapshot restore` turns a file written by `etcdctl snapshot save` into the data of a new
 * cluster, as `etcdutl snapshot restore` does for etcd; then `natcd run` (or `make run`) with the
 * same --data-dir and members starts it.
 */
import { Command, Option } from "commander"
import { spawn } from "node:child_process"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { permissionsFor, roles, subjectsTable } from "../../shared/endpoints.ts"
import { credsFileName } from "../../shared/endpoints.ts"
import { restoreSnapshot } from "../mvcc/restore.ts"
import { clusterIdentities, ensureCredentials, identityOfCredsFile, privateDir, reloadNatsServers, writeAuthorization } from "../supervisor/nats-security.ts"
import { rmSync } from "node:fs"
import { readSpans } from "../runtime/trace-store.ts"
import { causalOrder, formatRequests, formatWaterfall, parseSince, selectRequests } from "./trace.ts"

const program = new Command("natcd").description("natcd operator commands")

program
  .command("run")
  .description("run a local natcd cluster in the foreground (same flags as services/supervisor/main.ts)")
  .allowUnknownOption(true)
  .helpOption(false)
  .argument("[args...]")
  .action((args: string[]) => {
    const supervisor = fileURLToPath(new URL("../supervisor/main.ts", import.meta.url))
    const child = spawn(process.execPath, [supervisor, ...args], { stdio: "inherit" })
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal))
    child.on("exit", (code) => process.exit(code ?? 0))
  })

program
  .command("subjects")
  .description("print the NATS endpoints as declared (markdown), or each identity's permissions")
  .option("--permissions", "print the NATS permissions of each service type (member m1, replica w1)", false)
  .addOption(new Option("--cluster <name>", "cluster name").env("NATCD_CLUSTER").default("natcd"))
  .action((opts: { permissions: boolean; cluster: string }) => {
    if (!opts.permissions) return console.log(subjectsTable())
    for (const role of roles) {
      const name = role === "watch" ? "w1" : role === "cli" ? "" : "m1"
      const p = permissionsFor(opts.cluster, { role, name })
      console.log(`${role}${name === "" ? "" : "." + name}\n  publish:   ${p.publish.join(" ") || "(nothing)"}\n  subscribe: ${p.subscribe.join(" ")}`)
    }
  })

program
  .command("creds")
  .description("list, add or rotate the NATS identities of a cluster started by `natcd run`")
  .argument("<action>", "list, init (every identity of --members and --watch-replicas), add or rotate")
  .argument("[identity]", "<role>.<name> (e.g. watch.w3, gateway.m4) or cli")
  .addOption(new Option("--data-dir <dir>", "data root of the cluster").env("DATA_DIR").default("./data"))
  .addOption(new Option("--cluster <name>", "cluster name").env("NATCD_CLUSTER").default("natcd"))
  .addOption(new Option("--members <names>", "init: member names, comma-separated").default("m1,m2,m3"))
  .addOption(new Option("--watch-replicas <names>", "init: watch replica names, comma-separated").default("w1"))
  .action((action: string, name: string | undefined, opts: { dataDir: string; cluster: string; members: string; watchReplicas: string }) => {
    const dataDir = resolve(opts.dataDir)
    try {
      if (action === "list") {
        for (const c of writeAuthorization(dataDir, opts.cluster)) console.log(`${c.identity.role}${c.identity.name === "" ? "" : "." + c.identity.name}\t${c.publicKey}\t${c.file}`)
        return
      }
      if (action === "init") {
        // Keys for a whole deployment at once (systemd, Kubernetes), without the supervisor.
        const members = opts.members.split(",").map((m) => m.trim()).filter((m) => m !== "")
        const replicas = opts.watchReplicas.split(",").map((m) => m.trim()).filter((m) => m !== "")
        privateDir(dataDir)
        ensureCredentials(join(dataDir, "creds"), clusterIdentities(members, replicas))
        for (const c of writeAuthorization(dataDir, opts.cluster)) console.log(`${c.identity.role}${c.identity.name === "" ? "" : "." + c.identity.name}\t${c.publicKey}\t${c.file}`)
        console.log(`users and permissions: ${join(dataDir, "nats-authorization.conf")} (include it in nats-server's config)`)
        return
      }
      if (action !== "add" && action !== "rotate") throw new Error(`unknown action ${action}: use list, init, add or rotate`)
      const identity = name === undefined ? undefined : identityOfCredsFile(`${name}.nk`)
      if (identity === undefined) throw new Error(`give an identity as <role>.<name> (roles: raft, wal, mvcc, lease, gateway, watch) or cli`)
      const file = join(dataDir, "creds", credsFileName(identity))
      if (action === "rotate") rmSync(file, { force: true })
      ensureCredentials(join(dataDir, "creds"), [identity])
      const credentials = writeAuthorization(dataDir, opts.cluster)
      const created = credentials.find((c) => c.file === file)!
      const pids = reloadNatsServers(dataDir)
      console.log(`${action === "add" ? "added" : "rotated"} ${name}: ${created.publicKey} in ${file}; nats-server reloaded: ${pids.length === 0 ? "none running" : pids.join(", ")}`)
    } catch (e) {
      console.error(`Error: ${(e as Error).message}`)
      process.exit(1)
    }
  })

const snapshot = program.command("snapshot").description("snapshot commands")
snapshot
  .command("restore")
  .description("restore a file saved with `etcdctl snapshot save` as the data of a new cluster")
  .argument("<file>", "the saved snapshot")
  .addOption(new Option("--data-dir <dir>", "data root of the new cluster").env("DATA_DIR").default("./data"))
  .addOption(new Option("--members <n>", "number of members (named m1..mN)").env("MEMBERS").default("3"))
  .addOption(new Option("--initial-cluster <names>", "member names, comma-separated (instead of --members)"))
  .option("--skip-hash-check", "do not check the SHA-256 the saved file ends with", false)
  .action(async (file: string, opts: { dataDir: string; members: string; initialCluster?: string; skipHashCheck: boolean }) => {
    const count = Number(opts.members)
    const members = opts.initialCluster !== undefined
      ? opts.initialCluster.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
      : Array.from({ length: Number.isSafeInteger(count) && count > 0 ? count : 3 }, (_, i) => `m${i + 1}`)
    try {
      await restoreSnapshot({ snapshotFile: resolve(file), dataDir: resolve(opts.dataDir), members, skipHashCheck: opts.skipHashCheck })
      console.log(`restored ${file} into ${resolve(opts.dataDir)} for members ${members.join(", ")}`)
    } catch (e) {
      console.error(`Error: ${(e as Error).message}`)
      process.exit(1)
    }
  })

program
  .command("trace")
  .description("show traced requests from the trace store: one trace as a waterfall, the slowest, or those on a key")
  .argument("[trace-id]", "the trace to show (32 hex digits, from the natcd-trace-id response metadata or a listing)")
  .option("--slowest <n>", "list the N slowest requests")
  .option("--key <key>", "list the requests on this key")
  .option("--since <duration>", "only requests of the last duration (e.g. 30s, 1m, 2h)", "")
  .option("--limit <n>", "how many requests a listing shows", "20")
  .option("--json", "print spans (for a trace) or requests as JSON lines", false)
  .addOption(new Option("--data-dir <dir>", "data root of the cluster (its traces/ folder is read)").env("DATA_DIR").default("./data"))
  .action(async (traceId: string | undefined, opts: { slowest?: string; key?: string; since: string; limit: string; json: boolean; dataDir: string }) => {
    const spans = await readSpans(join(resolve(opts.dataDir), "traces"))
    const print = (lines: ReadonlyArray<string>) => console.log(lines.join("\n"))
    if (traceId !== undefined) {
      if (!/^[0-9a-f]{32}$/.test(traceId)) {
        console.error(`Error: not a trace id: ${traceId}`)
        process.exit(1)
      }
      if (opts.json) return print(causalOrder(spans.filter((s) => s.t === traceId)).map(({ span }) => JSON.stringify(span)))
      const lines = formatWaterfall(traceId, spans)
      print(lines)
      if (lines.length === 1) process.exit(1)
      return
    }
    const sinceMs = opts.since === "" ? undefined : parseSince(opts.since)
    if (opts.since !== "" && sinceMs === undefined) {
      console.error(`Error: not a duration: ${opts.since}`)
      process.exit(1)
    }
    const limit = opts.slowest !== undefined ? Number(opts.slowest) : Number(opts.limit)
    const selected = selectRequests(spans, {
      ...(sinceMs === undefined ? {} : { sinceMs }),
      ...(opts.key === undefined ? {} : { key: opts.key }),
      slowest: opts.slowest !== undefined,
      limit: Number.isSafeInteger(limit) && limit > 0 ? limit : 20,
      nowMs: Date.now()
    })
    print(opts.json ? selected.map((s) => JSON.stringify(s)) : formatRequests(selected))
  })

await program.parseAsync(process.argv)
