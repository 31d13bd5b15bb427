/**
 * The leader's queue of ReadIndex requests waiting for a heartbeat round to confirm that it is
 * still the leader (ReadOnlySafe; Raft thesis §6.4). Only the safe mode exists in natcd; etcd's
 * lease-based mode relies on bounded clock drift.
 *
 * Follows etcd raft read_only.go. Requests are numbered in arrival order; a heartbeat carries
 * the number of the newest request as its context, and a follower echoes it back. Once a
 * majority of voters has echoed a number >= k, requests 1..k are confirmed:
 *
 *     requests    r1(commit 7)  r2(commit 7)  r3(commit 9)
 *     heartbeat ctx = 2 after r2, ctx = 3 after r3
 *     acks: self 3, A 2, B 0     -> majority of 3 acked >= 2 -> r1, r2 confirmed; r3 waits
 *
 * Invariant: confirmedReads + unconfirmedReads.length is the number of the newest request.
 */
import type { Index, MemberId } from "../../../shared/ids.ts"
import { committedIndex } from "./quorum.ts"
import type { Message } from "./types.ts"

/** A read request and the commit index it must wait for. */
export interface ReadIndexRequest {
  readonly req: Message
  readonly index: Index
}

const CTX_BYTES = 8

/** Encodes a request number as a heartbeat context (8 bytes, little-endian, as etcd). */
const encodeCtx = (n: number): Uint8Array => {
  const out = new Uint8Array(CTX_BYTES)
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true)
  return out
}

/** Decodes a heartbeat context; undefined when it is not one of ours. */
const decodeCtx = (ctx: Uint8Array): number | undefined =>
  ctx.byteLength === CTX_BYTES
    ? Number(new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength).getBigUint64(0, true))
    : undefined

/** Pending ReadIndex requests of a leader in its current term (etcd readOnly). */
export class ReadOnly {
  /** Highest request number each member has acknowledged. */
  private readonly acks = new Map<MemberId, number>()
  private unconfirmedReads: ReadIndexRequest[] = []
  private confirmedReads = 0

  /** Queues a request to be answered with `commitIndex` once confirmed. */
  addRequest(commitIndex: Index, req: Message): void {
    this.unconfirmedReads.push({ req, index: commitIndex })
  }

  /** Records that `from` echoed heartbeat context `ctx`. */
  recvAck(from: MemberId, ctx: Uint8Array): void {
    const n = decodeCtx(ctx)
    if (n === undefined) return
    this.acks.set(from, Math.max(this.acks.get(from) ?? 0, n))
  }

  /** Removes and returns the requests a majority of `voters` has now confirmed, oldest first. */
  maybeAdvance(voters: ReadonlyArray<MemberId>): ReadIndexRequest[] {
    const confirmed = committedIndex(voters, (id) => this.acks.get(id) as Index | undefined)
    if (confirmed <= this.confirmedReads) return []
    const n = Math.min(confirmed - this.confirmedReads, this.unconfirmedReads.length)
    const done = this.unconfirmedReads.slice(0, n)
    this.unconfirmedReads = this.unconfirmedReads.slice(n)
    this.confirmedReads += n
    return done
  }

  /** The context to attach to the next heartbeat: the newest request's number, or empty. */
  heartbeatCtx(): Uint8Array {
    if (this.unconfirmedReads.length === 0) return new Uint8Array(0)
    return encodeCtx(this.confirmedReads + this.unconfirmedReads.length)
  }
}
