/**
 * CPU per applied put on the mvcc service's apply path, in one process, with no NATS and no
 * other process competing: what `make bench` cannot separate from the noise of 17 processes on
 * two cores.
 *
 *   node bench/apply-path.ts [--entries=N] [--batch=B] [--key-space=K] [--value-size=V]
 *
 * The path measured is the production one (services/mvcc/main.ts wires the same pieces): an
 * {@link Applier} on a real LMDB file with etcd's batched commits (100 ms / 10000 writes), the
 * lease table, and the {@link EventStream} of watch events. Each frame of B committed entries
 * (default 16, about what one raft Ready carries at 64 clients) holds put proposals packed as the
 * gateway packs them (services/runtime/proposer.ts: request id, origin, reply subject, deadline,
 * an unsampled traceparent, and the Put of a random 8-byte key of K, default 100000, with a
 * V-byte value, default 256). The results frames and the events frames are encoded with the
 * frame codec, as they would be for NATS, and dropped.
 *
 * Reported: CPU µs per entry (process.cpuUsage, user + system, GC included) after a warm-up of
 * N / 5 entries, over N entries (default 100000), and the LMDB commits made.
 */
import { Command, Option } from "commander"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { encodeFrame, packValue } from "../shared/frame.ts"
import { Index, Term } from "../shared/ids.ts"
import type { Entry } from "../shared/raft-types.ts"
import { FrameKinds } from "../shared/schema.ts"
import { Applier } from "../services/mvcc/apply.ts"
import { LmdbBackend } from "../services/mvcc/backend-lmdb.ts"
import { unsafeReadConsistentIndex } from "../services/mvcc/core/backend.ts"
import { KvStore } from "../services/mvcc/core/store.ts"
import { EventStream } from "../services/mvcc/events.ts"
import { LeaseTable } from "../services/lease/core/lease-table.ts"

const opts = new Command("apply-path")
  .addOption(new Option("--entries <n>", "entries measured").default("100000"))
  .addOption(new Option("--batch <n>", "entries per apply frame").default("16"))
  .addOption(new Option("--key-space <n>", "distinct keys").default("100000"))
  .addOption(new Option("--value-size <bytes>", "value size").default("256"))
  .parse(process.argv)
  .opts<{ entries: string; batch: string; keySpace: string; valueSize: string }>()

const total = Number(opts.entries)
const batch = Number(opts.batch)
const keySpace = Number(opts.keySpace)
const value = randomBytes(Number(opts.valueSize))
const dir = mkdtempSync(join(tmpdir(), "natcd-apply-path-"))

const backend = LmdbBackend.open(join(dir, "kv.mdb"))
const leases = LeaseTable.restore(backend.read, unsafeReadConsistentIndex(backend.read))
const store = KvStore.restore(backend.read, { leaseExists: (id) => leases.has(id) })
let bytesOut = 0
const events = new EventStream(store, (frame) => {
  bytesOut += encodeFrame({ kind: "mvcc.events", version: FrameKinds["mvcc.events"], traceparent: "", id: 0, body: frame }).length
}, { member: "m1", heartbeatMs: 1000, frameBytes: 1024 * 1024 })
const applier = new Applier(backend, store, "m1", {
  publish: (_subject, bodies, traceparent) => {
    bytesOut += encodeFrame({ kind: "apply.result", version: FrameKinds["apply.result"], traceparent, id: 0, body: { results: bodies } }).length
  },
  onEvents: (revision, evs) => events.applied(revision, evs),
  onBatchApplied: (term) => events.flush(term, Date.now()),
  fetchEntries: async () => ({ entries: [], commitIndex: 0 }),
  log: () => undefined
}, {}, leases)

const hex = (n: number) => randomBytes(n).toString("hex")
let index = 0
let requestId = 0n
const nextEntry = (): Entry => {
  const key = Buffer.alloc(8)
  key.writeUInt32BE(Math.floor(Math.random() * keySpace), 4)
  const data = packValue({
    requestId: 0x1234_5678_0000_0000n | requestId++,
    origin: "m1",
    replyTo: "natcd.natcd.gateway.result.m1.abcdef",
    deadlineMs: Date.now() + 7000,
    traceparent: `00-${hex(16)}-${hex(8)}-00`,
    request: { put: { key, value } }
  })
  return { index: Index(++index), term: Term(2), type: "Normal", data }
}

const run = async (entries: number): Promise<number> => {
  const frames: Entry[][] = []
  for (let i = 0; i < entries; i += batch) frames.push(Array.from({ length: Math.min(batch, entries - i) }, nextEntry))
  const before = process.cpuUsage()
  for (const entriesOfFrame of frames) {
    await applier.applyBatch({ entries: entriesOfFrame, commitIndex: entriesOfFrame[entriesOfFrame.length - 1]!.index, term: 2 })
  }
  const used = process.cpuUsage(before)
  return (used.user + used.system) / entries
}

await run(Math.max(batch, Math.floor(total / 5)))
const commitsBefore = backend.commits
const startedMs = performance.now()
const us = await run(total)
const wallMs = performance.now() - startedMs
console.log(JSON.stringify({
  entries: total,
  batch,
  cpuUsPerEntry: Math.round(us * 100) / 100,
  wallUsPerEntry: Math.round((wallMs * 1000 / total) * 100) / 100,
  commits: backend.commits - commitsBefore,
  bytesOutPerEntry: Math.round(bytesOut / (total + Math.floor(total / 5)))
}))
applier.close()
await backend.close()
rmSync(dir, { recursive: true, force: true })
