/**
 * Waiters for the changes the raft endpoints ask of the cluster: a membership change proposed
 * on raft.confchange waits until its ConfChange entry applies (found by the request id in its
 * context), a leadership transfer on raft.transfer until the target is seen as leader. Each
 * waits at most the request timeout (5 s + 2 election timeouts), then answers RequestTimeout
 * (or false), and leaves nothing behind.
 *
 * It does not validate a change (./serve-endpoints.ts does) nor apply it (./membership.ts).
 */
import { randomBytes } from "node:crypto"
import { NoLeader, RequestTimeout } from "../../shared/errors.ts"
import type { EtcdError } from "../../shared/errors.ts"
import type { MemberId } from "../../shared/ids.ts"
import type { ConfChange, ConfChangeType } from "../../shared/raft-types.ts"
import type { MemberInfo } from "../../shared/schema.ts"
import type { ProposalError, SoftState } from "./core/types.ts"
import { encodeConfChangeContext } from "./membership.ts"

/** What the waiters need of the raft driver. */
export interface ChangeRaft {
  proposeConfChange(cc: ConfChange): ProposalError | undefined
  transferLeader(target: MemberId): void
}

/**
 * Invariant: every waiter in `confWaiters` / `transferWaiters` has a timer that removes it;
 * a waiter is answered once (a later answer of its promise is a no-op).
 */
export class ChangeWaiters {
  /** Membership changes proposed and not applied yet, by request id. */
  private readonly confWaiters = new Map<string, (members: MemberInfo[]) => void>()
  /** Leadership transfers asked for and not seen yet. */
  private readonly transferWaiters: Array<{ target: MemberId; resolve: (ok: boolean) => void }> = []
  private readonly raft: ChangeRaft
  /** How long a change may take before it is answered RequestTimeout, ms. */
  private readonly requestTimeoutMs: number

  constructor(raft: ChangeRaft, requestTimeoutMs: number) {
    this.raft = raft
    this.requestTimeoutMs = requestTimeoutMs
  }

  /**
   * Proposes the ConfChange (`type`, `nodeId`, `peerUrls` in its context with a fresh request
   * id) and resolves with the membership once it applied; NoLeader when the proposal was
   * refused, RequestTimeout when it did not apply in time (it may still apply later).
   */
  proposeConfChange(type: ConfChangeType, nodeId: MemberId, peerUrls: ReadonlyArray<string>): Promise<MemberInfo[] | EtcdError> {
    return new Promise<MemberInfo[] | EtcdError>((resolve) => {
      const requestId = randomBytes(8).toString("hex")
      const timer = setTimeout(() => {
        this.confWaiters.delete(requestId)
        resolve(new RequestTimeout())
      }, this.requestTimeoutMs)
      this.confWaiters.set(requestId, (members) => {
        clearTimeout(timer)
        resolve(members)
      })
      const err = this.raft.proposeConfChange({ type, nodeId, context: encodeConfChangeContext({ peerUrls, requestId }) })
      if (err !== undefined) {
        clearTimeout(timer)
        this.confWaiters.delete(requestId)
        resolve(new NoLeader())
      }
    })
  }

  /** The ConfChange of `requestId` applied, giving `members`: answers its waiter, if any. */
  confApplied(requestId: string, members: MemberInfo[]): void {
    this.confWaiters.get(requestId)?.(members)
    this.confWaiters.delete(requestId)
  }

  /**
   * Asks the core to transfer leadership to `target`; resolves true once `target` is seen as
   * leader ({@link softState}), false after the request timeout.
   */
  transferLeader(target: MemberId): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const waiter = { target, resolve }
      this.transferWaiters.push(waiter)
      setTimeout(() => {
        // A transfer that never happened leaves no waiter behind.
        const i = this.transferWaiters.indexOf(waiter)
        if (i >= 0) this.transferWaiters.splice(i, 1)
        resolve(false)
      }, this.requestTimeoutMs)
      this.raft.transferLeader(target)
    })
  }

  /** The core's soft state changed: answers the transfers to its leader. */
  softState(soft: SoftState): void {
    for (let i = this.transferWaiters.length - 1; i >= 0; i--) {
      const w = this.transferWaiters[i]!
      if (soft.lead === w.target) {
        w.resolve(true)
        this.transferWaiters.splice(i, 1)
      }
    }
  }
}
