/**
 * Expected failures that cross process boundaries, as tagged errors with fields.
 *
 * Pure cores (raft, mvcc, wal) do not import Effect: they return plain objects
 * `{ _tag, ...fields }` typed as {@link EtcdErrorData}. Shells turn those into the Schema
 * classes below with {@link toEtcdError}, so they can travel inside a frame and be matched
 * with `Effect.catchTag` on the other side. The gateway maps each tag to a gRPC status code
 * and etcd's exact message in one table (`services/gateway/errors.ts`), as etcd keeps
 * `api/v3rpc/rpctypes/error.go`.
 */
import * as Schema from "effect/Schema"

/** Read or compact below the compacted revision (etcd mvcc.ErrCompacted). */
export class Compacted extends Schema.TaggedError<Compacted>()("Compacted", {
  requestedRevision: Schema.Number,
  compactRevision: Schema.Number
}) {}

/** Read or compact a revision the store has not reached (etcd mvcc.ErrFutureRev). */
export class FutureRevision extends Schema.TaggedError<FutureRevision>()("FutureRevision", {
  requestedRevision: Schema.Number,
  currentRevision: Schema.Number
}) {}

/** A put, revoke or keep-alive named a lease that does not exist (etcd lease.ErrLeaseNotFound). */
export class LeaseNotFound extends Schema.TaggedError<LeaseNotFound>()("LeaseNotFound", {
  leaseId: Schema.BigInt
}) {}

/** An empty key (etcd rpctypes.ErrGRPCEmptyKey). */
export class KeyNotProvided extends Schema.TaggedError<KeyNotProvided>()("KeyNotProvided", {}) {}

/** ignore_value or ignore_lease on a key that does not exist (etcd rpctypes.ErrGRPCKeyNotFound). */
export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", {}) {}

/** A request larger than the max request size (etcd rpctypes.ErrGRPCRequestTooLarge). */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>()("RequestTooLarge", {
  sizeBytes: Schema.Number,
  maxBytes: Schema.Number
}) {}

/** More than 128 operations in one txn (etcd rpctypes.ErrGRPCTooManyOps). */
export class TooManyOps extends Schema.TaggedError<TooManyOps>()("TooManyOps", {
  ops: Schema.Number,
  maxOps: Schema.Number
}) {}

/** One key written twice in a txn (etcd rpctypes.ErrGRPCDuplicateKey). */
export class DuplicateKey extends Schema.TaggedError<DuplicateKey>()("DuplicateKey", {}) {}

/** The backend quota is exhausted (etcd rpctypes.ErrGRPCNoSpace). */
export class NoSpace extends Schema.TaggedError<NoSpace>()("NoSpace", {}) {}

/**
 * The CORRUPT alarm is active: the cluster refuses writes, compactions and lease grants and
 * revocations (etcd etcdserver.ErrCorrupt, rpctypes.ErrGRPCCorrupt; applierV3Corrupt).
 */
export class Corrupt extends Schema.TaggedError<Corrupt>()("Corrupt", {}) {}

/** The member knows no leader (etcd rpctypes.ErrGRPCNoLeader). */
export class NoLeader extends Schema.TaggedError<NoLeader>()("NoLeader", {}) {}

/** A proposal's fate is unknown after the request timeout (etcd rpctypes.ErrGRPCTimeout). */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {}) {}

/**
 * Too many requests are waiting on a member for it to catch up, so it refuses more (etcd
 * rpctypes.ErrGRPCTooManyRequests; natcd: the mvcc service's bound on reads waiting for their
 * applied index).
 */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {}) {}

/** The receiving service is stopping (etcd rpctypes.ErrGRPCStopped). */
export class Stopped extends Schema.TaggedError<Stopped>()("Stopped", {}) {}

/** A request that fails validation for a reason etcd reports as InvalidArgument. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String
}) {}

/** A member id that is already in the cluster (etcd membership.ErrIDExists). */
export class MemberExists extends Schema.TaggedError<MemberExists>()("MemberExists", { memberId: Schema.BigInt }) {}

/** A peer URL that another member already has (etcd membership.ErrPeerURLexists). */
export class PeerUrlExists extends Schema.TaggedError<PeerUrlExists>()("PeerUrlExists", { url: Schema.String }) {}

/** Member URLs that do not parse (etcd rpctypes.ErrGRPCMemberBadURLs). */
export class MemberBadUrls extends Schema.TaggedError<MemberBadUrls>()("MemberBadUrls", { url: Schema.String }) {}

/** A member id that is not in the cluster (etcd membership.ErrIDNotFound). */
export class MemberNotFound extends Schema.TaggedError<MemberNotFound>()("MemberNotFound", { memberId: Schema.BigInt }) {}

/** Promote of a member that is not a learner (etcd membership.ErrMemberNotLearner). */
export class MemberNotLearner extends Schema.TaggedError<MemberNotLearner>()("MemberNotLearner", { memberId: Schema.BigInt }) {}

/** Promote of a learner that has not caught up with the leader (etcd ErrLearnerNotReady). */
export class LearnerNotReady extends Schema.TaggedError<LearnerNotReady>()("LearnerNotReady", { memberId: Schema.BigInt }) {}

/** Adding a learner when the cluster has the maximum already (etcd membership.ErrTooManyLearners). */
export class TooManyLearners extends Schema.TaggedError<TooManyLearners>()("TooManyLearners", {}) {}

/** A change that would leave too few started members for a quorum (etcd ErrNotEnoughStartedMembers). */
export class NotEnoughStartedMembers extends Schema.TaggedError<NotEnoughStartedMembers>()("NotEnoughStartedMembers", {}) {}

/** A request only the leader serves reached a follower (etcd ErrNotLeader). */
export class NotLeader extends Schema.TaggedError<NotLeader>()("NotLeader", {}) {}

/** The leader changed while the request waited (etcd ErrLeaderChanged). */
export class LeaderChanged extends Schema.TaggedError<LeaderChanged>()("LeaderChanged", {}) {}

/** MoveLeader to a member that cannot lead (etcd ErrBadLeaderTransferee). */
export class BadLeaderTransferee extends Schema.TaggedError<BadLeaderTransferee>()("BadLeaderTransferee", { memberId: Schema.BigInt }) {}

/** A grant of a lease id that exists (etcd lease.ErrLeaseExists). */
export class LeaseExists extends Schema.TaggedError<LeaseExists>()("LeaseExists", { leaseId: Schema.BigInt }) {}

/** A grant with a TTL beyond etcd's MaxLeaseTTL, 9e9 s (etcd lease.ErrLeaseTTLTooLarge). */
export class LeaseTtlTooLarge extends Schema.TaggedError<LeaseTtlTooLarge>()("LeaseTtlTooLarge", { ttl: Schema.Number }) {}

/**
 * An error etcd's lock and election servers return as a plain Go error (gRPC code Unknown with
 * the error's text): "election: no leader", "election: not leader", "mutex: session is
 * expired", `"leader" field must be provided` (etcd client/v3/concurrency, v3election).
 */
export class ConcurrencyError extends Schema.TaggedError<ConcurrencyError>()("ConcurrencyError", { message: Schema.String }) {}

/**
 * A reply larger than the receiving process may hold while putting it together from chunks
 * (services/runtime/bus-frames.ts busReassemblyBudget), in bytes; as a gRPC client's "received
 * message larger than max".
 */
export class ReplyTooLarge extends Schema.TaggedError<ReplyTooLarge>()("ReplyTooLarge", {
  sizeBytes: Schema.Number,
  maxBytes: Schema.Number
}) {}

/**
 * A proposal that could not even be handed to a leader before its deadline, because the member
 * had none: etcd returns its context's error there (raft's node.Propose blocks while there is
 * no leader), which its clients see as gRPC Unknown "context deadline exceeded".
 */
export class ContextDeadlineExceeded extends Schema.TaggedError<ContextDeadlineExceeded>()("ContextDeadlineExceeded", {}) {}

/**
 * The failures of etcd's auth store (etcd auth/store.go errors, as rpctypes sends them), one
 * tag with the error's name as `code`: their messages and gRPC codes are in the gateway's table
 * (services/gateway/errors.ts authErrorTable).
 */
export const authErrorCodes = [
  "RootUserNotExist",
  "RootRoleNotExist",
  "UserAlreadyExist",
  "UserEmpty",
  "UserNotFound",
  "RoleAlreadyExist",
  "RoleNotFound",
  "RoleEmpty",
  "AuthFailed",
  "NoPasswordUser",
  "PermissionNotGiven",
  "PermissionDenied",
  "RoleNotGranted",
  "PermissionNotGranted",
  "AuthNotEnabled",
  "InvalidAuthToken",
  "InvalidAuthMgmt",
  "AuthOldRevision"
] as const
export type AuthErrorCode = (typeof authErrorCodes)[number]

/** An auth store failure (see {@link authErrorCodes}). */
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", { code: Schema.Literals(authErrorCodes) }) {}

/** A frame that could not be decoded or has an unknown kind or version. */
export class MalformedFrame extends Schema.TaggedError<MalformedFrame>()("MalformedFrame", {
  reason: Schema.String
}) {}

const errorClasses = [
  Compacted,
  FutureRevision,
  LeaseNotFound,
  KeyNotProvided,
  KeyNotFound,
  RequestTooLarge,
  TooManyOps,
  DuplicateKey,
  NoSpace,
  Corrupt,
  NoLeader,
  RequestTimeout,
  TooManyRequests,
  Stopped,
  InvalidRequest,
  MemberExists,
  PeerUrlExists,
  MemberBadUrls,
  MemberNotFound,
  MemberNotLearner,
  LearnerNotReady,
  TooManyLearners,
  NotEnoughStartedMembers,
  NotLeader,
  LeaderChanged,
  BadLeaderTransferee,
  LeaseExists,
  LeaseTtlTooLarge,
  ConcurrencyError,
  ReplyTooLarge,
  ContextDeadlineExceeded,
  AuthError,
  MalformedFrame
] as const

/** Every expected error that may cross a process boundary. */
export const EtcdError = Schema.Union(errorClasses)
export type EtcdError = typeof EtcdError.Type

/**
 * The plain-data form of an {@link EtcdError}, as pure cores return it and frames carry it:
 * the same tag and fields, without the Error machinery.
 */
export type EtcdErrorData =
  | { readonly _tag: "Compacted"; readonly requestedRevision: number; readonly compactRevision: number }
  | { readonly _tag: "FutureRevision"; readonly requestedRevision: number; readonly currentRevision: number }
  | { readonly _tag: "LeaseNotFound"; readonly leaseId: bigint }
  | { readonly _tag: "KeyNotProvided" }
  | { readonly _tag: "KeyNotFound" }
  | { readonly _tag: "RequestTooLarge"; readonly sizeBytes: number; readonly maxBytes: number }
  | { readonly _tag: "TooManyOps"; readonly ops: number; readonly maxOps: number }
  | { readonly _tag: "DuplicateKey" }
  | { readonly _tag: "NoSpace" }
  | { readonly _tag: "Corrupt" }
  | { readonly _tag: "NoLeader" }
  | { readonly _tag: "RequestTimeout" }
  | { readonly _tag: "TooManyRequests" }
  | { readonly _tag: "Stopped" }
  | { readonly _tag: "InvalidRequest"; readonly message: string }
  | { readonly _tag: "MemberExists"; readonly memberId: bigint }
  | { readonly _tag: "PeerUrlExists"; readonly url: string }
  | { readonly _tag: "MemberBadUrls"; readonly url: string }
  | { readonly _tag: "MemberNotFound"; readonly memberId: bigint }
  | { readonly _tag: "MemberNotLearner"; readonly memberId: bigint }
  | { readonly _tag: "LearnerNotReady"; readonly memberId: bigint }
  | { readonly _tag: "TooManyLearners" }
  | { readonly _tag: "NotEnoughStartedMembers" }
  | { readonly _tag: "NotLeader" }
  | { readonly _tag: "LeaderChanged" }
  | { readonly _tag: "BadLeaderTransferee"; readonly memberId: bigint }
  | { readonly _tag: "LeaseExists"; readonly leaseId: bigint }
  | { readonly _tag: "LeaseTtlTooLarge"; readonly ttl: number }
  | { readonly _tag: "ConcurrencyError"; readonly message: string }
  | { readonly _tag: "ReplyTooLarge"; readonly sizeBytes: number; readonly maxBytes: number }
  | { readonly _tag: "ContextDeadlineExceeded" }
  | { readonly _tag: "AuthError"; readonly code: AuthErrorCode }
  | { readonly _tag: "MalformedFrame"; readonly reason: string }

/** Each class by its tag (a class's `identifier` is its tag). */
const constructors: ReadonlyMap<string, new(fields: any) => EtcdError> = new Map(
  errorClasses.map((c) => [c.identifier, c as new(fields: any) => EtcdError])
)

/**
 * Builds the tagged error class instance for plain error data (from a core or a frame).
 * Unknown tags become a {@link MalformedFrame} naming the tag rather than throwing.
 */
export const toEtcdError = (data: { readonly _tag: string }): EtcdError => {
  const make = constructors.get(data._tag)
  if (make === undefined) return new MalformedFrame({ reason: `unknown error tag ${JSON.stringify(data._tag)}` })
  const { _tag, ...fields } = data as Record<string, unknown>
  return new make(fields)
}

/** The plain-data form of a tagged error, for putting in a frame. */
export const toErrorData = (error: EtcdError): EtcdErrorData => {
  const out: Record<string, unknown> = { _tag: error._tag }
  for (const [k, v] of Object.entries(error)) {
    if (k !== "_tag" && k !== "name" && k !== "message" && k !== "stack" && k !== "cause") out[k] = v
  }
  return out as EtcdErrorData
}
