/**
 * Go's JSON as etcd's gateway reads it (services/gateway/go-json.ts, jsonpb.ts): the scanner's messages
 * (table: Go's own), its readers' treatment of the end, the nesting limit, base64 as Go's
 * StdEncoding (table, and a property against a simple model), and a property that any JSON
 * text is read as JSON.parse reads it, and refused exactly when JSON.parse refuses it.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeStdBase64, decodeStdBase64String, GoJsonError, type JsonNode, maxNestingDepth, readGoJson } from "../../services/gateway/go-json.ts"
import { jsonNameOf } from "../../services/gateway/jsonpb.ts"

/** What `f` throws as a GoJsonError message (or "ok"). */
const outcome = (f: () => unknown): string => {
  try {
    f()
    return "ok"
  } catch (e) {
    if (e instanceof GoJsonError) return e.message
    throw e
  }
}

/** A node as the plain value JSON.parse would give. */
const plain = (node: JsonNode): unknown => {
  switch (node.t) {
    case "object":
      return Object.fromEntries([...node.fields].map(([k, v]) => [k, plain(v)]))
    case "array":
      return node.items.map(plain)
    case "string":
    case "bool":
      return node.value
    case "number":
      return Number(node.raw)
    case "null":
      return null
  }
}

describe("readGoJson", () => {
  // Messages of Go's encoding/json (json.Unmarshal / json.Decoder.Decode) for each text.
  const syntax: ReadonlyArray<readonly [string, string, "decoder" | "unmarshal"]> = [
    ["x", "invalid character 'x' looking for beginning of value", "unmarshal"],
    ["", "unexpected end of JSON input", "unmarshal"],
    ["  ", "unexpected end of JSON input", "unmarshal"],
    ["{", "unexpected EOF", "decoder"],
    ["{", "unexpected end of JSON input", "unmarshal"],
    ["{\"a\"", "unexpected EOF", "decoder"],
    ["{\"a\" 1}", "invalid character '1' after object key", "decoder"],
    ["{\"a\":1 \"b\"}", "invalid character '\"' after object key:value pair", "decoder"],
    ["{\"a\":1,}", "invalid character '}' looking for beginning of object key string", "decoder"],
    ["{'a':1}", "invalid character '\\'' looking for beginning of object key string", "decoder"],
    ["[1 2]", "invalid character '2' after array element", "decoder"],
    ["[1,]", "invalid character ']' looking for beginning of value", "decoder"],
    ["12x", "invalid character 'x' after top-level value", "unmarshal"],
    ["-x", "invalid character 'x' in numeric literal", "unmarshal"],
    ["1.x", "invalid character 'x' after decimal point in numeric literal", "unmarshal"],
    ["1ex", "invalid character 'x' in exponent of numeric literal", "unmarshal"],
    ["01", "invalid character '1' after top-level value", "unmarshal"],
    ["tru", "invalid character ' ' in literal true (expecting 'e')", "unmarshal"],
    ["1.", "invalid character ' ' after decimal point in numeric literal", "unmarshal"],
    ["\"\\u12", "invalid character ' ' in \\u hexadecimal character escape", "unmarshal"],
    ["\"ab", "unexpected end of JSON input", "unmarshal"],
    ["trux", "invalid character 'x' in literal true (expecting 'e')", "unmarshal"],
    ["nul1", "invalid character '1' in literal null (expecting 'l')", "unmarshal"],
    ["fals", "unexpected EOF", "decoder"],
    ["\"a\tb\"", "invalid character '\\t' in string literal", "unmarshal"],
    ["\"\\x\"", "invalid character 'x' in string escape code", "unmarshal"],
    ["\"\\u12g4\"", "invalid character 'g' in \\u hexadecimal character escape", "unmarshal"],
    ["\u00e9", "invalid character 'Ã' looking for beginning of value", "unmarshal"],
    ["\u0001", "invalid character '\\x01' looking for beginning of value", "unmarshal"]
  ]
  it.each(syntax)("%j: %s", (text, message, mode) => {
    expect(outcome(() => readGoJson(text, mode))).toBe(message)
  })

  it("reads the first value of a decoder's text and nothing after it; an empty one has none", () => {
    expect(plain(readGoJson(' {"a":[1,"x",true,null]} trailing', "decoder")!)).toEqual({ a: [1, "x", true, null] })
    expect(readGoJson(" \n", "decoder")).toBeUndefined()
    expect(readGoJson('"a\\u00e9"', "unmarshal")).toEqual({ t: "string", value: "a\u00e9", raw: "a\\u00e9" })
    expect(readGoJson("-12.5e+3", "unmarshal")).toEqual({ t: "number", raw: "-12.5e+3" })
  })

  it(`nests ${maxNestingDepth} levels, not one more (Go's maxNestingDepth)`, () => {
    const nested = (n: number, inner: string) => "[".repeat(n) + inner + "]".repeat(n)
    expect(outcome(() => readGoJson(nested(maxNestingDepth, ""), "unmarshal"))).toBe("ok")
    expect(outcome(() => readGoJson(nested(maxNestingDepth + 1, ""), "unmarshal"))).toBe("invalid character '[' exceeded max depth")
    expect(outcome(() => readGoJson(nested(maxNestingDepth - 1, "{}"), "unmarshal"))).toBe("ok")
    expect(outcome(() => readGoJson(nested(maxNestingDepth, "{}"), "unmarshal"))).toBe("invalid character '{' exceeded max depth")
  })

  it("reads any JSON text as JSON.parse does", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined)
        expect(plain(readGoJson(text, "unmarshal")!)).toEqual(JSON.parse(text))
      }),
      { numRuns: 500 }
    )
  })

  it("refuses a text exactly when JSON.parse refuses it", () => {
    // Texts near JSON: valid ones cut, or with one character changed or inserted.
    const nearJson = fc.tuple(fc.json(), fc.nat(), fc.constantFrom("", "x", "}", "]", ",", ":", "\"", "\\", "-", ".", "e", "0", " ", "\t", "\u0001")).map(
      ([text, at, c]) => {
        const i = text.length === 0 ? 0 : at % (text.length + 1)
        return [text.slice(0, i), text.slice(0, i) + c + text.slice(i + 1), text.slice(0, i) + c + text.slice(i)]
      }
    )
    fc.assert(
      fc.property(nearJson, (texts) => {
        for (const text of texts) {
          let parses = true
          try {
            JSON.parse(text)
          } catch {
            parses = false
          }
          expect({ text, ok: outcome(() => readGoJson(text, "unmarshal")) === "ok" }).toEqual({ text, ok: parses })
        }
      }),
      { numRuns: 1000 }
    )
  })
})

describe("decodeStdBase64", () => {
  const bytes = (s: string) => new TextEncoder().encode(s)
  // Go's base64.StdEncoding.DecodeString answers.
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["Zm9v", "foo"],
    ["Zm9vYg==", "foob"],
    ["Zm9vYmE=", "fooba"],
    ["Zm9v\r\nYmFy\n", "foobar"],
    ["Zm=\n=", "f"],
    ["", ""],
    ["Zm9", "illegal base64 data at input byte 0"],
    ["Zm9vYg", "illegal base64 data at input byte 4"],
    ["Zm9v!", "illegal base64 data at input byte 4"],
    ["Zm-v", "illegal base64 data at input byte 2"],
    ["Zg=", "illegal base64 data at input byte 3"],
    ["Zg=x", "illegal base64 data at input byte 2"],
    ["Z===", "illegal base64 data at input byte 1"],
    ["Zm9v=", "illegal base64 data at input byte 4"],
    ["Zg==Zg==", "illegal base64 data at input byte 4"],
    ["Zm9vYg==\n\nx", "illegal base64 data at input byte 10"]
  ]
  it.each(cases)("%j", (text, expected) => {
    const got = outcome(() => decodeStdBase64(bytes(text)))
    if (expected.startsWith("illegal")) expect(got).toBe(expected)
    else expect(Buffer.from(decodeStdBase64(bytes(text))).toString()).toBe(expected)
  })

  it("decodes what Node encodes, newlines anywhere skipped", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 4 }), (data, breaks) => {
        let text = Buffer.from(data).toString("base64")
        for (const b of breaks) text = `${text.slice(0, b % (text.length + 1))}\n${text.slice(b % (text.length + 1))}`
        expect(Buffer.from(decodeStdBase64(bytes(text)))).toEqual(Buffer.from(data))
      })
    )
  })

  it("decodes a JSON string's text as its UTF-8 bytes (the fast path for canonical text included)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 48 }).map((d) => Buffer.from(d).toString("base64")), fc.string({ maxLength: 12 })), (text) => {
        expect(outcome(() => decodeStdBase64String(text))).toBe(outcome(() => decodeStdBase64(bytes(text))))
        if (outcome(() => decodeStdBase64(bytes(text))) === "ok") expect(Buffer.from(decodeStdBase64String(text))).toEqual(Buffer.from(decodeStdBase64(bytes(text))))
      })
    )
  })

  it("accepts exactly the texts that are whole padded quanta once newlines are dropped", () => {
    const model = (text: string): string => {
      const bare = text.replace(/[\r\n]/g, "")
      const ok = bare.length % 4 === 0 && /^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(bare)
      return ok ? Buffer.from(bare, "base64").toString("hex") : "refused"
    }
    const alphabet = fc.constantFrom(..."AZaz09+/=\n\r!-_ ")
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 16 }).map((cs) => cs.join("")), (text) => {
        let got: string
        try {
          got = Buffer.from(decodeStdBase64(bytes(text))).toString("hex")
        } catch (e) {
          if (!(e instanceof GoJsonError)) throw e
          got = "refused"
        }
        expect({ text, got }).toEqual({ text, got: model(text) })
      }),
      { numRuns: 2000 }
    )
  })
})

describe("jsonNameOf", () => {
  it.each([["sort_order", "sortOrder"], ["TTL", "TTL"], ["ID", "ID"], ["peerURLs", "peerURLs"], ["create_revision", "createRevision"], ["a__b", "aB"], ["x_", "x"]])(
    "%s -> %s",
    (name, json) => expect(jsonNameOf(name)).toBe(json)
  )
})
