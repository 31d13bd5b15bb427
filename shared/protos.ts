/**
 * Where etcd's .proto files are (./proto: etcd's wire names and numbers, as etcd 3.5's
 * api/etcdserverpb, api/mvccpb, v3lockpb and v3electionpb) and how they are loaded: by
 * @grpc/proto-loader for the gateway's gRPC server (services/gateway/service-definitions.ts), and as one
 * protobufjs Root for the JSON gateway (services/gateway/json-gateway.ts) and the watch
 * replicas' encoder (services/watch/encode.ts).
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import protobuf from "protobufjs"

/** The directory of etcd's .proto files (imports resolve under it). */
export const protoDir = fileURLToPath(new URL("./proto/", import.meta.url))

/** The .proto files of the services the client port serves, relative to {@link protoDir}. */
export const etcdProtoFiles: ReadonlyArray<string> = ["etcdserverpb/rpc.proto", "v3lockpb/v3lock.proto", "v3electionpb/v3election.proto"]

/**
 * `files` (default {@link etcdProtoFiles}) loaded into a resolved protobufjs Root, field names
 * as written (`create_revision`, not `createRevision`). Throws when a file does not parse.
 */
export const loadProtoRoot = (files: ReadonlyArray<string> = etcdProtoFiles): protobuf.Root => {
  const root = new protobuf.Root()
  root.resolvePath = (_origin, target) => path.join(protoDir, target)
  root.loadSync([...files], { keepCase: true })
  root.resolveAll()
  return root
}
