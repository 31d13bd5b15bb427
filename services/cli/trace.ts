/**
 * `natcd trace`: reads the embedded trace store (services/runtime/trace-store.ts, every
 * process's spans under `<data-dir>/traces/`) and prints
 *
 * - one request's path as a waterfall (`natcd trace <trace-id>`): every span of the trace in
 *   causal order (children under their parent, siblings by start time), with its offset from
 *   the start of the request, its duration, a bar, the step and the process (service/member,
 *   pid) that ran it;
 * - the slowest recent requests (`natcd trace --slowest N [--since 10m]`);
 * - the requests on a key (`natcd trace --key foo [--since 1m]`), which is how an etcdctl user
 *   finds the trace of a command they ran: etcdctl does not show response metadata, but the
 *   gateway records the key and revision on every request's root span;
 * - without arguments, the most recent requests.
 *
 * A request is a root span: the gateway's span of one gRPC call (`KV.Put`, `KV.Range`, ...).
 * Pure formatting lives in functions exported for tests.
 */
import type { SpanRecord } from "../runtime/tracing.ts"

/** Parses `1m`, `30s`, `2h`, `500ms` or a number of ms; undefined when unparsable. */
export const parseSince = (text: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim())
  if (m === null) return undefined
  const n = Number(m[1])
  const unit = m[2] ?? "ms"
  return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const)[unit as "ms"]
}

const ms = (us: number): string => (us / 1000).toFixed(3)

const where = (s: SpanRecord): string => `${s.svc}/${s.m}`

const attrs = (s: SpanRecord, skip: ReadonlyArray<string> = []): string =>
  Object.entries(s.a)
    .filter(([k]) => !skip.includes(k) && !k.startsWith("rpc."))
    .map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v).slice(1, -1) : v}`)
    .join(" ")

/** The root spans (requests) among `spans`, newest first. */
export const requests = (spans: ReadonlyArray<SpanRecord>): SpanRecord[] =>
  spans.filter((s) => s.p === "").sort((a, b) => b.st - a.st)

/**
 * Orders the spans of one trace for a waterfall: depth-first from the roots, children by
 * start time. Spans whose parent is not in the store (a process that lost them, or a hop whose
 * parent was never recorded) are placed after their trace's root, at depth 1.
 */
export const causalOrder = (spans: ReadonlyArray<SpanRecord>): Array<{ span: SpanRecord; depth: number }> => {
  const ids = new Set(spans.map((s) => s.s))
  const children = new Map<string, SpanRecord[]>()
  const roots: SpanRecord[] = []
  const orphans: SpanRecord[] = []
  for (const s of spans) {
    if (s.p === "") roots.push(s)
    else if (ids.has(s.p)) {
      const list = children.get(s.p) ?? []
      list.push(s)
      children.set(s.p, list)
    } else orphans.push(s)
  }
  const byStart = (a: SpanRecord, b: SpanRecord) => a.st - b.st || a.d - b.d
  const out: Array<{ span: SpanRecord; depth: number }> = []
  const visit = (s: SpanRecord, depth: number) => {
    out.push({ span: s, depth })
    for (const c of (children.get(s.s) ?? []).sort(byStart)) visit(c, depth + 1)
  }
  for (const r of roots.sort(byStart)) visit(r, 0)
  for (const o of orphans.sort(byStart)) visit(o, roots.length > 0 ? 1 : 0)
  return out
}

/** The waterfall of one trace as printable lines (an error line when the store has none of it). */
export const formatWaterfall = (traceId: string, spans: ReadonlyArray<SpanRecord>, width = 40): string[] => {
  const mine = spans.filter((s) => s.t === traceId)
  if (mine.length === 0) return [`no spans of trace ${traceId} in the store`]
  const ordered = causalOrder(mine)
  const start = Math.min(...mine.map((s) => s.st))
  const end = Math.max(...mine.map((s) => s.st + s.d))
  const total = Math.max(1, end - start)
  const root = mine.find((s) => s.p === "")
  const processes = new Set(mine.map((s) => `${where(s)}:${s.pid}`))
  const lines = [
    `trace ${traceId}` + (root === undefined ? "" : `  ${root.n} ${attrs(root)}`),
    `  started ${new Date(start / 1000).toISOString()}, ${ms(end - start)} ms end to end, ${mine.length} spans in ${processes.size} processes` +
      (root === undefined ? "" : root.smp ? " (sampled)" : " (kept: slow)"),
    "",
    `  ${"offset ms".padStart(10)} ${"dur ms".padStart(9)}  ${"".padEnd(width)}  ${"step".padEnd(34)} process`
  ]
  for (const { span, depth } of ordered) {
    const from = Math.floor(((span.st - start) / total) * width)
    const len = Math.max(1, Math.round((span.d / total) * width))
    const bar = " ".repeat(Math.min(from, width - 1)) + "█".repeat(Math.min(len, width - Math.min(from, width - 1)))
    const step = ("  ".repeat(depth) + span.n).padEnd(34)
    const extra = attrs(span, ["key"])
    lines.push(
      `  ${ms(span.st - start).padStart(10)} ${ms(span.d).padStart(9)}  ${bar.padEnd(width)}  ${step} ${where(span)} pid ${span.pid}` +
        (extra === "" ? "" : `  ${extra}`) + (span.err === undefined ? "" : `  ERROR ${span.err}`)
    )
  }
  return lines
}

/** One line per request: start time, duration, method, key, revision, trace id. */
export const formatRequests = (roots: ReadonlyArray<SpanRecord>): string[] => {
  if (roots.length === 0) return ["no requests in the store for that selection"]
  const lines = [`${"started".padEnd(24)} ${"ms".padStart(9)}  ${"request".padEnd(22)} ${"member".padEnd(7)} ${"trace id".padEnd(32)}  details`]
  for (const r of roots) {
    lines.push(
      `${new Date(r.st / 1000).toISOString().padEnd(24)} ${ms(r.d).padStart(9)}  ${r.n.padEnd(22)} ${r.m.padEnd(7)} ${r.t}  ${attrs(r)}` +
        (r.err === undefined ? "" : ` ERROR ${r.err}`)
    )
  }
  return lines
}

/** Selection options of the request listings. */
export interface RequestQuery {
  /** Only requests that started at most this many ms ago. */
  readonly sinceMs?: number
  /** Only requests on this key (the root span's `key` attribute). */
  readonly key?: string
  /** Sort by duration, longest first, instead of newest first. */
  readonly slowest?: boolean
  readonly limit: number
  readonly nowMs: number
}

/** Selects requests from `spans` as `query` says. */
export const selectRequests = (spans: ReadonlyArray<SpanRecord>, query: RequestQuery): SpanRecord[] => {
  let roots = requests(spans)
  if (query.sinceMs !== undefined) roots = roots.filter((r) => r.st / 1000 >= query.nowMs - query.sinceMs!)
  if (query.key !== undefined) roots = roots.filter((r) => r.a.key === query.key)
  if (query.slowest === true) roots = roots.sort((a, b) => b.d - a.d)
  return roots.slice(0, query.limit)
}
