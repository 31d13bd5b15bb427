/**
 * The one table from natcd's tagged errors to gRPC status codes and etcd's exact messages, as
 * etcd keeps api/v3rpc/rpctypes/error.go and server/etcdserver/api/v3rpc/util.go. Clients match
 * on these strings (clientv3 turns them back into typed errors), so they are etcd's word for word.
 */
import { status } from "@grpc/grpc-js"
import { ConcurrencyError, tagOf } from "../../shared/errors.ts"
import type { AuthErrorCode, EtcdErrorData } from "../../shared/errors.ts"

/** etcd's gRPC code and message per auth store error (etcd rpctypes ErrGRPC*, v3rpc/util.go toGRPCErrorMap). */
export const authErrorTable: { readonly [C in AuthErrorCode]: GrpcError } = {
  RootUserNotExist: { code: status.FAILED_PRECONDITION, details: "etcdserver: root user does not exist" },
  RootRoleNotExist: { code: status.FAILED_PRECONDITION, details: "etcdserver: root user does not have root role" },
  UserAlreadyExist: { code: status.FAILED_PRECONDITION, details: "etcdserver: user name already exists" },
  UserEmpty: { code: status.INVALID_ARGUMENT, details: "etcdserver: user name is empty" },
  UserNotFound: { code: status.FAILED_PRECONDITION, details: "etcdserver: user name not found" },
  RoleAlreadyExist: { code: status.FAILED_PRECONDITION, details: "etcdserver: role name already exists" },
  RoleNotFound: { code: status.FAILED_PRECONDITION, details: "etcdserver: role name not found" },
  RoleEmpty: { code: status.INVALID_ARGUMENT, details: "etcdserver: role name is empty" },
  AuthFailed: { code: status.INVALID_ARGUMENT, details: "etcdserver: authentication failed, invalid user ID or password" },
  // etcd has no gRPC error for it: togRPCError sends the auth store's own text with Unknown.
  NoPasswordUser: { code: status.UNKNOWN, details: "auth: authentication failed, password was given for no password user" },
  PermissionNotGiven: { code: status.INVALID_ARGUMENT, details: "etcdserver: permission not given" },
  PermissionDenied: { code: status.PERMISSION_DENIED, details: "etcdserver: permission denied" },
  RoleNotGranted: { code: status.FAILED_PRECONDITION, details: "etcdserver: role is not granted to the user" },
  PermissionNotGranted: { code: status.FAILED_PRECONDITION, details: "etcdserver: permission is not granted to the role" },
  AuthNotEnabled: { code: status.FAILED_PRECONDITION, details: "etcdserver: authentication is not enabled" },
  InvalidAuthToken: { code: status.UNAUTHENTICATED, details: "etcdserver: invalid auth token" },
  InvalidAuthMgmt: { code: status.INVALID_ARGUMENT, details: "etcdserver: invalid auth management" },
  AuthOldRevision: { code: status.INVALID_ARGUMENT, details: "etcdserver: revision of auth store is old" }
}

/** A gRPC error as grpc-js sends it. */
export interface GrpcError {
  readonly code: status
  readonly details: string
}

/** etcd's gRPC code and message per error tag. */
export const grpcErrorTable: { readonly [T in EtcdErrorData["_tag"]]: (e: Extract<EtcdErrorData, { _tag: T }>) => GrpcError } = {
  Compacted: () => ({ code: status.OUT_OF_RANGE, details: "etcdserver: mvcc: required revision has been compacted" }),
  FutureRevision: () => ({ code: status.OUT_OF_RANGE, details: "etcdserver: mvcc: required revision is a future revision" }),
  LeaseNotFound: () => ({ code: status.NOT_FOUND, details: "etcdserver: requested lease not found" }),
  KeyNotProvided: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: key is not provided" }),
  KeyNotFound: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: key not found" }),
  RequestTooLarge: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: request is too large" }),
  TooManyOps: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: too many operations in txn request" }),
  DuplicateKey: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: duplicate key given in txn request" }),
  NoSpace: () => ({ code: status.RESOURCE_EXHAUSTED, details: "etcdserver: mvcc: database space exceeded" }),
  Corrupt: () => ({ code: status.DATA_LOSS, details: "etcdserver: corrupt cluster" }),
  NoLeader: () => ({ code: status.UNAVAILABLE, details: "etcdserver: no leader" }),
  RequestTimeout: () => ({ code: status.UNAVAILABLE, details: "etcdserver: request timed out" }),
  TooManyRequests: () => ({ code: status.RESOURCE_EXHAUSTED, details: "etcdserver: too many requests" }),
  Stopped: () => ({ code: status.UNAVAILABLE, details: "etcdserver: server stopped" }),
  InvalidRequest: (e) => ({ code: status.INVALID_ARGUMENT, details: e.message }),
  MemberExists: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: member ID already exist" }),
  PeerUrlExists: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: Peer URLs already exists" }),
  MemberBadUrls: () => ({ code: status.INVALID_ARGUMENT, details: "etcdserver: given member URLs are invalid" }),
  MemberNotFound: () => ({ code: status.NOT_FOUND, details: "etcdserver: member not found" }),
  MemberNotLearner: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: can only promote a learner member" }),
  LearnerNotReady: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: can only promote a learner member which is in sync with leader" }),
  TooManyLearners: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: too many learner members in cluster" }),
  NotEnoughStartedMembers: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: re-configuration failed due to not enough started members" }),
  NotLeader: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: not leader" }),
  LeaderChanged: () => ({ code: status.UNAVAILABLE, details: "etcdserver: leader changed" }),
  BadLeaderTransferee: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: bad leader transferee" }),
  LeaseExists: () => ({ code: status.FAILED_PRECONDITION, details: "etcdserver: lease already exists" }),
  LeaseTtlTooLarge: () => ({ code: status.OUT_OF_RANGE, details: "etcdserver: too large lease TTL" }),
  ConcurrencyError: (e) => ({ code: status.UNKNOWN, details: e.message }),
  ReplyTooLarge: (e) => ({
    code: status.RESOURCE_EXHAUSTED,
    details: `natcd: a reply of ${e.sizeBytes} bytes exceeds the bus's reassembly budget of ${e.maxBytes} bytes (NATCD_BUS_REASSEMBLY_BYTES)`
  }),
  ContextDeadlineExceeded: () => ({ code: status.UNKNOWN, details: "context deadline exceeded" }),
  AuthError: (e) => authErrorTable[e.code] ?? { code: status.INTERNAL, details: `natcd: unknown auth error ${JSON.stringify(e.code)}` },
  MalformedFrame: (e) => ({ code: status.INTERNAL, details: `natcd: malformed internal frame: ${e.reason}` })
}

/**
 * Maps anything a handler failed with to a gRPC error: a tagged error (a shared/errors.ts
 * instance, or the plain data an answer carried) through the table by its `_tag`, anything
 * else (a defect) to INTERNAL with its message.
 */
export const toGrpcError = (error: unknown): GrpcError => {
  const tag = tagOf(error)
  if (tag !== undefined && tag in grpcErrorTable) {
    return (grpcErrorTable as Record<string, (e: unknown) => GrpcError>)[tag]!(error)
  }
  return { code: status.INTERNAL, details: `natcd: internal error: ${(error as Error)?.message ?? String(error)}` }
}

/**
 * An error as etcd's v3lock and v3election servers return it: they reach the KV and Lease
 * services through an embedded clientv3, which turns etcd's status errors into plain Go errors,
 * so their clients get gRPC Unknown with etcd's message (e.g. "etcdserver: requested lease not
 * found" with code Unknown, not NotFound): a tagged error becomes a ConcurrencyError with that
 * message. Other errors (defects) pass unchanged.
 */
export const asEmbeddedClientError = (error: unknown): unknown => {
  const tag = tagOf(error)
  if (tag === undefined || !(tag in grpcErrorTable) || tag === "ConcurrencyError") return error
  return new ConcurrencyError({ message: toGrpcError(error).details })
}
