/**
 * The error model (shared/errors.ts): every class's plain-data form is `{ _tag, ...fields }` in
 * declaration order, so a thrown instance goes on the bus as the same bytes a core's plain data
 * would (services/runtime/rpc-server.ts encodes `err` through toErrorData); toEtcdError rebuilds
 * the instance from the data; anything untagged becomes MalformedFrame data.
 */
import { describe, expect, it } from "vitest"
import * as Errors from "../../shared/errors.ts"
import type { EtcdError, EtcdErrorData } from "../../shared/errors.ts"
import { decodeFrame, encodeFrame } from "../../shared/frame.ts"

/** One sample value per field name used by the classes. */
const sample = (name: string): unknown => {
  if (name === "leaseId" || name === "memberId") return 5n
  if (name === "code") return "AuthFailed"
  if (name === "message" || name === "reason" || name === "url") return `some ${name}`
  return 7
}

const classes = (Object.values(Errors) as Array<unknown>).filter(
  (v) => typeof v === "function" && typeof (v as { identifier?: unknown }).identifier === "string" && "fields" in v
) as unknown as Array<(new(fields: object) => EtcdError) & { readonly identifier: string; readonly fields: object }>

const dataOf = (c: (typeof classes)[number]): EtcdErrorData => {
  const out: Record<string, unknown> = {}
  for (const name of Object.keys(c.fields)) out[name] = name === "_tag" ? c.identifier : sample(name)
  return out as EtcdErrorData
}

const frame = (err: unknown) => encodeFrame({ kind: "x.reply", version: 1, traceparent: "", id: 1, body: { err } })

describe("error classes and their data", () => {
  it("declares every error a frame may carry", () => {
    expect(classes.length).toBeGreaterThanOrEqual(33)
  })

  for (const c of classes) {
    it(`${c.identifier}: an instance encodes as the plain data`, () => {
      const data = dataOf(c)
      const { _tag, ...fields } = data as { _tag: string }
      const error = new c(fields)
      expect(error).toBeInstanceOf(Error)
      expect(error._tag).toBe(_tag)
      expect(Errors.toErrorData(error)).toEqual(data)
      expect(Buffer.from(frame(Errors.toErrorData(error)))).toEqual(Buffer.from(frame(data)))
      expect(Errors.errorDataOf(error, "here")).toEqual(data)
      const rebuilt = Errors.toEtcdError(data)
      expect(rebuilt).toBeInstanceOf(c)
      expect(Errors.toErrorData(rebuilt)).toEqual(data)
    })
  }

  it("keeps the message field, which an instance holds as its Error message", () => {
    const e = new Errors.InvalidRequest({ message: "etcdserver: key is not provided" })
    expect(e.message).toBe("etcdserver: key is not provided")
    const sent = decodeFrame(frame(Errors.toErrorData(e)))
    expect((sent as { body: unknown }).body).toEqual({ err: { _tag: "InvalidRequest", message: "etcdserver: key is not provided" } })
  })

  it("passes plain data through unchanged", () => {
    const data: EtcdErrorData = { _tag: "LeaseNotFound", leaseId: 9n }
    expect(Errors.toErrorData(data)).toBe(data)
    expect(Errors.errorDataOf(data, "here")).toBe(data)
  })

  it("turns an untagged failure into MalformedFrame data naming where", () => {
    expect(Errors.errorDataOf(new Error("boom"), "lease service")).toEqual({ _tag: "MalformedFrame", reason: "lease service: boom" })
  })

  it("etcdErrorOf keeps an instance, rebuilds plain data and wraps a defect naming where", () => {
    const e = new Errors.NoLeader()
    expect(Errors.etcdErrorOf(e, "here")).toBe(e)
    const rebuilt = Errors.etcdErrorOf({ _tag: "LeaseNotFound", leaseId: 9n }, "here")
    expect(rebuilt).toBeInstanceOf(Errors.LeaseNotFound)
    expect(rebuilt).toMatchObject({ _tag: "LeaseNotFound", leaseId: 9n })
    const defect = Errors.etcdErrorOf(new Error("boom"), "raft.status")
    expect(defect).toBeInstanceOf(Errors.MalformedFrame)
    expect(defect).toMatchObject({ _tag: "MalformedFrame", reason: "raft.status: boom" })
  })

  it("rebuilds unknown tags and bad fields as MalformedFrame rather than throwing", () => {
    expect(Errors.toErrorData(Errors.toEtcdError({ _tag: "Nope" } as unknown as EtcdErrorData))).toEqual({ _tag: "MalformedFrame", reason: "unknown error tag \"Nope\"" })
    expect(Errors.toEtcdError({ _tag: "LeaseNotFound", leaseId: "x" } as unknown as EtcdErrorData)._tag).toBe("MalformedFrame")
  })
})

describe("tagOf and describeError", () => {
  it.each([
    { failure: new Errors.Compacted({ requestedRevision: 3, compactRevision: 5 }), tag: "Compacted", text: "Compacted" },
    { failure: { _tag: "NoLeader" }, tag: "NoLeader", text: "NoLeader" },
    { failure: new Error("disk full"), tag: undefined, text: "disk full" },
    { failure: { _tag: 7 }, tag: undefined, text: "[object Object]" },
    { failure: "boom", tag: undefined, text: "boom" },
    { failure: null, tag: undefined, text: "null" },
    { failure: undefined, tag: undefined, text: "undefined" }
  ])("$text", ({ failure, tag, text }) => {
    expect(Errors.tagOf(failure)).toBe(tag)
    expect(Errors.describeError(failure)).toBe(text)
  })
})
