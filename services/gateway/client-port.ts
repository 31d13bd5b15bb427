/**
 * The gateway's client port: the gRPC server with etcd's services (./server.ts), reachable on
 * the client URL (plain or TLS, ./client-tls.ts, which hands each connection to the gRPC server
 * or to the HTTP side as etcd's cmux does) and, for the JSON gateway, on a private Unix socket
 * (./http-gateway.ts calls the gRPC server through it); the HTTP side serves the JSON gateway,
 * /health and /version.
 *
 * What it is not: the handlers (./etcd-services.ts builds them). Binding waits until the
 * member published its attributes, as etcd serves clients only after ReadyNotify. Release
 * order (the scope's, reversed): the client listener first, then the HTTP side and the
 * socket, then the gRPC server's drain.
 */
import * as grpc from "@grpc/grpc-js"
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Duplex } from "node:stream"
import * as Effect from "effect/Effect"
import { mvccAlarms, mvccStatus, raftReadIndex, raftStatus, subjectOf } from "../../shared/endpoints.ts"
import { memberDir, Nats, runDetached } from "../runtime/process.ts"
import type { CommonFlags } from "../runtime/process.ts"
import { ensureSelfSignedCertificate } from "../runtime/certs.ts"
import { serveClientPlain, serveClientTls } from "./client-tls.ts"
import type { ClientListenerPlan } from "./client-tls.ts"
import { callEndpoint } from "../runtime/rpc.ts"
import { retryEffect } from "../runtime/retry.ts"
import { grpcShutdownGraceMs, publishCheckTimeoutMs, publishPollMs } from "./timeouts.ts"
import { apiVersion } from "./kv.ts"
import { startGrpcServer } from "./server.ts"
import { etcdHealth } from "./health.ts"
import { makeHttpGateway } from "./http-gateway.ts"
import type { EtcdServices } from "./etcd-services.ts"
import type { GatewayFlags } from "./gateway-flags.ts"

/**
 * Where this process's gRPC server listens for the JSON gateway: `<member dir>/gw-<pid>.sock`
 * (the member directory is private, 0700; a socket path longer than Unix's limit goes under the
 * system's temporary directory instead). Sockets left by gateway processes that are gone (a
 * kill -9) are removed first.
 */
const gatewaySocketPath = (dir: string): string => {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "EPERM"
    }
  }
  const home = join(dir, `gw-${process.pid}.sock`).length <= maxUnixPathBytes ? dir : join(tmpdir(), `natcd-${process.getuid?.() ?? 0}`)
  mkdirSync(home, { recursive: true, mode: 0o700 })
  // Only a directory of this user, which nobody else may enter (a shared temporary directory
  // could hold one made by someone else, to catch the socket): tightened to 0700 as etcd's
  // private directories are.
  const st = lstatSync(home)
  if (!st.isDirectory() || st.uid !== process.getuid?.()) throw new Error(`${home} must be a directory of this user for the gateway's socket`)
  if ((st.mode & 0o077) !== 0) chmodSync(home, 0o700)
  for (const f of existsSync(home) ? readdirSync(home) : []) {
    const m = /^gw-(\d+)\.sock$/.exec(f)
    if (m !== null && !alive(Number(m[1]))) rmSync(join(home, f), { force: true })
  }
  const path = join(home, `gw-${process.pid}.sock`)
  rmSync(path, { force: true })
  return path
}
/** The longest Unix socket path (sockaddr_un.sun_path is 108 bytes with its terminator). */
const maxUnixPathBytes = 107

/**
 * Serves `etcd` on the client port `plan` (planned from the client URL `listenUrl`; not
 * Invalid) and on the JSON gateway's socket, until the scope closes. Waits (retrying every
 * {@link publishPollMs}, without a deadline) until the member published its attributes; a bind
 * that fails is a defect.
 */
export const serveClientPort = (
  flags: CommonFlags & GatewayFlags,
  plan: Exclude<ClientListenerPlan, { readonly _tag: "Invalid" }>,
  listenUrl: string,
  etcd: EtcdServices
) =>
  Effect.gen(function*() {
    const { rpc } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const raftStatusSubject = subjectOf(raftStatus, at)
    for (const warning of plan.warnings) yield* Effect.logWarning(warning).pipe(Effect.annotateLogs({ clientUrl: listenUrl }))
    if (plan._tag === "Tls" && plan.selfSigned) {
      // etcd's --auto-tls: a self-signed certificate for the listen URL's host, kept for restarts.
      yield* Effect.try(() => ensureSelfSignedCertificate(plan.certFile, plan.keyFile, [plan.host])).pipe(Effect.orDie)
    }
    const address = `${plan.host.includes(":") ? `[${plan.host}]` : plan.host}:${plan.port}`
    // etcd serves clients only once its member published its attributes (ReadyNotify): until
    // then a member's name is missing from MemberList. The gateway binds the client port once
    // its raft service reports the member's name in the membership (at once after a restart).
    // Bound: the process's life, on purpose. A gateway has nothing to serve before its member
    // is published, and exiting to be restarted would only wait the same way again. Each retry
    // is logged at Debug (one line per 100 ms would flood Info).
    yield* retryEffect({
      name: "member published check (the client port opens after it)",
      backoff: { initialMs: publishPollMs },
      retryable: () => true,
      atBound: (last) => last
    }, Effect.tryPromise(() => callEndpoint(rpc, raftStatus, raftStatusSubject, {}, { timeoutMs: publishCheckTimeoutMs })).pipe(
      Effect.flatMap((s) => (s.published === false ? Effect.fail("not published") : Effect.void))
    ))
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        startGrpcServer(undefined, etcd.services, { maxRequestBytes: flags.maxRequestBytes, maxConcurrentStreams: flags.maxConcurrentStreams }, etcd.leader, etcd.caller)
      ).pipe(Effect.orDie),
      // Unary calls in flight get up to 2 s to finish; then long-lived streams (Watch,
      // LeaseKeepAlive, Observe) are cut, as etcd's shutdown does, so that clients reconnect
      // elsewhere at once rather than holding a restart (rolling restarts) up.
      // Resolves when the server is down, by shutdown or by force: nothing to fail with.
      (server) =>
        Effect.promise(() =>
          new Promise<void>((r) => {
            const force = setTimeout(() => {
              server.forceShutdown()
              r()
            }, grpcShutdownGraceMs)
            server.tryShutdown(() => {
              clearTimeout(force)
              r()
            })
          })
        )
    )
    // The JSON gateway calls this server as a gRPC client, through a Unix socket in the
    // member's private directory (./http-gateway.ts); removed at shutdown.
    const socketPath = yield* Effect.try(() => gatewaySocketPath(memberDir(flags))).pipe(Effect.orDie)
    yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())))
          // Private as every file of the member (its directory is 0700 already).
          .then(() => chmodSync(socketPath, 0o600))
      ).pipe(Effect.orDie),
      () => Effect.sync(() => rmSync(socketPath, { force: true }))
    )
    const httpSide = yield* Effect.acquireRelease(
      Effect.sync(() =>
        makeHttpGateway({
          grpcTarget: `unix:${socketPath}`,
          maxRequestBytes: flags.maxRequestBytes,
          version: { etcdserver: apiVersion, etcdcluster: apiVersion },
          health: (query) =>
            etcdHealth(rpc, {
              raftStatus: raftStatusSubject,
              readIndex: subjectOf(raftReadIndex, at),
              mvccStatus: subjectOf(mvccStatus, at),
              mvccAlarms: subjectOf(mvccAlarms, at)
            }, etcd.memberHealth, query)
        })
      ),
      (h) => Effect.sync(() => h.close())
    )
    // The gateway owns the client port (plain or TLS, with SO_REUSEPORT when several gateways
    // share it) and, as etcd's cmux, hands each connection to the gRPC server or the HTTP side.
    // Released before the gRPC server's shutdown above: no new connections, then the drain.
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
    const connections = { grpc: (connection: Duplex) => injector.injectConnection(connection), http: httpSide.connection }
    yield* Effect.acquireRelease(
      Effect.tryPromise(() =>
        plan._tag === "Tls"
          ? serveClientTls(plan, connections, (level, message, fields) =>
            runDetached((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields))))
          : serveClientPlain(plan, connections)
      ).pipe(Effect.orDie),
      // close stops accepting and resolves at once (./client-tls.ts): a rejection is a defect.
      (listener) => Effect.promise(() => listener.close())
    )
    yield* Effect.logInfo(`serving etcd v3 gRPC${plan._tag === "Tls" ? " over TLS" : ""}`).pipe(
      Effect.annotateLogs({ address, reusePort: plan.reusePort, ...(plan._tag === "Tls" ? { clientCertAuth: plan.clientCertAuth } : {}) })
    )
  })
