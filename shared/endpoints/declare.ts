/**
 * The vocabulary endpoint declarations are written in: the service types ({@link Role}), a
 * party's part in an endpoint ({@link Party}), the declaration itself ({@link Endpoint}), and
 * the constructors the per-service files use: {@link rr} (request/reply), {@link pub}
 * (publish-only) and {@link onMember} (the common case: a request/reply endpoint of one service
 * on every member).
 *
 * Subjects are templates over tokens in braces: `{cluster}` (`--cluster`), `{member}` (the
 * member whose service serves the endpoint), `{replica}` (a watch replica), `{from}` (the
 * sending member, for raft messages: the subject carries the sender so that the sender's
 * permission binds the claim), `{instance}` (a process's random instance token), `{role}` (the
 * service type). Tokens are `[A-Za-z0-9_-]{1,64}` (shared/subjects.ts checkToken).
 *
 * Parties: `servers` subscribe to the subject, `callers` publish to it (request/reply or
 * publish-only). A party's `self` list names the tokens bound to its own identity: a server
 * binds `member` (or `replica`, `role`) by default, so mN's raft subscribes only to mN's raft
 * subjects; a caller with `self: ["member"]` may reach only its own member's endpoint (raft of
 * m1 publishes only `natcd.<cluster>.m1.wal.append`), one without may reach any member's.
 */
import type * as Schema from "effect/Schema"
import type { FrameKind } from "../schema.ts"

/** The service types, each a kind of NATS identity (plus `cli`, the operator's tools). */
export type Role = "raft" | "wal" | "mvcc" | "lease" | "gateway" | "watch" | "cli"

/** Every role, in the order the README lists them. */
export const roles: ReadonlyArray<Role> = ["raft", "wal", "mvcc", "lease", "gateway", "watch", "cli"]

/** The roles that run once per member (every role but watch replicas and the cli). */
export const memberRoles: ReadonlyArray<Role> = ["raft", "wal", "mvcc", "lease", "gateway"]

/** The tokens a subject template names. */
export type TokensOf<T extends string> = T extends `${string}{${infer K}}${infer Rest}` ? K | TokensOf<Rest> : never

/** A service type's part in an endpoint: its role and the tokens bound to its own identity. */
export interface Party {
  readonly role: Role
  /** Tokens replaced by the identity's own value in its permission (others become `*`). */
  readonly self: ReadonlyArray<"member" | "replica" | "from" | "role">
}

/**
 * One endpoint. `reply` absent: publish-only (nobody answers). `Req`/`Rep` are the decoded
 * body types of the request and reply schemas.
 */
export interface Endpoint<T extends string = string, Req = any, Rep = any> {
  /** Stable name: `<service>.<endpoint>`, as the README lists it. */
  readonly name: string
  readonly subject: T
  /** Frame kind of the request (its version comes from shared/schema.ts FrameKinds). */
  readonly kind: FrameKind
  readonly request: Schema.Codec<Req, any>
  readonly reply: { readonly kind: FrameKind; readonly schema: Schema.Codec<Rep, any> } | undefined
  readonly servers: ReadonlyArray<Party>
  readonly callers: ReadonlyArray<Party>
  /** One line for the README's subjects table. */
  readonly doc: string
  /** A NATS queue group the servers join (one of them receives each message). */
  readonly queue?: string
}

/** A server of `role`, binding the tokens `self` (default: its own member) to its identity. */
export const server = (role: Role, self: Party["self"] = ["member"]): Party => ({ role, self })
/** A caller of `role` that may reach only its own member's endpoint. */
export const own = (role: Role): Party => ({ role, self: ["member"] })
/** A caller of `role` that may reach every member's (or replica's) endpoint. */
export const any = (role: Role): Party => ({ role, self: [] })

/** A request/reply endpoint. */
export const rr = <T extends string, Req, Rep>(e: {
  name: string
  subject: T
  kind: FrameKind
  request: Schema.Codec<Req, any>
  reply: FrameKind
  replySchema: Schema.Codec<Rep, any>
  servers: ReadonlyArray<Party>
  callers: ReadonlyArray<Party>
  doc: string
  queue?: string
}): Endpoint<T, Req, Rep> => ({
  name: e.name,
  subject: e.subject,
  kind: e.kind,
  request: e.request,
  reply: { kind: e.reply, schema: e.replySchema },
  servers: e.servers,
  callers: e.callers,
  doc: e.doc,
  ...(e.queue === undefined ? {} : { queue: e.queue })
})

/** A publish-only endpoint (nobody answers). */
export const pub = <T extends string, Req>(e: {
  name: string
  subject: T
  kind: FrameKind
  request: Schema.Codec<Req, any>
  servers: ReadonlyArray<Party>
  callers: ReadonlyArray<Party>
  doc: string
}): Endpoint<T, Req, never> => ({ ...e, reply: undefined })

/** The frame kinds K that have a reply kind `${K}.reply`. */
export type RequestKind = { [K in FrameKind]: `${K}.reply` extends FrameKind ? K : never }[FrameKind]

/**
 * The common shape, declared in one line of facts: request/reply endpoint `<service>.<endpoint>`
 * on subject `natcd.{cluster}.{member}.<service>.<endpoint>`, served by `service` on each member
 * (bound to its own member), answered with frame kind `${kind}.reply` and schema `reply`. The
 * same as the {@link rr} declaration spelling each of those out.
 */
export const onMember = <S extends Role, E extends string, Req, Rep>(service: S, endpoint: E, e: {
  kind: RequestKind
  request: Schema.Codec<Req, any>
  reply: Schema.Codec<Rep, any>
  callers: ReadonlyArray<Party>
  doc: string
}): Endpoint<`natcd.{cluster}.{member}.${S}.${E}`, Req, Rep> =>
  rr({
    name: `${service}.${endpoint}`,
    subject: `natcd.{cluster}.{member}.${service}.${endpoint}` as `natcd.{cluster}.{member}.${S}.${E}`,
    kind: e.kind,
    request: e.request,
    reply: `${e.kind}.reply`,
    replySchema: e.reply,
    servers: [server(service)],
    callers: e.callers,
    doc: e.doc
  })
