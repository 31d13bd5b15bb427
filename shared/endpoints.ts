/**
 * Every NATS endpoint natcd uses, declared once: its subject pattern, the frame kinds and
 * schemas of its request and reply, which service type serves it and which may call or
 * publish to it. This file is the entry point; it re-exports the parts under ./endpoints/.
 *
 * Everything about the bus derives from these declarations:
 * - `serveEndpoint` / `callEndpoint` / `publishEndpoint` (services/runtime/rpc-server.ts, rpc.ts) take a
 *   declaration, so a handler's body and a caller's reply are typed and decoded by the
 *   declared schemas, never chosen per call site;
 * - {@link permissionsFor} turns the table into each identity's NATS permissions (what it may
 *   publish and subscribe), which the supervisor writes into nats-server's config
 *   (services/supervisor/nats-security.ts); a process can publish only what its service calls or
 *   emits and subscribe only to what it serves plus its own reply inbox;
 * - the README's subjects table and the attack tests walk {@link endpoints}.
 *
 * Where a change goes:
 * - ./endpoints/declare.ts: roles, parties, the {@link Endpoint} shape and its constructors
 *   (subject tokens and the `self` bindings are described there);
 * - ./endpoints/raft.ts, wal.ts, mvcc.ts (with the apply results it publishes), lease.ts,
 *   watch.ts, process.ts (health, trace.keep): one declaration per endpoint, by serving service;
 * - ./endpoints/all.ts: {@link endpoints}, the aggregate list every derivation walks; a new
 *   declaration must be added there too;
 * - ./endpoints/subjects.ts: concrete subjects from declarations and back;
 * - ./endpoints/permissions.ts: identities, their permissions, credential and inbox names;
 * - ./endpoints/docs.ts: the README's subjects table.
 */
export { type Endpoint, type Party, type Role, roles, type TokensOf } from "./endpoints/declare.ts"
export { raftConfChange, raftEntries, raftMembers, raftMsg, raftPropose, raftReadIndex, raftState, raftStateEveryMs, raftStatus, raftTransfer } from "./endpoints/raft.ts"
export { walAppend, walLoad, walSnapshot } from "./endpoints/wal.ts"
export {
  gatewayResult, leaseResult, mvccAlarms, mvccApply, mvccAuth, mvccChunk, mvccDefragment, mvccEvents, mvccHashKv, mvccHistory,
  mvccInstall, mvccLease, mvccLeases, mvccRange, mvccSnapshot, mvccStatus
} from "./endpoints/mvcc.ts"
export { leaseKeepAlive, leaseTimeToLive } from "./endpoints/lease.ts"
export {
  gatewayWatch, watchAck, watchCancel, watchClose, watchCreate, watchLoad, watchLoadEveryMs, watchOpen, watchPing, watchPlace,
  watchProgress
} from "./endpoints/watch.ts"
export { health, traceKeep } from "./endpoints/process.ts"
export { endpoints } from "./endpoints/all.ts"
export { subjectOf, tokensOf } from "./endpoints/subjects.ts"
export { credsFileName, type Identity, inboxPrefix, type Permissions, permissionsFor, replyWindowSeconds } from "./endpoints/permissions.ts"
export { subjectsTable } from "./endpoints/docs.ts"
