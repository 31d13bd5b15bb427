/**
 * How etcd's JSON gateway reads a request body, errors included: Go's encoding/json syntax
 * (its scanner's messages, `unexpected EOF` from a json.Decoder, `unexpected end of JSON input`
 * from json.Unmarshal, at most {@link maxNestingDepth} levels) and golang/protobuf's jsonpb
 * Unmarshaler, which grpc-gateway's `runtime.JSONPb` uses in etcd 3.4:
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
 * Uint8Array, 64-bit integers as decimal strings, enums as numbers). Sources: Go's
 * encoding/json (scanner.go, decode.go), encoding/base64 (decodeQuantum), golang/protobuf
 * v1.3 jsonpb (Unmarshaler.unmarshalValue). Pure: no IO.
 */
import protobuf from "protobufjs"

/** One JSON value as read, numbers and strings with their source text. */
export type JsonNode =
  | { readonly t: "object"; readonly fields: Map<string, JsonNode> }
  | { readonly t: "array"; readonly items: JsonNode[] }
  /** `raw` is the text between the quotes, escapes not undone (what jsonpb strips quotes from). */
  | { readonly t: "string"; readonly value: string; readonly raw: string }
  | { readonly t: "number"; readonly raw: string }
  | { readonly t: "bool"; readonly value: boolean }
  | { readonly t: "null" }

/** Go's encoding/json nesting limit (scanner.go maxNestingDepth): objects and arrays, levels. */
export const maxNestingDepth = 10000

/** A body that is not what the request needs: the message etcd's gateway answers (code 3). */
export class GoJsonError extends Error {}

/**
 * How the end of the text is treated, as Go's two readers: `"decoder"` (json.Decoder: the first
 * value, what follows ignored, a cut value is `unexpected EOF`) or `"unmarshal"` (json.Unmarshal:
 * exactly one value, `unexpected end of JSON input`, `after top-level value`).
 */
export type GoJsonMode = "decoder" | "unmarshal"

/**
 * Reads the JSON value at the start of `text` (after white space). Undefined when there is
 * none (`"decoder"`: an empty body, Go's io.EOF). Throws {@link GoJsonError} with the message
 * of Go's scanner (as encoding/json scanner.go).
 */
export const readGoJson = (source: string, mode: GoJsonMode): JsonNode | undefined => {
  // json.Unmarshal's scanner, at the end of its input, steps once more with a space: a literal,
  // number or escape cut short fails on that space (`invalid character ' ' in literal true`).
  const text = mode === "unmarshal" ? `${source} ` : source
  const eof = () => new GoJsonError(mode === "decoder" ? "unexpected EOF" : "unexpected end of JSON input")
  let i = skipSpace(text, 0)
  if (i === text.length) {
    if (mode === "decoder") return undefined
    throw eof()
  }
  type Open = { readonly node: Extract<JsonNode, { t: "object" | "array" }>; key: string }
  const stack: Open[] = []
  /** Reads `"key"` then `:` from `i`; leaves `i` at the value. */
  const readKey = (top: Open) => {
    if (i === text.length) throw eof()
    if (text[i] !== "\"") throw syntaxError(text, i, "looking for beginning of object key string")
    const key = readString(text, i, eof)
    top.key = key.value
    i = skipSpace(text, key.end)
    if (i === text.length) throw eof()
    if (text[i] !== ":") throw syntaxError(text, i, "after object key")
    i++
  }
  for (;;) {
    // A value starts at i (after white space).
    i = skipSpace(text, i)
    if (i === text.length) throw eof()
    const c = text[i]!
    let value: JsonNode | undefined
    if (c === "{" || c === "[") {
      if (stack.length >= maxNestingDepth) throw syntaxError(text, i, "exceeded max depth")
      const open: Open = { node: c === "{" ? { t: "object", fields: new Map() } : { t: "array", items: [] }, key: "" }
      i = skipSpace(text, i + 1)
      if (i === text.length) throw eof()
      if (text[i] === (c === "{" ? "}" : "]")) {
        i++
        value = open.node
      } else {
        stack.push(open)
        if (c === "{") readKey(open)
        continue
      }
    } else {
      const scalar = readScalar(text, i, eof)
      value = scalar.node
      i = scalar.end
    }
    // A value ended at i: put it in its container, closing as many as end here.
    for (;;) {
      const top = stack[stack.length - 1]
      if (top === undefined) {
        if (mode === "unmarshal") {
          i = skipSpace(text, i)
          if (i < text.length) throw syntaxError(text, i, "after top-level value")
        }
        return value
      }
      if (top.node.t === "object") top.node.fields.set(top.key, value)
      else top.node.items.push(value)
      i = skipSpace(text, i)
      if (i === text.length) throw eof()
      const next = text[i]!
      const isObject = top.node.t === "object"
      if (next === ",") {
        i = skipSpace(text, i + 1)
        if (isObject) readKey(top)
        break
      }
      if (next !== (isObject ? "}" : "]")) throw syntaxError(text, i, isObject ? "after object key:value pair" : "after array element")
      i++
      value = top.node
      stack.pop()
    }
  }
}

const isSpace = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r"
const skipSpace = (text: string, i: number): number => {
  while (i < text.length && isSpace(text[i])) i++
  return i
}
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9"
const isHex = (c: string | undefined) => c !== undefined && ((c >= "0" && c <= "9") || (c >= "a" && c <= "f") || (c >= "A" && c <= "F"))

/** Go's SyntaxError text: `invalid character 'c' <context>` (scanner.go quoteChar). */
const syntaxError = (text: string, i: number, context: string): GoJsonError =>
  new GoJsonError(`invalid character ${quoteChar(text, i)} ${context}`)

/** The byte at `i` as Go's quoteChar shows it (the first UTF-8 byte of a non-ASCII character). */
const quoteChar = (text: string, i: number): string => {
  const code = text.codePointAt(i)!
  if (code === 0x27) return "'\\''"
  if (code === 0x22) return "'\"'"
  const byte = code < 0x80 ? code : Buffer.from(String.fromCodePoint(code), "utf8")[0]!
  const named: Record<number, string> = { 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 92: "\\\\" }
  if (named[byte] !== undefined) return `'${named[byte]}'`
  if (byte < 0x20 || byte === 0x7f) return `'\\x${byte.toString(16).padStart(2, "0")}'`
  if (byte >= 0x80 && byte <= 0xa0) return `'\\u00${byte.toString(16)}'`
  if (byte === 0xad) return "'\\u00ad'"
  return `'${String.fromCharCode(byte)}'`
}

/** A string literal at `i` (its opening quote); its value and the index after its closing quote. */
const readString = (text: string, i: number, eof: () => GoJsonError): { value: string; raw: string; end: number } => {
  let j = i + 1
  for (;;) {
    if (j >= text.length) throw eof()
    const c = text[j]!
    if (c === "\"") break
    if (c === "\\") {
      const e = text[j + 1]
      if (e === undefined) throw eof()
      if (e === "u") {
        for (let k = j + 2; k < j + 6; k++) {
          if (k >= text.length) throw eof()
          if (!isHex(text[k])) throw syntaxError(text, k, "in \\u hexadecimal character escape")
        }
        j += 6
        continue
      }
      if (!"\"\\/bfnrt".includes(e)) throw syntaxError(text, j + 1, "in string escape code")
      j += 2
      continue
    }
    if (c.charCodeAt(0) < 0x20) throw syntaxError(text, j, "in string literal")
    j++
  }
  const raw = text.slice(i + 1, j)
  return { value: JSON.parse(text.slice(i, j + 1)) as string, raw, end: j + 1 }
}

/** A number, string, true, false or null at `i`; the node and the index after it. */
const readScalar = (text: string, i: number, eof: () => GoJsonError): { node: JsonNode; end: number } => {
  const c = text[i]!
  if (c === "\"") {
    const s = readString(text, i, eof)
    return { node: { t: "string", value: s.value, raw: s.raw }, end: s.end }
  }
  if (c === "-" || isDigit(c)) return readNumber(text, i, eof)
  for (const [word, node] of literals) {
    if (c !== word[0]) continue
    for (let k = 1; k < word.length; k++) {
      if (i + k >= text.length) throw eof()
      if (text[i + k] !== word[k]) throw syntaxError(text, i + k, `in literal ${word} (expecting '${word[k]}')`)
    }
    return { node, end: i + word.length }
  }
  throw syntaxError(text, i, "looking for beginning of value")
}

const literals: ReadonlyArray<readonly [string, JsonNode]> = [
  ["true", { t: "bool", value: true }],
  ["false", { t: "bool", value: false }],
  ["null", { t: "null" }]
]

/** A number literal at `i` (JSON's grammar, scanner.go's states and messages). */
const readNumber = (text: string, i: number, eof: () => GoJsonError): { node: JsonNode; end: number } => {
  let j = i
  if (text[j] === "-") {
    j++
    if (j === text.length) throw eof()
    if (!isDigit(text[j])) throw syntaxError(text, j, "in numeric literal")
  }
  if (text[j] === "0") j++
  else while (isDigit(text[j])) j++
  if (text[j] === ".") {
    j++
    if (j === text.length) throw eof()
    if (!isDigit(text[j])) throw syntaxError(text, j, "after decimal point in numeric literal")
    while (isDigit(text[j])) j++
  }
  if (text[j] === "e" || text[j] === "E") {
    j++
    if (text[j] === "+" || text[j] === "-") j++
    if (j === text.length) throw eof()
    if (!isDigit(text[j])) throw syntaxError(text, j, "in exponent of numeric literal")
    while (isDigit(text[j])) j++
  }
  return { node: { t: "number", raw: text.slice(i, j) }, end: j }
}

/** The word Go's UnmarshalTypeError uses for a JSON value's kind. */
const kindOf = (node: JsonNode): string => (node.t === "bool" ? "bool" : node.t)

const typeError = (what: string, goType: string) => new GoJsonError(`json: cannot unmarshal ${what} into Go value of type ${goType}`)

/**
 * Reads `node` as a `type` message the way jsonpb does (see the module comment); returns the
 * plain object for `type.fromObject`. Throws {@link GoJsonError} with jsonpb's or encoding/json's
 * message for the first field (in declaration order) that does not fit.
 */
export const unmarshalMessage = (type: protobuf.Type, node: JsonNode): Record<string, unknown> => {
  if (node.t === "null") return {}
  if (node.t !== "object") throw typeError(kindOf(node), "map[string]json.RawMessage")
  const out: Record<string, unknown> = {}
  const plan = planOf(type)
  /** The field's value by its JSON name, else by its proto name (jsonpb's consumeField). */
  const consume = (field: PlannedField): JsonNode | undefined => node.fields.get(field.jsonName) ?? node.fields.get(field.field.name)
  for (const field of plan.regular) {
    const value = consume(field)
    if (value === undefined) continue
    const read = unmarshalField(field.field, value)
    if (read !== undefined) out[field.field.name] = read
  }
  // Oneof members after the other fields; of several given, the last one read stays (Go's order
  // among them is its map's, so a body naming two is not one etcd reads alike twice).
  for (const members of plan.oneofs) {
    for (const field of members) {
      const value = consume(field)
      if (value === undefined) continue
      const read = unmarshalField(field.field, value)
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
const unmarshalField = (field: protobuf.Field, node: JsonNode): unknown => {
  if (field.map) throw new GoJsonError(`map field ${field.name} is not supported`)
  if (!field.repeated) return unmarshalSingle(field, node)
  if (node.t === "null") return undefined
  if (node.t !== "array") throw typeError(kindOf(node), "[]json.RawMessage")
  return node.items.map((item) => unmarshalSingle(field, item) ?? defaultOf(field))
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
const unmarshalSingle = (field: protobuf.Field, node: JsonNode): unknown => {
  const resolved = field.resolvedType
  if (resolved instanceof protobuf.Type) return node.t === "null" ? undefined : unmarshalMessage(resolved, node)
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
  if (node.t === "string") {
    // Canonical text (whole quanta, the alphabet, padding only at the end) decodes alike in Go
    // and in Node's decoder, which is fast; everything else goes the way Go reads it.
    if (node.value.length % 4 === 0 && canonicalBase64.test(node.value)) return Buffer.from(node.value, "base64")
    return decodeStdBase64(Buffer.from(node.value, "utf8"))
  }
  if (node.t === "array") {
    return Uint8Array.from(node.items, (item) => {
      if (item.t === "null") return 0
      if (item.t !== "number") throw typeError(kindOf(item), "uint8")
      return Number(integerOf(item.raw, { go: "uint8", min: 0n, max: 255n }, "uint8"))
    })
  }
  throw typeError(kindOf(node), "[]uint8")
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const base64Values: ReadonlyMap<number, number> = new Map([...base64Alphabet].map((c, i) => [c.charCodeAt(0), i]))
const canonicalBase64 = /^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const isNewline = (b: number | undefined) => b === 0x0a || b === 0x0d

/**
 * Go's base64.StdEncoding.Decode (encoding/base64 decodeQuantum): padding required, `\r` and
 * `\n` skipped anywhere; throws `illegal base64 data at input byte N` (a byte offset) as Go's
 * CorruptInputError.
 */
export const decodeStdBase64 = (src: Uint8Array): Uint8Array => {
  const corrupt = (at: number) => new GoJsonError(`illegal base64 data at input byte ${at}`)
  const out: number[] = []
  let si = 0
  while (si < src.length) {
    const quantum: number[] = []
    let length = 4
    for (let j = 0; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return Uint8Array.from(out)
        throw corrupt(si - j)
      }
      const c = src[si]!
      si++
      const v = base64Values.get(c)
      if (v !== undefined) {
        quantum[j] = v
        continue
      }
      if (isNewline(c)) {
        j--
        continue
      }
      if (c !== 0x3d /* = */ || j < 2) throw corrupt(si - 1)
      if (j === 2) {
        // "==": the second "=" after any newlines.
        while (si < src.length && isNewline(src[si])) si++
        if (si === src.length) throw corrupt(src.length)
        if (src[si] !== 0x3d) throw corrupt(si - 1)
        si++
      }
      while (si < src.length && isNewline(src[si])) si++
      if (si < src.length) throw corrupt(si)
      length = j
      break
    }
    const v = ((quantum[0] ?? 0) << 18) | ((quantum[1] ?? 0) << 12) | ((quantum[2] ?? 0) << 6) | (quantum[3] ?? 0)
    const bytes = [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]
    out.push(...bytes.slice(0, length - 1))
  }
  return Uint8Array.from(out)
}
