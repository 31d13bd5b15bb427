/**
 * Checks of the deployment files in deploy/ (issue 9): the Kubernetes manifests parse (YAML)
 * and hang together (selectors match pod labels, probes name declared ports, every container
 * runs an existing service with the flags the services accept, wal and mvcc have persistent
 * volumes, the autoscaler targets the watch Deployment), the systemd templates pass
 * `systemd-analyze verify` (when the tool is installed) and start existing programs, and the
 * Dockerfile copies what exists.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { parseAllDocuments } from "yaml"

const root = fileURLToPath(new URL("../../", import.meta.url))
const deploy = join(root, "deploy")

type Obj = Record<string, any>

const manifests = (): Array<{ file: string; doc: Obj }> =>
  readdirSync(join(deploy, "k8s"))
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(deploy, "k8s", file), "utf8")).map((d) => {
        expect(d.errors, `${file}: ${d.errors.join("; ")}`).toEqual([])
        return { file, doc: d.toJS() as Obj }
      })
    )

const hasSystemdAnalyze = (() => {
  try {
    execFileSync("systemd-analyze", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

describe("deploy/k8s", () => {
  it("parses, and every object has apiVersion, kind and a name", () => {
    const all = manifests()
    expect(all.length).toBeGreaterThan(10)
    for (const { file, doc } of all) {
      expect(typeof doc.apiVersion, file).toBe("string")
      expect(typeof doc.kind, file).toBe("string")
      expect(doc.metadata?.name, file).toMatch(/^[a-z0-9-]+$/)
    }
  })

  it("workloads are consistent: selectors, probes, images, services and flags", () => {
    const all = manifests().map((m) => m.doc)
    const workloads = all.filter((d) => d.kind === "StatefulSet" || d.kind === "Deployment")
    const knownFlags = ["--member", "--nats", "--metrics-port", "--replica", "--initial-cluster", "--initial-cluster-state", "--advertise-client-urls", "--listen-client-urls", "-c"]
    for (const w of workloads) {
      const labels = w.spec.template.metadata.labels
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels)) expect(labels[k], `${w.metadata.name} selector`).toBe(v)
      for (const c of w.spec.template.spec.containers as Obj[]) {
        const ports = new Set((c.ports ?? []).map((p: Obj) => p.name))
        for (const probe of [c.livenessProbe, c.readinessProbe]) {
          expect(probe, `${w.metadata.name} probes`).toBeDefined()
          expect(ports.has(probe.httpGet.port), `${w.metadata.name} probe port ${probe.httpGet.port}`).toBe(true)
        }
        if (c.image.startsWith("natcd")) {
          const program = c.args[0] as string
          expect(existsSync(join(root, program)), program).toBe(true)
          expect(c.livenessProbe.httpGet.path).toBe("/livez")
          expect(c.readinessProbe.httpGet.path).toBe("/readyz")
          for (const a of c.args.slice(1) as string[]) expect(knownFlags, a).toContain(a.split("=")[0])
          // Every volume mount is declared, as a volume or a claim template.
          const volumes = new Set([...(w.spec.template.spec.volumes ?? []), ...(w.spec.volumeClaimTemplates ?? []).map((t: Obj) => t.metadata)].map((v: Obj) => v.name))
          for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${w.metadata.name} volume ${m.name}`).toBe(true)
        }
      }
    }
    // Member services: one StatefulSet each, 3 members, wal and mvcc on persistent volumes.
    for (const service of ["wal", "mvcc", "raft", "lease", "gateway"]) {
      const s = workloads.find((w) => w.kind === "StatefulSet" && w.metadata.name === `natcd-${service}`)
      expect(s, service).toBeDefined()
      expect(s!.spec.replicas).toBe(3)
      expect(s!.spec.template.spec.containers[0].args[0]).toBe(`services/${service}/main.ts`)
      if (service === "wal" || service === "mvcc") expect(s!.spec.volumeClaimTemplates?.length, service).toBe(1)
    }
    // Services select existing pods.
    for (const svc of all.filter((d) => d.kind === "Service")) {
      const match = workloads.some((w) => Object.entries(svc.spec.selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v))
      expect(match, `Service ${svc.metadata.name}`).toBe(true)
    }
    // Watch replicas: a Deployment scaled by an HPA.
    const hpa = all.find((d) => d.kind === "HorizontalPodAutoscaler")
    expect(hpa?.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "natcd-watch" })
    expect(workloads.some((w) => w.kind === "Deployment" && w.metadata.name === "natcd-watch")).toBe(true)
    // The NATS cluster: 3 servers with routes to each other and natcd's payload limit.
    const nats = all.find((d) => d.kind === "ConfigMap" && d.metadata.name === "nats-config")
    const conf = nats!.data["nats-server.conf"] as string
    expect(conf).toMatch(/max_payload: 8388608/)
    expect(conf.match(/nats-route:\/\//g)?.length).toBe(3)
  })
})

describe("deploy/systemd", () => {
  const units = readdirSync(join(deploy, "systemd")).filter((f) => f.endsWith(".service") || f.endsWith(".target"))

  it("has a template per service and starts existing programs", () => {
    for (const service of ["wal", "mvcc", "raft", "lease", "gateway", "watch"]) expect(units).toContain(`natcd-${service}@.service`)
    for (const u of units.filter((f) => f.endsWith(".service"))) {
      const text = readFileSync(join(deploy, "systemd", u), "utf8")
      const exec = /^ExecStart=\S+ node \/opt\/natcd\/(\S+)/m.exec(text)
      expect(exec, u).not.toBeNull()
      expect(existsSync(join(root, exec![1]!)), exec![1]).toBe(true)
      expect(text).toMatch(/^Restart=always$/m)
    }
  })

  it.skipIf(!hasSystemdAnalyze)("passes systemd-analyze verify (instantiated)", () => {
    const dir = mkdtempSync(join(tmpdir(), "natcd-units-"))
    try {
      for (const u of units) {
        const instance = u.startsWith("natcd-watch") ? "w1" : "m1"
        cpSync(join(deploy, "systemd", u), join(dir, u.replace("@.", `@${instance}.`)))
      }
      const files = readdirSync(dir).map((f) => join(dir, f))
      // Exit status 0 and no complaints (unknown keys, bad values, missing executables).
      const r = spawnSync("systemd-analyze", ["verify", "--man=no", ...files], { encoding: "utf8", env: { ...process.env, SYSTEMD_LOG_LEVEL: "notice" } })
      expect(r.status, r.stderr).toBe(0)
      expect((r.stdout + r.stderr).trim()).toBe("")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("deploy/Dockerfile", () => {
  it("copies paths that exist and runs a service", () => {
    const text = readFileSync(join(deploy, "Dockerfile"), "utf8")
    for (const m of text.matchAll(/^COPY (.+) \S+$/gm)) for (const src of m[1]!.split(/\s+/)) expect(existsSync(join(root, src)), src).toBe(true)
    expect(text).toMatch(/^FROM node:24/m)
    expect(text).toMatch(/^CMD \["services\/gateway\/main.ts"\]$/m)
  })
})
