/**
 * Runs every datadriven scenario in this folder (`*.txt`) through the raft interaction
 * environment. Each file opens with a comment on what it checks. Regenerate expected output
 * with `REWRITE=1 npx vitest run test/scenarios/raft` and review the diff.
 */
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { runDatadrivenFile } from "../datadriven.ts"
import { InteractionEnv } from "./interaction-env.ts"

const dir = dirname(fileURLToPath(import.meta.url))
const files = readdirSync(dir).filter((f) => f.endsWith(".txt")).sort()

describe("raft scenarios", () => {
  it("has scenario files", () => {
    expect(files.length).toBeGreaterThan(0)
  })
  for (const file of files) {
    it(file, () => {
      const env = new InteractionEnv()
      const mismatches = runDatadrivenFile(join(dir, file), (d) => env.handle(d))
      for (const m of mismatches) {
        expect(m.actual, `output differs at ${m.pos}`).toBe(m.expected)
      }
    })
  }
})
