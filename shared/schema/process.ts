/**
 * Schemas of what every service process serves: health (readiness and liveness over NATS, for
 * `etcdctl endpoint health`) and trace.keep (tail sampling of a slow request's trace).
 * Observability itself lives in services/runtime/observability.ts and tracing.ts.
 */
import * as Schema from "effect/Schema"
import { opt } from "./codec.ts"

/**
 * health: a service process's health over NATS (`natcd.<cluster>.<member>.<service>.health`),
 * asked by its member's gateway for `etcdctl endpoint health`. Body: `ready` to run the
 * readiness checks as well as the liveness ones. Reply: `healthy`, and the failed checks'
 * reasons.
 */
export const HealthBody = Schema.Struct({ ready: Schema.Boolean })
/** `instance`: the answering process's instance token (its per-process subjects and inbox end with it). */
export const HealthReply = Schema.Struct({ healthy: Schema.Boolean, reasons: Schema.Array(Schema.String), instance: opt(Schema.String) })

/**
 * trace.keep (publish, `natcd.<cluster>.trace.keep`): keep every span of trace `traceId` that a
 * process holds unsampled (tail sampling of a slow request; services/runtime/tracing.ts).
 */
export const TraceKeepBody = Schema.Struct({ traceId: Schema.String })
