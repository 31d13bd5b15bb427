/**
 * The gateway's gRPC floor: CPU per unary KV.Put in a gateway process that does nothing else.
 *
 *   node bench/grpc-floor.ts [--calls=N] [--clients=64] [--conns=8]
 *
 * A child process serves etcd's KV service through the gateway's own server
 * (services/gateway/server.ts `startGrpcServer`: grpc-js, protobufjs, the per-call metrics and
 * root span), with a Put handler that answers at once (no NATS, no proposal). This process drives
 * it with the benchmark's client (bench/client.ts: `clients` concurrent callers over `conns`
 * connections, 256-byte values), and reports the child's CPU per call (process.cpuUsage, user
 * + system, GC included) after a warm-up of N / 5 calls, over N calls (default 50000). The
 * difference to the gateway's CPU per put in `make bench` is what the gateway spends on the
 * proposal, the NATS hops and the result.
 */
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Command, Option } from "commander"
import { connect } from "./client.ts"
import { answerCpuProbes } from "./proc.ts"

const port = 15379

if (process.argv[2] === "serve") {
  const { startGrpcServer } = await import("../services/gateway/server.ts")
  const header = { cluster_id: "1", member_id: "1", revision: "1", raft_term: "1" }
  await startGrpcServer(`127.0.0.1:${port}`, { KV: { Put: async () => ({ header }) } }, { maxRequestBytes: 1.5 * 1024 * 1024, maxConcurrentStreams: 10000 })
  answerCpuProbes()
} else {
  const opts = new Command("grpc-floor")
    .addOption(new Option("--calls <n>").default("50000"))
    .addOption(new Option("--clients <n>").default("64"))
    .addOption(new Option("--conns <n>").default("8"))
    .parse(process.argv)
    .opts<{ calls: string; clients: string; conns: string }>()
  const calls = Number(opts.calls)
  const clients = Number(opts.clients)
  const child = fork(fileURLToPath(import.meta.url), ["serve"], { stdio: "inherit" })
  const ask = <A>(message: string) => new Promise<A>((resolve) => child.once("message", (m) => resolve(m as A)))
  await ask("ready")
  const conns = Array.from({ length: Number(opts.conns) }, () => connect(`127.0.0.1:${port}`))
  const value = Buffer.alloc(256, 1)
  const run = async (n: number) => {
    let next = 0
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      while (next < n) {
        next++
        await conns[c % conns.length]!.put(Buffer.from(`key-${next % 100000}`), value)
      }
    }))
  }
  await run(Math.floor(calls / 5))
  const cpu = async () => {
    const p = ask<NodeJS.CpuUsage>("cpu")
    child.send("cpu")
    return p
  }
  const before = await cpu()
  const started = performance.now()
  await run(calls)
  const after = await cpu()
  const seconds = (performance.now() - started) / 1000
  const us = (after.user + after.system - before.user - before.system) / calls
  console.log(JSON.stringify({ calls, clients, conns: conns.length, callsPerSec: Math.round(calls / seconds), serverCpuUsPerCall: Math.round(us * 10) / 10 }))
  for (const c of conns) c.close()
  child.send("exit")
}
