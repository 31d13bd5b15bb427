/**
 * Expected failures that cross process boundaries: each declared once, as a `Schema.TaggedError`
 * class with fields; {@link EtcdErrorData}, their plain-data form, is derived from the classes.
 *
 * Where each form lives:
 * - Pure cores (raft, mvcc, wal) do not import Effect: they return plain `{ _tag, ...fields }`
 *   typed as {@link EtcdErrorData}.
 * - Frames carry that plain form too (`{ err }` replies and `error` frames): {@link toErrorData}
 *   turns an instance into it, {@link errorDataOf} anything a request failed with.
 * - Promise-based shell code throws (rejects with) instances of the classes, Errors that carry
 *   `_tag` and the fields; {@link toEtcdError} builds one from plain data. The calling side of
 *   the bus does so for every answered error (services/runtime/rpc.ts okOf and decodeReply).
 * - Effect-based shell code fails with instances in the error channel (`Effect.tryPromise`
 *   with {@link etcdErrorOf} as its `catch`), matched with `Effect.catchTag`; a broken
 *   invariant is a defect instead.
 * - The RpcClient's own outcomes without an answer are RequestTimeout and Stopped instances
 *   that services/runtime/rpc.ts isUnanswered recognises: that, not the tag or the class, tells
 *   "no answer came" from "the answer was RequestTimeout".
 *
 * Only the gateway turns these into what a client sees: one table from tag to gRPC status code
 * and etcd's exact message (`services/gateway/errors.ts`), as etcd keeps
 * `api/v3rpc/rpctypes/error.go`. It reads `_tag` and the fields, so it accepts either form.
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

/** The plain-data form of one error class: its `_tag` and its declared fields, read-only. */
type DataOf<C> = C extends { readonly fields: infer F extends Schema.Struct.Fields } ? Schema.Struct<F>["Type"] : never

/**
 * The plain-data form of an {@link EtcdError}, as pure cores return it and frames carry it:
 * the same tag and fields, without the Error machinery. Derived from the classes above, so an
 * error is declared once (its class, added to `errorClasses`).
 */
export type EtcdErrorData = DataOf<(typeof errorClasses)[number]>

/** Each class by its tag (a class's `identifier` is its tag). */
const classesByTag: ReadonlyMap<string, (typeof errorClasses)[number]> = new Map(errorClasses.map((c) => [c.identifier, c]))

/** Each class's field names by its tag, `_tag` first, in declaration order. */
const fieldNamesByTag: ReadonlyMap<string, ReadonlyArray<string>> = new Map(
  errorClasses.map((c) => [c.identifier, Object.keys(c.fields)])
)

/**
 * The tagged error class instance for plain error data, for a shell to throw or fail an Effect
 * with what a pure core returned (e.g. the gateway's request validation). Data that names no
 * known tag, or whose fields do not fit the class, becomes a {@link MalformedFrame} saying so
 * rather than throwing.
 */
export const toEtcdError = (data: EtcdErrorData): EtcdError => {
  const make = classesByTag.get(data._tag) as (new(fields: object) => EtcdError) | undefined
  if (make === undefined) return new MalformedFrame({ reason: `unknown error tag ${JSON.stringify(data._tag)}` })
  const { _tag, ...fields } = data as { readonly _tag: string }
  try {
    return new make(fields)
  } catch {
    return new MalformedFrame({ reason: `bad fields for error ${_tag}` })
  }
}

/**
 * The plain-data form of a tagged error, for putting in a frame: `{ _tag, ...fields }` with the
 * class's declared fields in declaration order (the map a core would have returned, so the
 * encoded bytes are the same either way). Plain data passes through unchanged. An Error's own
 * `message` is not enumerable, so encoding an instance as it is would drop the `message` field
 * of InvalidRequest and ConcurrencyError: frames carry this form, never the instance.
 */
export const toErrorData = (error: EtcdError | EtcdErrorData): EtcdErrorData => {
  const names = fieldNamesByTag.get(error._tag)
  if (names === undefined || !(error instanceof Error)) return error as EtcdErrorData
  const out: Record<string, unknown> = {}
  for (const name of names) out[name] = (error as unknown as Record<string, unknown>)[name]
  return out as EtcdErrorData
}

/**
 * The `_tag` of anything a call failed with, when it has a string one (an {@link EtcdError}
 * instance, its plain data, or another tagged value such as a core's outcome); undefined
 * otherwise (a defect, a plain Error).
 */
export const tagOf = (e: unknown): string | undefined => {
  const tag = (e as { readonly _tag?: unknown } | null | undefined)?._tag
  return typeof tag === "string" ? tag : undefined
}

/**
 * A failure as the text of a log field, never a client's message: its tag, else its message,
 * else its text.
 */
export const describeError = (e: unknown): string => tagOf(e) ?? String((e as Error | null | undefined)?.message ?? e)

/**
 * The error data of anything a request failed with, for an `error` frame or an `{ err }`
 * reply: a tagged error (instance or plain data) as {@link toErrorData} gives it; anything else
 * (a defect) as MalformedFrame naming `where` and the failure's text.
 */
export const errorDataOf = (e: unknown, where: string): EtcdErrorData => {
  if (tagOf(e) !== undefined) return toErrorData(e as EtcdErrorData)
  return { _tag: "MalformedFrame", reason: `${where}: ${describeError(e)}` }
}

/**
 * The tagged error instance of anything a call failed with, for an Effect's error channel
 * (`Effect.tryPromise`'s `catch`): an instance as it is (so the RpcClient's own no-answer
 * outcomes stay services/runtime/rpc.ts isUnanswered), plain error data rebuilt by
 * {@link toEtcdError}, anything else (a defect) as MalformedFrame naming `where` and its text.
 */
export const etcdErrorOf = (e: unknown, where: string): EtcdError =>
  e instanceof Error && classesByTag.has(tagOf(e) ?? "") ? (e as EtcdError) : toEtcdError(errorDataOf(e, where))
