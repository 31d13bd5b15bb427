/**
 * The msgpack frame every NATS message between natcd services carries.
 *
 * A frame is the msgpack array `[kind, version, traceparent, id, body]`:
 * - `kind`: the frame kind, a short string naming the body's schema (see `shared/schema.ts`);
 * - `version`: the kind's schema version, so that a receiver can reject bodies it cannot read;
 * - `traceparent`: W3C trace context (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), or
 *   "" when the sender traces nothing; every hop continues the trace it names;
 * - `id`: a correlation id (a non-negative integer) matching a reply to its request; 0 when the
 *   frame is not part of a request/reply exchange;
 * - `body`: the kind's payload.
 *
 * The codec is configured once here with every msgpackr option set explicitly. 64-bit integers
 * decode as `bigint` and smaller ones as `number`; the schemas in `shared/schema.ts` normalise
 * both to the field's one representation. Binary fields decode as views into the input buffer:
 * the caller must not reuse the buffer it decodes (NATS hands every message a fresh one).
 */
import { Packr } from "msgpackr"

/** A decoded frame; `body` is unvalidated until its kind's schema decodes it. */
export interface Frame<B = unknown> {
  readonly kind: string
  readonly version: number
  readonly traceparent: string
  readonly id: number
  readonly body: B
}

const packr = new Packr({
  // Plain msgpack maps and arrays: no msgpackr record extension, no structured-clone
  // extension, no bundled strings, so that any msgpack implementation can read our frames.
  useRecords: false,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
  mapsAsObjects: true,
  variableMapSize: true,
  // bigint <-> msgpack int64/uint64; 64-bit values decode as bigint, smaller ones as number.
  int64AsType: "bigint",
  useBigIntExtension: false,
  largeBigIntToFloat: false,
  // Decoded byte strings are views into the input, not copies (see module note).
  copyBuffers: false,
  encodeUndefinedAsNil: false,
  useTimestamp32: false
} as ConstructorParameters<typeof Packr>[0])

/** The maximum frame size natcd's nats-server accepts (its `max_payload`), in bytes. */
export const maxFrameBytes = 8 * 1024 * 1024

/** Encodes a frame. Throws only on values msgpack cannot represent (a programming error). */
export const encodeFrame = <B>(frame: Frame<B>): Uint8Array =>
  packr.pack([frame.kind, frame.version, frame.traceparent, frame.id, frame.body])

/** Why a byte string is not a frame. */
export interface FrameDecodeError {
  readonly _tag: "MalformedFrame"
  readonly reason: string
}

/**
 * Decodes the frame envelope. Returns a {@link FrameDecodeError} (never throws) when the bytes
 * are not msgpack or not a 5-element array of the right element types; the body is returned
 * as decoded, for the kind's schema to check.
 */
export const decodeFrame = (bytes: Uint8Array): Frame | FrameDecodeError => {
  let raw: unknown
  try {
    raw = packr.unpack(bytes)
  } catch (e) {
    return { _tag: "MalformedFrame", reason: `not msgpack: ${(e as Error).message}` }
  }
  if (!Array.isArray(raw) || raw.length !== 5) {
    return { _tag: "MalformedFrame", reason: "not a 5-element frame array" }
  }
  const [kind, version, traceparent, id, body] = raw as [unknown, unknown, unknown, unknown, unknown]
  if (typeof kind !== "string" || kind.length === 0) return { _tag: "MalformedFrame", reason: "bad kind" }
  if (typeof version !== "number" || !Number.isInteger(version)) {
    return { _tag: "MalformedFrame", reason: "bad version" }
  }
  if (typeof traceparent !== "string") return { _tag: "MalformedFrame", reason: "bad traceparent" }
  const idNumber = typeof id === "bigint" ? Number(id) : id
  if (typeof idNumber !== "number" || !Number.isSafeInteger(idNumber) || idNumber < 0) {
    return { _tag: "MalformedFrame", reason: "bad id" }
  }
  return { kind, version, traceparent, id: idNumber, body }
}

/** True when `x` is a {@link FrameDecodeError}. */
export const isFrameDecodeError = (x: Frame | FrameDecodeError): x is FrameDecodeError =>
  (x as FrameDecodeError)._tag === "MalformedFrame"

/** Encodes any msgpack value with the frame codec's options (for payloads nested in frames). */
export const packValue = (value: unknown): Uint8Array => packr.pack(value)

/** Decodes a value written by {@link packValue}; throws on bytes that are not msgpack. */
export const unpackValue = (bytes: Uint8Array): unknown => packr.unpack(bytes)
