/**
 * etcd's gRPC service definitions as the gateway loads them: the .proto files of
 * shared/proto (etcd's wire names and numbers) through @grpc/proto-loader, with etcd's field
 * names as written, int64 as decimal strings and enums by name, and a bound on how deep a
 * message may nest, with Txn's deserializer guarded so that an over-deep request reaches its
 * handler as {@link tooDeep}.
 *
 * What it is not: the server (./server.ts) or the handlers (./call-handlers.ts). Importing this
 * module sets protobufjs's recursion limit ({@link maxMessageDepth}) on the one instance
 * @grpc/proto-loader uses.
 */
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { etcdProtoFiles, protoDir } from "../../shared/protos.ts"
import protobuf from "protobufjs"
import { defaultMaxTxnOps } from "../mvcc/core/validate.ts"
import type { Wire } from "./convert.ts"

/**
 * The deepest message nesting decoded or encoded, in protobuf message levels (protobufjs's
 * default is protoc's 100, which a Txn nested 49 deep already exceeds: each level is a RequestOp
 * holding a TxnRequest). etcd decodes any depth; a valid txn is at most `--max-txn-ops` (128)
 * deep, since every level spends at least one op of its parent's budget (etcd
 * checkTxnRequest), so its request and its response fit in 2 × 128 levels plus a few. Deeper
 * requests are answered "too many operations in txn request", as etcd answers them
 * ({@link tooDeep}). Set on the one protobufjs instance that @grpc/proto-loader uses.
 */
export const maxMessageDepth = 4 * defaultMaxTxnOps
protobuf.util.recursionLimit = maxMessageDepth
protobuf.Reader.recursionLimit = maxMessageDepth

/**
 * Marks a request that nests deeper than {@link maxMessageDepth}: the Txn deserializer returns
 * it instead of failing, so that the call is answered TooManyOps (as etcd, whose budget check
 * fails first for any txn this deep) rather than gRPC's "Error deserializing request".
 */
export const tooDeep: unique symbol = Symbol("natcd.tooDeep")

/** protobufjs's errors for nesting past its limit ("max depth exceeded", "maximum nesting depth exceeded"), or a stack overflow. */
const isTooDeepError = (e: unknown): boolean => e instanceof RangeError || (e instanceof Error && /depth exceeded/.test(e.message))

/**
 * `service` with the definition of its method `name` replaced by `f` of it; `service` itself
 * when it has no such method.
 */
export const withMethod = (
  service: grpc.ServiceDefinition,
  name: string,
  f: (method: grpc.MethodDefinition<Wire, Wire>) => grpc.MethodDefinition<Wire, Wire>
): grpc.ServiceDefinition => {
  const method = (service as Record<string, grpc.MethodDefinition<Wire, Wire>>)[name]
  if (method === undefined) return service
  return { ...service, [name]: f(method) }
}

/** Txn's definition with a deserializer that returns {@link tooDeep} for over-deep requests. */
export const withDepthGuard = (service: grpc.ServiceDefinition): grpc.ServiceDefinition =>
  withMethod(service, "Txn", (txn) => {
    const decode = txn.requestDeserialize
    return {
      ...txn,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes)
        } catch (e) {
          if (isTooDeepError(e)) return { [tooDeep]: true } as unknown as Wire
          throw e
        }
      }
    }
  })

/** proto-loader options: etcd's field names as written, int64 as decimal strings, enums by name. */
export const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir]
}

/**
 * Loads etcd's service definitions: package etcdserverpb (KV, Watch, Lease, Cluster,
 * Maintenance), plus the Lock service of package v3lockpb and the Election service of package
 * v3electionpb under the names `Lock` and `Election`.
 */
export const loadEtcdServices = () => {
  const definition = protoLoader.loadSync([...etcdProtoFiles], loaderOptions)
  const pkg = grpc.loadPackageDefinition(definition) as any
  return { ...pkg.etcdserverpb, Lock: pkg.v3lockpb.Lock, Election: pkg.v3electionpb.Election } as Record<string, { service: grpc.ServiceDefinition }>
}
