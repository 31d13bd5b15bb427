/**
 * The floor of one NATS hop between two Node processes: CPU and latency of a message that
 * does nothing but cross the bus, the unit natcd's per-request cost is made of.
 *
 *   node bench/nats-floor.ts [--round-trips=N] [--gap-ms=0,5] [--bytes=300]
 *
 * Starts its own nats-server (plain, 127.0.0.1:15422) and a child Node process that answers
 * every message on one subject by publishing it back on another, through the same client
 * library the services use (@nats-io/transport-node). This process publishes one message,
 * waits for the answer, optionally sleeps `gap-ms` (a lone client's rhythm: the processes go
 * idle between messages, as they do in `put-1`), and repeats N times (default 5000) after a
 * warm-up of N / 5. For each gap it reports the round trip's p50 and p90 (two hops) and the
 * CPU per one-way message (user + system, GC included; what one hop costs the sender, the
 * nats-server and the receiver together, read from /proc and process.cpuUsage). A natcd request
 * that sends k messages cannot cost less than k times that figure.
 */
import { type ChildProcess, fork, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { setTimeout as sleep } from "node:timers/promises"
import { connect } from "@nats-io/transport-node"
import { Command, Option } from "commander"
import { answerCpuProbes, cpuMs } from "./proc.ts"

const natsPort = 15422

if (process.argv[2] === "echo") {
  const nc = await connect({ servers: `127.0.0.1:${natsPort}` })
  nc.subscribe("floor.ping", { callback: (_err, m) => nc.publish("floor.pong", m.data) })
  await nc.flush()
  answerCpuProbes()
} else {
  const opts = new Command("nats-floor")
    .addOption(new Option("--round-trips <n>").default("5000"))
    .addOption(new Option("--gap-ms <list>", "comma-separated pauses between round trips").default("0,5"))
    .addOption(new Option("--bytes <n>", "payload bytes").default("300"))
    .parse(process.argv)
    .opts<{ roundTrips: string; gapMs: string; bytes: string }>()
  const n = Number(opts.roundTrips)
  const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(natsPort)], { stdio: "ignore" })
  let child: ChildProcess | undefined
  try {
    await sleep(500)
    child = fork(fileURLToPath(import.meta.url), ["echo"], { stdio: "inherit" })
    const echo = child
    const ask = <A>(message: string) => new Promise<A>((resolve) => {
      echo.once("message", (m) => resolve(m as A))
      echo.send(message)
    })
    await new Promise((resolve) => echo.once("message", resolve))
    const nc = await connect({ servers: `127.0.0.1:${natsPort}` })
    let answered: (() => void) | undefined
    nc.subscribe("floor.pong", { callback: () => answered?.() })
    await nc.flush()
    const payload = new Uint8Array(Number(opts.bytes))
    const roundTrip = () => new Promise<void>((resolve) => {
      answered = resolve
      nc.publish("floor.ping", payload)
    })
    const run = async (count: number, gapMs: number) => {
      const rtt: number[] = []
      for (let i = 0; i < count; i++) {
        const t = performance.now()
        await roundTrip()
        rtt.push(performance.now() - t)
        if (gapMs > 0) await sleep(gapMs)
      }
      return rtt.sort((a, b) => a - b)
    }
    const cpu = async () => {
      const e = await ask<NodeJS.CpuUsage>("cpu")
      const s = process.cpuUsage()
      return { self: (s.user + s.system) / 1000, echo: (e.user + e.system) / 1000, nats: cpuMs(server.pid!) }
    }
    for (const gapMs of opts.gapMs.split(",").map(Number)) {
      await run(Math.floor(n / 5), gapMs)
      const before = await cpu()
      const rtt = await run(n, gapMs)
      const after = await cpu()
      const perMessageUs = (k: keyof typeof before) => Math.round(((after[k] - before[k]) * 1000) / (2 * n) * 10) / 10
      const sender = perMessageUs("self"), receiver = perMessageUs("echo"), nats = perMessageUs("nats")
      console.log(JSON.stringify({
        gapMs, roundTrips: n, bytes: payload.length,
        rttP50Ms: Math.round(rtt[Math.floor(n / 2)]! * 1000) / 1000,
        rttP90Ms: Math.round(rtt[Math.floor(n * 0.9)]! * 1000) / 1000,
        cpuUsPerMessage: Math.round((sender + receiver + nats) * 10) / 10,
        // The echo process only receives and publishes; the sender also wakes for its pauses.
        cpuUsPerMessageBy: { sender, echo: receiver, natsServer: nats }
      }))
    }
    await nc.close()
  } finally {
    child?.send("exit")
    server.kill()
  }
}
