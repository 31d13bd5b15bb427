/**
 * What the raft process does every heartbeat interval (--heartbeat-interval ms, one logical
 * tick of the core): repeat the applied index to the mvcc service, campaign at once when this
 * member is the only voter (etcd fast-forwards its election ticks for the same reason), publish
 * the member's name and client URLs through raft when the published ones are stale (etcd's
 * publish, at most once a second), tick the driver, and publish raft.state when it changed.
 *
 * A member removed from the cluster does nothing on its ticks.
 */
import type { MemberId } from "../../shared/ids.ts"
import type { RawNode } from "./core/raw-node.ts"
import type { RaftDriver } from "./driver.ts"
import { encodeAttributes } from "./membership.ts"
import type { Membership } from "./membership.ts"
import type { MvccFeed } from "./mvcc-feed.ts"
import type { RaftStatusReport } from "./status.ts"

/** Least time between two proposals of this member's attributes, ms. */
const publishEveryMs = 1000

/** What the ticks act on. */
export interface TickerDeps {
  /** This member: its id, and the name and client URLs it publishes. */
  readonly self: { readonly id: MemberId; readonly name: string; readonly clientUrls: ReadonlyArray<string> }
  readonly node: RawNode
  readonly driver: Pick<RaftDriver, "applied" | "campaign" | "propose" | "tick">
  readonly membership: Membership
  readonly feed: MvccFeed
  readonly status: RaftStatusReport
  /** True once this member's own removal applied. */
  readonly removed: () => boolean
}

export class Ticker {
  /** When this member last proposed its attributes (ms since the epoch). */
  private lastPublishMs = 0
  private readonly d: TickerDeps

  constructor(deps: TickerDeps) {
    this.d = deps
  }

  /** Runs {@link tick} every `intervalMs`; returns the function that stops it. */
  start(intervalMs: number): () => void {
    const timer = setInterval(() => this.tick(), intervalMs)
    return () => clearInterval(timer)
  }

  /** One heartbeat interval. */
  tick(): void {
    const { self, node, driver, membership } = this.d
    if (this.d.removed()) return
    this.d.feed.repeatApplied(driver.applied())
    const s = node.status()
    const voters = s.confState.voters
    if (voters.length === 1 && voters[0] === self.id && s.softState.raftState === "StateFollower") driver.campaign()
    const me = membership.get(self.id)
    const now = Date.now()
    if (me !== undefined && s.softState.lead !== 0n && now - this.lastPublishMs > publishEveryMs &&
      (me.name !== self.name || me.clientUrls.join(",") !== self.clientUrls.join(","))) {
      this.lastPublishMs = now
      driver.propose(encodeAttributes({ id: self.id, name: self.name, clientUrls: self.clientUrls }))
    }
    driver.tick()
    this.d.status.tellState()
  }
}
