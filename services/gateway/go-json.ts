/**
 * Go's JSON, as etcd's JSON gateway reads a request body with it (./jsonpb.ts maps the result
 * onto a request message):
 *
 * - {@link readGoJson}: encoding/json's syntax, with its scanner's messages (`invalid character
 *   'x' looking for beginning of value`), `unexpected EOF` from a json.Decoder and `unexpected
 *   end of JSON input` from json.Unmarshal, at most {@link maxNestingDepth} levels; numbers and
 *   strings keep their source text (jsonpb reads a quoted integer's inside as JSON);
 * - {@link unmarshalTypeError}: encoding/json's UnmarshalTypeError text;
 * - {@link decodeStdBase64}: encoding/base64's StdEncoding, as encoding/json decodes []byte.
 *
 * Sources: Go's encoding/json (scanner.go, decode.go) and encoding/base64 (decodeQuantum).
 * Pure: no IO.
 */
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

/** The word Go's UnmarshalTypeError uses for a JSON value's kind (`object`, `number`, …). */
export const kindOf = (node: JsonNode): string => node.t

/**
 * encoding/json's UnmarshalTypeError for a value `what` (a kind, or `number <literal>` for a
 * number out of range or not an integer) that does not fit Go type `goType`.
 */
export const unmarshalTypeError = (what: string, goType: string): GoJsonError =>
  new GoJsonError(`json: cannot unmarshal ${what} into Go value of type ${goType}`)

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

/**
 * A JSON string's value as Go decodes it into []byte: {@link decodeStdBase64} of its UTF-8
 * bytes. Canonical text (whole quanta, the alphabet, padding only at the end) decodes alike in
 * Go and in Node's decoder, which is faster, and goes that way.
 */
export const decodeStdBase64String = (text: string): Uint8Array =>
  text.length % 4 === 0 && canonicalBase64.test(text) ? Buffer.from(text, "base64") : decodeStdBase64(Buffer.from(text, "utf8"))
