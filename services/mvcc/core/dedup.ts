/**
 * The window of applied request ids that makes a retried proposal apply once, and the rule
 * that prunes it. The shell (../apply.ts) keeps the ids in the backend's `dedup` table, in the
 * same transaction as the writes; this module decides, as a pure function of the applied log,
 * which ids to forget. Every member applies the same log from the same state, so every member
 * holds the same ids and skips the same retries; a member that restarts reloads the window
 * from the table and the clock from meta ({@link DedupWindow.restore}) and goes on alike.
 *
 * Not from etcd: etcd has no request dedup at this layer (its clients do not retry a write
 * that may have been applied). natcd's gateways retry a proposal with the same request id
 * until its deadline, because NATS may lose a frame.
 *
 * The clock. Each proposal carries its proposer's deadline (ms since the epoch, the gateway's
 * wall clock + its request timeout). The log clock is derived from those deadlines, but no
 * single entry can move it far: for an applied proposal at raft index i with deadline d,
 *
 *     clock' = d                                          if no proposal was applied yet
 *     clock' = max(clock, min(d, clock + {@link dedupClockStepMsMax}))   otherwise
 *
 * so the clock never goes back and moves at most 1 s per applied proposal, however far in the
 * future a gateway's clock is.
 *
 * Pruning. Records are kept in apply order (oldest first). Before each applied proposal the
 * oldest records are dropped while, for the oldest one, (a) clock > its deadline +
 * {@link dedupRetentionMs} and (b) at least {@link dedupRetentionEntriesMin} raft entries were
 * applied since it (i - its index >= that bound). Independently, when a new record would make
 * the window exceed {@link dedupRecordsMax}, the oldest one is dropped first.
 *
 * Guarantees (a retry of request r is skipped iff r's record is still in the window):
 * - Memory: at most {@link dedupRecordsMax} records, whatever the clocks.
 * - A record stays for at least min({@link dedupRetentionEntriesMin}, {@link dedupRecordsMax} - 1)
 *   later raft entries, whatever the deadlines in them: a gateway with a fast clock cannot make
 *   a recent request apply twice.
 * - When every gateway's clock is within S ms of the others, a record stays until at least
 *   {@link dedupRetentionMs} - S ms (of that common time) after its own deadline, unless the
 *   record cap drops it first: the clock is at most the largest deadline seen, and a proposer
 *   retries only until its deadline.
 * - A single far-future deadline moves the clock by at most {@link dedupClockStepMsMax}; it
 *   takes more than retention / step = 60 such proposals to expire honest records by time (and
 *   then the entry floor above still holds). The first proposal ever applied starts the clock at its
 *   deadline unclamped; if that one came from a fast gateway, only guarantees 1 and 2 hold until
 *   real time catches up.
 * - A record with a far-future deadline at the head of the window keeps the records behind it
 *   (pruning is oldest-first) until the cap drops it: this costs memory, never correctness.
 * - Nothing here depends on a member's own clock, so all members prune alike. The rule is part
 *   of the replicated state machine: members running different rules could disagree on whether
 *   a retry is applied, so every member of a cluster must run the same version of it.
 */

/** How long past its deadline a request id is remembered, in ms (covers clock skew between gateways). */
export const dedupRetentionMs = 60_000

/** Most the log clock moves forward per applied proposal, in ms. */
export const dedupClockStepMsMax = 1_000

/**
 * Fewest raft entries a record stays for, whatever the clock says (entries). Pruning by time
 * needs both this many entries since the record and its deadline + retention passed.
 */
export const dedupRetentionEntriesMin = 100_000

/** Most request ids remembered at once (records); the oldest is dropped first beyond it. */
export const dedupRecordsMax = 1_000_000

/** Meta key of the log clock (8-byte big-endian ms), written in the apply transaction. */
export const metaDedupClockKey = new TextEncoder().encode("dedupClock")

/** One remembered request id: its proposer's deadline (ms) and the raft index that applied it. */
export interface DedupRecord {
  readonly id: bigint
  readonly deadlineMs: number
  readonly index: number
}

/** Bounds of a {@link DedupWindow}; the defaults are the constants above (tests shrink them). */
export interface DedupBounds {
  readonly retentionMs: number
  readonly clockStepMsMax: number
  readonly retentionEntriesMin: number
  readonly recordsMax: number
}

const defaultBounds: DedupBounds = {
  retentionMs: dedupRetentionMs,
  clockStepMsMax: dedupClockStepMsMax,
  retentionEntriesMin: dedupRetentionEntriesMin,
  recordsMax: dedupRecordsMax
}

const u64 = (n: number): bigint => BigInt(n)

/**
 * Encodes a record's value in the dedup table: 16 bytes, deadline (ms) then raft index, both
 * big-endian uint64.
 */
export const encodeDedupValue = (deadlineMs: number, index: number): Uint8Array => {
  const b = new Uint8Array(16)
  const v = new DataView(b.buffer)
  v.setBigUint64(0, u64(deadlineMs))
  v.setBigUint64(8, u64(index))
  return b
}

/**
 * Decodes a dedup table value: 16 bytes as {@link encodeDedupValue} writes, or the 8-byte
 * deadline of earlier natcd versions (index 0: older than every new record). Throws on another
 * length.
 */
export const decodeDedupValue = (b: Uint8Array): { readonly deadlineMs: number; readonly index: number } => {
  if (b.length !== 8 && b.length !== 16) throw new Error(`dedup value of ${b.length} bytes`)
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const deadlineMs = Number(v.getBigUint64(0))
  const index = b.length === 16 ? Number(v.getBigUint64(8)) : 0
  return { deadlineMs, index }
}

/**
 * The request ids remembered, oldest first, with the log clock. A growable ring of parallel
 * typed arrays (24 bytes a record).
 *
 * Invariants: size <= bounds.recordsMax; records are in apply order (index, then as added);
 * clockMs never decreases, and is 0 only before the first proposal.
 */
export class DedupWindow {
  private clock: number
  private ids: BigUint64Array
  private deadlines: Float64Array
  private indexes: Float64Array
  private head = 0
  private count = 0
  private readonly bounds: DedupBounds

  constructor(clockMs = 0, bounds?: Partial<DedupBounds>) {
    this.clock = clockMs
    this.bounds = { ...defaultBounds, ...bounds }
    const capacity = Math.min(1024, this.bounds.recordsMax)
    this.ids = new BigUint64Array(capacity)
    this.deadlines = new Float64Array(capacity)
    this.indexes = new Float64Array(capacity)
  }

  /**
   * The window as the backend holds it: `clockMs` from meta (0 when absent) and every record of
   * the dedup table, in any order (they are sorted by index, then deadline, then id, which is
   * the apply order for records written by this version). Records beyond the cap are dropped
   * oldest first and returned, for the caller to delete from the table.
   */
  static restore(clockMs: number, records: Iterable<DedupRecord>, bounds?: Partial<DedupBounds>): { window: DedupWindow; dropped: DedupRecord[] } {
    const w = new DedupWindow(clockMs, bounds)
    const sorted = [...records].sort((a, b) =>
      a.index - b.index || a.deadlineMs - b.deadlineMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    )
    const dropped: DedupRecord[] = []
    for (const r of sorted) dropped.push(...w.add(r))
    return { window: w, dropped }
  }

  /** The log clock, in ms since the epoch (0 before the first proposal). */
  clockMs(): number {
    return this.clock
  }

  /** Records held. */
  get size(): number {
    return this.count
  }

  /**
   * Step one for every applied proposal (also a retry that will be skipped): moves the clock
   * with the proposal's deadline `deadlineMs` (clamped as the module comment says) and removes
   * the records that are now expired, oldest first. `index` is the proposal's raft index.
   * Returns the removed records, for the caller to delete from the table in the same
   * transaction.
   */
  advance(deadlineMs: number, index: number): DedupRecord[] {
    const d = Math.max(0, deadlineMs)
    this.clock = this.clock === 0 ? d : Math.max(this.clock, Math.min(d, this.clock + this.bounds.clockStepMsMax))
    const expired: DedupRecord[] = []
    while (this.count > 0) {
      const at = this.head
      if (!(this.deadlines[at]! < this.clock - this.bounds.retentionMs)) break
      if (index - this.indexes[at]! < this.bounds.retentionEntriesMin) break
      expired.push(this.shift())
    }
    return expired
  }

  /**
   * Step two, for a proposal applied for the first time: remembers `record` as the newest.
   * Returns the records dropped to stay within the cap (oldest first), for the caller to
   * delete from the table.
   */
  add(record: DedupRecord): DedupRecord[] {
    const dropped: DedupRecord[] = []
    while (this.count >= this.bounds.recordsMax) dropped.push(this.shift())
    if (this.count === this.ids.length) this.grow()
    const at = (this.head + this.count) % this.ids.length
    this.ids[at] = record.id
    this.deadlines[at] = record.deadlineMs
    this.indexes[at] = record.index
    this.count++
    return dropped
  }

  /** The records, oldest first (tests and debugging). */
  records(): DedupRecord[] {
    const out: DedupRecord[] = []
    for (let i = 0; i < this.count; i++) {
      const at = (this.head + i) % this.ids.length
      out.push({ id: this.ids[at]!, deadlineMs: this.deadlines[at]!, index: this.indexes[at]! })
    }
    return out
  }

  private shift(): DedupRecord {
    const at = this.head
    const r = { id: this.ids[at]!, deadlineMs: this.deadlines[at]!, index: this.indexes[at]! }
    this.head = (this.head + 1) % this.ids.length
    this.count--
    return r
  }

  private grow(): void {
    const capacity = Math.min(this.ids.length * 2, this.bounds.recordsMax)
    const ids = new BigUint64Array(capacity)
    const deadlines = new Float64Array(capacity)
    const indexes = new Float64Array(capacity)
    for (let i = 0; i < this.count; i++) {
      const at = (this.head + i) % this.ids.length
      ids[i] = this.ids[at]!
      deadlines[i] = this.deadlines[at]!
      indexes[i] = this.indexes[at]!
    }
    this.ids = ids
    this.deadlines = deadlines
    this.indexes = indexes
    this.head = 0
  }
}
