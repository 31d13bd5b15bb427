/**
 * The `natcd` command (bin/natcd): operator commands.
 *
 *   natcd run [--members=3] [--data-dir=./data] ...      run a local cluster (services/supervisor)
 *   natcd snapshot restore <file> [--data-dir=./data] [--members=3 | --initial-cluster=m1,m2,m3]
 *                                 [--skip-hash-check]
 *
 * `snapshot restore` turns a file written by `etcdctl snapshot save` into the data of a new
 * cluster, as `etcdutl snapshot restore` does for etcd; then `natcd run` (or `make run`) with the
 * same --data-dir and members starts it.
 */
import { Command, Option } from "commander"
import { spawn } from "node:child_process"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { restoreSnapshot } from "../mvcc/restore.ts"

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

await program.parseAsync(process.argv)
