/**
 * Computes a new cluster configuration from the current one and a single membership change, or
 * from a snapshot's ConfState. The result is a fresh configuration; the caller switches to it.
 *
 * Follows etcd raft confchange/confchange.go (Changer.Simple) and confchange/restore.go, for
 * one change at a time only: natcd does not use joint consensus (EnterJoint/LeaveJoint).
 *
 * - AddNode of a new member adds a voter; of a learner, promotes it; of a voter, does nothing.
 * - AddLearnerNode of a new member adds a learner; of a voter, demotes it; of a learner, nothing.
 * - RemoveNode removes the member (voter or learner); an unknown member is a no-op.
 * - UpdateNode changes nothing raft tracks.
 *
 * A new member's progress starts at next = max(lastIndex, 1) and recently active, so the
 * leader probes it at once and CheckQuorum does not count it as silent before it could speak.
 */
import type { Index, MemberId } from "../../../shared/ids.ts"
import type { ConfChange, ConfState } from "../../../shared/raft-types.ts"
import { Progress } from "./progress.ts"

/** A configuration: voters, learners and one progress per member. */
export interface TrackerConfig {
  readonly voters: Set<MemberId>
  readonly learners: Set<MemberId>
  readonly progress: Map<MemberId, Progress>
}

/** Why a change cannot be applied: it would leave no voter (etcd "removed all voters"). */
export type ConfChangeError = "RemovedAllVoters"

const initProgress = (cfg: TrackerConfig, id: MemberId, isLearner: boolean, lastIndex: Index, maxInflight: number): void => {
  if (isLearner) cfg.learners.add(id)
  else cfg.voters.add(id)
  cfg.progress.set(
    id,
    new Progress({ match: 0 as Index, next: Math.max(lastIndex, 1) as Index, maxInflight, isLearner, recentActive: true })
  )
}

const makeVoter = (cfg: TrackerConfig, id: MemberId, lastIndex: Index, maxInflight: number): void => {
  const pr = cfg.progress.get(id)
  if (pr === undefined) {
    initProgress(cfg, id, false, lastIndex, maxInflight)
    return
  }
  pr.isLearner = false
  cfg.learners.delete(id)
  cfg.voters.add(id)
}

const makeLearner = (cfg: TrackerConfig, id: MemberId, lastIndex: Index, maxInflight: number): void => {
  const pr = cfg.progress.get(id)
  if (pr === undefined) {
    initProgress(cfg, id, true, lastIndex, maxInflight)
    return
  }
  pr.isLearner = true
  cfg.voters.delete(id)
  cfg.learners.add(id)
}

const remove = (cfg: TrackerConfig, id: MemberId): void => {
  cfg.voters.delete(id)
  cfg.learners.delete(id)
  cfg.progress.delete(id)
}

/**
 * Applies one change to a copy of `current` (etcd Changer.Simple). Progress objects of members
 * that stay are shared with `current`, as in etcd. `lastIndex` is the leader's last log index.
 */
export const changeSimple = (
  current: TrackerConfig,
  cc: ConfChange,
  lastIndex: Index,
  maxInflight: number
): TrackerConfig | ConfChangeError => {
  // Checked before anything is touched: progress objects are shared with `current`.
  const removesVoter = (cc.type === "RemoveNode" || cc.type === "AddLearnerNode") && current.voters.has(cc.nodeId)
  const votersAfter = current.voters.size + (cc.type === "AddNode" && !current.voters.has(cc.nodeId) ? 1 : 0) - (removesVoter ? 1 : 0)
  if (votersAfter === 0) return "RemovedAllVoters"
  const cfg: TrackerConfig = {
    voters: new Set(current.voters),
    learners: new Set(current.learners),
    progress: new Map(current.progress)
  }
  switch (cc.type) {
    case "AddNode":
      makeVoter(cfg, cc.nodeId, lastIndex, maxInflight)
      break
    case "AddLearnerNode":
      makeLearner(cfg, cc.nodeId, lastIndex, maxInflight)
      break
    case "RemoveNode":
      remove(cfg, cc.nodeId)
      break
    case "UpdateNode":
      break
  }
  return cfg
}

/**
 * Builds the configuration a ConfState describes, from scratch (etcd confchange.Restore): every
 * voter is added, then every learner (a member listed in both ends up a learner).
 */
export const restoreConfState = (cs: ConfState, lastIndex: Index, maxInflight: number): TrackerConfig => {
  const cfg: TrackerConfig = { voters: new Set(), learners: new Set(), progress: new Map() }
  for (const id of cs.voters) makeVoter(cfg, id, lastIndex, maxInflight)
  for (const id of cs.learners) makeLearner(cfg, id, lastIndex, maxInflight)
  return cfg
}
