/**
 * The endpoints every service process serves: health (polled by the member's gateway and the
 * cli) and trace.keep (tail sampling). Each declaration is the single source of its subject,
 * schemas, servers and callers (see ../endpoints.ts).
 */
import * as S from "../schema.ts"
import { any, memberRoles, own, pub, rr, server } from "./declare.ts"

/** health: a service process's readiness, polled by its member's gateway. */
export const health = rr({
  name: "health", subject: "natcd.{cluster}.{member}.{role}.health",
  kind: "health", request: S.HealthBody, reply: "health.reply", replySchema: S.HealthReply,
  servers: [...memberRoles.map((r) => server(r, ["member", "role"])), server("watch", ["member", "role"])],
  callers: [own("gateway"), any("cli")],
  doc: "a process's health (`{member}` is a watch replica's name for a replica)"
})
/** trace.keep: keep every span of a trace (tail sampling). */
export const traceKeep = pub({
  name: "trace.keep", subject: "natcd.{cluster}.trace.keep",
  kind: "trace.keep", request: S.TraceKeepBody,
  servers: [...memberRoles, "watch" as const].map((r) => server(r, [])),
  callers: [any("gateway")],
  doc: "keep every span of a slow request's trace (tail sampling)"
})
