/**
 * Duplicate detection for `wal.append`: each writer (one raft service instance) numbers its
 * appends with an increasing `seq`, and retries an append it got no answer for with the same
 * seq. This class decides, per call, whether to write, to acknowledge a duplicate, or to wait
 * for the same seq's write that is still under way.
 *
 * The rule that matters for durability: a seq counts as written only once its write (the WAL
 * save and its fdatasync) has succeeded. Recording it earlier would let a retry be acknowledged
 * as a duplicate of a write that failed or has not reached the disk yet, and raft would count
 * entries as durable that are not (a follower must never acknowledge an append it has not
 * synced; Raft thesis 3.8). So:
 *
 * - seq <= the writer's last written seq: a duplicate; acknowledge without writing.
 * - seq equal to one of the writer's writes in flight: wait for that write, then decide again
 *   (after a success it is a duplicate; after a failure it is written anew). Never two writes of
 *   the same seq at once, never an acknowledgement before the write is durable.
 * - otherwise: write, and record the seq when (and only when) the write resolves.
 *
 * Bound: the last written seq is kept for at most `maxWritersTracked` writers (least recently
 * written dropped first). A dropped writer's late retry is written again, which is harmless:
 * the same entries at the same indexes replace themselves on replay, and the wal service drops a
 * stale hard state. Writes in flight are not bounded here; they are bounded by the callers'
 * own windows and leave this table as they settle.
 *
 * Pure of IO: the write is a function the caller passes in.
 */

/** What became of an append: written now, or a duplicate of one written before. */
export type AppendOutcome = "written" | "duplicate"

export class AppendDedup {
  /** Writer -> highest seq whose write succeeded. Map order is least recently written first. */
  private readonly written = new Map<string, number>()
  /** Writer -> seq -> its write under way. Invariant: a seq is never in both tables at once. */
  private readonly inFlight = new Map<string, Map<number, Promise<void>>>()
  readonly maxWritersTracked: number

  constructor(maxWritersTracked: number) {
    if (!Number.isSafeInteger(maxWritersTracked) || maxWritersTracked <= 0) throw new RangeError(`bad maxWritersTracked ${maxWritersTracked}`)
    this.maxWritersTracked = maxWritersTracked
  }

  /** The writer's highest seq known written (0 when none or forgotten). */
  lastWritten(writer: string): number {
    return this.written.get(writer) ?? 0
  }

  /** Writers whose last written seq is remembered. */
  trackedWriters(): number {
    return this.written.size
  }

  /**
   * Runs `write` for (writer, seq) unless that append is a duplicate, following the rules of the
   * module comment. Resolves "written" after `write` resolved, "duplicate" when nothing had to
   * be written; rejects with `write`'s error (thrown or rejected), leaving the seq unrecorded.
   */
  async append(writer: string, seq: number, write: () => Promise<void>): Promise<AppendOutcome> {
    for (;;) {
      if (seq <= this.lastWritten(writer)) return "duplicate"
      const pending = this.inFlight.get(writer)?.get(seq)
      if (pending === undefined) break
      // The same append is being written: wait for it, whatever its outcome, and decide again.
      await pending.catch(() => undefined)
    }
    let running: Promise<void>
    try {
      running = write()
    } catch (e) {
      running = Promise.reject(e)
    }
    let seqs = this.inFlight.get(writer)
    if (seqs === undefined) this.inFlight.set(writer, (seqs = new Map()))
    seqs.set(seq, running)
    const settle = () => {
      seqs.delete(seq)
      if (seqs.size === 0 && this.inFlight.get(writer) === seqs) this.inFlight.delete(writer)
    }
    try {
      await running
    } catch (e) {
      settle()
      throw e
    }
    // Recorded in the same turn as the in-flight entry is removed: no retry can slip between.
    settle()
    this.record(writer, seq)
    return "written"
  }

  private record(writer: string, seq: number): void {
    const last = this.written.get(writer) ?? 0
    this.written.delete(writer)
    this.written.set(writer, Math.max(last, seq))
    while (this.written.size > this.maxWritersTracked) {
      const oldest = this.written.keys().next().value as string
      this.written.delete(oldest)
    }
  }
}
