/**
 * The gateway process: etcd's v3 gRPC API for one member.
 *
 *   node services/gateway/main.ts --member=m1 [--listen-client-urls=http://127.0.0.1:2379]
 *     [--request-timeout-ms=7000] [--max-request-bytes=1572864] [--election-timeout=1000]
 *     [--socket-reuse-port] (+ the common flags)
 *
 * A member may have several gateways: they keep no state of their own (each has a random
 * instance token for its reply subjects), so they serve as separate endpoints, behind a load
 * balancer, or on one host and port with --socket-reuse-port (the kernel spreads connections).
 *
 * Serves KV, Watch, Lease (./lease.ts), Cluster, Maintenance, and etcd's v3lock Lock
 * (./lock.ts) and v3election Election (./election.ts) services. --election-timeout sets the
 * minimum lease TTL, ceil(1.5 x election timeout) seconds, as etcd derives it.
 *
 * This file only composes: the flags (./gateway-flags.ts), the client listener's plan
 * (./client-tls.ts), the services (./etcd-services.ts) and the client port that serves them
 * (./client-port.ts).
 */
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { launch, memberDir } from "../runtime/process.ts"
import { planClientListener } from "./client-tls.ts"
import { serveClientPort } from "./client-port.ts"
import { makeEtcdServices } from "./etcd-services.ts"
import { parseGatewayFlags } from "./gateway-flags.ts"

const flags = parseGatewayFlags(process.argv)

// The client listener is checked before anything starts: a bad TLS configuration is a start-up
// error with etcd's message, and an https:// URL never serves plain text.
const listenUrl = flags.listenClientUrls.split(",")[0]!
const listenerPlan = planClientListener(listenUrl, flags, join(memberDir(flags), "fixtures", "client"))
if (listenerPlan._tag === "Invalid") {
  process.stderr.write(`${JSON.stringify({
    message: listenerPlan.message, level: "FATAL", timestamp: new Date().toISOString(), annotations: { service: "gateway", member: flags.member }
  })}\n`)
  process.exit(1)
}

const GatewayLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const etcd = yield* makeEtcdServices(flags, listenerPlan._tag === "Tls" && listenerPlan.clientCertAuth)
    yield* serveClientPort(flags, listenerPlan, listenUrl, etcd)
  })
)

launch("gateway", flags, GatewayLive)
