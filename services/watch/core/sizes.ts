/**
 * Approximate sizes, in bytes, of what a watch hub holds and sends: every byte bound of the hub
 * (sessions' windows, message and response cuts, the ring, pending frames) counts with these.
 *
 * What it is not: the encoded size. The numbers estimate etcd's protobuf encoding (key and value
 * bytes plus a fixed overhead per key-value, event and response) closely enough for bounds; the
 * exact bytes are made by ../encode.ts.
 */
import type { WatchResponseData } from "./messages.ts"
import type { WatchEvent } from "./watcher-group.ts"

const kvBytes = (kv: { key: Uint8Array; value: Uint8Array }): number => 40 + kv.key.length + kv.value.length

/** Approximate encoded size of an event, in bytes. */
export const eventBytes = (e: WatchEvent): number => 8 + kvBytes(e.kv) + (e.prevKv === undefined ? 0 : kvBytes(e.prevKv))

/** Approximate encoded size of a response, in bytes: a fixed header part plus its events. */
export const responseBytes = (r: WatchResponseData): number => {
  let n = 48
  for (const e of r.events) n += eventBytes(e)
  return n
}
