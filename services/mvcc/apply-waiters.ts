/**
 * Readers waiting for an applied index (etcd's linearizable read waits for the applied index
 * under the request's context): each wait ends "applied" when the applier reaches its index,
 * "timedOut" after at most {@link applyWaitTimeoutMs}, or "tooMany" at once when
 * {@link applyWaitersMax} readers wait already. The applier owns the applied index and wakes
 * the waiters after each applied batch (./apply.ts); this module only keeps them in order and
 * bounded. Not a queue of work: nothing here touches the store.
 */
import type { EtcdErrorData } from "../../shared/errors.ts"
import { applyWaitTimeoutMs } from "./timeouts.ts"

/**
 * Most reads that may wait for an applied index at once (waiters). One more fails at once with
 * TooManyRequests ("etcdserver: too many requests"), as etcd refuses requests when its applied
 * index lags too far behind the committed one.
 */
export const applyWaitersMax = 10_000

/**
 * How a wait for an applied index ended: the index was applied, the wait timed out
 * (RequestTimeout), or too many reads were waiting already (TooManyRequests).
 */
export type WaitOutcome = "applied" | "timedOut" | "tooMany"

/**
 * The error a reader answers for a wait that did not end "applied": etcd's ErrTimeout
 * ("etcdserver: request timed out") or ErrTooManyRequests ("etcdserver: too many requests").
 */
export const waitError = (outcome: Exclude<WaitOutcome, "applied">): EtcdErrorData =>
  outcome === "timedOut" ? { _tag: "RequestTimeout" } : { _tag: "TooManyRequests" }

/** A reader waiting for an applied index. */
interface Waiter {
  readonly index: number
  readonly resolve: (outcome: WaitOutcome) => void
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * The waiting readers. Invariant: `waiters` is sorted by index, holds at most `max` readers,
 * each with a running timer, and a waiter leaves it when resolved (applied or timed out).
 */
export class AppliedWaiters {
  private readonly waiters: Waiter[] = []
  private readonly max: number
  private readonly counters: { waitTimeouts: number; waitRefusals: number }

  /**
   * `max`: most readers waiting at once; `counters`: the applier's counters, whose
   * `waitTimeouts` and `waitRefusals` this counts.
   */
  constructor(max: number, counters: { waitTimeouts: number; waitRefusals: number }) {
    this.max = max
    this.counters = counters
  }

  /**
   * A promise of how the wait for raft index `index` (not applied yet: the caller checks) ends:
   * "applied" when {@link wake} reaches it; "timedOut" after `timeoutMs` (the waiter is removed
   * then); or "tooMany", at once, when `max` readers wait already.
   */
  wait(index: number, timeoutMs: number): Promise<WaitOutcome> {
    if (this.waiters.length >= this.max) {
      this.counters.waitRefusals++
      return Promise.resolve("tooMany")
    }
    return new Promise<WaitOutcome>((resolve) => {
      const waiter: Waiter = { index, resolve, timer: undefined }
      waiter.timer = setTimeout(() => {
        waiter.timer = undefined
        const at = this.waiters.indexOf(waiter)
        if (at !== -1) this.waiters.splice(at, 1)
        this.counters.waitTimeouts++
        resolve("timedOut")
      }, timeoutMs)
      waiter.timer.unref?.()
      // Sorted insert (after waiters of the same index, so they are woken in arrival order).
      let lo = 0
      let hi = this.waiters.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (this.waiters[mid]!.index <= index) lo = mid + 1
        else hi = mid
      }
      this.waiters.splice(lo, 0, waiter)
    })
  }

  /** Readers waiting now (tests and metrics). */
  size(): number {
    return this.waiters.length
  }

  /** Resolves "applied" every waiter whose index is at most `applied`, in index then arrival order. */
  wake(applied: number): void {
    let woken = 0
    while (woken < this.waiters.length && this.waiters[woken]!.index <= applied) woken++
    for (const w of this.waiters.splice(0, woken)) {
      clearTimeout(w.timer)
      w.resolve("applied")
    }
  }
}
