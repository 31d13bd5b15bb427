/**
 * The cluster membership as the raft log defines it (etcd server/etcdserver/api/membership
 * RaftCluster, reduced to what natcd needs): which members exist, their names, peer and client
 * URLs, and which are learners. Pure: it changes only by applying committed entries, so every
 * member that applied the same prefix holds the same table.
 *
 * Two kinds of committed entries change it:
 * - ConfChange entries, whose `context` is a {@link ConfChangeContext}: AddNode/AddLearnerNode add
 *   a member (AddNode of an existing learner promotes it), RemoveNode removes one, UpdateNode
 *   replaces its peer URLs;
 * - member attribute entries ({@link encodeAttributes}): a started member publishes its name and
 *   client URLs through raft, as etcd's publish does; until then MemberList shows it with an
 *   empty name and no client URLs ("unstarted").
 *
 * Peer URLs: members reach each other over NATS by member name, so a natcd member's peer URL is
 * `http://<member-name>:2380` and `etcdctl member add NAME --peer-urls=http://NAME:2380` adds
 * member NAME. etcdctl accepts only http(s)/unix peer URLs of the form host:port, hence the
 * scheme and etcd's peer port; only the host addresses the member, the port is ignored.
 */
import { decodeConfChange } from "./core/conf-change.ts"
import type { MemberId } from "../../shared/ids.ts"
import { packValue, unpackValue } from "../../shared/frame.ts"
import { memberIdFor } from "../../shared/membership.ts"
import type { ConfChange, Entry } from "../../shared/raft-types.ts"
import type { MemberInfo } from "../../shared/schema.ts"

/** What a ConfChange entry's context carries. `requestId` matches the change to its waiter. */
export interface ConfChangeContext {
  readonly peerUrls: ReadonlyArray<string>
  readonly requestId: string
}

/** First byte of a member-attributes entry: msgpack's never-used byte, so no proposal starts with it. */
export const internalEntryMarker = 0xc1

/** True for entries the raft service writes for itself (member attributes); mvcc applies them as no-ops. */
export const isInternalEntry = (e: Entry): boolean =>
  e.type === "Normal" && e.data.length > 0 && e.data[0] === internalEntryMarker

/** Encodes a member-attributes entry: the member's name and client URLs. */
export const encodeAttributes = (attrs: { readonly id: MemberId; readonly name: string; readonly clientUrls: ReadonlyArray<string> }): Uint8Array => {
  const body = packValue({ id: attrs.id, name: attrs.name, clientUrls: attrs.clientUrls })
  const out = new Uint8Array(body.length + 1)
  out[0] = internalEntryMarker
  out.set(body, 1)
  return out
}

const decodeAttributes = (data: Uint8Array): { id: bigint; name: string; clientUrls: string[] } | undefined => {
  try {
    const v = unpackValue(data.subarray(1)) as { id?: unknown; name?: unknown; clientUrls?: unknown }
    const id = typeof v.id === "bigint" ? v.id : typeof v.id === "number" ? BigInt(v.id) : undefined
    if (id === undefined || typeof v.name !== "string" || !Array.isArray(v.clientUrls)) return undefined
    return { id, name: v.name, clientUrls: v.clientUrls.filter((u): u is string => typeof u === "string") }
  } catch {
    return undefined
  }
}

/** Encodes a ConfChange context. */
export const encodeConfChangeContext = (ctx: ConfChangeContext): Uint8Array => packValue({ peerUrls: ctx.peerUrls, requestId: ctx.requestId })

const decodeConfChangeContext = (data: Uint8Array): ConfChangeContext => {
  if (data.length === 0) return { peerUrls: [], requestId: "" }
  try {
    const v = unpackValue(data) as { peerUrls?: unknown; requestId?: unknown }
    return {
      peerUrls: Array.isArray(v.peerUrls) ? v.peerUrls.filter((u): u is string => typeof u === "string") : [],
      requestId: typeof v.requestId === "string" ? v.requestId : ""
    }
  } catch {
    return { peerUrls: [], requestId: "" }
  }
}

/** The peer URL of member `name`. */
export const peerUrlFor = (name: string): string => `http://${name}:2380`

/**
 * The member name a peer URL names: the host of `http(s)://<name>[:port][/]` when it is a valid
 * member name token; undefined otherwise (an IP address, a domain name, another scheme).
 */
export const nameFromPeerUrl = (url: string): string | undefined => {
  const m = /^https?:\/\/([A-Za-z0-9_-]{1,64})(:\d+)?\/?$/.exec(url)
  return m?.[1]
}

/** What applying one entry did to the membership, for waiters and logs. */
export type MembershipChange =
  | { readonly kind: "conf"; readonly change: ConfChange; readonly requestId: string }
  | { readonly kind: "attributes"; readonly id: MemberId }

/**
 * The membership table. Invariant: ids are `memberIdFor(cluster, name)` of the name in the
 * member's peer URL; `removed` holds every id ever removed (etcd never reuses a removed id).
 */
export class Membership {
  private readonly members = new Map<MemberId, { name: string; peerUrls: string[]; clientUrls: string[]; isLearner: boolean }>()
  private readonly removedIds = new Set<MemberId>()
  private readonly cluster: string

  constructor(cluster: string) {
    this.cluster = cluster
  }

  /**
   * Applies a committed entry: a ConfChange (decoded with its context) or a member-attributes
   * entry; other entries change nothing. Returns what changed, if anything.
   */
  apply(entry: Entry): MembershipChange | undefined {
    if (entry.type === "ConfChange") {
      const cc = decodeConfChange(entry.data)
      const ctx = decodeConfChangeContext(cc.context)
      const existing = this.members.get(cc.nodeId)
      switch (cc.type) {
        case "AddNode":
        case "AddLearnerNode": {
          const isLearner = cc.type === "AddLearnerNode"
          if (existing !== undefined) existing.isLearner = isLearner && existing.isLearner
          else {
            const peerUrls = ctx.peerUrls.length > 0 ? [...ctx.peerUrls] : []
            this.members.set(cc.nodeId, { name: "", peerUrls, clientUrls: [], isLearner })
          }
          break
        }
        case "RemoveNode":
          this.members.delete(cc.nodeId)
          this.removedIds.add(cc.nodeId)
          break
        case "UpdateNode":
          if (existing !== undefined && ctx.peerUrls.length > 0) existing.peerUrls = [...ctx.peerUrls]
          break
      }
      return { kind: "conf", change: cc, requestId: ctx.requestId }
    }
    if (isInternalEntry(entry)) {
      const attrs = decodeAttributes(entry.data)
      const m = attrs === undefined ? undefined : this.members.get(attrs.id as MemberId)
      if (attrs === undefined || m === undefined) return undefined
      m.name = attrs.name
      m.clientUrls = attrs.clientUrls
      if (m.peerUrls.length === 0) m.peerUrls = [peerUrlFor(attrs.name)]
      return { kind: "attributes", id: attrs.id as MemberId }
    }
    return undefined
  }

  /** The members, ordered by id (as etcd's MemberList). */
  list(): MemberInfo[] {
    return [...this.members.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, m]) => ({ id, name: m.name, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls], isLearner: m.isLearner }))
  }

  /** One member, or undefined. */
  get(id: MemberId): MemberInfo | undefined {
    const m = this.members.get(id)
    return m === undefined ? undefined : { id, name: m.name, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls], isLearner: m.isLearner }
  }

  /** True when `id` was removed from the cluster at some point. */
  isRemoved(id: MemberId): boolean {
    return this.removedIds.has(id)
  }

  /** The member whose peer URLs include `url`, if any. */
  byPeerUrl(url: string): MemberInfo | undefined {
    return this.list().find((m) => m.peerUrls.includes(url))
  }

  /**
   * Replaces the table with `members` (from a snapshot); `removed` ids stay removed. The
   * snapshot does not list removed ids, so a member restored from one forgets those removed
   * before it: raft still refuses their messages, since they are not in the configuration.
   */
  restore(members: ReadonlyArray<MemberInfo>): void {
    this.members.clear()
    for (const m of members) {
      this.members.set(m.id as MemberId, { name: m.name, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls], isLearner: m.isLearner })
    }
  }

  /** The configuration the table describes: voters and learners, as raft's ConfState. */
  confState(): { voters: MemberId[]; learners: MemberId[] } {
    const list = this.list()
    return { voters: list.filter((m) => !m.isLearner).map((m) => m.id as MemberId), learners: list.filter((m) => m.isLearner).map((m) => m.id as MemberId) }
  }

  /** The id a member named `name` has in this cluster. */
  idFor(name: string): MemberId {
    return memberIdFor(this.cluster, name)
  }
}

/** What natcd puts in a raft snapshot's data: the membership then, and the mvcc state file. */
export interface SnapshotData {
  readonly members: ReadonlyArray<MemberInfo>
  readonly mvcc: { readonly index: number; readonly file: string; readonly sizeBytes: number; readonly sha256: string }
  /** The member whose mvcc service holds `mvcc.file`. */
  readonly source: string
}

/** Encodes {@link SnapshotData}. */
export const encodeSnapshotData = (d: SnapshotData): Uint8Array => packValue(d)

/** Decodes {@link encodeSnapshotData} output; undefined for anything else. */
export const decodeSnapshotData = (data: Uint8Array): SnapshotData | undefined => {
  try {
    const v = unpackValue(data) as SnapshotData
    if (!Array.isArray(v.members) || typeof v.mvcc?.file !== "string" || typeof v.source !== "string") return undefined
    return {
      ...v,
      members: v.members.map((m) => ({ ...m, id: BigInt(m.id) })),
      mvcc: { ...v.mvcc, index: Number(v.mvcc.index), sizeBytes: Number(v.mvcc.sizeBytes) }
    }
  } catch {
    return undefined
  }
}
