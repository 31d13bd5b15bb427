/**
 * A min-heap of (lease id, time in ms) with at most one entry per lease: registering a lease
 * again moves its entry (etcd server/lease/lease_queue.go LeaseExpiredNotifier, whose
 * RegisterOrUpdate keeps one item per id). The lessor uses it for expiry times.
 *
 * Pure data structure: no clock; times are whatever the caller passes (ms on the lessor's
 * logical clock).
 *
 * Invariant: `pos.get(id)` is the index of the lease's entry in `heap`, for every entry; the
 * array satisfies the heap order on `time` (ties in any order).
 */

/** One entry: a lease and the time it is due, in ms. */
export interface LeaseTime {
  readonly id: bigint
  readonly time: number
}

/** An indexed binary min-heap of lease times, one entry per lease id. */
export class LeaseQueue {
  private readonly heap: LeaseTime[] = []
  private readonly pos = new Map<bigint, number>()

  /** The number of leases queued. */
  get size(): number {
    return this.heap.length
  }

  /** The entry due first, or undefined when empty. */
  peek(): LeaseTime | undefined {
    return this.heap[0]
  }

  /** Queues `id` at `time`, replacing its previous entry if it had one. O(log n). */
  registerOrUpdate(id: bigint, time: number): void {
    const at = this.pos.get(id)
    if (at === undefined) {
      this.heap.push({ id, time })
      this.pos.set(id, this.heap.length - 1)
      this.up(this.heap.length - 1)
      return
    }
    this.heap[at] = { id, time }
    this.up(at)
    this.down(this.pos.get(id)!)
  }

  /** Removes the entry of `id` (no-op when absent). O(log n). */
  remove(id: bigint): void {
    const at = this.pos.get(id)
    if (at === undefined) return
    const last = this.heap.pop()!
    this.pos.delete(id)
    if (at === this.heap.length) return
    this.heap[at] = last
    this.pos.set(last.id, at)
    this.up(at)
    this.down(this.pos.get(last.id)!)
  }

  /** Removes every entry. */
  clear(): void {
    this.heap.length = 0
    this.pos.clear()
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!
    const b = this.heap[j]!
    this.heap[i] = b
    this.heap[j] = a
    this.pos.set(b.id, i)
    this.pos.set(a.id, j)
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.heap[parent]!.time <= this.heap[i]!.time) return
      this.swap(i, parent)
      i = parent
    }
  }

  private down(i: number): void {
    const n = this.heap.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.heap[l]!.time < this.heap[m]!.time) m = l
      if (r < n && this.heap[r]!.time < this.heap[m]!.time) m = r
      if (m === i) return
      this.swap(i, m)
      i = m
    }
  }
}
