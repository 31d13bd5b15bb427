/**
 * A failed apply stops the mvcc process, as etcd panics, and loses nothing: with the test hook
 * `NATCD_TEST_FAIL_APPLY_AT_INDEX`, the apply of one entry fails part-way once (its writes
 * begun, the key index touched). The mvcc service logs it and exits without committing; the
 * supervisor restarts it, it reopens at the consistent index on disk and re-applies the
 * committed entries from raft, publishing the results the proposers still wait for. Every one
 * of 50 puts is acknowledged, and the store equals etcd 3.4's after the same puts: the same
 * keys, values, create and mod revisions, versions and revision.
 */
import { describe, expect, it } from "vitest"
import { etcdctl, natcdBesideEtcd } from "./harness.ts"

/** The store as etcdctl prints it in JSON, keys and values decoded, with the header revision. */
const dump = async (endpoint: string) => {
  const r = await etcdctl(endpoint, ["get", "--prefix", "k", "-w", "json"])
  expect(r.code, r.stderr).toBe(0)
  const j = JSON.parse(r.stdout) as { header: { revision: number }; kvs?: Array<Record<string, unknown>> }
  const text = (b64: unknown) => Buffer.from(String(b64), "base64").toString()
  return {
    revision: j.header.revision,
    kvs: (j.kvs ?? []).map((kv) => ({ key: text(kv.key), value: text(kv.value), create: kv.create_revision, mod: kv.mod_revision, version: kv.version }))
  }
}

describe("a failed apply", () => {
  const pair = natcdBesideEtcd("apply-failure", { portOffset: 2050, clientPort: 28840, peerPort: 28841 }, { NATCD_TEST_FAIL_APPLY_AT_INDEX: "30" })

  it("stops the mvcc process, which restarts from the consistent index: every put acknowledged, the store as etcd's", async () => {
    // The same 50 puts on both at once: 0..24, then 25..49 overwrite 0..24 (versions and create revisions matter).
    await Promise.all([pair.etcd.endpoint, pair.natcd.endpoints[0]!].map(async (endpoint) => {
      for (let i = 0; i < 50; i++) {
        const r = await etcdctl(endpoint, ["put", `k${String(i % 25).padStart(2, "0")}`, `v${i}`, "--command-timeout=30s"])
        expect(r.code, `${endpoint} put ${i}: ${r.stderr}`).toBe(0)
      }
    }))
    expect(pair.natcd.output()).toContain("apply failed; exiting to restart from the consistent index")
    const etcd = await dump(pair.etcd.endpoint)
    expect(etcd.kvs).toHaveLength(25)
    expect(await dump(pair.natcd.endpoints[0]!)).toEqual(etcd)
  }, 180_000)
})
