/**
 * Which keys a user may touch: a role's permissions as key intervals, merged per user into READ
 * and WRITE sets (etcd auth/range_perm_cache.go), and the checks against them: a single key
 * must lie in one interval, a range must be covered by intervals that together leave no gap
 * (etcd's interval tree Contains), READWRITE counting as both READ and WRITE. Also etcd's
 * validity rule for a permission's range. Pure functions of byte strings; the auth store
 * (./auth-store.ts) decides whose permissions to check and when to rebuild them.
 */
import type { Permission } from "../../../shared/auth.ts"
import { compareBytes } from "./key-bytes.ts"

/** The zero byte etcd's range_end uses for "every key from `key` on". */
export const isOpenEnded = (rangeEnd: Uint8Array): boolean => rangeEnd.length === 1 && rangeEnd[0] === 0

/**
 * A permission's key interval [begin, end), `end` undefined for +infinity (etcd
 * adt.BytesAffineInterval, where an empty end is above every key).
 */
export interface Interval {
  readonly begin: Uint8Array
  readonly end: Uint8Array | undefined
}

const pointEnd = (key: Uint8Array): Uint8Array => {
  const e = new Uint8Array(key.length + 1)
  e.set(key)
  return e
}

/** A permission's interval (etcd getMergedPerms): a single key, a range, or from `key` on. */
const permissionInterval = (p: Permission): Interval =>
  p.rangeEnd.length === 0 ? { begin: p.key, end: pointEnd(p.key) } : { begin: p.key, end: isOpenEnded(p.rangeEnd) ? undefined : p.rangeEnd }

/** Compares interval ends, undefined (+infinity) above everything. */
const compareEnd = (a: Uint8Array | undefined, b: Uint8Array | undefined): number =>
  a === undefined ? (b === undefined ? 0 : 1) : b === undefined ? -1 : compareBytes(a, b)

/**
 * True when the union of `intervals` covers [begin, end) without a gap (etcd intervalTree
 * Contains): the intervals overlapping it, in order of their begin, must chain from at or below
 * `begin` to at or above `end`.
 */
export const coversRange = (intervals: ReadonlyArray<Interval>, begin: Uint8Array, end: Uint8Array | undefined): boolean => {
  const overlapping = intervals
    .filter((iv) => compareEnd(iv.end, begin) > 0 && (end === undefined || compareBytes(iv.begin, end) < 0))
    .sort((a, b) => compareBytes(a.begin, b.begin))
  const first = overlapping[0]
  if (first === undefined || compareBytes(first.begin, begin) > 0) return false
  let reach = first.end
  for (const iv of overlapping.slice(1)) {
    if (compareEnd(reach, iv.begin) < 0) return false
    if (compareEnd(iv.end, reach) > 0) reach = iv.end
  }
  return compareEnd(reach, end) >= 0
}

/** True when one of `intervals` holds `key` (etcd checkKeyPoint). */
export const coversKey = (intervals: ReadonlyArray<Interval>, key: Uint8Array): boolean =>
  intervals.some((iv) => compareBytes(iv.begin, key) <= 0 && compareEnd(iv.end, key) > 0)

/** A user's merged permission intervals (etcd unifiedRangePermissions). */
export interface MergedPermissions {
  readonly read: ReadonlyArray<Interval>
  readonly write: ReadonlyArray<Interval>
}

/** A key range a request touches: `rangeEnd` as in the request (empty: one key; [0]: from `key` on). */
export interface KeyRange {
  readonly key: Uint8Array
  readonly rangeEnd?: Uint8Array
}

/** etcd isValidPermissionRange: a non-empty key, and an end above it, or empty, or open. */
export const isValidPermissionRange = (key: Uint8Array, rangeEnd: Uint8Array): boolean =>
  key.length > 0 && (rangeEnd.length === 0 || compareBytes(key, rangeEnd) < 0 || isOpenEnded(rangeEnd))

/** etcd refreshRangePermCache: each user's merged READ and WRITE intervals, from its roles' permissions. */
export const mergePermissions = (
  users: Iterable<{ readonly name: string; readonly roles: ReadonlyArray<string> }>,
  roles: ReadonlyMap<string, { readonly permissions: ReadonlyArray<Permission> }>
): Map<string, MergedPermissions> => {
  const merged = new Map<string, MergedPermissions>()
  for (const u of users) {
    const read: Interval[] = []
    const write: Interval[] = []
    for (const roleName of u.roles) {
      for (const p of roles.get(roleName)?.permissions ?? []) {
        const iv = permissionInterval(p)
        if (p.permType !== "WRITE") read.push(iv)
        if (p.permType !== "READ") write.push(iv)
      }
    }
    merged.set(u.name, { read, write })
  }
  return merged
}
