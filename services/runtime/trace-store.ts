/**
 * The embedded trace store: where finished spans go when no collector is configured (and also
 * when one is), and what `natcd trace` reads.
 *
 * Each process appends its spans as JSON lines (./tracing.ts SpanRecord) to its own file,
 * `<data-dir>/traces/<service>-<member>.jsonl`, so writers never share a file. Lines are
 * buffered and written every {@link flushMs} ms with one append; the buffer is bounded
 * ({@link maxBufferedSpans}; beyond it spans are dropped and counted). When the file reaches
 * `maxFileBytes` it is renamed to `<service>-<member>.1.jsonl` (replacing the previous one),
 * so a process's store never exceeds twice that size: the store keeps the most recent spans.
 *
 * Reading ({@link readSpans}) merges every file of the directory; a torn last line (a process
 * killed mid-append) is skipped.
 */
import { appendFile, readdir, readFile, rename, stat } from "node:fs/promises"
import { appendFileSync, mkdirSync, renameSync, statSync } from "node:fs"
import { join } from "node:path"
import { privateDirMode, privateFileMode } from "./private-files.ts"
import type { SpanRecord } from "./tracing.ts"

/** How often buffered spans are appended to the file, in ms. */
export const flushMs = 250

/** Spans buffered between flushes at most; more are dropped (counted in `dropped`). */
export const maxBufferedSpans = 20_000

/** Default size at which a store file is rotated: 8 MiB (so at most 16 MiB per process). */
export const defaultMaxFileBytes = 8 * 1024 * 1024

/**
 * One process's trace file writer. `add` is the span sink; `flushSync` writes what is buffered
 * at once (at exit).
 */
export class TraceFileStore {
  readonly path: string
  private readonly rotated: string
  private readonly maxFileBytes: number
  private lines: string[] = []
  private sizeBytes: number
  private writing: Promise<void> = Promise.resolve()
  private readonly timer: ReturnType<typeof setInterval>
  readonly counters = { spans: 0, dropped: 0, rotations: 0, writeErrors: 0 }

  /** Opens (creating the directory) `<dir>/<name>.jsonl`. */
  constructor(dir: string, name: string, maxFileBytes = defaultMaxFileBytes) {
    mkdirSync(dir, { recursive: true, mode: privateDirMode })
    this.path = join(dir, `${name}.jsonl`)
    this.rotated = join(dir, `${name}.1.jsonl`)
    this.maxFileBytes = maxFileBytes
    try {
      this.sizeBytes = statSync(this.path).size
    } catch {
      this.sizeBytes = 0
    }
    this.timer = setInterval(() => this.flush(), flushMs)
    this.timer.unref()
  }

  /** The span sink: buffers one span. */
  add = (span: SpanRecord): void => {
    if (this.lines.length >= maxBufferedSpans) {
      this.counters.dropped++
      return
    }
    this.lines.push(JSON.stringify(span))
    this.counters.spans++
  }

  /** Appends the buffered spans (asynchronously; appends never overlap). */
  flush(): void {
    if (this.lines.length === 0) return
    const text = this.lines.join("\n") + "\n"
    this.lines = []
    this.writing = this.writing.then(async () => {
      try {
        if (this.sizeBytes > 0 && this.sizeBytes + text.length > this.maxFileBytes) {
          await rename(this.path, this.rotated).catch(() => undefined)
          this.sizeBytes = 0
          this.counters.rotations++
        }
        await appendFile(this.path, text, { mode: privateFileMode })
        this.sizeBytes += Buffer.byteLength(text)
      } catch {
        this.counters.writeErrors++
      }
    })
  }

  /** Writes what is buffered now, synchronously (process exit), and stops the timer. */
  flushSync(): void {
    clearInterval(this.timer)
    if (this.lines.length === 0) return
    const text = this.lines.join("\n") + "\n"
    this.lines = []
    try {
      if (this.sizeBytes > 0 && this.sizeBytes + text.length > this.maxFileBytes) {
        renameSync(this.path, this.rotated)
        this.sizeBytes = 0
      }
      appendFileSync(this.path, text, { mode: privateFileMode })
      this.sizeBytes += Buffer.byteLength(text)
    } catch {
      this.counters.writeErrors++
    }
  }

  /** Resolves once every flush started so far is written. */
  async drain(): Promise<void> {
    this.flush()
    await this.writing
  }
}

/**
 * Every span in the store directory `dir` (all processes' files, rotated ones included), in no
 * particular order. Unparsable lines are skipped. A missing directory yields [].
 */
export const readSpans = async (dir: string): Promise<SpanRecord[]> => {
  let names: string[]
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".jsonl"))
  } catch {
    return []
  }
  const out: SpanRecord[] = []
  for (const name of names) {
    let text: string
    try {
      if ((await stat(join(dir, name))).size === 0) continue
      text = await readFile(join(dir, name), "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n")) {
      if (line.length === 0) continue
      try {
        out.push(JSON.parse(line) as SpanRecord)
      } catch {
        // A torn line from a process killed mid-append.
      }
    }
  }
  return out
}
