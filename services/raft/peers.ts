/**
 * Raft messages between members over NATS (etcd's rafthttp transport, in natcd's terms).
 *
 * Each Ready's messages are grouped by recipient and published as one `raft.msg` frame to the
 * recipient member's subject `natcd.<cluster>.<name>.raft.msg`. NATS core may lose, duplicate
 * or reorder them; raft tolerates all three (terms, indexes and rejections make every message
 * idempotent), so the transport never retries.
 *
 * Subjects: `natcd.<cluster>.<to>.raft.msg.<from>` (shared/endpoints.ts raftMsg). The sender's
 * name is in the subject, and nats-server lets member `<from>`'s raft alone publish there (its
 * NATS permission), so the subject binds the claim; a frame whose `fromName` differs from the
 * subject's sender is dropped and counted (a forgery or a bug).
 *
 * Names: a frame carries the sender's id and name; a receiver accepts it only when the id is the
 * one the name derives to, and then knows how to address that member. Together with the
 * membership table this lets a member that has just joined answer the leader before it has
 * applied the entries that describe the cluster.
 *
 * Received messages are dropped (and counted) when addressed to another member, when the sender
 * was removed from the cluster, or when raft refuses them (e.g. a response from a non-member);
 * messages of a stale term are counted as such and left to raft, which ignores them.
 */
import type { MemberId } from "../../shared/ids.ts"
import { memberIdFor } from "../../shared/membership.ts"
import type { RaftMessage } from "../../shared/schema.ts"
import type { Message } from "./core/types.ts"

/** Why incoming messages were dropped, and how many were handled, for status and tests. */
export interface PeerCounters {
  received: number
  sent: number
  droppedWrongRecipient: number
  droppedUnknownSender: number
  /** Frames whose claimed sender is not the sender named by their subject. */
  droppedSenderMismatch: number
  droppedRemovedSender: number
  refusedByRaft: number
  staleTerm: number
  /** Leader snapshots installed (this member was too far behind the leader's log). */
  snapshotsInstalled: number
}

/** The transport's view of the world. */
export interface PeersIo {
  /** Publishes a frame body to member `name`'s raft.msg subject. */
  readonly publish: (name: string, body: { from: MemberId; fromName: string; messages: ReadonlyArray<Message> }) => void
  /** The name of member `id` per the membership table, if known. */
  readonly nameOf: (id: MemberId) => string | undefined
  /** True when `id` was removed from the cluster. */
  readonly isRemoved: (id: MemberId) => boolean
  /** Steps a message into raft; returns raft's refusal, if any. */
  readonly step: (m: Message) => string | undefined
  /** The member's current raft term. */
  readonly term: () => number
}

/**
 * Most member names learned from incoming frames (1024, as the derived-id cache): a cluster has a
 * handful of members, so the cap is only reached by frames of members long removed.
 */
const maxLearnedPeers = 1024

/** Sends and receives raft messages for member `self`. */
export class Peers {
  readonly counters: PeerCounters = {
    received: 0,
    sent: 0,
    droppedWrongRecipient: 0,
    droppedUnknownSender: 0,
    droppedSenderMismatch: 0,
    droppedRemovedSender: 0,
    refusedByRaft: 0,
    staleTerm: 0,
    snapshotsInstalled: 0
  }
  /** Names learned from verified incoming frames. */
  private readonly learned = new Map<MemberId, string>()
  private readonly cluster: string
  private readonly self: { readonly id: MemberId; readonly name: string }
  private readonly io: PeersIo

  constructor(cluster: string, self: { readonly id: MemberId; readonly name: string }, io: PeersIo) {
    this.cluster = cluster
    this.self = self
    this.io = io
  }

  /** Publishes `messages`, one frame per recipient; recipients of unknown name are skipped. */
  send(messages: ReadonlyArray<Message>): void {
    const byRecipient = new Map<MemberId, Message[]>()
    for (const m of messages) {
      const list = byRecipient.get(m.to)
      if (list === undefined) byRecipient.set(m.to, [m])
      else list.push(m)
    }
    for (const [to, list] of byRecipient) {
      const name = this.io.nameOf(to) ?? this.learned.get(to)
      if (name === undefined) continue
      this.counters.sent += list.length
      this.io.publish(name, { from: this.self.id, fromName: this.self.name, messages: list })
    }
  }

  /** Ids derived from sender names (a SHA-1 each), remembered for the few names a cluster has. */
  private readonly derived = new Map<string, MemberId>()

  private idOf(name: string): MemberId {
    let id = this.derived.get(name)
    if (id === undefined) {
      id = memberIdFor(this.cluster, name)
      if (this.derived.size < maxLearnedPeers) this.derived.set(name, id)
    }
    return id
  }

  /**
   * Handles one received frame body (already schema-checked) that arrived on a subject naming
   * `subjectSender` as its sender (the only member whose raft may publish there).
   */
  receive(body: { readonly from: bigint; readonly fromName: string; readonly messages: ReadonlyArray<typeof RaftMessage.Type> }, subjectSender: string): void {
    if (body.fromName !== subjectSender) {
      this.counters.droppedSenderMismatch += body.messages.length
      return
    }
    const from = body.from as MemberId
    if (this.idOf(body.fromName) !== from) {
      this.counters.droppedUnknownSender += body.messages.length
      return
    }
    if (this.io.isRemoved(from)) {
      this.counters.droppedRemovedSender += body.messages.length
      return
    }
    if (!this.learned.has(from) && this.learned.size < maxLearnedPeers) this.learned.set(from, body.fromName)
    const term = this.io.term()
    for (const raw of body.messages) {
      this.counters.received++
      const m = raw as unknown as Message
      if (m.to !== this.self.id || m.from !== from) {
        this.counters.droppedWrongRecipient++
        continue
      }
      if (m.term > 0 && m.term < term) this.counters.staleTerm++
      if (this.io.step(m) !== undefined) this.counters.refusedByRaft++
    }
  }
}
