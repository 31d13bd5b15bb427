/**
 * Bad input on the wire: garbage, msgpack that is not a frame, frames of the wrong kind or
 * version and frames with malformed bodies, published on every service subject of a running
 * member. Each request that named a reply subject gets a MalformedFrame error frame, no service
 * process exits, and the member keeps serving etcdctl with its data intact.
 */
import { connect } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { decodeFrame, encodeFrame, isFrameDecodeError, packValue } from "../../shared/frame.ts"
import { subject } from "../../shared/subjects.ts"
import type { Natcd } from "./harness.ts"
import { etcdctl, natcdPorts, sleep, startNatcd, tempDir } from "./harness.ts"

const portOffset = 300

describe("malformed frames on every service subject", () => {
  let natcd: Natcd
  const data = tempDir("bad-input")

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    data.remove()
  })

  it("answers with MalformedFrame, keeps every process up, and keeps serving", async () => {
    expect((await etcdctl(natcd.endpoints[0]!, ["put", "before", "1"])).code).toBe(0)
    const nc = await connect({ servers: `127.0.0.1:${natcdPorts(portOffset).nats}` })
    const at = { cluster: "natcd", member: "m1" }
    const subjects = [
      subject({ ...at, service: "raft", endpoint: "propose" }),
      subject({ ...at, service: "raft", endpoint: "readindex" }),
      subject({ ...at, service: "raft", endpoint: "status" }),
      subject({ ...at, service: "raft", endpoint: "entries" }),
      subject({ ...at, service: "wal", endpoint: "append" }),
      subject({ ...at, service: "wal", endpoint: "load" }),
      subject({ ...at, service: "mvcc", endpoint: "apply" }),
      subject({ ...at, service: "mvcc", endpoint: "range" }),
      subject({ ...at, service: "mvcc", endpoint: "status" })
    ]
    const payloads: ReadonlyArray<Uint8Array> = [
      new Uint8Array([0xc1, 0xc1, 0xc1]),
      new TextEncoder().encode("not msgpack at all"),
      packValue({ hello: "world" }),
      encodeFrame({ kind: "no-such-kind", version: 1, traceparent: "", id: 1, body: {} }),
      encodeFrame({ kind: "wal.append", version: 99, traceparent: "", id: 1, body: {} }),
      // Right kinds with bodies of the wrong shape:
      encodeFrame({ kind: "propose", version: 2, traceparent: "", id: 1, body: { proposals: ["not bytes"] } }),
      encodeFrame({ kind: "wal.append", version: 1, traceparent: "", id: 1, body: { writer: "x", seq: 1, entries: [{ index: "1" }] } }),
      encodeFrame({ kind: "range", version: 2, traceparent: "", id: 1, body: { requests: [{ request: { key: 5 }, minAppliedIndex: 0 }] } }),
      encodeFrame({ kind: "apply", version: 1, traceparent: "", id: 1, body: { entries: [{ term: 1, index: 99, type: "Normal", data: 1 }], commitIndex: 99, term: 1 } })
    ]
    const inbox = "_INBOX.bad-input-test"
    const errors: string[] = []
    nc.subscribe(inbox, {
      callback: (_err, msg) => {
        const f = decodeFrame(msg.data)
        if (!isFrameDecodeError(f) && f.kind === "error") errors.push((f.body as { err: { _tag: string } }).err._tag)
      }
    })
    // Every payload is malformed for every subject: wrong bytes, wrong kind or version, or the
    // subject's own kind with a body its schema rejects.
    for (const s of subjects) for (const p of payloads) nc.publish(s, p, { reply: inbox })
    await nc.flush()
    await sleep(1000)
    await nc.close()
    expect(errors.length).toBe(subjects.length * payloads.length)
    expect(new Set(errors)).toEqual(new Set(["MalformedFrame"]))

    // No service exited (the supervisor logs every restart), and the member still serves.
    expect(natcd.output()).not.toContain("process exited")
    expect((await etcdctl(natcd.endpoints[0]!, ["put", "after", "2"])).code).toBe(0)
    const r = await etcdctl(natcd.endpoints[0]!, ["get", "", "--from-key", "--print-value-only"])
    expect(r.stdout.trim().split("\n")).toEqual(["2", "1"])
  }, 60_000)
})
