/**
 * Member and cluster ids, derived from names so that every process of a cluster computes the
 * same ids without asking anyone (as etcd derives them from peer URLs and the cluster token in
 * server/etcdserver/api/membership/member.go and cluster.go).
 *
 * - member id: the first 8 bytes (big-endian) of sha1("natcd/member/<cluster>/<name>"); never 0
 *   (0 means "none" in raft), a zero digest prefix maps to 1.
 * - cluster id: the first 8 bytes of sha1 over the sorted initial member ids, each as 16 hex
 *   digits, joined by ","; fixed when the cluster is bootstrapped.
 */
import { createHash } from "node:crypto"
import { ClusterId, MemberId, uint64FromDigest } from "./ids.ts"

/** The id of member `name` in cluster `cluster`. */
export const memberIdFor = (cluster: string, name: string): MemberId => {
  const id = uint64FromDigest(createHash("sha1").update(`natcd/member/${cluster}/${name}`).digest())
  return MemberId(id === 0n ? 1n : id)
}

/** The id of a cluster bootstrapped with `members`. */
export const clusterIdFor = (members: ReadonlyArray<MemberId>): ClusterId => {
  const text = [...members].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((m) => m.toString(16).padStart(16, "0")).join(",")
  return ClusterId(uint64FromDigest(createHash("sha1").update(text).digest()))
}
