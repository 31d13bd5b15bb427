/**
 * Each process's HTTP listener for operators and orchestrators: `/metrics` (Prometheus text,
 * ./metrics.ts), `/livez`, `/readyz` and `/health`.
 *
 * - `/livez`: the process is alive and can do its work: its event loop answers and every
 *   liveness check passes (the runtime registers one: the NATS connection is not closed). A
 *   failing /livez is what a restart fixes; the supervisor and Kubernetes' livenessProbe use it.
 * - `/readyz`: /livez plus every readiness check of the service (e.g. raft: the member knows a
 *   leader; mvcc: the store is open and applying; gateway: the member has a leader and a
 *   linearizable read goes through). Kubernetes' readinessProbe and rolling restarts use it.
 * - `/health`: etcd's endpoint (server/etcdserver/api/etcdhttp/health.go): the same checks as
 *   /readyz, answered as `{"health":"true","reason":""}` (200) or `{"health":"false",
 *   "reason":"..."}` (503).
 *
 * /livez and /readyz answer `ok` (200) or the failed checks, one per line (503); `?verbose`
 * lists every check. Each check has {@link healthCheckTimeoutMs} to answer.
 *
 * The port comes from `--metrics-port` (NATCD_METRICS_PORT; 0, the default for a service run
 * by hand, means no listener) and the host from `--metrics-host` (NATCD_METRICS_HOST, default
 * 127.0.0.1; 0.0.0.0 in containers). The supervisor gives each process a distinct port (see
 * services/supervisor/main.ts `metricsPort`).
 */
import { createServer } from "node:http"
import type { Server } from "node:http"
import { registry } from "./metrics.ts"
import { healthCheckTimeoutMs, healthKeepAliveTimeoutMs } from "./timeouts.ts"
import { describeError } from "../../shared/errors.ts"

/** A check: resolves undefined when healthy, or the reason it is not. Must not reject (a rejection counts as a failure). */
export type HealthCheck = () => Promise<string | undefined> | string | undefined

const liveChecks = new Map<string, HealthCheck>()
const readyChecks = new Map<string, HealthCheck>()

/** Registers a liveness check (also part of readiness); replaces one of the same name. */
export const addLivenessCheck = (name: string, check: HealthCheck): void => {
  liveChecks.set(name, check)
}

/** Registers a readiness check; replaces one of the same name. */
export const addReadinessCheck = (name: string, check: HealthCheck): void => {
  readyChecks.set(name, check)
}

const runCheck = async (check: HealthCheck): Promise<string | undefined> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      Promise.resolve().then(check),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`no answer within ${healthCheckTimeoutMs} ms`), healthCheckTimeoutMs)
      })
    ])
  } catch (e) {
    return describeError(e)
  } finally {
    clearTimeout(timer)
  }
}

/** Runs the liveness checks, and with `ready` the readiness checks too: each check's name and its failure (undefined: passed). */
export const runChecks = async (ready: boolean): Promise<Array<{ name: string; failure: string | undefined }>> => {
  const checks = [...liveChecks.entries(), ...(ready ? [...readyChecks.entries()] : [])]
  const results = await Promise.all(checks.map(([, check]) => runCheck(check)))
  return checks.map(([name], i) => ({ name, failure: results[i] }))
}

/**
 * The answer to `/livez` (`ready` false) or `/readyz` (`ready` true): 200 and the passed check
 * line when every check passes, else 503; the failed checks one per line (`[-]name failed:
 * reason`), or every check with `verbose` (`?verbose`). Also served on the client port.
 */
export const probeAnswer = async (ready: boolean, verbose: boolean): Promise<{ readonly status: number; readonly body: string }> => {
  const results = await runChecks(ready)
  const failed = results.filter((r) => r.failure !== undefined)
  const lines = (verbose ? results : failed).map((r) => (r.failure === undefined ? `[+]${r.name} ok` : `[-]${r.name} failed: ${r.failure}`))
  if (failed.length === 0) lines.push(`${ready ? "readyz" : "livez"} check passed`)
  return { status: failed.length === 0 ? 200 : 503, body: `${lines.join("\n")}\n` }
}

/**
 * Starts the HTTP listener on `host:port`. Resolves with the server once listening; rejects
 * when the port cannot be bound.
 */
export const startHealthServer = (host: string, port: number): Promise<Server> => {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" })
      res.end(body)
    }
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "method not allowed\n")
    if (url.pathname === "/metrics") {
      registry.metrics().then(
        (text) => send(200, registry.contentType, text),
        (e) => send(500, "text/plain", `metrics failed: ${String(e)}\n`)
      )
      return
    }
    if (url.pathname === "/livez" || url.pathname === "/readyz") {
      probeAnswer(url.pathname === "/readyz", url.searchParams.has("verbose")).then((a) => send(a.status, "text/plain", a.body))
      return
    }
    if (url.pathname === "/health") {
      runChecks(true).then((results) => {
        const failed = results.filter((r) => r.failure !== undefined)
        const reason = failed.map((r) => `${r.name}: ${r.failure}`).join("; ")
        send(failed.length === 0 ? 200 : 503, "application/json", JSON.stringify({ health: String(failed.length === 0), reason }) + "\n")
      })
      return
    }
    send(404, "text/plain", "not found: try /metrics, /livez, /readyz or /health\n")
  })
  server.keepAliveTimeout = healthKeepAliveTimeoutMs
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, host, () => {
      server.off("error", reject)
      resolve(server)
    })
  })
}
