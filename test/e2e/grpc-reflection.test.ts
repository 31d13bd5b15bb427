/**
 * The client port's standard gRPC services beside etcd's: grpc.health.v1.Health (Check and
 * Watch answer SERVING) and server reflection, which lists every service and returns the file
 * descriptors a tool like grpcurl needs to call them without .proto files. Driven with a grpc-js
 * client over the reflection and health .proto files the libraries ship.
 */
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { protoPath as healthProtoPath } from "grpc-health-check"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNatcd, tempDir } from "./harness.ts"
import type { Natcd } from "./harness.ts"

const reflectionProto = join(dirname(createRequire(import.meta.url).resolve("@grpc/reflection")), "..", "proto", "grpc", "reflection", "v1", "reflection.proto")
const load = (file: string) => grpc.loadPackageDefinition(protoLoader.loadSync(file, { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true })) as any

/** One ServerReflectionInfo exchange: sends `request`, resolves with the first answer. */
const reflect = (endpoint: string, request: Record<string, unknown>) =>
  new Promise<any>((resolve, reject) => {
    const client = new (load(reflectionProto).grpc.reflection.v1.ServerReflection)(endpoint, grpc.credentials.createInsecure())
    const call = client.ServerReflectionInfo()
    call.on("data", (r: unknown) => {
      call.end()
      client.close()
      resolve(r)
    })
    call.on("error", reject)
    call.write(request)
  })

describe("gRPC health and server reflection on the client port", () => {
  const data = tempDir("grpc-reflection")
  let natcd: Natcd

  beforeAll(async () => {
    natcd = await startNatcd({ dataDir: data.dir, portOffset: 2120 })
  }, 90_000)

  afterAll(async () => {
    await natcd?.stop()
    data.remove()
  })

  it("answers the health check SERVING, by Check and by Watch", async () => {
    const client = new (load(healthProtoPath).grpc.health.v1.Health)(natcd.endpoints[0]!, grpc.credentials.createInsecure())
    const checked = await new Promise<string>((resolve, reject) =>
      client.Check({ service: "" }, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, r: { status: string }) => (err ? reject(err) : resolve(r.status))))
    expect(checked).toBe("SERVING")
    const watched = await new Promise<string>((resolve, reject) => {
      const call = client.Watch({ service: "" })
      call.on("data", (r: { status: string }) => {
        call.cancel()
        resolve(r.status)
      })
      call.on("error", (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)))
    })
    expect(watched).toBe("SERVING")
    client.close()
  })

  it("lists every service and describes etcd's by reflection", async () => {
    const listed = await reflect(natcd.endpoints[0]!, { list_services: "" })
    const names = (listed.list_services_response.service as Array<{ name: string }>).map((s) => s.name).sort()
    expect(names).toEqual(expect.arrayContaining([
      "etcdserverpb.Cluster", "etcdserverpb.KV", "etcdserverpb.Lease", "etcdserverpb.Maintenance", "etcdserverpb.Watch",
      "v3electionpb.Election", "v3lockpb.Lock", "grpc.health.v1.Health"
    ]))
    const described = await reflect(natcd.endpoints[0]!, { file_containing_symbol: "etcdserverpb.KV" })
    const files = described.file_descriptor_response.file_descriptor_proto as Buffer[]
    expect(files.length).toBeGreaterThan(0)
    // The descriptor names the KV service and its Range method.
    const text = Buffer.concat(files).toString("latin1")
    expect(text).toContain("etcdserverpb")
    expect(text).toContain("Range")
  })
})
