/** Subject names: one validating builder, no token can add wildcards or extra levels. */
import { describe, expect, it } from "vitest"
import { subject } from "../../shared/subjects.ts"

describe("subjects", () => {
  it("builds the documented layout", () => {
    expect(subject({ cluster: "natcd", member: "m1", service: "raft", endpoint: "propose" })).toBe("natcd.natcd.m1.raft.propose")
    expect(subject({ cluster: "c", member: "m2", service: "gateway", endpoint: "result", instance: "ab12" })).toBe("natcd.c.m2.gateway.result.ab12")
  })

  it.each(["", "a.b", "*", ">", "m 1", "x".repeat(65)])("rejects the member token %j", (member) => {
    expect(() => subject({ cluster: "c", member, service: "wal", endpoint: "append" })).toThrow(/invalid member name/)
  })

  it("requires an instance exactly for gateway results", () => {
    expect(() => subject({ cluster: "c", member: "m1", service: "gateway", endpoint: "result" })).toThrow()
    expect(() => subject({ cluster: "c", member: "m1", service: "mvcc", endpoint: "range", instance: "x" })).toThrow()
  })
})
