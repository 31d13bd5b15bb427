/**
 * The building blocks every frame body schema is made of: integers normalised from msgpack's
 * widths ({@link Int}, {@link U64}), byte strings, optional keys, the error data replies carry
 * and the `{ ok } | { err }` reply shape, and the empty body.
 *
 * Decoding normalises numbers: msgpack hands 64-bit integers over as `bigint` and smaller ones
 * as `number`; {@link Int} turns both into a safe-integer `number` (revisions, indexes, terms,
 * counts) and {@link U64} into a `bigint` (member, lease, request ids). Not the place for any
 * one endpoint's body: those live beside their domain in this directory.
 */
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import type { EtcdErrorData } from "../errors.ts"

const NumberOrBigInt = Schema.Union([Schema.Number, Schema.BigInt])

/** A safe integer, sent as msgpack int of any width; decodes to `number`. */
export const Int = NumberOrBigInt.pipe(
  Schema.decodeTo(Schema.Number.check(Schema.isInt()), {
    decode: SchemaGetter.transform((n: number | bigint) => (typeof n === "bigint" ? Number(n) : n)),
    encode: SchemaGetter.transform((n: number) => n)
  })
)

/** An unsigned 64-bit integer (ids), sent as msgpack int of any width; decodes to `bigint`. */
export const U64 = NumberOrBigInt.pipe(
  Schema.decodeTo(Schema.BigInt, {
    decode: SchemaGetter.transform((n: number | bigint) => BigInt(n)),
    encode: SchemaGetter.transform((n: bigint) => n)
  })
)

/** A byte string (msgpack bin). */
export const Bytes = Schema.Uint8Array
/** An optional key (absent, never undefined, on the wire). */
export const opt = Schema.optionalKey

/**
 * Plain error data as carried in replies: a map with a non-empty string `_tag` and the error's
 * fields, all kept (a Struct of `_tag` alone would drop them, e.g. an AuthError's `code`); see
 * shared/errors.ts for how each side treats it.
 */
export const ErrorData: Schema.Codec<EtcdErrorData, unknown> = Schema.Record(Schema.String, Schema.Unknown).pipe(
  Schema.check(Schema.makeFilter((e: Record<string, unknown>) => typeof e._tag === "string" && e._tag.length > 0))
) as any

/** A reply that is either `{ ok: A }` or `{ err: EtcdErrorData }`. */
export const okOrErr = <S extends Schema.Top>(ok: S) => Schema.Union([Schema.Struct({ ok }), Schema.Struct({ err: ErrorData })])

/**
 * A body with no fields (status, members, defragment requests): any map (fields ignored), but a
 * map; `Schema.Struct({})` would take a string or a number too.
 */
export const EmptyBody = Schema.Record(Schema.String, Schema.Unknown)
