/**
 * Which group each watcher of a hub is in, and the moves between groups: synced (matched
 * against every new revision), unsynced (catching up), victims (their session had no room;
 * kept in the session's own set, ./session-table.ts). The groups and what each means are
 * described in ./hub.ts; etcd keeps the same three in server/storage/mvcc/watchable_store.go
 * (synced, unsynced, victims).
 *
 * What it is not: the decision when a watcher moves (./hub.ts and ./catch-up.ts decide) or
 * which synced watchers want a key (./watcher-group.ts answers that).
 *
 * Invariant: a watcher is in exactly one of synced, unsynced, victims (its session's set),
 * matching its `state`.
 */
import type { SessionTable } from "./session-table.ts"
import { WatcherGroup } from "./watcher-group.ts"
import type { Watcher } from "./watcher-group.ts"

export class WatcherStates {
  /** Watchers caught up with the head, indexed by what they watch. */
  readonly synced = new WatcherGroup()
  /** Watchers behind the head, catching up. */
  readonly unsynced = new Set<Watcher>()
  private readonly sessions: SessionTable
  private readonly counters: { victimMoves: number }

  constructor(sessions: SessionTable, counters: { victimMoves: number }) {
    this.sessions = sessions
    this.counters = counters
  }

  /** Puts a new watcher in the group its `state` names (synced or unsynced). */
  add(w: Watcher): void {
    if (w.state === "synced") this.synced.add(w)
    else this.unsynced.add(w)
  }

  /** Takes `w` out of its group. */
  remove(w: Watcher): void {
    if (w.state === "synced") this.synced.delete(w)
    else if (w.state === "unsynced") this.unsynced.delete(w)
    else this.sessions.get(w.session)?.victims.delete(w)
  }

  /** Makes `w` a victim of its session, to resume from `minRev` once the session has room. */
  makeVictim(w: Watcher, minRev: number): void {
    if (w.state === "synced") this.synced.delete(w)
    else if (w.state === "unsynced") this.unsynced.delete(w)
    w.minRev = minRev
    w.state = "victim"
    this.sessions.get(w.session)!.victims.add(w)
    this.counters.victimMoves++
  }

  /** Moves unsynced `w`, now caught up, to synced. */
  toSynced(w: Watcher): void {
    this.unsynced.delete(w)
    w.state = "synced"
    this.synced.add(w)
  }

  /** The victims of every session with room again become unsynced (etcd moveVictims). */
  resumeVictims(): void {
    for (const s of this.sessions.values()) {
      if (s.victims.size === 0 || !this.sessions.room(s)) continue
      for (const w of s.victims) {
        w.state = "unsynced"
        this.unsynced.add(w)
      }
      s.victims.clear()
    }
  }

  /** Every synced watcher becomes unsynced, to catch up from `head` + 1 (or its own next revision). */
  unsyncAll(head: number): void {
    for (const w of [...this.synced.watchers()]) {
      this.synced.delete(w)
      w.minRev = Math.max(w.minRev, head + 1)
      w.state = "unsynced"
      this.unsynced.add(w)
    }
  }
}
