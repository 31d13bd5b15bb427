/**
 * Server-side cost from /proc: CPU time (user + system) and resident memory of a set of
 * processes, so the benchmark can report CPU milliseconds per operation summed over every
 * server process (natcd: all its service processes and nats-server; etcd: its members) and
 * resident and proportional memory per member. Linux only.
 */
import { readdirSync, readFileSync } from "node:fs"

/** Clock ticks per second of /proc/<pid>/stat times (sysconf(_SC_CLK_TCK); 100 on Linux). */
const ticksPerSecond = 100

/** CPU time used so far by `pid`, in ms; 0 when the process is gone. */
export const cpuMs = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / ticksPerSecond
  } catch {
    return 0
  }
}

/** Total CPU ms of `pids`. */
export const totalCpuMs = (pids: ReadonlyArray<number>): number => pids.reduce((sum, pid) => sum + cpuMs(pid), 0)

/**
 * Memory of `pid` in bytes: resident (VmRSS), peak resident (VmHWM) and proportional (Pss of
 * /proc/<pid>/smaps_rollup: each resident page divided by the number of processes mapping it,
 * so that pages shared by several processes, such as the text of the Node or etcd binary, are
 * counted once over all of them, not once per process); zeros when gone.
 */
export const memory = (pid: number): { rssBytes: number; peakRssBytes: number; pssBytes: number } => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024
    return { rssBytes: kb(status, "VmRSS"), peakRssBytes: kb(status, "VmHWM"), pssBytes: kb(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss") }
  } catch {
    return { rssBytes: 0, peakRssBytes: 0, pssBytes: 0 }
  }
}

/** Pids whose process group is `pgid`. */
export const groupPids = (pgid: number): number[] => {
  const out: number[] = []
  for (const entry of readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number)) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(rest[2]) === pgid) out.push(entry)
    } catch {
      // The process exited meanwhile.
    }
  }
  return out
}

/** The command line of `pid`, space-separated; "" when gone. */
export const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
  } catch {
    return ""
  }
}

/**
 * A short label for a server process: "nats-server", the natcd service ("raft", "wal", …,
 * from services/<name>/main.ts), or the program name; used to break CPU and RSS down.
 */
export const processLabel = (pid: number): string => {
  const args = cmdline(pid)
  const service = /services\/([a-z-]+)\/main\.ts/.exec(args)?.[1]
  if (service !== undefined) return service
  const program = args.split(" ")[0] ?? ""
  return program.slice(program.lastIndexOf("/") + 1) || `pid ${pid}`
}

/** The replica name of a natcd watch process (`--replica=w2`), or undefined for any other. */
export const watchReplicaOf = (pid: number): string | undefined => {
  const args = cmdline(pid)
  return args.includes("services/watch/main.ts") ? /--replica=(\S+)/.exec(args)?.[1] : undefined
}

/**
 * In a child process a benchmark forked (`fork`): answers the message "cpu" with its
 * `process.cpuUsage()` and exits on "exit", then tells the parent "ready".
 */
export const answerCpuProbes = (): void => {
  process.on("message", (m) => {
    if (m === "cpu") process.send!(process.cpuUsage())
    if (m === "exit") process.exit(0)
  })
  process.send!("ready")
}

/** What {@link waitQuiet} waits for (units in the names). */
export interface QuietOptions {
  /** Length of one window, ms. */
  readonly windowMs: number
  /** Windows the average is taken over. */
  readonly windows: number
  /** CPU per window at or under which, on average, a process is quiet, ms. */
  readonly quietCpuMs: number
  /** Longest wait, ms. */
  readonly maxMs: number
}

/**
 * Before a measured window: every process at ≤ 50 ms of CPU a second on average over 6 s, at most
 * 40 s, so that work one system left from its previous run (Go's garbage collector, natcd's
 * background work) is over, not inside the next window, whichever system that window measures.
 * An average, not every second: idle natcd and etcd processes have an occasional second over
 * 50 ms (their own garbage collections, periodic work).
 */
export const defaultQuiet: QuietOptions = { windowMs: 1000, windows: 6, quietCpuMs: 50, maxMs: 40_000 }

/**
 * How long the benchmark leaves the servers idle before it reads memory at rest, ms: longer than
 * natcd's idle memory release waits before it collects (services/runtime/idle-release-policy.ts:
 * 30–45 quiet seconds), so the reading shows what a member keeps once idle.
 */
export const restMs = 60_000

/**
 * Waits until every process of `pids()` (read again in each window) used on average at most
 * `quietCpuMs` of CPU per window over the last `windows` windows, or until `maxMs` passed; at
 * once when `pids()` is empty. Returns whether they got quiet and how long the wait took, ms.
 */
export const waitQuiet = async (pids: () => ReadonlyArray<number>, options: QuietOptions = defaultQuiet): Promise<{ readonly quiet: boolean; readonly waitedMs: number }> => {
  const started = Date.now()
  // CPU per process in each of the latest windows, oldest first: at most `windows` of them.
  const recent: Array<Map<number, number>> = []
  while (Date.now() - started < options.maxMs) {
    const current = pids()
    // Nothing to watch (a running cluster measured through --endpoints): nothing to wait for.
    if (current.length === 0) return { quiet: true, waitedMs: Date.now() - started }
    const before = new Map(current.map((pid) => [pid, cpuMs(pid)]))
    await new Promise((resolve) => setTimeout(resolve, options.windowMs))
    recent.push(new Map(current.map((pid) => [pid, cpuMs(pid) - before.get(pid)!])))
    if (recent.length > options.windows) recent.shift()
    const quiet = recent.length === options.windows &&
      current.every((pid) => recent.reduce((sum, w) => sum + (w.get(pid) ?? 0), 0) <= options.quietCpuMs * options.windows)
    if (quiet) return { quiet: true, waitedMs: Date.now() - started }
  }
  return { quiet: false, waitedMs: Date.now() - started }
}
