/**
 * etcd's authentication requests as they cross processes: the Auth RPCs in natcd's internal
 * shape (etcd api/etcdserverpb/rpc.proto Auth* messages and api/authpb/auth.proto, camelCase),
 * and the auth header every client request carries through raft and the read path (etcd
 * RequestHeader.username / auth_revision).
 *
 * Every Auth RPC is a raft proposal applied by the mvcc service's auth store
 * (services/mvcc/core/auth-store.ts), as etcd proposes each of them as an InternalRaftRequest:
 * the store changes at the same raft index on every member. Passwords never enter the log: the
 * gateway hashes them (bcrypt) before proposing UserAdd and UserChangePassword, and checks them
 * against the stored hash before proposing Authenticate, as etcd 3.5's API layer does.
 */

/** etcd's authpb.Permission.Type. */
export type PermissionType = "READ" | "WRITE" | "READWRITE"

/**
 * etcd's authpb.Permission: `rangeEnd` empty means the single key `key`; `[0]` (one zero byte)
 * every key >= `key`; otherwise the half-open range [key, rangeEnd).
 */
export interface Permission {
  readonly permType: PermissionType
  readonly key: Uint8Array
  readonly rangeEnd: Uint8Array
}

/**
 * Who a request is made by, as the member that received it resolved its token or certificate
 * (etcd auth.AuthInfo, carried as RequestHeader username and auth_revision): the user name
 * ("" for none) and the auth store revision at that moment (0 for none). The mvcc service
 * checks permissions against it, and refuses it as stale ("revision of auth store is old")
 * when the store changed since.
 */
export interface AuthInfo {
  readonly username: string
  readonly revision: number
}

/** The Auth RPCs as proposed (etcd InternalRaftRequest's auth fields). */
export type AuthRequest =
  | { readonly authEnable: Record<string, never> }
  | { readonly authDisable: Record<string, never> }
  | { readonly authStatus: Record<string, never> }
  /** `simpleToken`: the random prefix of the simple token (etcd InternalAuthenticateRequest.simple_token). */
  | { readonly authenticate: { readonly name: string; readonly simpleToken: string } }
  /** `hashedPassword`: a bcrypt hash, empty with `noPassword`. */
  | { readonly userAdd: { readonly name: string; readonly hashedPassword: string; readonly noPassword: boolean } }
  | { readonly userGet: { readonly name: string } }
  | { readonly userList: Record<string, never> }
  | { readonly userDelete: { readonly name: string } }
  | { readonly userChangePassword: { readonly name: string; readonly hashedPassword: string } }
  | { readonly userGrantRole: { readonly user: string; readonly role: string } }
  | { readonly userRevokeRole: { readonly name: string; readonly role: string } }
  | { readonly roleAdd: { readonly name: string } }
  | { readonly roleGet: { readonly role: string } }
  | { readonly roleList: Record<string, never> }
  | { readonly roleDelete: { readonly role: string } }
  | { readonly roleGrantPermission: { readonly name: string; readonly perm: Permission } }
  | { readonly roleRevokePermission: { readonly role: string; readonly key: Uint8Array; readonly rangeEnd: Uint8Array } }

/** An Auth request wrapped as a write (shared/kv.ts WriteRequest's auth member). */
export interface AuthWriteRequest {
  readonly auth: AuthRequest
}

/**
 * The answer to an {@link AuthRequest}, with the fields etcd's response has besides its header:
 * `enabled`/`authRevision` (AuthStatus), `token` (Authenticate), `roles` (UserGet, RoleList),
 * `users` (UserList), `perm` (RoleGet). Empty for the others.
 */
export interface AuthResponse {
  readonly enabled?: boolean
  readonly authRevision?: number
  readonly token?: string
  readonly roles?: ReadonlyArray<string>
  readonly users?: ReadonlyArray<string>
  readonly perm?: ReadonlyArray<Permission>
}

/** True for a write that is an Auth request. */
export const isAuthWriteRequest = (request: object): request is AuthWriteRequest => "auth" in request

/** The name of the root user and of the root role (etcd auth rootUser, rootRole). */
export const rootUser = "root"
export const rootRole = "root"
