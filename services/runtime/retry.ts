/**
 * The one way a natcd shell tries an operation again: {@link retryEffect} for an Effect and
 * {@link retryPromise} for a function returning a Promise, both driven by one effect `Schedule`
 * built from a {@link RetryPolicy}. A policy names its bound (a deadline in ms, a number of
 * attempts, or both), its backoff, which failures are worth another attempt, and the named error
 * the call fails with at the bound; each retry is logged, and so is giving up (STYLE.md 6: every
 * retry loop has a bound and says what happens there).
 *
 * The rules, the same for both forms:
 * - The first attempt starts at once. After a failure the policy's `retryable` decides: any
 *   other failure ends the call at once, unchanged.
 * - A retryable failure once the deadline has passed, or on the last allowed attempt, ends the
 *   call with `atBound(failure)`.
 * - Otherwise the call waits the backoff's delay and tries again; a wait never runs past the
 *   deadline: one that would is cut to end there, and the call then ends with `atBound` without
 *   another attempt (the loops this replaced slept, then found the deadline passed).
 *
 * This is not the RpcClient's re-sending of one frame until a reply comes (./rpc.ts): that one is
 * per message, below every caller, and counted in its own metrics.
 */
import { AsyncLocalStorage } from "node:async_hooks"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { Severity } from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import { runDetached } from "./process.ts"
import { describeError } from "../../shared/errors.ts"

/**
 * The wait before retry number `retry` (1 before the second attempt), in ms: exponential
 * (`initialMs`, times `factor` per retry, at most `maxMs`; factor 1 is a fixed wait), or chosen
 * per failure by a function.
 */
export type Backoff<E> =
  | { readonly initialMs: number; readonly factor?: number; readonly maxMs?: number }
  | ((error: E, retry: number) => number)

/** How to retry one operation; see the module note for the rules. */
export interface RetryPolicy<E, B> {
  /** What is retried, for the log lines (e.g. "lease keep-alive"). */
  readonly name: string
  /** Ends the call once this many ms have passed since it began; absent: no deadline. */
  readonly deadlineMs?: number
  /** Ends the call after this many attempts in all, the first included; absent: no limit. */
  readonly maxAttempts?: number
  /** The wait before each retry. */
  readonly backoff: Backoff<E>
  /** True for a failure worth another attempt; any other ends the call at once, as it is. */
  readonly retryable: (error: E) => boolean
  /** The failure the call ends with at the bound, given the last retryable failure. */
  readonly atBound: (last: E) => B
  /** The level of the retry and give-up lines; default Debug (callers on a hot path keep it). */
  readonly logLevel?: Severity
  /** Fields added to every log line (e.g. a lease id). */
  readonly logFields?: Readonly<Record<string, unknown>>
}

/** The wait before retry `retry` after `error`, in ms. */
const delayMs = <E>(backoff: Backoff<E>, error: E, retry: number): number => {
  if (typeof backoff === "function") return Math.max(0, backoff(error, retry))
  const exponential = backoff.initialMs * Math.pow(backoff.factor ?? 1, retry - 1)
  return Math.max(0, Math.min(exponential, backoff.maxMs ?? Infinity))
}

/** Marks the attempt not made because the wait before it was cut to the deadline. */
const deadlineReached: unique symbol = Symbol("deadlineReached")

/**
 * Runs `attempt`, and again by `policy` while it fails retryably: succeeds with the first
 * success; fails with a non-retryable failure as it is, and with `policy.atBound(last)` at the
 * bound. Time is Effect's Clock; the lines go to the fiber's logger.
 */
export const retryEffect = <A, E, R, B>(policy: RetryPolicy<E, B>, attempt: Effect.Effect<A, E, R>): Effect.Effect<A, E | B, R> =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + (policy.deadlineMs ?? Infinity)
    const level = policy.logLevel ?? "Debug"
    const fields = policy.logFields ?? {}
    let last: E | undefined
    let cutToDeadline = false
    let bounded = false
    const giveUp = (attempts: number, error: E, why: string) => {
      bounded = true
      return Effect.logWithLevel(level)(`${policy.name}: giving up`).pipe(
        Effect.annotateLogs({ ...fields, attempts, error: describeError(error), bound: why }),
        Effect.andThen(Cause.done(attempts))
      )
    }
    const schedule = Schedule.fromStepWithMetadata(Effect.succeed((meta: Schedule.InputMetadata<E | typeof deadlineReached>) => {
      const input = meta.input
      if (input === deadlineReached) return giveUp(meta.attempt - 1, last as E, "deadline")
      if (!policy.retryable(input)) return Cause.done(meta.attempt)
      last = input
      const left = deadline - meta.now
      if (left <= 0) return giveUp(meta.attempt, input, "deadline")
      if (policy.maxAttempts !== undefined && meta.attempt >= policy.maxAttempts) return giveUp(meta.attempt, input, "attempts")
      const wanted = delayMs(policy.backoff, input, meta.attempt)
      cutToDeadline = wanted >= left
      const wait = Math.min(wanted, left)
      return Effect.logWithLevel(level)(`${policy.name} failed; retrying`).pipe(
        Effect.annotateLogs({ ...fields, attempt: meta.attempt, error: describeError(input), delayMs: Math.round(wait) }),
        Effect.as([meta.attempt, Duration.millis(wait)] as [number, Duration.Duration])
      )
    }))
    const guarded: Effect.Effect<A, E | typeof deadlineReached, R> = Effect.suspend((): Effect.Effect<A, E | typeof deadlineReached, R> => (cutToDeadline ? Effect.fail(deadlineReached) : attempt))
    return yield* Effect.retry(guarded, schedule).pipe(
      Effect.catch((e): Effect.Effect<never, E | B> => Effect.fail(bounded ? policy.atBound(last as E) : e as E))
    )
  })

/**
 * {@link retryEffect} for an operation that returns a Promise: resolves with the first success,
 * rejects with a non-retryable failure as it is and with `policy.atBound(last)` at the bound.
 *
 * The first attempt runs at once, outside Effect, so a call that succeeds the first time costs
 * nothing more than the call (the proposer's write path). Retries run as a detached fiber with
 * the process's logger (./process.ts runDetached), each attempt inside the async context of the
 * call, so the request's trace and auth context (./tracing.ts, ./auth-context.ts) follow it.
 * The deadline counts from the call.
 */
export const retryPromise = <A, B>(policy: RetryPolicy<unknown, B>, attempt: () => Promise<A>): Promise<A> => {
  const startedAt = Date.now()
  let first: Promise<A>
  try {
    first = attempt()
  } catch (e) {
    first = Promise.reject(e)
  }
  return first.catch((firstError: unknown) => {
    // A promise's callbacks run in the async context they were attached in, the call's: taken
    // here, the snapshot costs nothing to a call whose first attempt succeeds.
    const inContext = AsyncLocalStorage.snapshot()
    let replayed = false
    const again = Effect.suspend(() => {
      if (!replayed) {
        // The failure of the attempt already made, fed to the schedule as its first.
        replayed = true
        return Effect.fail(firstError)
      }
      return Effect.tryPromise({ try: () => inContext(attempt), catch: (e) => e })
    })
    const left = policy.deadlineMs === undefined ? undefined : policy.deadlineMs - (Date.now() - startedAt)
    const rest = retryEffect(left === undefined ? policy : { ...policy, deadlineMs: left }, again)
    return new Promise<A>((resolve, reject) =>
      runDetached(Effect.exit(rest).pipe(Effect.map((exit) => (Exit.isSuccess(exit) ? resolve(exit.value) : reject(Cause.squash(exit.cause))))))
    )
  })
}
