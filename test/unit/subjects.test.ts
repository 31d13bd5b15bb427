/** Subject names: built from declared templates, no token can add wildcards or extra levels. */
import { describe, expect, it } from "vitest"
import { gatewayResult, raftPropose, subjectOf, walAppend } from "../../shared/endpoints.ts"

describe("subjects", () => {
  it("builds the documented layout", () => {
    expect(subjectOf(raftPropose, { cluster: "natcd", member: "m1" })).toBe("natcd.natcd.m1.raft.propose")
    expect(subjectOf(gatewayResult, { cluster: "c", member: "m2", instance: "ab12" })).toBe("natcd.c.m2.gateway.result.ab12")
  })

  it.each(["", "a.b", "*", ">", "m 1", "x".repeat(65)])("rejects the member token %j", (member) => {
    expect(() => subjectOf(walAppend, { cluster: "c", member })).toThrow(/invalid member/)
  })

  it("requires every token of the template", () => {
    expect(() => subjectOf(gatewayResult, { cluster: "c", member: "m1" } as never)).toThrow(/\{instance\} missing/)
  })
})
