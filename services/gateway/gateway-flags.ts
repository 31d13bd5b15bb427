/**
 * The gateway process's command-line flags: etcd's names and defaults where etcd has the flag
 * (--listen-client-urls, --max-request-bytes, --quota-backend-bytes, --max-concurrent-streams,
 * --bcrypt-cost, the client TLS flags, --socket-reuse-port), natcd's own otherwise, each with
 * its NATCD_* environment variable. The common flags (--member, --cluster, --nats, ...) are
 * ../runtime/process.ts's.
 *
 * What it is not: their checks beyond one value (the client listener is planned and checked by
 * ./client-tls.ts, at start-up in ./main.ts).
 */
import { InvalidArgumentError, Option } from "commander"
import { parseBool, parseFlags, positiveInt } from "../runtime/process.ts"
import type { CommonFlags } from "../runtime/process.ts"
import type { ClientTlsFlags } from "./client-tls.ts"
import { defaultBcryptCost } from "./auth.ts"
import { defaultUnackedBudgetBytes } from "./watch-sessions.ts"

/** The gateway's own flags, as parsed. */
export interface GatewayFlags extends ClientTlsFlags {
  readonly listenClientUrls: string
  readonly requestTimeoutMs: number
  readonly maxRequestBytes: number
  readonly quotaBackendBytes: number
  readonly electionTimeout: number
  readonly maxConcurrentStreams: number
  readonly watchUnackedBudgetBytes: number
  readonly bcryptCost: number
}

/**
 * Default --max-concurrent-streams: 10000 streams per client connection. etcd 3.5 allows
 * 2^32 - 1; natcd bounds it so that one connection cannot hold unbounded per-stream state.
 */
const defaultMaxConcurrentStreams = 10_000

/** etcd --bcrypt-cost: an integer 4..31 (bcrypt's MinCost..MaxCost). */
const bcryptCost = (value: string): number => {
  const n = positiveInt(value)
  if (n < 4 || n > 31) throw new InvalidArgumentError("must be between 4 and 31")
  return n
}

/**
 * Parses `argv` (process.argv) for the gateway: the common flags and the gateway's. Exits the
 * process with a usage message on bad flags.
 */
export const parseGatewayFlags = (argv: ReadonlyArray<string>): CommonFlags & GatewayFlags =>
  parseFlags<GatewayFlags>("gateway", argv, (c) =>
    c
      .addOption(new Option("--listen-client-urls <url>", "client URL to serve gRPC on").env("NATCD_LISTEN_CLIENT_URLS").default("http://127.0.0.1:2379"))
      .addOption(new Option("--request-timeout-ms <ms>", "write/read timeout (etcd: 5 s + 2 x election timeout)").argParser(positiveInt).default(7000))
      .addOption(new Option("--max-request-bytes <n>", "largest request accepted, as etcd").argParser(positiveInt).default(1572864))
      .addOption(
        new Option("--quota-backend-bytes <n>", "backend quota (0: etcd's 2 GiB default, negative: none)")
          .env("NATCD_QUOTA_BACKEND_BYTES").argParser((v) => Number.parseInt(v, 10)).default(0)
      )
      .addOption(new Option("--election-timeout <ms>", "raft election timeout; sets the minimum lease TTL, ceil(1.5 x it)").env("NATCD_ELECTION_TIMEOUT").argParser(positiveInt).default(1000))
      .addOption(
        new Option("--max-concurrent-streams <n>", "concurrent gRPC streams per client connection (etcd 3.5's flag; etcd's default is unlimited)")
          .env("NATCD_MAX_CONCURRENT_STREAMS").argParser(positiveInt).default(defaultMaxConcurrentStreams)
      )
      .addOption(
        new Option("--watch-unacked-budget-bytes <n>", "watch response bytes in flight to this gateway over all its streams, shared equally as their windows")
          .env("NATCD_GATEWAY_WATCH_UNACKED_BUDGET_BYTES").argParser(positiveInt).default(defaultUnackedBudgetBytes)
      )
      .addOption(
        new Option("--bcrypt-cost <n>", "bcrypt cost of the password hashes made for UserAdd and UserChangePassword (etcd: 10; 4..31)")
          .env("NATCD_BCRYPT_COST").argParser(bcryptCost).default(defaultBcryptCost)
      )
      // Client TLS, etcd's flags (./client-tls.ts).
      .addOption(new Option("--cert-file <path>", "client server TLS certificate file (PEM)").env("NATCD_CERT_FILE").default(""))
      .addOption(new Option("--key-file <path>", "client server TLS key file (PEM)").env("NATCD_KEY_FILE").default(""))
      .addOption(new Option("--trusted-ca-file <path>", "client server TLS trusted CA certificate file").env("NATCD_TRUSTED_CA_FILE").default(""))
      .addOption(new Option("--client-cert-auth [bool]", "enable client cert authentication").env("NATCD_CLIENT_CERT_AUTH").argParser(parseBool).default(false))
      .addOption(new Option("--auto-tls [bool]", "client TLS using generated certificates").env("NATCD_AUTO_TLS").argParser(parseBool).default(false))
      .addOption(new Option("--tls-min-version <version>", "minimum TLS version supported (TLS1.2 or TLS1.3)").env("NATCD_TLS_MIN_VERSION").default("TLS1.2"))
      .addOption(new Option("--cipher-suites <list>", "comma-separated TLS 1.2 cipher suites, Go's names (default: Node's)").env("NATCD_CIPHER_SUITES").default(""))
      .addOption(
        new Option("--socket-reuse-port [bool]", "bind the client port with SO_REUSEPORT, so that several gateways of the member on this host share it (etcd 3.5's flag)")
          .env("NATCD_SOCKET_REUSE_PORT").argParser(parseBool).default(false)
      )
  )
