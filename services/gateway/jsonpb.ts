/**
 * golang/protobuf v1.3's jsonpb Unmarshaler, as etcd 3.4's JSON gateway reads a request with it
 * (grpc-gateway's `runtime.JSONPb`), over a JSON value read by ./go-json.ts:
 *
 * - a message is a JSON object (or null); its fields are found by their proto name or their
 *   lowerCamel JSON name (the camel one wins when both are given), unknown names are ignored,
 *   fields are read in declaration order and oneof members after them, the first error wins;
 * - bytes are standard base64 with padding (Go's base64.StdEncoding, `\r` and `\n` skipped);
 * - 64- and 32-bit integers are JSON numbers or strings holding one (the quotes are dropped and
 *   what is inside is read as JSON, so `"x"` fails as `x` does); only integers in range;
 * - enums are names (`unknown value "X" for enum pkg.Msg_Enum`) or numbers;
 * - null leaves a field unset.
 *
 * The result is a plain object protobufjs's `Type.fromObject` takes as it is (bytes as
 * Uint8Array, 64-bit integers as decimal strings, enums as numbers). Errors are
 * {@link GoJsonError}s with jsonpb's or encoding/json's message. Source: jsonpb.go
 * (Unmarshaler.unmarshalValue) and encoding/json decode.go (literalStore). Pure: no IO.
 */
import protobuf from "protobufjs"
import { decodeStdBase64String, GoJsonError, type JsonNode, kindOf, readGoJson, unmarshalTypeError as typeError } from "./go-json.ts"

/**
 * Reads `node` as a `type` message the way jsonpb does (see the module comment); returns the
 * plain object for `type.fromObject`. Throws {@link GoJsonError} with jsonpb's or encoding/json's
 * message for the first field (in declaration order) that does not fit, and a RangeError for
 * messages nested deeper than protobufjs's recursion limit (`depth`: this message's level).
 */
export const unmarshalMessage = (type: protobuf.Type, node: JsonNode, depth = 0): Record<string, unknown> => {
  // Messages nest only as deep as protobufjs will encode them (util.recursionLimit, message
  // levels; a recursive type such as a Txn's RequestOp could otherwise exhaust the stack).
  if (depth > protobuf.util.recursionLimit) throw new RangeError("max depth exceeded")
  if (node.t === "null") return {}
  if (node.t !== "object") throw typeError(kindOf(node), "map[string]json.RawMessage")
  const out: Record<string, unknown> = {}
  const plan = planOf(type)
  /** The field's value by its JSON name, else by its proto name (jsonpb's consumeField). */
  const consume = (field: PlannedField): JsonNode | undefined => node.fields.get(field.jsonName) ?? node.fields.get(field.field.name)
  for (const field of plan.regular) {
    const value = consume(field)
    if (value === undefined) continue
    const read = unmarshalField(field.field, value, depth)
    if (read !== undefined) out[field.field.name] = read
  }
  // Oneof members after the other fields; of several given, the last one read stays (Go's order
  // among them is its map's, so a body naming two is not one etcd reads alike twice).
  for (const members of plan.oneofs) {
    for (const field of members) {
      const value = consume(field)
      if (value === undefined) continue
      const read = unmarshalField(field.field, value, depth)
      for (const other of members) delete out[other.field.name]
      out[field.field.name] = read ?? defaultOf(field.field)
    }
  }
  return out
}

interface PlannedField {
  readonly field: protobuf.Field
  readonly jsonName: string
}

/** A message type's fields in jsonpb's reading order, resolved once. */
interface MessagePlan {
  readonly regular: ReadonlyArray<PlannedField>
  readonly oneofs: ReadonlyArray<ReadonlyArray<PlannedField>>
}

const plans = new WeakMap<protobuf.Type, MessagePlan>()
const planOf = (type: protobuf.Type): MessagePlan => {
  let plan = plans.get(type)
  if (plan === undefined) {
    const planned = (field: protobuf.Field): PlannedField => ({ field: field.resolve(), jsonName: jsonNameOf(field.name) })
    plan = {
      regular: type.fieldsArray.filter((f) => f.partOf === null).map(planned),
      oneofs: type.oneofsArray.map((o) => o.fieldsArray.map(planned))
    }
    plans.set(type, plan)
  }
  return plan
}

/** A oneof member given as null is still the one set, at its zero value (a Go wrapper struct). */
const defaultOf = (field: protobuf.Field): unknown => {
  if (field.resolvedType instanceof protobuf.Type) return {}
  if (field.resolvedType instanceof protobuf.Enum) return 0
  if (field.type === "bytes") return new Uint8Array(0)
  if (field.type === "string") return ""
  if (field.type === "bool") return false
  return 0
}

/** protoc's JSON name of a field: underscores dropped, the letter after each upper-cased. */
export const jsonNameOf = (name: string): string => {
  let out = ""
  let upper = false
  for (const c of name) {
    if (c === "_") upper = true
    else {
      out += upper ? c.toUpperCase() : c
      upper = false
    }
  }
  return out
}

/** One field's value (repeated or not); undefined for null (unset). */
const unmarshalField = (field: protobuf.Field, node: JsonNode, depth: number): unknown => {
  if (field.map) throw new GoJsonError(`map field ${field.name} is not supported`)
  if (!field.repeated) return unmarshalSingle(field, node, depth)
  if (node.t === "null") return undefined
  if (node.t !== "array") throw typeError(kindOf(node), "[]json.RawMessage")
  return node.items.map((item) => unmarshalSingle(field, item, depth) ?? defaultOf(field))
}

/** Go's integer types of proto's scalar types, with their ranges. */
const integerTypes: Readonly<Record<string, { readonly go: string; readonly min: bigint; readonly max: bigint }>> = {
  int64: { go: "int64", min: -(1n << 63n), max: (1n << 63n) - 1n },
  sint64: { go: "int64", min: -(1n << 63n), max: (1n << 63n) - 1n },
  sfixed64: { go: "int64", min: -(1n << 63n), max: (1n << 63n) - 1n },
  uint64: { go: "uint64", min: 0n, max: (1n << 64n) - 1n },
  fixed64: { go: "uint64", min: 0n, max: (1n << 64n) - 1n },
  int32: { go: "int32", min: -(1n << 31n), max: (1n << 31n) - 1n },
  sint32: { go: "int32", min: -(1n << 31n), max: (1n << 31n) - 1n },
  sfixed32: { go: "int32", min: -(1n << 31n), max: (1n << 31n) - 1n },
  uint32: { go: "uint32", min: 0n, max: (1n << 32n) - 1n },
  fixed32: { go: "uint32", min: 0n, max: (1n << 32n) - 1n }
}

/** etcd's Go name of an enum type: its package, then its nesting joined by `_` (gogo's names). */
const goEnumName = (e: protobuf.Enum): string => {
  const parts = e.fullName.replace(/^\./, "").split(".")
  let outer: protobuf.ReflectionObject | null = e.parent
  while (outer instanceof protobuf.Type) outer = outer.parent
  let pkg = 0
  for (let ns = outer; ns !== null; ns = ns.parent) if (ns.name !== "") pkg++
  return `${parts.slice(0, pkg).join(".")}.${parts.slice(pkg).join("_")}`
}

/** A JSON number literal that is an integer (no fraction, no exponent). */
const plainInteger = /^-?(?:0|[1-9]\d*)$/

/** An integer from a number literal (Go's strconv.ParseInt/ParseUint, base 10, in range). */
const integerOf = (raw: string, kind: { readonly go: string; readonly min: bigint; readonly max: bigint }, goType: string): string => {
  if (!plainInteger.test(raw)) throw typeError(`number ${raw}`, goType)
  if (raw.length <= 15) {
    const small = Number(raw)
    if (small >= kind.min && small <= kind.max) return String(small)
    throw typeError(`number ${raw}`, goType)
  }
  const n = BigInt(raw)
  if (n < kind.min || n > kind.max) throw typeError(`number ${raw}`, goType)
  return n.toString()
}

/** One value of a field's type (see the module comment); undefined for null. */
const unmarshalSingle = (field: protobuf.Field, node: JsonNode, depth: number): unknown => {
  const resolved = field.resolvedType
  if (resolved instanceof protobuf.Type) return node.t === "null" ? undefined : unmarshalMessage(resolved, node, depth + 1)
  if (resolved instanceof protobuf.Enum) {
    const goType = goEnumName(resolved)
    if (node.t === "string") {
      // Names only (protobufjs's `values` inherits its numbers' names).
      const value = Object.hasOwn(resolved.values, node.raw) ? resolved.values[node.raw] : undefined
      if (value === undefined) throw new GoJsonError(`unknown value ${JSON.stringify(node.raw)} for enum ${goType}`)
      return value
    }
    return unmarshalNumber(node, integerTypes.int32!, goType)
  }
  const integer = integerTypes[field.type]
  if (integer !== undefined) {
    if (node.t !== "string") return unmarshalNumber(node, integer, integer.go)
    // jsonpb drops the quotes and reads what is inside as JSON (a plain integer at once).
    if (plainInteger.test(node.raw)) return integerOf(node.raw, integer, integer.go)
    return unmarshalNumber(readGoJson(node.raw, "unmarshal")!, integer, integer.go)
  }
  switch (field.type) {
    case "bool":
      if (node.t === "null") return undefined
      if (node.t !== "bool") throw typeError(kindOf(node), "bool")
      return node.value
    case "string":
      if (node.t === "null") return undefined
      if (node.t !== "string") throw typeError(kindOf(node), "string")
      return node.value
    case "bytes":
      return unmarshalBytes(node)
    case "double":
    case "float": {
      const inner = node.t === "string" && !nonFinite.has(node.raw) ? readGoJson(node.raw, "unmarshal")! : node
      if (inner.t === "string" && nonFinite.has(inner.raw)) return nonFinite.get(inner.raw)
      if (inner.t === "null") return undefined
      const goType = field.type === "double" ? "float64" : "float32"
      if (inner.t !== "number") throw typeError(kindOf(inner), goType)
      const n = Number(inner.raw)
      if (!Number.isFinite(n) || (goType === "float32" && Math.abs(n) > 3.4028234663852886e38)) throw typeError(`number ${inner.raw}`, goType)
      return n
    }
    default:
      throw new GoJsonError(`field ${field.name} of type ${field.type} is not supported`)
  }
}

const nonFinite: ReadonlyMap<string, number> = new Map([["NaN", Number.NaN], ["Infinity", Number.POSITIVE_INFINITY], ["-Infinity", Number.NEGATIVE_INFINITY]])

/** A JSON number (or null) into a Go integer type (decode.go literalStore). */
const unmarshalNumber = (node: JsonNode, kind: { readonly go: string; readonly min: bigint; readonly max: bigint }, goType: string): string | undefined => {
  if (node.t === "null") return undefined
  if (node.t !== "number") throw typeError(kindOf(node), goType)
  return integerOf(node.raw, kind, goType)
}

/** A JSON string (base64) or array of numbers into Go's []byte (decode.go literalStore). */
const unmarshalBytes = (node: JsonNode): Uint8Array | undefined => {
  if (node.t === "null") return undefined
  if (node.t === "string") return decodeStdBase64String(node.value)
  if (node.t === "array") {
    return Uint8Array.from(node.items, (item) => {
      if (item.t === "null") return 0
      if (item.t !== "number") throw typeError(kindOf(item), "uint8")
      return Number(integerOf(item.raw, { go: "uint8", min: 0n, max: 255n }, "uint8"))
    })
  }
  throw typeError(kindOf(node), "[]uint8")
}
