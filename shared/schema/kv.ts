/**
 * Schemas of the key-value requests (shared/kv.ts) as they travel in proposals and range frames:
 * Range, Put, DeleteRange, Txn (with its compares and nested ops), Compaction and Alarm, the
 * lease and auth writes that share the proposal path, and the {@link Proposal} that carries one
 * of them as the data of a raft entry. The replies to these requests are carried opaquely
 * (`response: unknown`) by the mvcc schemas (./mvcc.ts).
 */
import * as Schema from "effect/Schema"
import type * as Auth from "../auth.ts"
import type * as Kv from "../kv.ts"
import { AuthInfoSchema, AuthRequestSchema } from "./auth.ts"
import { Bytes, Int, opt, U64 } from "./codec.ts"

/** A Range request (shared/kv.ts RangeRequest); also the body of each read of mvcc.range. */
export const RangeRequest = Schema.Struct({
  key: Bytes,
  rangeEnd: opt(Bytes),
  limit: opt(Int),
  revision: opt(Int),
  sortOrder: opt(Schema.Literals(["NONE", "ASCEND", "DESCEND"])),
  sortTarget: opt(Schema.Literals(["KEY", "VERSION", "CREATE", "MOD", "VALUE"])),
  serializable: opt(Schema.Boolean),
  keysOnly: opt(Schema.Boolean),
  countOnly: opt(Schema.Boolean),
  minModRevision: opt(Int),
  maxModRevision: opt(Int),
  minCreateRevision: opt(Int),
  maxCreateRevision: opt(Int)
})

const PutRequest = Schema.Struct({
  key: Bytes,
  value: Bytes,
  lease: opt(U64),
  prevKv: opt(Schema.Boolean),
  ignoreValue: opt(Schema.Boolean),
  ignoreLease: opt(Schema.Boolean)
})

const DeleteRangeRequest = Schema.Struct({
  key: Bytes,
  rangeEnd: opt(Bytes),
  prevKv: opt(Schema.Boolean)
})

const Compare = Schema.Struct({
  result: Schema.Literals(["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]),
  target: Schema.Literals(["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]),
  key: Bytes,
  rangeEnd: opt(Bytes),
  version: opt(Int),
  createRevision: opt(Int),
  modRevision: opt(Int),
  value: opt(Bytes),
  lease: opt(U64)
})

interface TxnRequestEncoded {
  readonly compare: ReadonlyArray<typeof Compare.Encoded>
  readonly success: ReadonlyArray<RequestOpEncoded>
  readonly failure: ReadonlyArray<RequestOpEncoded>
}
type RequestOpEncoded =
  | { readonly requestRange: typeof RangeRequest.Encoded }
  | { readonly requestPut: typeof PutRequest.Encoded }
  | { readonly requestDeleteRange: typeof DeleteRangeRequest.Encoded }
  | { readonly requestTxn: TxnRequestEncoded }

const RequestOp: Schema.Codec<Kv.RequestOp, RequestOpEncoded> = Schema.Union([
  Schema.Struct({ requestRange: RangeRequest }),
  Schema.Struct({ requestPut: PutRequest }),
  Schema.Struct({ requestDeleteRange: DeleteRangeRequest }),
  Schema.Struct({ requestTxn: Schema.suspend((): Schema.Codec<Kv.TxnRequest, TxnRequestEncoded> => TxnRequest) })
]) as any

const TxnRequest: Schema.Codec<Kv.TxnRequest, TxnRequestEncoded> = Schema.Struct({
  compare: Schema.Array(Compare),
  success: Schema.Array(RequestOp),
  failure: Schema.Array(RequestOp)
}) as any

/** A write request as it travels inside a proposal. */
export const WriteRequest: Schema.Codec<Kv.WriteRequest | Kv.LeaseWriteRequest | Auth.AuthWriteRequest, unknown> = Schema.Union([
  Schema.Struct({ put: PutRequest }),
  Schema.Struct({ deleteRange: DeleteRangeRequest }),
  Schema.Struct({ txn: TxnRequest }),
  Schema.Struct({ compaction: Schema.Struct({ revision: Int, physical: opt(Schema.Boolean) }) }),
  Schema.Struct({
    alarm: Schema.Struct({
      action: Schema.Literals(["GET", "ACTIVATE", "DEACTIVATE"]),
      memberId: U64,
      alarm: Schema.Literals(["NONE", "NOSPACE", "CORRUPT"])
    })
  }),
  // Leases (shared/kv.ts LeaseWriteRequest).
  Schema.Struct({ leaseGrant: Schema.Struct({ id: U64, ttl: Int, minTtl: Int }) }),
  Schema.Struct({ leaseRevoke: Schema.Struct({ id: U64 }) }),
  Schema.Struct({ leaseCheckpoint: Schema.Struct({ checkpoints: Schema.Array(Schema.Struct({ id: U64, remainingTtl: Int })) }) }),
  // Auth (shared/auth.ts AuthWriteRequest).
  Schema.Struct({ auth: AuthRequestSchema })
]) as any

/**
 * A proposal, as the gateway builds it and raft stores it as the data of a Normal entry.
 * `requestId` is unique per gateway instance and reused on retries, so that the mvcc service
 * applies a retried proposal once (see services/mvcc). `replyTo` is the subject the applying
 * member of `origin` publishes the result to; `deadlineMs` is the proposer's wall-clock deadline
 * (ms since the epoch), after which it no longer waits or retries.
 */
export const Proposal = Schema.Struct({
  requestId: U64,
  origin: Schema.String,
  replyTo: Schema.String,
  deadlineMs: Int,
  /** W3C traceparent of the proposing hop, so the apply continues the request's trace. */
  traceparent: Schema.String,
  request: WriteRequest,
  /**
   * Who made the request, as the proposing gateway resolved it (etcd RequestHeader username and
   * auth_revision); the apply checks its permissions with it. Absent on the system's own
   * proposals (lease expiry, checkpoints, auto compaction), which are not checked.
   */
  authInfo: opt(AuthInfoSchema)
})
export type Proposal = typeof Proposal.Type
