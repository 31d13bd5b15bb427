/**
 * Trace spans of proposals through raft (../runtime/tracing.ts): each traced proposal's entry
 * gets a raft.append span (its persist through the wal service, whose wal.append hop is its
 * child) and, once committed, a raft.commit span (from appended to committed), on every member.
 * The raft.commit span's traceparent is carried on the mvcc.apply frame of its batch.
 *
 * It holds only the bounded map of entries appended but not yet committed; it never delays or
 * changes what raft persists or applies. Only proposals carry traces: entries without one
 * (the bootstrap entries, member attributes) get no span.
 */
import type { Entry } from "../../shared/raft-types.ts"
import { endSpan, nowUs, proposalTraceparent, recordSpan, spanTraceparent, startSpan } from "../runtime/tracing.ts"
import type { ActiveSpan } from "../runtime/tracing.ts"

/**
 * Most traced entries (count) awaiting their raft.commit span. An entry overwritten before it
 * committed never ends its span; past the bound the oldest are forgotten (their commit span is
 * not recorded).
 */
const maxAppendSpansKept = 10_000

/** The raft.append spans of one persist, opened by {@link ProposalSpans.startAppend}. */
export interface AppendSpans {
  readonly spans: ReadonlyArray<{ readonly span: ActiveSpan; readonly index: number; readonly traceparent: string }>
  /** The traceparent for the wal.append call: the first entry's raft.append span, else the batch's. */
  readonly walTraceparent: string
}

/**
 * Invariant: `appended` holds at most {@link maxAppendSpansKept} entries, each a traced entry
 * whose persist finished and whose commit was not seen yet (by raft index).
 */
export class ProposalSpans {
  private readonly appended = new Map<number, { traceparent: string; appendedUs: number }>()
  /** The member's role for the spans' `role` attribute, read when a traced entry is persisted. */
  private readonly role: () => "leader" | "follower"

  constructor(role: () => "leader" | "follower") {
    this.role = role
  }

  /**
   * Opens a raft.append span for each traced Normal entry of `entries` (one persist);
   * `traceparent` is the batch's trace ("" for none), used for the wal call when no entry is
   * traced.
   */
  startAppend(entries: ReadonlyArray<Entry>, traceparent: string): AppendSpans {
    const spans: Array<{ span: ActiveSpan; index: number; traceparent: string }> = []
    for (const e of entries) {
      if (e.type !== "Normal" || e.data.length === 0) continue
      const tp = proposalTraceparent(e.data)
      const span = tp === "" ? undefined : startSpan("raft.append", tp, { index: e.index, term: e.term, entries: entries.length, role: this.role() })
      if (span !== undefined) spans.push({ span, index: e.index, traceparent: tp })
    }
    return { spans, walTraceparent: spans.length > 0 ? spanTraceparent(spans[0]!.span) : traceparent }
  }

  /** Ends the raft.append spans of a persist that finished, and awaits their commit. */
  endAppend(append: AppendSpans): void {
    const now = nowUs()
    for (const s of append.spans) {
      endSpan(s.span, undefined, undefined, now)
      this.appended.set(s.index, { traceparent: s.traceparent, appendedUs: now })
    }
    // Entries overwritten before they committed never end their commit span; bound the map.
    while (this.appended.size > maxAppendSpansKept) this.appended.delete(this.appended.keys().next().value!)
  }

  /**
   * Records the raft.commit span of each traced entry of `committed` (ending at
   * `commitIndex`'s apply); returns the traceparent of the first, for the mvcc.apply frame
   * ("" when none was traced).
   */
  commit(committed: ReadonlyArray<Entry>, commitIndex: number): string {
    let applyTrace = ""
    if (this.appended.size > 0) {
      const now = nowUs()
      for (const e of committed) {
        const a = this.appended.get(e.index)
        if (a === undefined) continue
        this.appended.delete(e.index)
        const span = recordSpan("raft.commit", a.traceparent, a.appendedUs, now, { index: e.index, term: e.term, commitIndex })
        if (applyTrace === "") applyTrace = spanTraceparent(span)
      }
    }
    return applyTrace
  }
}
