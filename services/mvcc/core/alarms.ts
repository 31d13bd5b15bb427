/**
 * The alarm store: which member raised which alarm, kept in the backend's `meta` bucket so it
 * survives restarts and changes only when an alarm request is applied (so every member holds
 * the same alarms at the same raft index).
 *
 * Follows etcd server/etcdserver/api/v3alarm/alarms.go (AlarmStore: Activate, Deactivate,
 * Get, restore) and the alarm part of server/etcdserver/apply.go (applierV3backend.Alarm).
 * etcd keeps the alarms in their own bucket, keyed by the marshalled AlarmMember; natcd keys
 * them in `meta` as "alarm/" + type code (1 byte) + member id (8 bytes big-endian), with an
 * empty value. etcd returns Get(NONE) in Go map order (random); natcd sorts by type code, then
 * member id.
 */
import type { AlarmMember, AlarmRequest, AlarmResponse, AlarmType } from "../../../shared/kv.ts"
import type { BackendReadTx, BackendWriteTx } from "./backend.ts"
import { prefixEnd } from "./key-bytes.ts"

const prefix = new TextEncoder().encode("alarm/")
const typeCodes: Readonly<Record<AlarmType, number>> = { NONE: 0, NOSPACE: 1, CORRUPT: 2 }
const typeNames: ReadonlyArray<AlarmType> = ["NONE", "NOSPACE", "CORRUPT"]
const empty = new Uint8Array()

/** The meta key of one alarm. */
const alarmKey = (m: AlarmMember): Uint8Array => {
  const k = new Uint8Array(prefix.length + 9)
  k.set(prefix)
  k[prefix.length] = typeCodes[m.alarm]
  new DataView(k.buffer).setBigUint64(prefix.length + 1, m.memberId)
  return k
}

const order = (a: AlarmMember, b: AlarmMember): number =>
  typeCodes[a.alarm] - typeCodes[b.alarm] || (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0)

/**
 * The active alarms. Invariant: `alarms` holds exactly the alarm records of the meta bucket,
 * sorted by {@link order}.
 */
export class AlarmStore {
  private alarms: AlarmMember[] = []

  /** Reads the alarms from the backend (etcd AlarmStore.restore). Throws on a corrupt record. */
  static restore(tx: BackendReadTx): AlarmStore {
    const s = new AlarmStore()
    for (const { key } of tx.range("meta", prefix, prefixEnd(prefix))) {
      if (key.length !== prefix.length + 9) throw new Error(`corrupt alarm record of ${key.length} bytes`)
      const alarm = typeNames[key[prefix.length]!]
      if (alarm === undefined) throw new Error(`unknown alarm type ${key[prefix.length]}`)
      s.alarms.push({ memberId: new DataView(key.buffer, key.byteOffset).getBigUint64(prefix.length + 1), alarm })
    }
    s.alarms.sort(order)
    return s
  }

  /** The alarms of type `alarm`, or every alarm for NONE (etcd AlarmStore.Get). */
  get(alarm: AlarmType): ReadonlyArray<AlarmMember> {
    return alarm === "NONE" ? this.alarms.slice() : this.alarms.filter((m) => m.alarm === alarm)
  }

  /** Whether an alarm of type `alarm` is active (any member). */
  has(alarm: AlarmType): boolean {
    return this.alarms.some((m) => m.alarm === alarm)
  }

  /**
   * Applies an alarm request in `tx` (etcd applierV3backend.Alarm): GET lists the alarms of
   * the type (all for NONE); ACTIVATE records the alarm and returns it (or the one already
   * recorded); DEACTIVATE removes it and returns it, or returns nothing when it was not active.
   */
  apply(tx: BackendWriteTx, req: AlarmRequest): AlarmResponse {
    const m: AlarmMember = { memberId: req.memberId, alarm: req.alarm }
    const i = this.alarms.findIndex((a) => a.alarm === m.alarm && a.memberId === m.memberId)
    switch (req.action) {
      case "GET":
        return { alarms: this.get(req.alarm) }
      case "ACTIVATE":
        if (i >= 0) return { alarms: [this.alarms[i]!] }
        tx.put("meta", alarmKey(m), empty)
        this.alarms.push(m)
        this.alarms.sort(order)
        return { alarms: [m] }
      case "DEACTIVATE":
        if (i < 0) return { alarms: [] }
        tx.delete("meta", alarmKey(m))
        this.alarms.splice(i, 1)
        return { alarms: [m] }
      default:
        // etcd answers an unknown action with an empty response.
        return { alarms: [] }
    }
  }
}
