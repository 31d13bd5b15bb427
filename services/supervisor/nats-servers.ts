/**
 * The nats-servers the supervisor starts when --nats names none: their config files under the
 * data dir, their ports, and which server each member's services use.
 *
 * One server (--nats-cluster=1) listens on --nats-port + offset with config `nats-server.conf`.
 * With N servers, server j (0-based) listens on nats-port + offset + 10000 x j, routes on 6222 +
 * offset + 10000 x j to every other server (authenticated with the route password from
 * ./nats-security.ts), with config `nats-server-<j+1>.conf`; member i's services connect to
 * server i mod N only. Every config allows frames of up to shared/frame.ts `maxFrameBytes`
 * (etcd accepts requests of 1.5 MiB; frames carry them plus raft batches) and includes the
 * authorization file the credentials set-up writes (./credentials.ts).
 *
 * Running the servers is ./supervise.ts's job.
 */
import { join } from "node:path"
import { maxFrameBytes } from "../../shared/frame.ts"
import type { TlsFiles } from "../runtime/certs.ts"
import { authorizationFileName, privateFile, routePassword, tlsBlock } from "./nats-security.ts"
import type { ProcessSpec } from "./supervise.ts"

/** Where and how the servers run. */
export interface NatsServersPlan {
  /** How many servers (--nats-cluster). */
  readonly servers: number
  readonly natsPort: number
  readonly portOffset: number
  /** The natcd cluster name, also the NATS cluster's name. */
  readonly cluster: string
  readonly dataDir: string
  readonly credsDir: string
  readonly logLevel: "Debug" | "Info" | "Warn" | "Error"
  /** Port of nats-server's monitoring endpoints, before offset (server j adds 10000 x j); none when undefined. */
  readonly natsMonitorPort: number | undefined
  readonly natsTls: TlsFiles | undefined
}

export class NatsServers {
  private readonly plan: NatsServersPlan

  constructor(plan: NatsServersPlan) {
    this.plan = plan
  }

  /** The client port of server `j` (0-based). */
  clientPort(j: number): number {
    return this.plan.natsPort + this.plan.portOffset + 10000 * j
  }

  private routePort(j: number): number {
    return 6222 + this.plan.portOffset + 10000 * j
  }

  /** Every server's URL, comma-separated (for watch replicas, and members of a one-server bus). */
  urls(): string {
    return Array.from({ length: this.plan.servers }, (_, j) => `nats://127.0.0.1:${this.clientPort(j)}`).join(",")
  }

  /** The URL member `i`'s services use: its own server of a NATS cluster. */
  memberUrl(i: number): string {
    return `nats://127.0.0.1:${this.clientPort(i % this.plan.servers)}`
  }

  /** Writes server `j`'s config file (0600) and returns its process. */
  writeConfig(j: number): ProcessSpec {
    const { servers, dataDir, credsDir, cluster, logLevel, natsMonitorPort, portOffset, natsTls } = this.plan
    const conf = join(dataDir, servers === 1 ? "nats-server.conf" : `nats-server-${j + 1}.conf`)
    privateFile(conf, [
      "# Written by natcd run.",
      ...(servers === 1 ? [] : [`server_name: natcd-nats-${j + 1}`]),
      "listen: 127.0.0.1:" + this.clientPort(j),
      // etcd accepts requests of 1.5 MiB; frames carry them plus raft batches.
      `max_payload: ${maxFrameBytes}`,
      "max_pending: 268435456",
      "write_deadline: \"10s\"",
      // Message and connection statistics (no payloads) for benchmarks and debugging; off by default.
      ...(natsMonitorPort === undefined ? [] : [`http: 127.0.0.1:${natsMonitorPort + portOffset + 10000 * j}`]),
      // Quiet runs (--log-level Warn or Error) keep nats-server's informational lines in a file.
      ...(logLevel === "Warn" || logLevel === "Error"
        ? [`log_file: ${JSON.stringify(join(dataDir, servers === 1 ? "nats-server.log" : `nats-server-${j + 1}.log`))}`]
        : []),
      ...(servers === 1 ? [] : [
        "cluster {",
        `  name: ${cluster}`,
        `  listen: 127.0.0.1:${this.routePort(j)}`,
        // Routes authenticate too: a stranger cannot join the NATS cluster to read the bus.
        `  authorization { user: natcd-route, password: ${JSON.stringify(routePassword(credsDir))} }`,
        `  routes: [${Array.from({ length: servers }, (_, k) => k).filter((k) => k !== j).map((k) => `nats-route://natcd-route:${routePassword(credsDir)}@127.0.0.1:${this.routePort(k)}`).join(", ")}]`,
        "}"
      ]),
      ...(natsTls === undefined ? [] : [tlsBlock(natsTls)]),
      // Users and permissions live in their own file, rewritten by `natcd creds` (then SIGHUP).
      `include ${JSON.stringify(authorizationFileName)}`,
      `pid_file: ${JSON.stringify(join(dataDir, servers === 1 ? "nats-server.pid" : `nats-server-${j + 1}.pid`))}`,
      ""
    ].join("\n"))
    return { name: servers === 1 ? "nats-server" : `nats-server/${j + 1}`, command: "nats-server", args: ["-c", conf] }
  }
}
