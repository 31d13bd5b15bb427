/**
 * The bounds and batch sizes of a watch hub (./hub.ts), with their defaults.
 *
 * What it is: every limit the hub's parts enforce, in one place, each saying what happens when
 * it is reached: the sessions' windows and message sizes (./session-table.ts, ./outbox.ts), the
 * ring of recent revisions (./ring.ts), the catch-up rounds (./hub.ts) and the live stream's
 * out-of-order frames (./committed-stream.ts). What it is not: a place for state.
 *
 * The batch sizes follow etcd server/storage/mvcc/watchable_store.go (watchBatchMaxRevs,
 * maxWatchersPerSync); the memory bounds are natcd's (etcd keeps no ring: it reads its backend).
 */

/** Bounds and batch sizes of a hub. Each field's bound says what happens when reached. */
export interface HubOptions {
  /** Unacknowledged response bytes a session may have; beyond, its watchers become victims. */
  readonly windowBytes: number
  /** Unacknowledged response bytes of all sessions together, shared equally as their windows. */
  readonly budgetBytes: number
  /** The smallest window a fair share gives a session, in bytes (so every stream makes progress). */
  readonly minWindowBytes: number
  /**
   * Largest message (several responses) to a gateway, in bytes (one response may exceed it).
   * 64 KiB: a message the size of a socket read reaches the gateway's NATS client in one piece
   * (a longer one is reassembled in buffers grown by copying): 12 % less gateway CPU per event
   * than 1 MiB in the watch bench (3 interleaved runs each: 5.2–6.9 against 6.4–6.8 µs).
   */
  readonly maxMessageBytes: number
  /** Events of one response are cut at the revision boundary past this many bytes. */
  readonly maxResponseBytes: number
  /** Most revisions one catch-up round reads from the ring for a watcher (etcd watchBatchMaxRevs). */
  readonly batchMaxRevs: number
  /** Most unsynced watchers per catch-up round (etcd maxWatchersPerSync). */
  readonly maxWatchersPerSync: number
  /** Recent revisions kept in memory; the oldest is dropped beyond this count or ringBytes. */
  readonly ringRevs: number
  /** Bytes of recent revisions kept in memory. */
  readonly ringBytes: number
  /** Size asked of one history read (whole revisions; the reply may exceed it by one revision). */
  readonly historyMaxBytes: number
  /** Out-of-order live frames kept while a gap is fetched; beyond, frames are dropped (refetched). */
  readonly pendingFrameBytes: number
}

/** Defaults: etcd's batch sizes; memory bounds sized for a replica of tens of thousands of watchers. */
export const defaultHubOptions: HubOptions = {
  windowBytes: 4 * 1024 * 1024,
  budgetBytes: 256 * 1024 * 1024,
  minWindowBytes: 64 * 1024,
  maxMessageBytes: 64 * 1024,
  maxResponseBytes: 1024 * 1024,
  batchMaxRevs: 1000,
  maxWatchersPerSync: 512,
  ringRevs: 10_000,
  ringBytes: 64 * 1024 * 1024,
  historyMaxBytes: 4 * 1024 * 1024,
  pendingFrameBytes: 16 * 1024 * 1024
}
