/**
 * Fixtures for the mvcc apply-path tests on real LMDB files: proposals as the gateway encodes
 * them, an Applier opened on a file with an in-memory raft log for gap repair, and a temporary
 * file that is removed afterwards.
 */
import { packValue } from "../../shared/frame.ts"
import type { Index, Term } from "../../shared/ids.ts"
import type { WriteRequest } from "../../shared/kv.ts"
import type { Entry } from "../../shared/raft-types.ts"
import { Applier } from "../../services/mvcc/apply.ts"
import type { ApplierOptions, ResultBody } from "../../services/mvcc/apply.ts"
import { LmdbBackend } from "../../services/mvcc/backend-lmdb.ts"
import { KvStore } from "../../services/mvcc/core/store.ts"
import { tempDir } from "../e2e/harness.ts"

export const enc = (s: string) => new TextEncoder().encode(s)

/** A Normal entry at `index` (term 2) carrying a proposal of `request` from member `origin`. */
export const proposal = (index: number, requestId: bigint, request: WriteRequest, origin = "m1"): Entry => ({
  term: 2 as Term,
  index: index as Index,
  type: "Normal",
  data: packValue({ requestId, origin, replyTo: `to.${origin}`, deadlineMs: 1_000_000 + index, traceparent: "", request })
})

/** A put request. */
export const put = (k: string, v: string): WriteRequest => ({ put: { key: enc(k), value: enc(v) } })

/**
 * Opens backend, store and Applier (member m1) on LMDB file `file`; `log` serves gap repair;
 * `options` sets batching (the Applier's defaults otherwise). `sent` collects published results.
 */
export const openApplier = (file: string, log: ReadonlyArray<Entry> = [], options?: Partial<ApplierOptions>) => {
  const backend = LmdbBackend.open(file)
  const store = KvStore.restore(backend.read)
  const sent: Array<{ subject: string; body: ResultBody }> = []
  const applier = new Applier(backend, store, "m1", {
    publish: (subject, bodies) => sent.push(...bodies.map((body) => ({ subject, body }))),
    fetchEntries: async (from) => ({ entries: log.filter((e) => e.index >= from), commitIndex: log.length }),
    log: () => undefined
  }, options)
  return { backend, store, applier, sent }
}

/** Runs `f` with a fresh LMDB file path, removing its directory afterwards. */
export const withLmdbFile = async (f: (file: string) => Promise<void>): Promise<void> => {
  const t = tempDir("apply")
  try {
    await f(`${t.dir}/kv.mdb`)
  } finally {
    t.remove()
  }
}
