/**
 * The endpoint declarations (shared/endpoints.ts): every one well-formed, subjects built and
 * parsed back, the permissions derived for a few identities spelled out in full, and the
 * README's subjects table in step with the declarations.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { endpoints, inboxPrefix, permissionsFor, raftMsg, roles, subjectOf, subjectsTable, tokensOf, walAppend } from "../../shared/endpoints.ts"
import * as declared from "../../shared/endpoints.ts"
import { FrameKinds } from "../../shared/schema.ts"

describe("endpoint declarations", () => {
  it("are well-formed: unique names and subjects, known frame kinds, a server and a caller each", () => {
    expect(new Set(endpoints.map((e) => e.name)).size).toBe(endpoints.length)
    expect(new Set(endpoints.map((e) => e.subject)).size).toBe(endpoints.length)
    for (const e of endpoints) {
      expect(FrameKinds[e.kind], e.name).toBeTypeOf("number")
      if (e.reply !== undefined) expect(FrameKinds[e.reply.kind], e.name).toBeTypeOf("number")
      expect(e.servers.length, e.name).toBeGreaterThan(0)
      expect(e.callers.length, e.name).toBeGreaterThan(0)
      expect(e.subject, e.name).toMatch(/^natcd\.\{cluster\}(\.([a-z]+|\{[a-z]+\}))+$/)
    }
  })

  it("list every exported declaration in the aggregate that permissions and docs walk", () => {
    const exported = Object.values(declared as Record<string, unknown>).filter((v): v is (typeof endpoints)[number] =>
      typeof v === "object" && v !== null && "subject" in v && "callers" in v && "servers" in v
    )
    expect(exported.length).toBeGreaterThan(0)
    for (const e of exported) expect(endpoints, e.name).toContain(e)
    expect(exported.length).toBe(endpoints.length)
  })

  it("build subjects from checked tokens and parse them back", () => {
    const s = subjectOf(raftMsg, { cluster: "natcd", member: "m1", from: "m2" })
    expect(s).toBe("natcd.natcd.m1.raft.msg.m2")
    expect(tokensOf(raftMsg, s)).toEqual({ cluster: "natcd", member: "m1", from: "m2" })
    expect(tokensOf(raftMsg, "natcd.natcd.m1.raft.msg")).toBeUndefined()
    expect(tokensOf(raftMsg, "natcd.natcd.m1.wal.msg.m2")).toBeUndefined()
    expect(() => subjectOf(walAppend, { cluster: "natcd", member: "m1.>" })).toThrow(/invalid member/)
    expect(() => subjectOf(walAppend, { cluster: "natcd", member: "*" })).toThrow(/invalid member/)
  })

  // Each identity's permissions in full: what the declarations give, nothing more.
  const table: ReadonlyArray<{ identity: Parameters<typeof permissionsFor>[1]; publish: string[]; subscribe: string[] }> = [
    {
      identity: { role: "raft", name: "m1" },
      publish: [
        "natcd.c.*.raft.confchange", "natcd.c.*.raft.msg.m1", "natcd.c.m1.mvcc.apply", "natcd.c.m1.mvcc.install", "natcd.c.m1.mvcc.snapshot",
        "natcd.c.m1.mvcc.status", "natcd.c.m1.raft.state", "natcd.c.m1.wal.append", "natcd.c.m1.wal.load", "natcd.c.m1.wal.snapshot"
      ],
      subscribe: [
        "_INBOX.natcd.c.raft.m1.>", "natcd.c.m1.raft.confchange", "natcd.c.m1.raft.entries", "natcd.c.m1.raft.health",
        "natcd.c.m1.raft.members", "natcd.c.m1.raft.msg.*", "natcd.c.m1.raft.propose", "natcd.c.m1.raft.readindex",
        "natcd.c.m1.raft.status", "natcd.c.m1.raft.transfer", "natcd.c.trace.keep"
      ]
    },
    {
      identity: { role: "wal", name: "m2" },
      publish: [],
      subscribe: ["_INBOX.natcd.c.wal.m2.>", "natcd.c.m2.wal.append", "natcd.c.m2.wal.health", "natcd.c.m2.wal.load", "natcd.c.m2.wal.snapshot", "natcd.c.trace.keep"]
    },
    {
      identity: { role: "cli", name: "" },
      publish: ["natcd.c.*.*.health", "natcd.c.*.mvcc.hashkv", "natcd.c.*.mvcc.status", "natcd.c.*.raft.members", "natcd.c.*.raft.status"],
      subscribe: ["_INBOX.natcd.c.cli.cli.>"]
    }
  ]
  it.each(table.map((t) => ({ ...t, label: `${t.identity.role}.${t.identity.name || "-"}` })))("give $label exactly its declared subjects", ({ identity, publish, subscribe }) => {
    expect(permissionsFor("c", identity)).toEqual({ publish: [...publish].sort(), subscribe: [...subscribe].sort() })
  })

  it("never grant a full wildcard, another identity's inbox, or an inbox publish", () => {
    for (const role of roles) {
      const identity = { role, name: role === "watch" ? "w1" : role === "cli" ? "" : "m1" }
      const p = permissionsFor("natcd", identity)
      for (const s of [...p.publish, ...p.subscribe]) {
        expect(s, `${role}: ${s}`).not.toBe(">")
        expect(s, `${role}: ${s}`).not.toMatch(/^natcd\.natcd\.>$|^_INBOX\.>$/)
      }
      expect(p.publish.filter((s) => s.startsWith("_INBOX")), role).toEqual([])
      expect(p.subscribe.filter((s) => s.startsWith("_INBOX")), role).toEqual([`${inboxPrefix("natcd", identity)}.>`])
    }
    // Only mN's raft may publish mN's mvcc.apply, wal.append and raft.state; only mvcc publishes events.
    const publishers = (subject: string) =>
      roles.filter((role) => permissionsFor("natcd", { role, name: role === "watch" ? "w1" : "m1" }).publish.includes(subject))
    expect(publishers("natcd.natcd.m1.mvcc.apply")).toEqual(["raft"])
    expect(publishers("natcd.natcd.m1.wal.append")).toEqual(["raft"])
    expect(publishers("natcd.natcd.m1.raft.state")).toEqual(["raft"])
    expect(publishers("natcd.natcd.m1.mvcc.events")).toEqual(["mvcc"])
    expect(publishers("natcd.natcd.m1.mvcc.install")).toEqual(["raft"])
    expect(publishers("natcd.natcd.m1.mvcc.defragment")).toEqual(["gateway"])
  })

  it("match the README's subjects table", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
    const begin = readme.indexOf("<!-- subjects:begin -->")
    const end = readme.indexOf("<!-- subjects:end -->")
    expect(begin, "README lacks the subjects markers").toBeGreaterThan(0)
    expect(readme.slice(begin + "<!-- subjects:begin -->".length, end).trim(), "regenerate with `bin/natcd subjects`").toBe(subjectsTable())
  })
})
