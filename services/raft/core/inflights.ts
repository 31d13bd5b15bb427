/**
 * The leader's window of append messages in flight to one follower, for flow control in
 * StateReplicate: at most `capacity` messages (maxInflightMsgs) are outstanding; an
 * acknowledgement of index i frees every message whose last entry is <= i.
 *
 * Follows etcd raft tracker/inflights.go (a ring buffer of last indexes); the byte budget
 * (MaxInflightBytes) is not used by natcd.
 *
 *     add(3) add(5) add(9)     window [3 5 9]   full when 3 == capacity
 *     freeLE(5)                window [9]
 */
import type { Index } from "../../../shared/ids.ts"

/** A bounded FIFO of the last entry index of each in-flight append (etcd Inflights). */
export class Inflights {
  private readonly capacity: number
  /** Ring buffer of last indexes; slots [start, start + count) (mod capacity) are live. */
  private readonly buffer: Index[] = []
  private start = 0
  private count = 0

  constructor(capacity: number) {
    this.capacity = capacity
  }

  /** Records a message whose last entry is `index`; indexes must be added in increasing order. Throws when full. */
  add(index: Index): void {
    if (this.full()) throw new Error("cannot add into a full inflights")
    this.buffer[(this.start + this.count) % this.capacity] = index
    this.count++
  }

  /** Frees every in-flight message whose last index is <= `to`. */
  freeLE(to: Index): void {
    while (this.count > 0 && this.buffer[this.start]! <= to) {
      this.start = (this.start + 1) % this.capacity
      this.count--
    }
    if (this.count === 0) this.start = 0
  }

  /** True when no further message may be sent (capacity reached). */
  full(): boolean {
    return this.count === this.capacity
  }

  /** Number of messages in flight. */
  size(): number {
    return this.count
  }

  /** Forgets every message in flight (on a change of progress state). */
  reset(): void {
    this.start = 0
    this.count = 0
  }
}
