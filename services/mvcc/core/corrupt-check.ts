/**
 * The decisions of etcd's corruption check, as pure functions: given this member's HashKV and
 * its peers' answers, which findings to log and whether (and for which member) to raise the
 * CORRUPT alarm or refuse to start. No IO, no clock: the shell (../corrupt-check.ts) gathers
 * the hashes, logs the findings and acts on the verdict.
 *
 * Follows etcd 3.4 etcdserver/corrupt.go (the same rules are in 3.5's
 * server/etcdserver/corrupt.go, InitialCheck and PeriodicCheck):
 * - {@link initialCheck} is CheckInitialHashKV: before serving, a member hashes its key space
 *   at its own revision and asks every peer for HashKV at that revision. A peer counts as a
 *   mismatch only when its hash differs *and* its compact revision equals ours; a different
 *   compact revision, a peer that has not reached the revision (FutureRevision), or one that
 *   compacted past it (Compacted), or one that did not answer, is logged and skipped. Any
 *   mismatch fails the start ("found data inconsistency with peers").
 * - {@link periodicCheck} is checkHashKV, run by the leader every
 *   --experimental-corrupt-check-time: hash at the current revision (h, rev, crev), ask the
 *   peers for HashKV at rev, wait for a linearizable read, hash again (h2, rev2, crev2). Then:
 *   h2 != h with rev2 == rev and crev2 == crev names the leader itself (its key space changed
 *   under an unchanged revision); a peer whose revision is above rev2, or whose compact
 *   revision is above crev2, or whose compact revision equals crev but whose hash differs from
 *   h, is named. Only the first member named gets the alarm (etcd's `alarmed` flag), one
 *   alarm per check. The rules cannot tell which side is wrong: when the leader itself is the
 *   corrupted member, etcd (and natcd) names the first follower that disagrees.
 */

/** A member's HashKV answer: the hash of revisions <= `revision`, and its compact revision. */
export interface LocalHash {
  /** CRC-32 of the key space up to `revision` (../hash.ts). */
  readonly hash: number
  /** The revision hashed; for the local member its current revision (etcd HashByRev(0)). */
  readonly revision: number
  /** The compact revision when hashed (-1 before the first compaction). */
  readonly compactRevision: number
}

/**
 * A peer's answer to HashKV at the requested revision:
 * - `ok`: its hash at that revision, its compact revision and its current revision (etcd's
 *   response header revision);
 * - `err`: FutureRevision (it has not reached the revision), Compacted (it compacted past it),
 *   or Unreachable (no answer within the timeout, or any other failure).
 */
export type PeerHash =
  | { readonly memberId: bigint; readonly ok: { readonly hash: number; readonly compactRevision: number; readonly revision: number } }
  | { readonly memberId: bigint; readonly err: "FutureRevision" | "Compacted" | "Unreachable" }

/**
 * One observation of a check, for the log. `message` is etcd's zap log message for it;
 * `mismatch` says whether it counts against the member named.
 */
export interface Finding {
  readonly memberId: bigint
  readonly message: string
  readonly mismatch: boolean
  readonly fields: Readonly<Record<string, number | string>>
}

/** The outcome of {@link initialCheck}: `ok` false means the member must not start. */
export interface InitialVerdict {
  readonly ok: boolean
  readonly findings: ReadonlyArray<Finding>
  /** Peers that answered with a hash (etcd logs no count here; natcd logs it). */
  readonly checked: number
}

/** The outcome of {@link periodicCheck}: `alarm` is the member to raise CORRUPT for, if any. */
export interface PeriodicVerdict {
  readonly alarm: bigint | undefined
  readonly findings: ReadonlyArray<Finding>
  /** Peers that answered with a hash (etcd's "number-of-peers-checked"). */
  readonly checked: number
}

const hex = (id: bigint): string => id.toString(16)

/**
 * etcd CheckInitialHashKV's comparison: `local` is this member's hash at its own revision,
 * `peers` the answers to HashKV at `local.revision`.
 */
export const initialCheck = (local: LocalHash, peers: ReadonlyArray<PeerHash>): InitialVerdict => {
  const findings: Finding[] = []
  let checked = 0
  const localFields = {
    "local-member-revision": local.revision,
    "local-member-compact-revision": local.compactRevision,
    "local-member-hash": local.hash
  }
  for (const p of peers) {
    if ("ok" in p) {
      checked++
      if (p.ok.hash === local.hash) continue
      const fields = {
        ...localFields,
        "remote-peer-id": hex(p.memberId),
        "remote-peer-revision": p.ok.revision,
        "remote-peer-compact-revision": p.ok.compactRevision,
        "remote-peer-hash": p.ok.hash
      }
      if (p.ok.compactRevision === local.compactRevision) {
        findings.push({ memberId: p.memberId, message: "found different hash values from remote peer", mismatch: true, fields })
      } else {
        findings.push({ memberId: p.memberId, message: "found different compact revision values from remote peer", mismatch: false, fields })
      }
      continue
    }
    const fields = { ...localFields, "remote-peer-id": hex(p.memberId), error: p.err }
    if (p.err === "FutureRevision") {
      findings.push({ memberId: p.memberId, message: "cannot fetch hash from slow remote peer", mismatch: false, fields })
    } else if (p.err === "Compacted") {
      findings.push({ memberId: p.memberId, message: "cannot fetch hash from remote peer; local member is behind", mismatch: false, fields })
    } else {
      findings.push({ memberId: p.memberId, message: "failed hash kv request", mismatch: false, fields })
    }
  }
  return { ok: !findings.some((f) => f.mismatch), findings, checked }
}

/**
 * etcd checkHashKV's comparison, run on the leader `selfId`: `before` is the leader's hash at
 * its current revision when the check began, `peers` the answers to HashKV at
 * `before.revision`, `after` the leader's hash at its current revision once a linearizable
 * read completed. Unreachable or erring peers are skipped silently, as etcd does here.
 */
export const periodicCheck = (
  selfId: bigint,
  before: LocalHash,
  after: LocalHash,
  peers: ReadonlyArray<PeerHash>
): PeriodicVerdict => {
  const findings: Finding[] = []
  let alarm: bigint | undefined
  // Every finding here is a mismatch, and the first one names the member the alarm is for.
  const mismatch = (memberId: bigint, message: string, fields: Finding["fields"]) => {
    findings.push({ memberId, message, mismatch: true, fields })
    if (alarm === undefined) alarm = memberId
  }
  if (after.hash !== before.hash && after.revision === before.revision && after.compactRevision === before.compactRevision) {
    mismatch(selfId, "found hash mismatch", {
      "revision-1": before.revision,
      "compact-revision-1": before.compactRevision,
      "hash-1": before.hash,
      "revision-2": after.revision,
      "compact-revision-2": after.compactRevision,
      "hash-2": after.hash
    })
  }
  let checked = 0
  for (const p of peers) {
    if (!("ok" in p)) continue
    checked++
    const id = hex(p.memberId)
    if (p.ok.revision > after.revision) {
      mismatch(p.memberId, "revision from follower must be less than or equal to leader's", {
        "leader-revision": after.revision, "follower-revision": p.ok.revision, "follower-peer-id": id
      })
    }
    if (p.ok.compactRevision > after.compactRevision) {
      mismatch(p.memberId, "compact revision from follower must be less than or equal to leader's", {
        "leader-compact-revision": after.compactRevision, "follower-compact-revision": p.ok.compactRevision, "follower-peer-id": id
      })
    }
    if (p.ok.compactRevision === before.compactRevision && p.ok.hash !== before.hash) {
      mismatch(p.memberId, "same compact revision then hashes must match", {
        "leader-compact-revision": after.compactRevision,
        "leader-hash": before.hash,
        "follower-compact-revision": p.ok.compactRevision,
        "follower-hash": p.ok.hash,
        "follower-peer-id": id
      })
    }
  }
  return { alarm, findings, checked }
}
