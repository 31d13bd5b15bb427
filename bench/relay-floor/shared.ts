/**
 * What the relay floor's processes share (./main.ts, the parent, and the children it forks:
 * ./replica.ts, ./relay.ts, ./client.ts): the options the children are told, the ports and
 * subjects they meet on, the ack frame's body, and the helpers to read a frame and to end a
 * child on a broken invariant.
 *
 * What it is not: any process's own work; the benchmark as a whole is described in ./main.ts.
 */
import { decodeFrame, isFrameDecodeError } from "../../shared/frame.ts"
import type { WatchAckBody } from "../../shared/schema.ts"

export const natsPort = 15424
export const natsServers = `127.0.0.1:${natsPort}`
export const relayPort = 15381
export const watchPath = "/etcdserverpb.Watch/Watch"
export const ackSubject = "relayfloor.ack"
export const sessionSubject = (index: number) => `relayfloor.watch.${index}`
export const sessionId = (index: number) => `s${index}`
/** Variant `gateway`: the cluster, the gateway's member and the replica's name in the subjects. */
export const cluster = "relayfloor"
export const member = "m1"
export const replicaName = "floor"

/** What the children are told (as JSON). */
export interface FloorOptions {
  readonly revisions: number
  readonly streams: number
  readonly watchersPerStream: number
  readonly messageBytes: number
  readonly conns: number
  readonly clientWindow: number
  /** The pace of the measured revisions (0: as fast as the relay takes them). */
  readonly revisionsPerSecond: number
}

/** The body of a watch.ack frame, as its schema declares it. */
export type AckBody = typeof WatchAckBody.Type

export const noop = (): void => {}

/** The revisions of the warm-up: the first 10 %, delivered before the measurement starts. */
export const warmRevisions = (o: FloorOptions) => Math.ceil(o.revisions / 10)

/** Ends this child on a broken invariant (its parent then fails the run). */
export const fail = (reason: string): never => {
  console.error(`relay-floor: ${reason}`)
  process.exit(1)
}

export const frameBody = <B>(bytes: Uint8Array): B => {
  const frame = decodeFrame(bytes)
  return isFrameDecodeError(frame) ? fail(frame.reason) : (frame.body as B)
}
