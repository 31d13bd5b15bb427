/**
 * The lease service's endpoints: keep-alives and TimeToLive, served by the leader's lease
 * service and forwarded to it by the followers'. Each declaration is the single source of its
 * subject, schemas, server and callers (see ../endpoints.ts).
 */
import * as S from "../schema.ts"
import { any, onMember, own } from "./declare.ts"

/** lease.keepalive: renew a lease; served by the leader's lease service, forwarded by others. */
export const leaseKeepAlive = onMember("lease", "keepalive", {
  kind: "lease.keepalive", request: S.LeaseKeepAliveBody, reply: S.LeaseKeepAliveReply, callers: [own("gateway"), any("lease")],
  doc: "LeaseKeepAlive; followers' lease services forward to the leader's"
})
/** lease.timetolive: a lease's remaining TTL, from the leader's lease service. */
export const leaseTimeToLive = onMember("lease", "timetolive", {
  kind: "lease.timetolive", request: S.LeaseTimeToLiveBody, reply: S.LeaseTimeToLiveReply,
  callers: [own("gateway"), any("lease")],
  doc: "LeaseTimeToLive's remaining TTL, from the leader's lease service"
})
