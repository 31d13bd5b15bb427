/**
 * The gateway's relay of watch responses (services/gateway/watch-sender.ts watchSender) through the
 * real grpc-js server and client over HTTP/2: responses framed by the watch replica
 * (shared/watch-relay.ts) reach a grpc-js client as etcd WatchResponses, in order with the
 * gateway's own responses, and are written as they are (while grpc-js still keeps
 * the call's HTTP/2 stream where the relay finds it, `framed` is defined; if an upgrade moves
 * it, this fails).
 */
import * as grpc from "@grpc/grpc-js"
import { afterAll, describe, expect, it } from "vitest"
import { bidiStream } from "../../services/gateway/call-handlers.ts"
import { startGrpcServer } from "../../services/gateway/server.ts"
import { loadEtcdServices } from "../../services/gateway/service-definitions.ts"
import { watchSender } from "../../services/gateway/watch-sender.ts"
import type { Wire } from "../../services/gateway/convert.ts"
import { makeStreamEncoder } from "../../services/watch/encode.ts"
import { packRelay } from "../../shared/watch-relay.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const format = { clusterId: 7n, memberId: 9n, maxRequestBytes: 1 << 20 }

describe("gateway watch relay", () => {
  let server: grpc.Server | undefined
  afterAll(() => server?.forceShutdown())

  it("relays framed responses as they are, in order with the gateway's own", async () => {
    const relays: boolean[] = []
    const encoder = makeStreamEncoder(format)
    const kv = (key: string, rev: number) => ({ key: enc(key), value: enc("v"), createRevision: rev, modRevision: rev, version: 1, lease: 0n })
    const replicaResponses = [
      ...encoder.encode({ watchId: 0, revision: 4, created: true, events: [] }, 2, false),
      ...encoder.encode({ watchId: 0, revision: 6, events: [{ type: "PUT", kv: kv("a", 5) }, { type: "DELETE", kv: kv("b", 6) }] }, 2, false)
    ]
    let acked = 0
    server = await startGrpcServer(undefined, {
      Watch: {
        Watch: bidiStream((call) => {
          const sender = watchSender(call)!
          relays.push(sender.framed !== undefined)
          call.on("data", () => {
            sender.framed!(packRelay(replicaResponses).responses, () => acked++)
            sender.message({ header: { revision: 6 }, watch_id: 0, canceled: true, cancel_reason: "bye" } as Wire, () => acked++)
            sender.framed!(packRelay(encoder.encode({ watchId: -1, revision: 8, events: [] }, 2, false)).responses, () => acked++)
          })
        })
      }
    }, { maxRequestBytes: 1 << 20, maxConcurrentStreams: 100 })
    const bound = await new Promise<number>((resolve, reject) =>
      server!.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p)))
    )
    const Watch = (loadEtcdServices() as unknown as Record<string, grpc.ServiceClientConstructor>).Watch!
    const client = new Watch(`127.0.0.1:${bound}`, grpc.credentials.createInsecure())
    const stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<Wire, Wire> }).Watch()
    const got: Wire[] = []
    await new Promise<void>((resolve, reject) => {
      stream.on("data", (r: Wire) => {
        got.push(r)
        if (got.length === 4) resolve()
      })
      stream.on("error", reject)
      stream.write({ create_request: { key: enc("a") } })
    })
    stream.cancel()
    client.close()
    expect(relays).toEqual([true])
    expect(got.map((r) => [r.watch_id, r.created, r.canceled, r.cancel_reason, r.header.revision, r.header.member_id, r.events.map((e: Wire) => [e.type, Buffer.from(e.kv.key).toString()])])).toEqual([
      ["0", true, false, "", "4", "9", []],
      ["0", false, false, "", "6", "9", [["PUT", "a"], ["DELETE", "b"]]],
      ["0", false, true, "bye", "6", "0", []],
      ["-1", false, false, "", "8", "9", []]
    ])
    expect(acked).toBe(3)
  })
})
