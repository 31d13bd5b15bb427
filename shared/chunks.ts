/**
 * Frames of any size over NATS: splitting an encoded frame into `chunk` frames and putting it
 * back together. Pure: no IO, no clock (callers pass the time in ms).
 *
 * nats-server refuses a message over its `max_payload` ({@link maxFrameBytes}, 8 MiB), while
 * etcd serves a range result, a revision's events or a snapshot of any size. A frame whose
 * encoding exceeds {@link wholeFrameBytes} therefore travels as `count` chunk frames on the same
 * subject (or to the same reply inbox), each the frame array
 * `["chunk", 1, traceparent, id, { stream, seq, count, size, bytes }]`:
 * - `id`: the id of the frame carried (a reply's request id; a fresh id for a publish);
 * - `stream`: a random 32-bit number chosen per chunked frame, so that two attempts of the same
 *   request (a retry's answer and the first one's) never mix their pieces;
 * - `seq` 0..count-1, `count` = ceil(size / {@link chunkBytes}), `size` the whole encoding's
 *   length in bytes, `bytes` the seq-th {@link chunkBytes} slice (the last one shorter).
 *
 * NATS delivers a publisher's messages on one subject in order but may drop any of them; the
 * receiver ({@link Reassembler}) accepts pieces in any order and once each, and forgets a frame
 * whose pieces stopped arriving ({@link ReassemblerOptions.idleMs}). A lost piece is repaired the
 * way a lost whole frame is: the caller's retry (request/reply), or the consumer's gap detection
 * (revisions, sequence numbers) for published streams.
 */
import { maxFrameBytes } from "./frame.ts"

/** Frames whose encoding is larger than this many bytes travel as chunks (max_payload less room for headers). */
export const wholeFrameBytes = maxFrameBytes - 64 * 1024

/** Bytes of the carried frame per chunk (the last chunk may be shorter). */
export const chunkBytes = 1024 * 1024

/** The body of a `chunk` frame (shared/schema.ts ChunkBody). */
export interface Chunk {
  readonly stream: number
  readonly seq: number
  readonly count: number
  readonly size: number
  readonly bytes: Uint8Array
}

/**
 * The chunks carrying `encoded` (a whole frame's encoding), as views into it: `stream` names
 * this frame among the sender's chunked frames (a random 32-bit number).
 */
export const splitFrame = (encoded: Uint8Array, stream: number): ReadonlyArray<Chunk> => {
  const size = encoded.length
  const count = Math.ceil(size / chunkBytes)
  return Array.from({ length: count }, (_, seq) => ({
    stream,
    seq,
    count,
    size,
    bytes: encoded.subarray(seq * chunkBytes, Math.min(size, (seq + 1) * chunkBytes))
  }))
}

/** Why a chunk is not a well-formed piece of a frame, or undefined when it is. */
export const chunkProblem = (c: Chunk): string | undefined => {
  if (!Number.isSafeInteger(c.size) || c.size <= wholeFrameBytes) return `chunked frame size ${c.size} is not above ${wholeFrameBytes} bytes`
  if (c.count !== Math.ceil(c.size / chunkBytes)) return `chunk count ${c.count} does not match size ${c.size}`
  if (!Number.isSafeInteger(c.seq) || c.seq < 0 || c.seq >= c.count) return `chunk seq ${c.seq} outside 0..${c.count - 1}`
  const expected = c.seq === c.count - 1 ? c.size - c.seq * chunkBytes : chunkBytes
  if (c.bytes.length !== expected) return `chunk ${c.seq} has ${c.bytes.length} bytes, expected ${expected}`
  return undefined
}

/**
 * Bytes of frames being put together, shared by every {@link Reassembler} of a process so that
 * the process as a whole stays within `maxBytes`. Invariant: `used` is the sum of the `size` of
 * every partial frame held by the reassemblers sharing it.
 */
export interface ReassemblyBudget {
  readonly maxBytes: number
  used: number
}

/** Settings of a {@link Reassembler}. */
export interface ReassemblerOptions {
  /** The process's budget (see {@link ReassemblyBudget}). */
  readonly budget: ReassemblyBudget
  /** A partial frame that received no piece for this many ms is dropped. */
  readonly idleMs: number
  /** At most this many partial frames are held; the least recently fed is dropped first. */
  readonly maxPartials: number
}

/** What {@link Reassembler.add} made of a chunk. */
export type AddOutcome =
  | { readonly _tag: "Complete"; readonly encoded: Uint8Array }
  | { readonly _tag: "Pending" }
  /** Malformed, or a frame larger than the whole budget: the frame cannot be received. */
  | { readonly _tag: "Refused"; readonly reason: string; readonly tooLarge: boolean }

interface Partial {
  readonly buffer: Uint8Array
  readonly have: Uint8Array
  received: number
  lastMs: number
}

/**
 * Puts chunked frames back together (see the module note). Memory: at most
 * {@link ReassemblerOptions.maxPartials} partial frames, their sizes within the shared budget; a
 * frame that would exceed the budget first evicts this reassembler's idle and oldest partials,
 * and is refused when that is not enough.
 */
export class Reassembler {
  private readonly partials = new Map<string, Partial>()
  private readonly options: ReassemblerOptions
  readonly counters = { completed: 0, refused: 0, evicted: 0, duplicates: 0 }

  constructor(options: ReassemblerOptions) {
    this.options = options
  }

  /** Partial frames held now. */
  get size(): number {
    return this.partials.size
  }

  /**
   * Adds `chunk` of the frame known to the caller as `key` (e.g. its id), at `nowMs`. A
   * duplicate piece is ignored; the piece completing the frame returns the whole encoding.
   */
  add(key: string, chunk: Chunk, nowMs: number): AddOutcome {
    const problem = chunkProblem(chunk)
    if (problem !== undefined) {
      this.counters.refused++
      return { _tag: "Refused", reason: problem, tooLarge: false }
    }
    const full = `${key}/${chunk.stream}`
    this.expire(nowMs)
    let p = this.partials.get(full)
    if (p !== undefined && p.buffer.length !== chunk.size) {
      this.counters.refused++
      return { _tag: "Refused", reason: `chunk size ${chunk.size} differs from the frame's ${p.buffer.length}`, tooLarge: false }
    }
    if (p === undefined) {
      const budget = this.options.budget
      if (chunk.size > budget.maxBytes) {
        this.counters.refused++
        return { _tag: "Refused", reason: `a frame of ${chunk.size} bytes exceeds the reassembly budget of ${budget.maxBytes} bytes`, tooLarge: true }
      }
      // Make room: this reassembler's least recently fed partials go first.
      while ((budget.used + chunk.size > budget.maxBytes || this.partials.size >= this.options.maxPartials) && this.partials.size > 0) {
        const [oldest] = this.partials.keys()
        this.remove(oldest!)
        this.counters.evicted++
      }
      if (budget.used + chunk.size > budget.maxBytes) {
        this.counters.refused++
        return {
          _tag: "Refused",
          reason: `a frame of ${chunk.size} bytes does not fit the reassembly budget (${budget.used} of ${budget.maxBytes} bytes in use)`,
          tooLarge: true
        }
      }
      p = { buffer: new Uint8Array(chunk.size), have: new Uint8Array(chunk.count), received: 0, lastMs: nowMs }
      this.partials.set(full, p)
      budget.used += chunk.size
    } else {
      // Most recently fed last, so that eviction takes the stalest first.
      this.partials.delete(full)
      this.partials.set(full, p)
    }
    p.lastMs = nowMs
    if (p.have[chunk.seq] === 1) {
      this.counters.duplicates++
      return { _tag: "Pending" }
    }
    p.buffer.set(chunk.bytes, chunk.seq * chunkBytes)
    p.have[chunk.seq] = 1
    p.received++
    if (p.received < chunk.count) return { _tag: "Pending" }
    this.remove(full)
    this.counters.completed++
    return { _tag: "Complete", encoded: p.buffer }
  }

  /** Drops every partial frame whose key (as given to {@link add}) is `key`. */
  forget(key: string): void {
    const prefix = `${key}/`
    for (const k of [...this.partials.keys()]) if (k.startsWith(prefix)) this.remove(k)
  }

  /** Drops every partial frame idle for longer than idleMs at `nowMs`. */
  expire(nowMs: number): void {
    for (const [k, p] of this.partials) {
      if (nowMs - p.lastMs > this.options.idleMs) {
        this.remove(k)
        this.counters.evicted++
      }
    }
  }

  /** Drops everything (the budget gets its bytes back). */
  clear(): void {
    for (const k of [...this.partials.keys()]) this.remove(k)
  }

  private remove(full: string): void {
    const p = this.partials.get(full)
    if (p === undefined) return
    this.partials.delete(full)
    this.options.budget.used -= p.buffer.length
  }
}
