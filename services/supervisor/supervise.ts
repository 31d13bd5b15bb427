/**
 * How the supervisor runs one process: spawn it, poll its /livez, restart it when it exits (or
 * is killed for failing its liveness checks), and stop it when the supervisor stops.
 *
 * Restart policy: after a crash with backoff (100 ms doubling to 5 s, reset once the process
 * ran 30 s); after a planned stop (exit code {@link plannedExitCode}: SIGTERM) after
 * {@link plannedRestartMs}, without growing the backoff. A process is polled every 5 s once it
 * answered (or had 60 s to start) and killed with SIGKILL after `livenessFailures` failures in
 * a row. Stopping sends SIGTERM, then SIGKILL after 5 s. Once the supervisor itself is told to
 * stop (SIGINT or SIGTERM), exits are the shutdown and are not restarted.
 *
 * What to run (command lines, ports) is decided in ./main.ts; this file knows nothing of
 * natcd's services.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { LogLevel } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createConnection } from "node:net"
import { loggingLayer } from "../runtime/process.ts"
import { retryEffect } from "../runtime/retry.ts"
import {
  crashBackoffInitialMs,
  crashBackoffMaxMs,
  crashBackoffResetMs,
  livenessGraceMs,
  livenessPollMs,
  livezProbeTimeoutMs,
  portWaitAttempts,
  portWaitRetryMs,
  stopGraceMs
} from "./timeouts.ts"
import { plannedRestartMs } from "./timeouts.ts"

/** One supervised process. */
export interface ProcessSpec {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** Port of the process's /livez, polled once it had time to start; none for nats-server. */
  readonly healthPort?: number
}

/** GET http://127.0.0.1:`port`/livez; true on 200 within {@link livezProbeTimeoutMs}. */
const probeLivez = (port: number): Promise<boolean> =>
  fetch(`http://127.0.0.1:${port}/livez`, { signal: AbortSignal.timeout(livezProbeTimeoutMs) }).then(
    async (r) => {
      await r.arrayBuffer().catch(() => undefined)
      return r.status === 200
    },
    () => false
  )

/**
 * Waits until 127.0.0.1:`port` accepts a connection: tries every {@link portWaitRetryMs}, at most
 * {@link portWaitAttempts} times, then fails with the last connection error.
 */
export const waitForPort = (port: number) =>
  retryEffect({
    name: "wait for port",
    maxAttempts: portWaitAttempts,
    backoff: { initialMs: portWaitRetryMs },
    retryable: () => true,
    atBound: (last) => last,
    logFields: { port }
  }, Effect.tryPromise(() =>
    new Promise<void>((ok, fail) => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => {
        socket.end()
        ok()
      })
      socket.on("error", fail)
    })
  ))

const stopChild = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const killer = setTimeout(() => child.kill("SIGKILL"), stopGraceMs)
    child.once("exit", () => {
      clearTimeout(killer)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

/**
 * Set once the supervisor is told to stop (SIGINT or SIGTERM). Ctrl-C reaches every process of
 * the terminal's process group, so services may exit before the supervisor stops them: such an
 * exit is the shutdown, not a failure to report and restart.
 */
let stopping = false
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => (stopping = true))

/**
 * Exit code of a service stopped by SIGTERM (Effect's runMain exits with 130 once a signal has
 * interrupted the program, whichever signal): the mvcc service restarting itself on a new
 * backend, or an operator restarting one process.
 */
const plannedExitCode = 130

/**
 * Runs `spec` until interrupted, restarting it whenever it exits (unless stopping): after a
 * crash with backoff (100 ms doubling to 5 s, reset once it ran 30 s), after a planned stop
 * ({@link plannedExitCode}) after {@link plannedRestartMs} without growing the backoff.
 * `livenessFailures`: failed /livez polls in a row that get the process killed (0: never);
 * `logLevel`: of the liveness warning, logged outside the fiber.
 */
export const supervise = (spec: ProcessSpec, options: { readonly livenessFailures: number; readonly logLevel: LogLevel.LogLevel }) =>
  Effect.gen(function*() {
    let backoffMs = crashBackoffInitialMs
    while (true) {
      const startedAt = Date.now()
      const exit = yield* Effect.acquireUseRelease(
        Effect.sync(() => spawn(spec.command, spec.args as string[], { stdio: ["ignore", "inherit", "inherit"] })),
        (child) =>
          Effect.callback<{ code: number | null; signal: string | null }>((resume) => {
            const poll = spec.healthPort === undefined || options.livenessFailures <= 0 ? undefined : setInterval(() => {
              if (probing) return
              probing = true
              probeLivez(spec.healthPort!).then((ok) => {
                probing = false
                if (ok) answered = true
                // Failures count once the process answered once, or after the grace period: a
                // slow start on a loaded machine is not a hang.
                if (!ok && !answered && Date.now() - startedAt < livenessGraceMs) return
                failures = ok ? 0 : failures + 1
                if (failures < options.livenessFailures || child.exitCode !== null || child.signalCode !== null) return
                Effect.runFork(Effect.logWarning("process failed its liveness checks; killing it").pipe(
                  Effect.annotateLogs({ service: "supervisor", process: spec.name, port: spec.healthPort, failures }),
                  Effect.provide(loggingLayer(options.logLevel))
                ))
                failures = 0
                child.kill("SIGKILL")
              })
            }, livenessPollMs)
            let failures = 0
            let probing = false
            let answered = false
            child.once("exit", (code, signal) => {
              if (poll !== undefined) clearInterval(poll)
              resume(Effect.succeed({ code, signal }))
            })
            child.once("error", (e) => {
              if (poll !== undefined) clearInterval(poll)
              resume(Effect.succeed({ code: -1, signal: e.message }))
            })
          }),
        stopChild
      )
      if (stopping) return yield* Effect.never
      if (Date.now() - startedAt > crashBackoffResetMs) backoffMs = crashBackoffInitialMs
      if (exit.code === plannedExitCode) {
        // Stopped on SIGTERM: the mvcc service restarting on a compacted or installed backend,
        // or an operator's restart. Not a crash: restarted after the first backoff step, which
        // does not grow.
        yield* Effect.logInfo("process stopped; restarting").pipe(
          Effect.annotateLogs({ process: spec.name, code: exit.code, backoffMs: plannedRestartMs })
        )
        yield* Effect.sleep(Duration.millis(plannedRestartMs))
        continue
      }
      yield* Effect.logWarning("process exited; restarting").pipe(
        Effect.annotateLogs({ process: spec.name, code: exit.code, signal: exit.signal, backoffMs })
      )
      yield* Effect.sleep(Duration.millis(backoffMs))
      backoffMs = Math.min(backoffMs * 2, crashBackoffMaxMs)
    }
  })
