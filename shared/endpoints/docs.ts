/**
 * The README's subjects table, generated from the endpoint declarations (`bin/natcd subjects`;
 * a unit test checks that the README holds the current table).
 */
import { endpoints } from "./all.ts"
import type { Party } from "./declare.ts"

const partyText = (p: Party, side: "server" | "caller"): string => {
  if (side === "caller") {
    if (p.self.includes("from")) return `${p.role} (as {from})`
    if (p.self.includes("replica")) return `${p.role} (as {replica})`
    return p.self.includes("member") ? `${p.role} (own member)` : `${p.role} (any)`
  }
  return p.self.includes("replica") ? `${p.role} ({replica})` : p.self.length === 0 ? `${p.role} (all)` : p.role
}

/**
 * The README's subjects table (markdown), generated from {@link endpoints}: name, subject,
 * request and reply kinds, who serves, who may call or publish, what it carries.
 */
export const subjectsTable = (): string =>
  [
    "| endpoint | subject | request → reply | served by | callers | carries |",
    "|---|---|---|---|---|---|",
    ...endpoints.map((e) =>
      `| ${e.name} | \`${e.subject}\` | ${e.kind} → ${e.reply === undefined ? "(publish)" : e.reply.kind} | ${
        [...new Set(e.servers.map((p) => partyText(p, "server")))].join(", ")
      } | ${e.callers.map((p) => partyText(p, "caller")).join(", ")} | ${e.doc}${e.queue === undefined ? "" : ` (queue group \`${e.queue}\`)`} |`
    )
  ].join("\n")
