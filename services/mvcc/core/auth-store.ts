/**
 * The auth store: users, roles, their key permissions, whether authentication is enabled, and
 * the auth revision; applied from raft like the key space, kept in the backend's `meta` bucket
 * in the same transaction as the consistent index, so it survives restarts, snapshots and
 * restores, and every member holds the same store at the same raft index.
 *
 * Follows etcd auth/store.go (3.4, with 3.5's hashed passwords: the API layer hashes, the
 * store keeps the hash) and auth/range_perm_cache.go:
 * - the auth revision starts at 1 on a fresh store and grows by one with every change of users,
 *   roles, permissions, and with AuthDisable (not with AuthEnable, nor with Authenticate or the
 *   read requests); a request authorised at an older revision is refused "revision of auth
 *   store is old";
 * - users and roles are listed in name order (etcd: bucket order), a user's roles sorted, a
 *   role's permissions sorted by key (etcd permSlice);
 * - a user with the root role may do anything; others need, for a single key, a permission
 *   interval that holds it, and for a range, permission intervals that together cover it without
 *   gap (etcd's interval tree Contains), READWRITE counting as both READ and WRITE.
 *
 * Records in `meta` (natcd's layout; etcd uses buckets auth, authUsers, authRoles):
 * "auth/enabled" (one byte, 1 or 0), "auth/revision" (8 bytes big-endian),
 * "auth/user/" + name and "auth/role/" + name (msgpack of the record below).
 *
 * Which keys a user's permissions cover (intervals, etcd's range permission cache) is
 * ./auth-permissions.ts.
 *
 * Pure: no clock, no IO but the transaction it is given. Tokens (which need a clock) live in the
 * shell (../auth-tokens.ts); the store reports which users' tokens an apply invalidates.
 */
import { packValue, unpackValue } from "../../../shared/frame.ts"
import type { AuthErrorCode } from "../../../shared/errors.ts"
import type { AuthInfo, AuthRequest, AuthResponse, Permission } from "../../../shared/auth.ts"
import { rootRole, rootUser } from "../../../shared/auth.ts"
import type { BackendReadTx, BackendWriteTx } from "./backend.ts"
import { decodeUint64, encodeUint64 } from "./backend.ts"
import { compareBytes, concatBytes, prefixEnd } from "./key-bytes.ts"
import { coversKey, coversRange, isOpenEnded, isValidPermissionRange, type KeyRange, type MergedPermissions, mergePermissions } from "./auth-permissions.ts"

export { coversRange, type KeyRange } from "./auth-permissions.ts"

/** A user as stored: `password` is a bcrypt hash ("" for a no-password user). */
export interface AuthUser {
  readonly name: string
  readonly password: string
  /** Sorted, without duplicates. */
  readonly roles: ReadonlyArray<string>
  readonly noPassword: boolean
}

/** A role as stored: permissions sorted by key. */
export interface AuthRole {
  readonly name: string
  readonly permissions: ReadonlyArray<Permission>
}

/** An auth failure as data (shared/errors.ts AuthError). */
export interface AuthFailure {
  readonly err: { readonly _tag: "AuthError"; readonly code: AuthErrorCode }
}

const fail = (code: AuthErrorCode): AuthFailure => ({ err: { _tag: "AuthError", code } })

/**
 * What applying an auth request did: the response, whether the store changed (the auth
 * revision moved or authentication was switched), the users whose tokens are no longer valid
 * (UserDelete, UserChangePassword), and `disabled` when every token is void (AuthDisable).
 */
export interface AuthApplied {
  readonly ok: AuthResponse
  readonly invalidateUser?: string
  readonly disabled?: boolean
  readonly enabled?: boolean
  /** Authenticate: the user a token is to be assigned to (the shell assigns it). */
  readonly authenticated?: string
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
const enabledKey = utf8("auth/enabled")
const revisionKey = utf8("auth/revision")
const userPrefix = utf8("auth/user/")
const rolePrefix = utf8("auth/role/")
const withPrefix = (p: Uint8Array, name: string): Uint8Array => concatBytes(p, utf8(name))

/** Name order as etcd's (bbolt keys, Go's sort.Strings): by UTF-8 bytes. */
const byBytes = (a: string, b: string): number => compareBytes(utf8(a), utf8(b))

/**
 * The store. Invariants: `users` and `roles` hold exactly the user and role records of the
 * backend; `revision` and `enabled` equal their records (revision >= 1 once {@link init} ran);
 * `merged` holds each user's merged permissions for the current users and roles.
 */
export class AuthStore {
  private enabled = false
  private revision = 0
  private readonly users = new Map<string, AuthUser>()
  private readonly roles = new Map<string, AuthRole>()
  private merged = new Map<string, MergedPermissions>()

  /** Reads the store from the backend (etcd NewAuthStore / Recover). Throws on a corrupt record. */
  static restore(tx: BackendReadTx): AuthStore {
    const s = new AuthStore()
    const e = tx.get("meta", enabledKey)
    s.enabled = e !== undefined && e.length === 1 && e[0] === 1
    const r = tx.get("meta", revisionKey)
    s.revision = r === undefined ? 0 : decodeUint64(r)
    for (const { value } of tx.range("meta", userPrefix, prefixEnd(userPrefix))) {
      const u = unpackValue(value) as AuthUser
      s.users.set(u.name, { name: u.name, password: u.password, roles: [...u.roles], noPassword: u.noPassword === true })
    }
    for (const { value } of tx.range("meta", rolePrefix, prefixEnd(rolePrefix))) {
      const role = unpackValue(value) as AuthRole
      s.roles.set(role.name, { name: role.name, permissions: role.permissions.map((p) => ({ permType: p.permType, key: p.key, rangeEnd: p.rangeEnd })) })
    }
    s.refreshMerged()
    return s
  }

  /** Whether authentication is enabled (etcd IsAuthEnabled). */
  isEnabled(): boolean {
    return this.enabled
  }

  /** The auth revision (etcd Revision); 0 only before the first apply of a fresh store. */
  authRevision(): number {
    return Math.max(this.revision, 1)
  }

  /** The stored user `name`, if any (for the password check and token assignment). */
  user(name: string): AuthUser | undefined {
    return this.users.get(name)
  }

  /** Whether `user` has the role `role` (etcd HasRole). */
  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) === true
  }

  /**
   * etcd IsAdminPermitted: nothing when auth is disabled; else UserEmpty without a user,
   * UserNotFound for an unknown one, PermissionDenied without the root role.
   */
  checkAdmin(info: AuthInfo | undefined): AuthFailure | undefined {
    if (!this.enabled) return undefined
    if (info === undefined || info.username === "") return fail("UserEmpty")
    const u = this.users.get(info.username)
    if (u === undefined) return fail("UserNotFound")
    if (!u.roles.includes(rootRole)) return fail("PermissionDenied")
    return undefined
  }

  /**
   * etcd isOpPermitted: may `info` read (READ) or write (WRITE) the keys of `range`? Nothing
   * when auth is disabled; UserEmpty without a user (revision 0); AuthOldRevision when the
   * store changed since `info.revision`; PermissionDenied for an unknown user or keys not
   * covered; a root user may do anything.
   */
  checkRange(info: AuthInfo | undefined, range: KeyRange, permType: "READ" | "WRITE"): AuthFailure | undefined {
    if (!this.enabled) return undefined
    if (info === undefined || info.revision === 0) return fail("UserEmpty")
    if (info.revision < this.authRevision()) return fail("AuthOldRevision")
    const u = this.users.get(info.username)
    if (u === undefined) return fail("PermissionDenied")
    if (u.roles.includes(rootRole)) return undefined
    const merged = this.merged.get(u.name)
    const intervals = merged === undefined ? [] : permType === "READ" ? merged.read : merged.write
    const rangeEnd = range.rangeEnd ?? new Uint8Array()
    const permitted = rangeEnd.length === 0
      ? coversKey(intervals, range.key)
      : coversRange(intervals, range.key, isOpenEnded(rangeEnd) ? undefined : rangeEnd)
    return permitted ? undefined : fail("PermissionDenied")
  }

  /**
   * Applies an auth request in `tx` for a proposal made by `info` (etcd authApplierV3.Apply and
   * the auth store's methods). `simpleToken`-bearing Authenticate only checks the user: the
   * shell assigns the token. Errors as data (AuthError), the store unchanged then.
   */
  apply(tx: BackendWriteTx, info: AuthInfo | undefined, req: AuthRequest): AuthApplied | AuthFailure {
    if (this.revision === 0) this.commitRevision(tx)
    if (needsAdmin(req)) {
      const denied = this.checkAdmin(info)
      if (denied !== undefined) return denied
    }
    if ("authEnable" in req) {
      if (this.enabled) return { ok: {} }
      const root = this.users.get(rootUser)
      if (root === undefined) return fail("RootUserNotExist")
      if (!root.roles.includes(rootRole)) return fail("RootRoleNotExist")
      this.enabled = true
      tx.put("meta", enabledKey, Uint8Array.of(1))
      return { ok: {}, enabled: true }
    }
    if ("authDisable" in req) {
      if (!this.enabled) return { ok: {} }
      this.enabled = false
      tx.put("meta", enabledKey, Uint8Array.of(0))
      this.commitRevision(tx)
      return { ok: {}, disabled: true }
    }
    if ("authStatus" in req) return { ok: { enabled: this.enabled, authRevision: this.authRevision() } }
    if ("authenticate" in req) {
      if (!this.enabled) return fail("AuthNotEnabled")
      const u = this.users.get(req.authenticate.name)
      if (u === undefined || u.noPassword) return fail("AuthFailed")
      return { ok: {}, authenticated: u.name }
    }
    if ("userAdd" in req) {
      const { name, hashedPassword, noPassword } = req.userAdd
      if (name === "") return fail("UserEmpty")
      if (this.users.has(name)) return fail("UserAlreadyExist")
      this.putUser(tx, { name, password: noPassword ? "" : hashedPassword, roles: [], noPassword })
      return this.changed(tx, {})
    }
    if ("userGet" in req) {
      // etcd authApplierV3.UserGet: a user may read itself.
      if (info?.username !== req.userGet.name) {
        const denied = this.checkAdmin(info)
        if (denied !== undefined) return denied
      }
      const u = this.users.get(req.userGet.name)
      if (u === undefined) return fail("UserNotFound")
      return { ok: { roles: [...u.roles] } }
    }
    if ("userList" in req) return { ok: { users: [...this.users.keys()].sort(byBytes) } }
    if ("userDelete" in req) {
      const { name } = req.userDelete
      if (this.enabled && name === rootUser) return fail("InvalidAuthMgmt")
      if (!this.users.has(name)) return fail("UserNotFound")
      this.users.delete(name)
      tx.delete("meta", withPrefix(userPrefix, name))
      return { ...this.changed(tx, {}), invalidateUser: name }
    }
    if ("userChangePassword" in req) {
      const { name, hashedPassword } = req.userChangePassword
      const u = this.users.get(name)
      if (u === undefined) return fail("UserNotFound")
      this.putUser(tx, { ...u, password: hashedPassword })
      return { ...this.changed(tx, {}), invalidateUser: name }
    }
    if ("userGrantRole" in req) {
      const { user, role } = req.userGrantRole
      const u = this.users.get(user)
      if (u === undefined) return fail("UserNotFound")
      if (role !== rootRole && !this.roles.has(role)) return fail("RoleNotFound")
      if (u.roles.includes(role)) return { ok: {} }
      this.putUser(tx, { ...u, roles: [...u.roles, role].sort(byBytes) })
      return this.changed(tx, {})
    }
    if ("userRevokeRole" in req) {
      const { name, role } = req.userRevokeRole
      if (this.enabled && name === rootUser && role === rootRole) return fail("InvalidAuthMgmt")
      const u = this.users.get(name)
      if (u === undefined) return fail("UserNotFound")
      if (!u.roles.includes(role)) return fail("RoleNotGranted")
      this.putUser(tx, { ...u, roles: u.roles.filter((r) => r !== role) })
      return this.changed(tx, {})
    }
    if ("roleAdd" in req) {
      const { name } = req.roleAdd
      if (name === "") return fail("RoleEmpty")
      if (this.roles.has(name)) return fail("RoleAlreadyExist")
      this.putRole(tx, { name, permissions: [] })
      return this.changed(tx, {})
    }
    if ("roleGet" in req) {
      // etcd authApplierV3.RoleGet: a user may read a role it has.
      if (info === undefined || !this.hasRole(info.username, req.roleGet.role)) {
        const denied = this.checkAdmin(info)
        if (denied !== undefined) return denied
      }
      const role = this.roles.get(req.roleGet.role)
      if (role === undefined) return fail("RoleNotFound")
      return { ok: { perm: role.permissions } }
    }
    if ("roleList" in req) return { ok: { roles: [...this.roles.keys()].sort(byBytes) } }
    if ("roleDelete" in req) {
      const { role } = req.roleDelete
      if (this.enabled && role === rootRole) return fail("InvalidAuthMgmt")
      if (!this.roles.has(role)) return fail("RoleNotFound")
      this.roles.delete(role)
      tx.delete("meta", withPrefix(rolePrefix, role))
      for (const u of [...this.users.values()]) {
        if (u.roles.includes(role)) this.putUser(tx, { ...u, roles: u.roles.filter((r) => r !== role) })
      }
      return this.changed(tx, {})
    }
    if ("roleGrantPermission" in req) {
      const { name, perm } = req.roleGrantPermission
      if (!isValidPermissionRange(perm.key, perm.rangeEnd)) return fail("InvalidAuthMgmt")
      const role = this.roles.get(name)
      if (role === undefined) return fail("RoleNotFound")
      // etcd: the first permission whose key is >= the new key is replaced when key and range
      // end equal; otherwise the new one is added and the list sorted by key.
      const at = role.permissions.findIndex((p) => compareBytes(p.key, perm.key) >= 0)
      const same = at >= 0 && compareBytes(role.permissions[at]!.key, perm.key) === 0 && compareBytes(role.permissions[at]!.rangeEnd, perm.rangeEnd) === 0 ? at : -1
      const permissions = same >= 0
        ? role.permissions.map((p, i) => (i === same ? { ...p, permType: perm.permType } : p))
        : [...role.permissions, { permType: perm.permType, key: perm.key.slice(), rangeEnd: perm.rangeEnd.slice() }].sort((a, b) => compareBytes(a.key, b.key))
      this.putRole(tx, { name, permissions })
      return this.changed(tx, {})
    }
    // roleRevokePermission
    const { role: roleName, key, rangeEnd } = req.roleRevokePermission
    const role = this.roles.get(roleName)
    if (role === undefined) return fail("RoleNotFound")
    const kept = role.permissions.filter((p) => compareBytes(p.key, key) !== 0 || compareBytes(p.rangeEnd, rangeEnd) !== 0)
    if (kept.length === role.permissions.length) return fail("PermissionNotGranted")
    this.putRole(tx, { name: roleName, permissions: kept })
    return this.changed(tx, {})
  }

  /** A change of users or roles: the revision moves and the merged permissions are rebuilt. */
  private changed(tx: BackendWriteTx, ok: AuthResponse): AuthApplied {
    this.commitRevision(tx)
    this.refreshMerged()
    return { ok }
  }

  private commitRevision(tx: BackendWriteTx): void {
    this.revision = this.revision + 1
    tx.put("meta", revisionKey, encodeUint64(this.revision))
  }

  private putUser(tx: BackendWriteTx, u: AuthUser): void {
    this.users.set(u.name, u)
    tx.put("meta", withPrefix(userPrefix, u.name), packValue({ name: u.name, password: u.password, roles: u.roles, noPassword: u.noPassword }))
  }

  private putRole(tx: BackendWriteTx, r: AuthRole): void {
    this.roles.set(r.name, r)
    tx.put("meta", withPrefix(rolePrefix, r.name), packValue({ name: r.name, permissions: r.permissions }))
  }

  /** etcd refreshRangePermCache: every user's READ and WRITE intervals from its roles. */
  private refreshMerged(): void {
    this.merged = mergePermissions(this.users.values(), this.roles)
  }
}

/**
 * etcd needAdminPermission: the auth requests only a root user may make while auth is enabled
 * (3.5's list, which adds AuthStatus to 3.4's).
 */
const needsAdmin = (req: AuthRequest): boolean =>
  "authEnable" in req || "authDisable" in req || "authStatus" in req || "userAdd" in req || "userDelete" in req || "userChangePassword" in req ||
  "userGrantRole" in req || "userRevokeRole" in req || "roleAdd" in req || "roleGrantPermission" in req ||
  "roleRevokePermission" in req || "roleDelete" in req || "userList" in req || "roleList" in req
