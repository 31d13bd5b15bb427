/**
 * Where the outcomes of applied proposals go: to the proposer's result subject (one frame per
 * subject and applied batch), to a waiter in this process for the mvcc service's own proposals
 * ({@link localReplyTo}), into a cache of recent results that answers a retried proposal whose
 * result frame was lost, and, for a `physical: true` compaction, held back until the background
 * deletion finished (etcd v3_server Compact waits for its physc channel). The applier decides
 * what a proposal's result is (./apply.ts); this module only delivers and remembers it.
 */
import type { EtcdErrorData } from "../../shared/errors.ts"

/** What an applied proposal produced, as sent to its proposer (shared/schema.ts ApplyResult). */
export type ResultBody =
  | { readonly requestId: bigint; readonly ok: { readonly response: unknown; readonly revision: number; readonly term: number } }
  | { readonly requestId: bigint; readonly err: EtcdErrorData }

/** A result to publish after the batch commits. */
export interface Outgoing {
  readonly subject: string
  readonly body: ResultBody
  readonly traceparent: string
}

/**
 * The reply subject of proposals made by the mvcc process itself (the auto compactor): their
 * results are handed to {@link ProposalResults.awaitLocal} instead of being published.
 */
export const localReplyTo = "local"

/** Results kept in memory for re-sending to retried proposals. */
const resultCacheSize = 4096

/**
 * Most `physical: true` compactions of this member waiting for the background deletion to
 * finish (results). Beyond it the oldest is answered at once: the compaction itself is applied
 * and durable, only its space is not all freed yet.
 */
const physicalWaitersMax = 1024

/**
 * Publishes results to a proposer's subject (one frame: the results of one applied batch for
 * that subject, in index order), in the trace `traceparent` names (the first traced one's).
 */
export type PublishResults = (subject: string, bodies: ReadonlyArray<ResultBody>, traceparent: string) => void

/**
 * The results of this member's proposals. Invariant: `results` holds at most resultCacheSize
 * results, exactly those whose ids `resultOrder` holds.
 */
export class ProposalResults {
  private readonly results = new Map<bigint, ResultBody>()
  /**
   * The ids in `results`, oldest first from `resultNext` on (a ring of resultCacheSize). Evicting
   * through the Map's own order (`keys().next()`) would scan past every slot deleted since V8
   * last rehashed the table: about a microsecond per applied write at this size.
   */
  private readonly resultOrder: Array<bigint | undefined> = new Array(resultCacheSize)
  private resultNext = 0
  private readonly localWaiters = new Map<bigint, (body: ResultBody) => void>()
  /** Results of this member's `physical: true` compactions, sent once the deletion finished. */
  private physicalWaiters: Outgoing[] = []

  private readonly publish: PublishResults

  constructor(publish: PublishResults) {
    this.publish = publish
  }

  /** The cached result of proposal `requestId`, if still kept (for a retried proposal). */
  get(requestId: bigint): ResultBody | undefined {
    return this.results.get(requestId)
  }

  /** Keeps `out`'s result for re-sending to a retry of its proposal (the newest {@link resultCacheSize}). */
  cached(out: Outgoing): Outgoing {
    const id = out.body.requestId
    if (!this.results.has(id)) {
      const evicted = this.resultOrder[this.resultNext]
      if (evicted !== undefined) this.results.delete(evicted)
      this.resultOrder[this.resultNext] = id
      this.resultNext = (this.resultNext + 1) % resultCacheSize
    }
    this.results.set(id, out.body)
    return out
  }

  /**
   * Holds the result of a `physical: true` compaction until {@link releasePhysical} (it is
   * cached for retries only then, so a retry does not get it early). Returns the oldest held
   * result, cached, when more than physicalWaitersMax are held: it is to be sent now.
   */
  holdPhysical(out: Outgoing): Outgoing | undefined {
    this.physicalWaiters.push(out)
    const oldest = this.physicalWaiters.length > physicalWaitersMax ? this.physicalWaiters.shift() : undefined
    return oldest === undefined ? undefined : this.cached(oldest)
  }

  /** Answers the `physical` compactions waiting (the deletion finished). */
  releasePhysical(): void {
    const waiting = this.physicalWaiters
    this.physicalWaiters = []
    this.send(waiting.map((out) => this.cached(out)))
  }

  /** Publishes results: local ones to their waiters, the rest in one frame per proposer subject. */
  send(toSend: ReadonlyArray<Outgoing>): void {
    const bySubject = new Map<string, { bodies: ResultBody[]; traceparent: string }>()
    for (const { subject, body, traceparent } of toSend) {
      if (subject === localReplyTo) {
        const resolve = this.localWaiters.get(body.requestId)
        this.localWaiters.delete(body.requestId)
        resolve?.(body)
        continue
      }
      const group = bySubject.get(subject)
      if (group === undefined) bySubject.set(subject, { bodies: [body], traceparent })
      else {
        group.bodies.push(body)
        if (group.traceparent === "") group.traceparent = traceparent
      }
    }
    for (const [subject, { bodies, traceparent }] of bySubject) this.publish(subject, bodies, traceparent)
  }

  /**
   * A promise of the result of the local proposal `requestId` (reply subject
   * {@link localReplyTo}), resolved when this member applies it. The caller stops waiting at
   * its own deadline with {@link forgetLocal}.
   */
  awaitLocal(requestId: bigint): Promise<ResultBody> {
    return new Promise((resolve) => this.localWaiters.set(requestId, resolve))
  }

  /** Drops the waiter of a local proposal. */
  forgetLocal(requestId: bigint): void {
    this.localWaiters.delete(requestId)
  }
}
