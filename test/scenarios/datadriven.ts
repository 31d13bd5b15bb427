/**
 * A small reader and runner for datadriven test files, the format of cockroachdb/datadriven
 * that etcd raft's testdata uses:
 *
 *     # comment lines and blank lines between directives are kept as they are
 *     command arg key=value key=(v1,v2)
 *     optional input lines
 *     ----
 *     expected output
 *     (a blank line ends the block)
 *
 * When the expected output itself contains blank lines, it is fenced by a doubled separator:
 *
 *     command
 *     ----
 *     ----
 *     output with
 *
 *     a blank line
 *     ----
 *     ----
 *
 * {@link runDatadrivenFile} feeds each directive to a handler and compares its output with the
 * expected block. With REWRITE=1 in the environment it writes the actual outputs back into the
 * file instead of failing; read the diff before committing it.
 */
import { readFileSync, writeFileSync } from "node:fs"

/** One argument of a command line: `key`, `key=value` or `key=(v1,v2)`. */
export interface CmdArg {
  readonly key: string
  readonly vals: ReadonlyArray<string>
}

/** One directive of a file. */
export interface TestData {
  /** "file:line" of the command line, for failure messages. */
  readonly pos: string
  readonly cmd: string
  readonly cmdArgs: ReadonlyArray<CmdArg>
  /** Lines between the command and the separator, joined with "\n". */
  readonly input: string
  /** The expected output block, without its trailing newline. */
  readonly expected: string
}

/** A parsed file: literal text pieces interleaved with the directives' expected blocks. */
interface ParsedFile {
  /** pieces[i] precedes the expected block of directives[i]; the last piece ends the file. */
  readonly pieces: ReadonlyArray<string>
  readonly directives: ReadonlyArray<TestData>
}

const SEPARATOR = "----"

const parseArgs = (tokens: ReadonlyArray<string>): CmdArg[] =>
  tokens.map((tok) => {
    const eq = tok.indexOf("=")
    if (eq < 0) return { key: tok, vals: [] }
    const key = tok.slice(0, eq)
    const raw = tok.slice(eq + 1)
    const inner = raw.startsWith("(") && raw.endsWith(")") ? raw.slice(1, -1) : undefined
    const vals = inner === undefined ? [raw] : inner.length === 0 ? [] : inner.split(",").map((v) => v.trim())
    return { key, vals }
  })

/** Splits a file into directives; throws with the position on a malformed file. */
const parseFile = (text: string, fileName: string): ParsedFile => {
  const lines = text.split("\n")
  if (lines[lines.length - 1] === "") lines.pop()
  const pieces: string[] = []
  const directives: TestData[] = []
  let piece: string[] = []
  let i = 0
  while (i < lines.length) {
    const line = lines[i]!
    if (line.trim() === "" || line.startsWith("#")) {
      piece.push(line)
      i++
      continue
    }
    const pos = `${fileName}:${i + 1}`
    const [cmd, ...rest] = line.trim().split(/\s+/)
    piece.push(line)
    i++
    const input: string[] = []
    while (i < lines.length && lines[i] !== SEPARATOR) {
      input.push(lines[i]!)
      piece.push(lines[i]!)
      i++
    }
    if (i >= lines.length) throw new Error(`${pos}: missing ${SEPARATOR} after command`)
    piece.push(SEPARATOR)
    i++
    const expected: string[] = []
    if (lines[i] === SEPARATOR) {
      i++
      while (i < lines.length && !(lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR)) expected.push(lines[i++]!)
      if (i >= lines.length) throw new Error(`${pos}: missing closing ${SEPARATOR}/${SEPARATOR}`)
      i += 2
    } else {
      while (i < lines.length && lines[i]!.trim() !== "") expected.push(lines[i++]!)
    }
    pieces.push(piece.join("\n") + "\n")
    piece = []
    directives.push({ pos, cmd: cmd!, cmdArgs: parseArgs(rest), input: input.join("\n"), expected: expected.join("\n") })
  }
  pieces.push(piece.length > 0 ? piece.join("\n") + "\n" : "")
  return { pieces, directives }
}

/** Renders an output block, fencing it when it contains a blank line. */
const renderBlock = (output: string): string =>
  output.split("\n").some((l) => l.trim() === "") ? `${SEPARATOR}\n${output}\n${SEPARATOR}\n${SEPARATOR}\n` : `${output}\n`

/** The first argument named `key`, if any. */
export const findArg = (d: TestData, key: string): CmdArg | undefined => d.cmdArgs.find((a) => a.key === key)

/** True when REWRITE=1: expected blocks are regenerated instead of checked. */
export const rewriting = (): boolean => process.env["REWRITE"] === "1"

/** A mismatch between expected and actual output of one directive. */
export interface Mismatch {
  readonly pos: string
  readonly expected: string
  readonly actual: string
}

/**
 * Runs every directive of `path` through `handler`, in order. The handler returns the output
 * text (expected errors belong in it; an empty output is shown as "ok"). Returns the
 * mismatches; with REWRITE=1 rewrites the file and returns none.
 */
export const runDatadrivenFile = (path: string, handler: (d: TestData) => string): Mismatch[] => {
  const parsed = parseFile(readFileSync(path, "utf8"), path.split("/").pop() ?? path)
  const mismatches: Mismatch[] = []
  const outputs: string[] = []
  for (const d of parsed.directives) {
    const raw = handler(d).replace(/\s+$/, "")
    const actual = raw.length === 0 ? "ok" : raw
    outputs.push(actual)
    if (actual !== d.expected) mismatches.push({ pos: d.pos, expected: d.expected, actual })
  }
  if (rewriting()) {
    let out = ""
    parsed.directives.forEach((_, k) => {
      out += parsed.pieces[k]! + renderBlock(outputs[k]!)
    })
    out += parsed.pieces[parsed.directives.length]!
    writeFileSync(path, out)
    return []
  }
  return mismatches
}
