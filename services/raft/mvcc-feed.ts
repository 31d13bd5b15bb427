/**
 * The hand-off of committed entries to the member's mvcc service: `mvcc.apply` frames in index
 * order, at most {@link maxApplyFrameBytes} of entry data each, publish-only (at-most-once).
 * Once per tick an empty frame repeats the applied index, so the mvcc service notices a lost
 * last frame within a tick and fetches what it missed from raft.entries (../mvcc/main.ts).
 *
 * It decides nothing about what is committed (the core does) and keeps no entries: a lost
 * frame is repaired by the mvcc service asking, not by re-sending. ConfChange and
 * member-attribute entries reach the mvcc service as empty Normal entries (no-ops), since only
 * raft acts on them.
 */
import { mvccApply, subjectOf } from "../../shared/endpoints.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { publishEndpoint } from "../runtime/rpc.ts"
import type { RpcClient } from "../runtime/rpc.ts"
import { isInternalEntry } from "./membership.ts"

/** Largest batch of committed entries in one mvcc.apply frame (entry data bytes). */
const maxApplyFrameBytes = 1024 * 1024

/** `e` as the mvcc service sees it: ConfChange and member-attribute entries become empty Normal entries. */
export const toMvcc = (e: Entry): Entry => (e.type === "ConfChange" || isInternalEntry(e) ? { ...e, type: "Normal", data: new Uint8Array(0) } : e)

/** The mvcc.apply stream of one member. */
export class MvccFeed {
  /** The applied index last repeated by {@link repeatApplied}. */
  private lastAppliedTold = 0
  private readonly rpc: RpcClient
  private readonly subject: string
  /** Entries up to this index were applied by the mvcc service before this run: not sent. */
  private readonly skipApplyUpTo: number
  /** The member's current term, put on every frame. */
  private readonly term: () => number

  constructor(rpc: RpcClient, at: { readonly cluster: string; readonly member: string }, skipApplyUpTo: number, term: () => number) {
    this.rpc = rpc
    this.subject = subjectOf(mvccApply, at)
    this.skipApplyUpTo = skipApplyUpTo
    this.term = term
  }

  /**
   * Publishes `committed` (in index order; `commitIndex` the last one's) above skipApplyUpTo,
   * split into frames of at most maxApplyFrameBytes; `traceparent` goes on the first frame.
   */
  publish(committed: ReadonlyArray<Entry>, commitIndex: number, traceparent: string): void {
    const entries = committed.filter((e) => e.index > this.skipApplyUpTo).map(toMvcc)
    if (entries.length > 0) this.publishFrames(entries, commitIndex, traceparent)
  }

  /** Once per tick: an empty frame with `applied` when it grew since the last one. */
  repeatApplied(applied: number): void {
    if (applied > this.lastAppliedTold && applied > this.skipApplyUpTo) {
      this.lastAppliedTold = applied
      publishEndpoint(this.rpc, mvccApply, this.subject, { entries: [], commitIndex: applied, term: this.term() })
    }
  }

  private publishFrames(entries: ReadonlyArray<Entry>, commitIndex: number, traceparent: string): void {
    const term = this.term()
    let start = 0
    let bytes = 0
    for (let i = 0; i < entries.length; i++) {
      bytes += entries[i]!.data.length
      if (bytes > maxApplyFrameBytes && i > start) {
        publishEndpoint(this.rpc, mvccApply, this.subject, { entries: entries.slice(start, i), commitIndex, term }, start === 0 ? traceparent : "")
        start = i
        bytes = entries[i]!.data.length
      }
    }
    publishEndpoint(this.rpc, mvccApply, this.subject, { entries: entries.slice(start), commitIndex, term }, start === 0 ? traceparent : "")
  }
}
