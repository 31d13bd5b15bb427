/**
 * Schemas of auth (shared/auth.ts): the auth requests as they travel inside proposals, who made
 * a request ({@link AuthInfoSchema}), and the mvcc.auth endpoint's questions and answers (the
 * mvcc service's auth store and token provider, services/mvcc/auth-endpoint.ts). The auth store
 * itself follows etcd auth/store.go; these are only its wire shapes.
 */
import * as Schema from "effect/Schema"
import type * as Auth from "../auth.ts"
import { Bytes, Int, okOrErr, opt } from "./codec.ts"

const PermissionSchema = Schema.Struct({
  permType: Schema.Literals(["READ", "WRITE", "READWRITE"]),
  key: Bytes,
  rangeEnd: Bytes
})

/** Who made a request, as its member resolved it (shared/auth.ts AuthInfo). */
export const AuthInfoSchema = Schema.Struct({ username: Schema.String, revision: Int })

const Empty = Schema.Struct({})

/** An Auth request as proposed (shared/auth.ts AuthRequest). */
export const AuthRequestSchema: Schema.Codec<Auth.AuthRequest, unknown> = Schema.Union([
  Schema.Struct({ authEnable: Empty }),
  Schema.Struct({ authDisable: Empty }),
  Schema.Struct({ authStatus: Empty }),
  Schema.Struct({ authenticate: Schema.Struct({ name: Schema.String, simpleToken: Schema.String }) }),
  Schema.Struct({ userAdd: Schema.Struct({ name: Schema.String, hashedPassword: Schema.String, noPassword: Schema.Boolean }) }),
  Schema.Struct({ userGet: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ userList: Empty }),
  Schema.Struct({ userDelete: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ userChangePassword: Schema.Struct({ name: Schema.String, hashedPassword: Schema.String }) }),
  Schema.Struct({ userGrantRole: Schema.Struct({ user: Schema.String, role: Schema.String }) }),
  Schema.Struct({ userRevokeRole: Schema.Struct({ name: Schema.String, role: Schema.String }) }),
  Schema.Struct({ roleAdd: Schema.Struct({ name: Schema.String }) }),
  Schema.Struct({ roleGet: Schema.Struct({ role: Schema.String }) }),
  Schema.Struct({ roleList: Empty }),
  Schema.Struct({ roleDelete: Schema.Struct({ role: Schema.String }) }),
  Schema.Struct({ roleGrantPermission: Schema.Struct({ name: Schema.String, perm: PermissionSchema }) }),
  Schema.Struct({ roleRevokePermission: Schema.Struct({ role: Schema.String, key: Bytes, rangeEnd: Bytes }) })
]) as any



/**
 * mvcc.auth: the auth questions a gateway asks its member, answered from the applied auth
 * store once it applied `minAppliedIndex` (0: at once):
 * - `infos`: who requests are made by (etcd AuthInfoFromCtx/AuthInfoFromTLS), for the callers
 *   a gateway resolves in one event-loop turn: per item, the user a `token` names (null when it
 *   names none: InvalidAuthToken), or the `commonName` of a verified client certificate, with
 *   the auth revision to check against;
 * - `checkPassword`: etcd CheckPassword, before an Authenticate is proposed: the auth revision
 *   the password was checked at, or AuthNotEnabled, AuthFailed, NoPasswordUser;
 * - `check`: whether `authInfo` may read the range (a Watch creation, a TimeToLive with keys:
 *   etcd IsRangePermitted) or is an admin (Maintenance: etcd IsAdminPermitted).
 */
export const MvccAuthBody = Schema.Union([
  Schema.Struct({ infos: Schema.Array(Schema.Union([Schema.Struct({ token: Schema.String }), Schema.Struct({ commonName: Schema.String })])) }),
  Schema.Struct({ checkPassword: Schema.Struct({ name: Schema.String, password: Schema.String, minAppliedIndex: Int }) }),
  Schema.Struct({
    check: Schema.Struct({
      authInfo: AuthInfoSchema,
      minAppliedIndex: Int,
      ranges: opt(Schema.Array(Schema.Struct({ key: Bytes, rangeEnd: opt(Bytes) }))),
      admin: opt(Schema.Boolean)
    })
  })
])
/** The answer: `infos` (in the request's order) for infos, `revision` for checkPassword, nothing for check; or an error (AuthError). */
export const MvccAuthReply = okOrErr(Schema.Struct({
  infos: opt(Schema.Array(Schema.NullOr(AuthInfoSchema))),
  revision: opt(Int)
}))
