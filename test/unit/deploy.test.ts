/**
 * Checks of the deployment files in deploy/ (issue 9): the Kubernetes manifests parse (YAML)
 * and hang together (selectors match pod labels, probes name declared ports, every container
 * runs an existing service with the flags the services accept, wal and mvcc have persistent
 * volumes, the autoscaler targets the watch Deployment), the systemd templates pass
 * `systemd-analyze verify` (when the tool is installed) and start existing programs, and the
 * Dockerfile copies what exists.
 *
 * The bus's security (NATS identities): every natcd container and unit gets exactly its own
 * identity's NKey seed (k8s: a Secret item selected by subPathExpr; systemd: LoadCredential) and
 * points NATCD_NATS_CREDS at it; every nats-server config includes natcd's users file, keeps its
 * unauthenticated monitoring port on loopback, authenticates its routes, and never listens off
 * loopback without authorization; `nats-server -t` (when installed) accepts the configs with a
 * users file generated for the identities the manifests and units use.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { parseAllDocuments } from "yaml"
import { credsFileName } from "../../shared/endpoints.ts"
import type { Identity, Role } from "../../shared/endpoints.ts"
import { clusterIdentities, ensureCredentials, writeAuthorization } from "../../services/supervisor/nats-security.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const deploy = join(root, "deploy")

type Obj = Record<string, any>

const manifests = (): Array<{ file: string; doc: Obj }> =>
  readdirSync(join(deploy, "k8s"))
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((file) =>
      // YAML 1.1, as Kubernetes reads it (`defaultMode: 0400` is octal there).
      parseAllDocuments(readFileSync(join(deploy, "k8s", file), "utf8"), { version: "1.1" }).map((d) => {
        expect(d.errors, `${file}: ${d.errors.join("; ")}`).toEqual([])
        return { file, doc: d.toJS() as Obj }
      })
    )

const hasTool = (tool: string, args: ReadonlyArray<string>): boolean => {
  try {
    execFileSync(tool, args, { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const hasSystemdAnalyze = hasTool("systemd-analyze", ["--version"])
const hasNatsServer = hasTool("nats-server", ["--version"])

/** A nats-server config without its comments. */
const uncomment = (conf: string): string => conf.split("\n").map((l) => l.replace(/^\s*#.*$/, "")).join("\n")

/** The body of the first `name { ... }` block of `conf` (braces matched), or undefined. */
const block = (conf: string, name: string): string | undefined => {
  const m = new RegExp(`(^|\\n)\\s*${name}\\s*[:=]?\\s*\\{`).exec(conf)
  if (m === null) return undefined
  let depth = 1
  const start = m.index + m[0].length
  for (let i = start; i < conf.length; i++) {
    if (conf[i] === "{") depth++
    if (conf[i] === "}" && --depth === 0) return conf.slice(start, i)
  }
  throw new Error(`unbalanced block ${name}`)
}

/** The host of a `listen:`/`http:` value; a bare port listens on every address. */
const hostOf = (value: string): string => (/^\d+$/.test(value) ? "0.0.0.0" : value.slice(0, value.lastIndexOf(":")))
const loopback = (host: string): boolean => host === "127.0.0.1" || host === "localhost" || host === "::1" || host === "[::1]"
const setting = (conf: string, key: string): string | undefined => new RegExp(`^\\s*${key}\\s*[:=]\\s*"?([^"\\s]+)"?\\s*$`, "m").exec(conf)?.[1]

/**
 * Checks a nats-server config (comments removed) against "never listen off loopback without
 * authentication": clients authenticate by the included users file `usersInclude`, routes by a
 * cluster `authorization` (given inline or by the included file `routesAuth` names), monitoring
 * stays on loopback. Returns the cluster block for further checks.
 */
const checkNatsSecurity = (raw: string, usersInclude: string, routesAuth: (includePath: string) => string): string => {
  const conf = uncomment(raw)
  const cluster = block(conf, "cluster")
  expect(cluster, "cluster block").toBeDefined()
  const top = conf.replace(cluster!, "")
  // No anonymous access anywhere: no users or tokens of its own, no no_auth_user.
  expect(top).not.toMatch(/no_auth_user|^\s*authorization\s*\{/m)
  const listen = setting(top, "listen")
  expect(listen, "client listen").toBeDefined()
  const includes = [...top.matchAll(/^\s*include\s+"?([^"\s]+)"?\s*$/gm)].map((m) => m[1])
  if (!loopback(hostOf(listen!))) expect(includes, `clients on ${listen} must authenticate`).toContain(usersInclude)
  const http = setting(top, "http") ?? setting(top, "http_port")
  if (http !== undefined) expect(loopback(hostOf(http)), `monitoring (no authentication) on ${http}`).toBe(true)
  expect(top).not.toMatch(/^\s*(https|https_port|leafnodes|gateway|websocket|mqtt)\b/m)
  const routeListen = setting(cluster!, "listen")
  expect(routeListen).toBeDefined()
  if (!loopback(hostOf(routeListen!))) {
    const clusterIncludes = [...cluster!.matchAll(/^\s*include\s+"?([^"\s]+)"?\s*$/gm)].map((m) => routesAuth(m[1]!))
    const auth = block(cluster!, "authorization") ?? clusterIncludes.map((c) => block(uncomment(c), "authorization")).find((b) => b !== undefined)
    expect(auth, `routes on ${routeListen} must authenticate`).toBeDefined()
    expect(auth).toMatch(/user\s*:\s*natcd-route/)
    expect(auth).toMatch(/password\s*:\s*\S+/)
  }
  return cluster!
}

/** Writes a users file for `identities` (as `natcd creds init` does) into `dir`; returns its text. */
const usersFile = (dir: string, identities: ReadonlyArray<Identity>): string => {
  mkdirSync(dir, { recursive: true })
  ensureCredentials(join(dir, "creds"), identities)
  writeAuthorization(dir, "natcd")
  return readFileSync(join(dir, "nats-authorization.conf"), "utf8")
}

/** `nats-server -t -c file` with `env`: exit status and output. */
const natsServerTest = (file: string, env: Record<string, string> = {}) => {
  const r = spawnSync("nats-server", ["-t", "-c", file], { encoding: "utf8", env: { ...process.env, ...env } })
  return { status: r.status, output: r.stdout + r.stderr }
}

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
          if (probe.exec !== undefined) {
            // A port kept on loopback (NATS monitoring) is probed from inside the pod.
            expect(probe.exec.command.join(" "), `${w.metadata.name} exec probe`).toMatch(/http:\/\/127\.0\.0\.1:\d+\//)
            continue
          }
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
    // Member services: one StatefulSet each, 3 members, wal and mvcc on persistent volumes;
    // gateways: a Deployment per member (several gateways each) behind that member's Service,
    // which raft advertises as the member's client URL.
    for (const i of [0, 1, 2]) {
      const d = workloads.find((w) => w.kind === "Deployment" && w.metadata.name === `natcd-gateway-m${i}`)
      expect(d, `gateways of m${i}`).toBeDefined()
      expect(d!.spec.replicas).toBeGreaterThanOrEqual(2)
      expect(d!.spec.template.spec.containers[0].args.slice(0, 2)).toEqual(["services/gateway/main.ts", `--member=m${i}`])
      const svc = all.find((x) => x.kind === "Service" && x.metadata.name === `natcd-gateway-m${i}`)
      expect(svc?.spec.selector).toEqual(d!.spec.selector.matchLabels)
    }
    const raftArgs = workloads.find((w) => w.metadata.name === "natcd-raft")!.spec.template.spec.containers[0].args as string[]
    expect(raftArgs).toContain("--advertise-client-urls=http://natcd-gateway-m$(POD_INDEX):2379")
    for (const service of ["wal", "mvcc", "raft", "lease"]) {
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
    // Watch replicas: a StatefulSet (stable replica names, one NATS identity each) scaled by an HPA.
    const hpa = all.find((d) => d.kind === "HorizontalPodAutoscaler")
    expect(hpa?.spec.scaleTargetRef).toMatchObject({ kind: "StatefulSet", name: "natcd-watch" })
    expect(workloads.some((w) => w.kind === "StatefulSet" && w.metadata.name === "natcd-watch")).toBe(true)
    // The NATS cluster: 3 servers with routes to each other and natcd's payload limit.
    const nats = all.find((d) => d.kind === "ConfigMap" && d.metadata.name === "nats-config")
    const conf = nats!.data["nats-server.conf"] as string
    expect(conf).toMatch(/max_payload: 8388608/)
    const natsSet = workloads.find((w) => w.metadata.name === "nats")!
    const routeEnv = (natsSet.spec.template.spec.containers[0].env as Obj[]).filter((e) => /^NATS_ROUTE_\d+$/.test(e.name))
    expect(routeEnv.map((e) => e.value)).toEqual([0, 1, 2].map((i) => `nats-route://natcd-route:$(NATS_ROUTE_PASSWORD)@nats-${i}.nats:6222`))
  })

  it("every natcd pod mounts only its own NATS key and points NATCD_NATS_CREDS at it", () => {
    const all = manifests().map((m) => m.doc)
    const hpa = all.find((d) => d.kind === "HorizontalPodAutoscaler")!
    const natcd = all.filter((d) => (d.kind === "StatefulSet" || d.kind === "Deployment") && d.spec.template.spec.containers.some((c: Obj) => c.image.startsWith("natcd")))
    expect(natcd.map((w) => w.metadata.name).sort()).toEqual(["natcd-gateway-m0", "natcd-gateway-m1", "natcd-gateway-m2", "natcd-lease", "natcd-mvcc", "natcd-raft", "natcd-wal", "natcd-watch"])
    const identities: Array<Identity> = []
    for (const w of natcd.filter((x) => x.kind === "Deployment")) {
      // A member's gateways: its pods share the member's gateway identity; the volume holds that
      // key alone.
      const pod = w.spec.template.spec
      expect(pod.automountServiceAccountToken, `${w.metadata.name}: no API token`).toBe(false)
      const c = pod.containers[0] as Obj
      const member = /^--member=(m\d+)$/.exec(c.args[1])![1]!
      expect(w.metadata.name).toBe(`natcd-gateway-${member}`)
      expect((c.env as Obj[]).filter((e) => e.name === "NATCD_NATS_CREDS").map((e) => e.value)).toEqual(["/var/run/secrets/natcd/nats.nk"])
      const secretVolumes = (pod.volumes as Obj[]).filter((v) => v.secret !== undefined || v.projected !== undefined)
      expect(secretVolumes.length).toBe(1)
      expect(secretVolumes[0]!.secret).toMatchObject({ secretName: "natcd-nats-creds", defaultMode: 0o400, items: [{ key: credsFileName({ role: "gateway", name: member }), path: "nats.nk" }] })
      expect((c.volumeMounts as Obj[]).filter((m) => m.name === secretVolumes[0]!.name)).toEqual([{ name: secretVolumes[0]!.name, mountPath: "/var/run/secrets/natcd", readOnly: true }])
      identities.push({ role: "gateway", name: member })
    }
    for (const w of natcd.filter((x) => x.kind === "StatefulSet")) {
      // A pod's name must be stable for its identity: a StatefulSet, pod i has index i.
      expect(w.kind, w.metadata.name).toBe("StatefulSet")
      const pod = w.spec.template.spec
      expect(pod.automountServiceAccountToken, `${w.metadata.name}: no API token`).toBe(false)
      expect(pod.containers.length).toBe(1)
      const c = pod.containers[0] as Obj
      const role = /^services\/([a-z]+)\/main\.ts$/.exec(c.args[0])![1] as Role
      const nameArg = (c.args as string[]).find((a) => a.startsWith(role === "watch" ? "--replica=" : "--member="))!
      const nameExpr = nameArg.split("=")[1]!
      expect(nameExpr).toBe(`${role === "watch" ? "w" : "m"}$(POD_INDEX)`)
      const env = c.env as Obj[]
      expect(env.find((e) => e.name === "POD_INDEX")?.valueFrom.fieldRef.fieldPath).toBe("metadata.labels['apps.kubernetes.io/pod-index']")
      const credsEnv = env.filter((e) => e.name === "NATCD_NATS_CREDS")
      expect(credsEnv.length, w.metadata.name).toBe(1)
      const credsPath = credsEnv[0]!.value as string
      expect(credsPath).toBe("/var/run/secrets/natcd/nats.nk")
      // The key's directory is mounted from one secret volume, narrowed to this pod's own subdirectory.
      const secretVolumes = (pod.volumes as Obj[]).filter((v) => v.secret !== undefined || v.projected !== undefined)
      expect(secretVolumes.length, `${w.metadata.name}: one secret volume`).toBe(1)
      const vol = secretVolumes[0]!
      expect(vol.secret.secretName).toBe("natcd-nats-creds")
      expect(vol.secret.defaultMode).toBe(0o400)
      const mounts = (c.volumeMounts as Obj[]).filter((m) => m.name === vol.name)
      expect(mounts.length).toBe(1)
      expect(mounts[0]).toMatchObject({ mountPath: dirname(credsPath), subPathExpr: nameExpr, readOnly: true })
      expect(mounts[0]!.subPath).toBeUndefined()
      const items = vol.secret.items as Array<{ key: string; path: string }>
      // Pods: the StatefulSet's replicas, and for watch every replica the autoscaler may add.
      const pods = role === "watch" ? hpa.spec.maxReplicas : w.spec.replicas
      expect(pods).toBeGreaterThanOrEqual(w.spec.replicas)
      expect(items.length, `${w.metadata.name}: one key per pod`).toBe(pods)
      for (const item of items) expect(item.key.startsWith(`${role}.`), `${w.metadata.name} holds ${item.key}`).toBe(true)
      for (let i = 0; i < pods; i++) {
        const name = nameExpr.replace("$(POD_INDEX)", String(i))
        const visible = items.filter((it) => it.path.startsWith(`${name}/`))
        expect(visible, `${w.metadata.name}-${i} sees only ${role}.${name}`).toEqual([{ key: credsFileName({ role, name }), path: `${name}/${basename(credsPath)}` }])
        identities.push({ role, name })
      }
    }
    // The README's `creds init` for Kubernetes creates exactly these identities (plus cli).
    const readme = readFileSync(join(deploy, "README.md"), "utf8")
    const init = /creds init --members=(m0[^ ]*) --watch-replicas=([^ ]+) --data-dir=/.exec(readme)
    expect(init, "README: creds init for Kubernetes").not.toBeNull()
    const fromReadme = clusterIdentities(init![1]!.split(","), init![2]!.split(",")).filter((i) => i.role !== "cli")
    const key = (i: Identity) => `${i.role}.${i.name}`
    expect(fromReadme.map(key).sort()).toEqual(identities.map(key).sort())
  })

  it("the NATS cluster includes natcd's users from a Secret and authenticates its routes", () => {
    const all = manifests().map((m) => m.doc)
    const conf = all.find((d) => d.kind === "ConfigMap" && d.metadata.name === "nats-config")!.data["nats-server.conf"] as string
    const cluster = checkNatsSecurity(conf, "nats-authorization.conf", () => "")
    expect(block(cluster, "authorization")).toMatch(/password:\s*\$NATS_ROUTE_PASSWORD/)
    expect(setting(uncomment(conf), "listen")).toBe("0.0.0.0:4222")
    expect(conf).toMatch(/^\s*# tls \{[\s\S]*#\s+verify: true/m)
    const nats = all.find((d) => d.kind === "StatefulSet" && d.metadata.name === "nats")!
    const pod = nats.spec.template.spec
    const c = pod.containers[0] as Obj
    expect(c.args).toEqual(["-c", "/etc/nats/nats-server.conf"])
    const configMount = (c.volumeMounts as Obj[]).find((m) => m.mountPath === "/etc/nats")!
    expect(configMount.subPath).toBeUndefined() // a Secret update reaches the file in place
    const sources = (pod.volumes as Obj[]).find((v) => v.name === configMount.name)!.projected.sources as Obj[]
    expect(sources.find((s) => s.configMap)?.configMap.name).toBe("nats-config")
    const auth = sources.find((s) => s.secret)!.secret
    expect(auth.name).toBe("natcd-nats-auth")
    expect(auth.items).toEqual([{ key: "nats-authorization.conf", path: "nats-authorization.conf", mode: 0o400 }])
    const env = c.env as Obj[]
    expect(env.find((e) => e.name === "NATS_ROUTE_PASSWORD")?.valueFrom.secretKeyRef).toEqual({ name: "nats-routes", key: "password" })
    // The monitoring port is not exposed: not a container port, not in the Service.
    expect((c.ports as Obj[]).map((p) => p.containerPort)).not.toContain(8222)
    const svc = all.find((d) => d.kind === "Service" && d.metadata.name === "nats")!
    expect((svc.spec.ports as Obj[]).map((p) => p.port)).not.toContain(8222)
  })

  it.skipIf(!hasNatsServer)("nats-server -t accepts the NATS config with the users of the manifests", () => {
    const all = manifests().map((m) => m.doc)
    const conf = all.find((d) => d.kind === "ConfigMap" && d.metadata.name === "nats-config")!.data["nats-server.conf"] as string
    const dir = mkdtempSync(join(tmpdir(), "natcd-k8s-nats-"))
    try {
      const identities = clusterIdentities(["m0", "m1", "m2"], Array.from({ length: 10 }, (_, i) => `w${i}`))
      const users = usersFile(join(dir, "gen"), identities)
      expect(users.match(/nkey: "U[A-Z0-9]{55}"/g)?.length).toBe(identities.length)
      mkdirSync(join(dir, "etc"))
      writeFileSync(join(dir, "etc", "nats-server.conf"), conf)
      writeFileSync(join(dir, "etc", "nats-authorization.conf"), users)
      const nats = all.find((d) => d.kind === "StatefulSet" && d.metadata.name === "nats")!
      const password = "0123456789abcdef"
      const env: Record<string, string> = { POD_NAME: "nats-0", NATS_ROUTE_PASSWORD: password }
      for (const e of nats.spec.template.spec.containers[0].env as Obj[]) if (e.value !== undefined) env[e.name] = (e.value as string).replace("$(NATS_ROUTE_PASSWORD)", password)
      const ok = natsServerTest(join(dir, "etc", "nats-server.conf"), env)
      expect(ok.status, ok.output).toBe(0)
      // Without the users file (the Secret missing) the config is refused, not run open.
      rmSync(join(dir, "etc", "nats-authorization.conf"))
      expect(natsServerTest(join(dir, "etc", "nats-server.conf"), env).status).not.toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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

  it("every service unit loads its own NATS key as a systemd credential", () => {
    const services = units.filter((f) => f.endsWith(".service"))
    expect(services.length).toBe(6)
    for (const u of services) {
      const text = readFileSync(join(deploy, "systemd", u), "utf8")
      const role = /^natcd-([a-z]+)@\.service$/.exec(u)![1] as Role
      const load = [...text.matchAll(/^LoadCredential=(.*)$/gm)].map((m) => m[1])
      expect(load, u).toEqual([`nats.nk:/etc/natcd/creds/${role}.%i.nk`])
      // The file natcd creds init writes for this unit's identity (instance m1 or w1).
      const instance = role === "watch" ? "w1" : "m1"
      expect(basename(load[0]!.replace("%i", instance)), u).toBe(credsFileName({ role, name: instance }))
      expect([...text.matchAll(/^Environment=NATCD_NATS_CREDS=(.*)$/gm)].map((m) => m[1]), u).toEqual(["%d/nats.nk"])
      // The instance is the identity's name: --member=%i / --replica=%i.
      expect(text).toMatch(new RegExp(`^ExecStart=.* --${role === "watch" ? "replica" : "member"}=%i( |$)`, "m"))
      expect(text).toMatch(/^StateDirectoryMode=0700$/m)
      expect(text).toMatch(/^UMask=0077$/m)
      expect(text).toMatch(/^User=natcd$/m)
    }
  })

  it("env examples leave the key to the units and offer TLS to NATS", () => {
    for (const f of ["natcd.env.example", "m1.env.example", "w1.env.example"]) {
      const text = readFileSync(join(deploy, "systemd", f), "utf8")
      // EnvironmentFile= overrides Environment=: the files must not set the key path.
      expect(text, f).not.toMatch(/^\s*NATCD_NATS_CREDS=/m)
      for (const v of ["NATCD_NATS_TLS_CA", "NATCD_NATS_TLS_CERT", "NATCD_NATS_TLS_KEY"]) expect(text, `${f} ${v}`).toMatch(new RegExp(`^# ${v}=/etc/natcd/tls/\\S+\\.pem$`, "m"))
    }
  })

  it("the nats-server config includes natcd's users and authenticates every non-loopback listener", () => {
    const conf = readFileSync(join(deploy, "systemd", "nats-server.conf.example"), "utf8")
    const readme = readFileSync(join(deploy, "README.md"), "utf8")
    // The route password file, as the README's recipe writes it.
    const cluster = checkNatsSecurity(conf, "../natcd/nats-authorization.conf", (path) => {
      expect(path).toBe("natcd-routes.conf")
      expect(readme).toMatch(/> \/etc\/nats\/natcd-routes\.conf/)
      expect(readme).toContain('echo "authorization { user: natcd-route, password: \\"$pw\\" }"')
      return 'authorization { user: natcd-route, password: "x" }'
    })
    expect(cluster).toMatch(/^\s*include "natcd-routes.conf"$/m)
    expect(conf).toMatch(/^# tls \{\n(#.*\n)*#\s+verify: true\n(#.*\n)*# \}$/m)
  })

  it.skipIf(!hasNatsServer)("nats-server -t accepts the example config with generated users and routes", () => {
    const dir = mkdtempSync(join(tmpdir(), "natcd-systemd-nats-"))
    try {
      // /etc/nats/nats-server.conf, /etc/nats/natcd-routes.conf, /etc/natcd/nats-authorization.conf
      mkdirSync(join(dir, "nats"))
      cpSync(join(deploy, "systemd", "nats-server.conf.example"), join(dir, "nats", "nats-server.conf"))
      usersFile(join(dir, "natcd"), clusterIdentities(["m1", "m2", "m3"], ["w1", "w2"]))
      // The README's recipe, run by sh.
      const recipe = /^ {2}(pw=\$\(openssl rand -hex 32\)\n[\s\S]*?> \/etc\/nats\/natcd-routes\.conf).*$/m.exec(readFileSync(join(deploy, "README.md"), "utf8"))
      expect(recipe, "README: natcd-routes.conf recipe").not.toBeNull()
      const script = recipe![1]!.replace(/^ {2}/gm, "").replace("/etc/nats/natcd-routes.conf", join(dir, "nats", "natcd-routes.conf"))
      execFileSync("sh", ["-c", script])
      const routes = readFileSync(join(dir, "nats", "natcd-routes.conf"), "utf8")
      expect(routes.match(/nats-route:\/\/natcd-route:[0-9a-f]{64}@host-[abc]:6222/g)?.length).toBe(3)
      const ok = natsServerTest(join(dir, "nats", "nats-server.conf"))
      expect(ok.status, ok.output).toBe(0)
      rmSync(join(dir, "natcd", "nats-authorization.conf"))
      expect(natsServerTest(join(dir, "nats", "nats-server.conf")).status).not.toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
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
