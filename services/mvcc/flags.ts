/**
 * The mvcc process's configuration: its command-line flags (each also read from its
 * environment variable, which is how `make run` configures them), the auth token kind and the
 * auto compaction they name, checked before anything starts (a bad value exits with status 2
 * and a message), and the test-only apply failure hook. What the flags mean: ./main.ts.
 */
import { Option } from "commander"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { durationMs, parseBool, parseFlags, positiveInt } from "../runtime/process.ts"
import { defaultBatchIntervalMs, defaultBatchLimit } from "./commit-scheduler.ts"
import { defaultCompactionBatchLimit } from "./background-compaction.ts"
import { parseCompactionRetention, revisionCheckIntervalMs } from "./core/compactor.ts"
import { defaultAuthTokenTtlSec, parseAuthToken } from "./auth-tokens.ts"

export interface MvccFlags {
  readonly applyQueue: number
  readonly maxSnapshots: number
  readonly backendBatchLimit: number
  readonly backendBatchInterval: number
  readonly compactionBatchLimit: number
  readonly autoCompactionMode: string
  readonly autoCompactionRetention: string
  readonly autoCompactionCheckIntervalMs: number
  readonly experimentalInitialCorruptCheck: boolean
  readonly experimentalCorruptCheckTime: number
  readonly authToken: string
  readonly authTokenTtl: number
}

/** A duration flag that may be 0 (off): Go duration or ms. */
const checkIntervalMs = (value: string): number => (/^0+(s|ms|m|h)?$/.test(value) ? 0 : durationMs(value))

/** Parses the mvcc process's flags (and the common ones) from `argv`; exits on a bad flag. */
export const parseMvccFlags = (argv: ReadonlyArray<string>) =>
  parseFlags<MvccFlags>("mvcc", argv, (c) =>
    c
      .addOption(new Option("--apply-queue <frames>", "bound of the apply queue, in frames").argParser(positiveInt).default(1024))
      .addOption(new Option("--max-snapshots <n>", "snapshot files of the state to keep").env("NATCD_MAX_SNAPSHOTS").argParser(positiveInt).default(5))
      .addOption(
        new Option("--backend-batch-limit <writes>", "commit the backend after this many writes (etcd: 10000)")
          .env("NATCD_BACKEND_BATCH_LIMIT").argParser(positiveInt).default(defaultBatchLimit)
      )
      .addOption(
        new Option("--backend-batch-interval <duration>", "commit the backend at most this long after a write (Go duration or ms)")
          .env("NATCD_BACKEND_BATCH_INTERVAL").argParser(durationMs).default(defaultBatchIntervalMs)
      )
      .addOption(
        new Option("--compaction-batch-limit <records>", "records deleted per background compaction batch, one LMDB transaction each (etcd --experimental-compaction-batch-limit: 1000)")
          .env("NATCD_COMPACTION_BATCH_LIMIT").argParser(positiveInt).default(defaultCompactionBatchLimit)
      )
      .addOption(
        new Option("--auto-compaction-mode <mode>", "periodic or revision (etcd)")
          .env("NATCD_AUTO_COMPACTION_MODE").choices(["periodic", "revision"]).default("periodic")
      )
      .addOption(
        new Option("--auto-compaction-retention <retention>", "periodic: hours or a Go duration; revision: revisions; 0 = off")
          .env("NATCD_AUTO_COMPACTION_RETENTION").default("0")
      )
      .addOption(
        new Option("--auto-compaction-check-interval-ms <ms>", "revision mode's check interval (etcd: 5 min; a test knob)")
          .env("NATCD_AUTO_COMPACTION_CHECK_INTERVAL_MS").argParser(positiveInt).default(revisionCheckIntervalMs).hideHelp()
      )
      // etcd's corruption check (./corrupt-check.ts); both off by default, as in etcd 3.4 and 3.5.
      .addOption(
        new Option("--experimental-initial-corrupt-check [bool]", "compare HashKV with the peers before serving; exit on a mismatch (etcd)")
          .env("NATCD_INITIAL_CORRUPT_CHECK").argParser(parseBool).default(false)
      )
      .addOption(
        new Option("--experimental-corrupt-check-time <duration>", "leader's HashKV comparison interval (Go duration or ms); 0 = off (etcd)")
          .env("NATCD_CORRUPT_CHECK_TIME").argParser(checkIntervalMs).default(0)
      )
      // etcd's auth token options (./auth-tokens.ts).
      .addOption(
        new Option("--auth-token <type>", "simple, or jwt,pub-key=<file>,priv-key=<file>,sign-method=<RS256|ES256|…>[,ttl=<duration>] (etcd)")
          .env("NATCD_AUTH_TOKEN").default("simple")
      )
      .addOption(
        new Option("--auth-token-ttl <seconds>", "lifetime of a simple token after its last use (etcd: 300)")
          .env("NATCD_AUTH_TOKEN_TTL").argParser(positiveInt).default(defaultAuthTokenTtlSec)
      )
  )

/** The token kind `--auth-token` names; exits with status 2 on a bad value. */
export const tokenKindOf = (flags: MvccFlags) => {
  try {
    return parseAuthToken(flags.authToken)
  } catch (e) {
    console.error(`natcd mvcc: --auth-token: ${(e as Error).message}`)
    process.exit(2)
  }
}

/** The auto compaction the flags ask for (undefined: off); exits with status 2 on a bad value. */
export const autoCompactionOf = (flags: MvccFlags) => {
  const autoCompaction = parseCompactionRetention(flags.autoCompactionMode, flags.autoCompactionRetention)
  if (autoCompaction !== undefined && "error" in autoCompaction) {
    console.error(`natcd mvcc: ${autoCompaction.error}`)
    process.exit(2)
  }
  return autoCompaction
}

/**
 * Test builds only: `NATCD_TEST_FAIL_APPLY_AT_INDEX=<n>` makes the apply of entry n fail once
 * per data directory (a marker file under `dir` records that it did), to show that a failed
 * apply stops the process and loses nothing. Unset in production: no hook.
 */
export const injectedApplyFailure = (dir: string): { injectFailure?: (index: number) => boolean } => {
  const at = Number(process.env.NATCD_TEST_FAIL_APPLY_AT_INDEX ?? "")
  if (!Number.isSafeInteger(at) || at <= 0) return {}
  const marker = join(dir, "test-apply-failure-injected")
  return {
    injectFailure: (index) => {
      if (index !== at || existsSync(marker)) return false
      writeFileSync(marker, `${index}\n`, { mode: 0o600 })
      return true
    }
  }
}
