/**
 * The interpreter behind the raft scenario files: a handful of RawNodes in one process, a
 * message queue the script controls, and printers for Ready batches and messages. Modelled on
 * etcd raft's rafttest/interaction_env*.go; output lines follow etcd's testdata closely so the
 * files read alike.
 *
 * Commands (ids are 1-based member ids):
 *
 *     add-nodes <n> [voters=(1,2,3)] [learners=(4)] [index=<i>] [prevote=true] [checkquorum=true]
 *               [max-inflight=<n>] [max-size=<bytes>] [max-uncommitted=<bytes>]
 *         n new members; with voters/learners each starts from a snapshot at `index` (term 1)
 *         holding that configuration, otherwise from an empty log (a member to be added).
 *     campaign <id> | propose <id> <data> | propose-conf-change <id> <v4|l4|r4>
 *     read-index <id> <ctx> | transfer-leadership from=<id> to=<id>
 *     tick-heartbeat <id> | tick-election <id>         (heartbeatTick / electionTick ticks)
 *     process-ready <id>... | deliver-msgs [drop=(ids)] <id>... | stabilize [<id>...]
 *     isolate <id> | heal                               (cut / restore every link of a member)
 *     crash <id> | restart <id>                         (restart keeps only what was persisted)
 *     compact <id> <index> | report-unreachable <from> <to>
 *     status <id> | raft-state | raft-log <id> | log-level <debug|info|warn|none>
 *
 * Persisting follows the shell's contract: process-ready stores the snapshot, entries and hard
 * state first, then queues the messages, then applies committed entries.
 */
import { Index, MemberId, Term } from "../../../shared/ids.ts"
import type { ConfChange, ConfState, Entry } from "../../../shared/raft-types.ts"
import { decodeConfChange } from "../../../services/raft/core/conf-change.ts"
import { type Config, RawNode } from "../../../services/raft/core/raw-node.ts"
import { MemoryStorage } from "../../../services/raft/core/storage.ts"
import type { Logger, Message, Ready, Snapshot } from "../../../services/raft/core/types.ts"
import { findArg, type TestData } from "../datadriven.ts"

type Level = "debug" | "info" | "warn" | "none"
const LEVELS: ReadonlyArray<Level> = ["debug", "info", "warn", "none"]

const text = (b: Uint8Array): string => String.fromCharCode(...b)
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))

const ccShort: Record<ConfChange["type"], string> = { AddNode: "v", AddLearnerNode: "l", RemoveNode: "r", UpdateNode: "u" }

/** `1/3 EntryNormal "foo"` or `1/4 EntryConfChange l4`, as etcd DescribeEntry. */
export const describeEntry = (e: Entry): string => {
  if (e.type === "ConfChange") {
    const cc = decodeConfChange(e.data)
    return `${e.term}/${e.index} EntryConfChange ${ccShort[cc.type]}${cc.nodeId}`
  }
  return `${e.term}/${e.index} EntryNormal ${JSON.stringify(text(e.data))}`
}

const describeConfState = (cs: ConfState): string =>
  `Voters:[${cs.voters.join(" ")}]` + (cs.learners.length > 0 ? ` Learners:[${cs.learners.join(" ")}]` : "")

const describeSnapshot = (s: Snapshot): string =>
  `Index:${s.metadata.index} Term:${s.metadata.term} ConfState:${describeConfState(s.metadata.confState)}`

/** `1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal ""]`, as etcd DescribeMessage. */
export const describeMessage = (m: Message): string => {
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${m.logTerm}/${m.index}`
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`
  if (m.commit !== 0) s += ` Commit:${m.commit}`
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map(describeEntry).join(", ")}]`
  if (m.snapshot !== undefined) s += ` Snapshot: ${describeSnapshot(m.snapshot)}`
  if (m.context.byteLength > 0) s += ` Context:${m.context.byteLength === 8 ? "#" + m.context[0] : text(m.context)}`
  return s
}

/** The lines of a Ready, as etcd DescribeReady. */
export const describeReady = (rd: Ready): string[] => {
  const out = [`Ready MustSync=${rd.mustSync}:`]
  if (rd.softState !== undefined) out.push(`Lead:${rd.softState.lead} State:${rd.softState.raftState}`)
  if (rd.hardState !== undefined) {
    out.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote} Commit:${rd.hardState.commit}`)
  }
  if (rd.readStates.length > 0) {
    out.push("ReadStates:", ...rd.readStates.map((rs) => `Index:${rs.index} RequestCtx:${JSON.stringify(text(rs.requestCtx))}`))
  }
  if (rd.entries.length > 0) out.push("Entries:", ...rd.entries.map(describeEntry))
  if (rd.snapshot !== undefined) out.push(`Snapshot ${describeSnapshot(rd.snapshot)}`)
  if (rd.committedEntries.length > 0) out.push("CommittedEntries:", ...rd.committedEntries.map(describeEntry))
  if (rd.messages.length > 0) out.push("Messages:", ...rd.messages.map(describeMessage))
  return out
}

const parseChange = (s: string): ConfChange => {
  const type = ({ v: "AddNode", l: "AddLearnerNode", r: "RemoveNode", u: "UpdateNode" } as const)[s[0] as "v" | "l" | "r" | "u"]
  if (type === undefined) throw new Error(`unknown conf change ${s}`)
  return { type, nodeId: MemberId(BigInt(s.slice(1))), context: new Uint8Array(0) }
}

interface Member {
  node: RawNode | undefined
  readonly storage: MemoryStorage
  readonly config: Config
}

/** The state of one scenario file. */
export class InteractionEnv {
  private readonly members = new Map<number, Member>()
  private messages: Message[] = []
  private readonly isolated = new Set<number>()
  private out: string[] = []
  private indent = ""
  private level: Level = "info"

  /** Runs one directive and returns its output. Errors a command reports are part of the output. */
  handle(d: TestData): string {
    this.out = []
    this.indent = ""
    const ids = d.cmdArgs.filter((a) => a.vals.length === 0).map((a) => Number(a.key))
    const id = ids[0] ?? 0
    const arg = (k: string): string | undefined => findArg(d, k)?.vals[0]
    switch (d.cmd) {
      case "log-level": {
        const level = d.cmdArgs[0]?.key as Level
        if (!LEVELS.includes(level)) throw new Error(`${d.pos}: unknown level ${level}`)
        this.level = level
        break
      }
      case "add-nodes":
        this.addNodes(id, d)
        break
      case "campaign":
        this.node(id).campaign()
        break
      case "propose":
        this.report(this.node(id).propose(bytes(d.cmdArgs[1]?.key ?? "")))
        break
      case "propose-conf-change":
        this.report(this.node(id).proposeConfChange(parseChange(d.cmdArgs[1]!.key)))
        break
      case "read-index":
        this.node(id).readIndex(bytes(d.cmdArgs[1]?.key ?? ""))
        break
      case "transfer-leadership":
        this.node(Number(arg("from"))).transferLeader(MemberId(BigInt(arg("to")!)))
        break
      case "tick-heartbeat":
        for (let i = 0; i < this.member(id).config.heartbeatTick; i++) this.node(id).tick()
        break
      case "tick-election":
        for (let i = 0; i < this.member(id).config.electionTick; i++) this.node(id).tick()
        break
      case "process-ready":
        for (const i of ids) this.processReady(i)
        break
      case "deliver-msgs": {
        const drop = findArg(d, "drop")?.vals.map(Number) ?? []
        for (const i of drop) this.deliver(i, true)
        for (const i of ids) this.deliver(i, false)
        break
      }
      case "stabilize":
        this.stabilize(ids.length > 0 ? ids : [...this.members.keys()])
        break
      case "isolate":
        this.isolated.add(id)
        break
      case "heal":
        this.isolated.clear()
        break
      case "crash":
        this.member(id).node = undefined
        break
      case "restart": {
        const m = this.member(id)
        m.node = new RawNode({ ...m.config, logger: this.logger() }, m.storage)
        break
      }
      case "compact":
        this.compact(id, Number(d.cmdArgs[1]!.key))
        break
      case "report-unreachable":
        this.node(id).reportUnreachable(MemberId(BigInt(ids[1]!)))
        break
      case "status":
        this.printStatus(id)
        break
      case "raft-state":
        this.printRaftState()
        break
      case "raft-log":
        this.printRaftLog(id)
        break
      default:
        throw new Error(`${d.pos}: unknown command ${d.cmd}`)
    }
    return this.out.join("\n")
  }

  private print(line: string): void {
    this.out.push(this.indent + line)
  }

  private report(err: string | undefined): void {
    if (err !== undefined) this.print(`error: ${err}`)
  }

  /** A logger printing into the current output at the current indentation, filtered by level. */
  private logger(): Logger {
    const at = (level: Level, tag: string) => (msg: string) => {
      if (LEVELS.indexOf(level) >= LEVELS.indexOf(this.level)) this.print(`${tag} ${msg}`)
    }
    return { debug: at("debug", "DEBUG"), info: at("info", "INFO"), warn: at("warn", "WARN") }
  }

  private member(id: number): Member {
    const m = this.members.get(id)
    if (m === undefined) throw new Error(`unknown member ${id}`)
    return m
  }

  private node(id: number): RawNode {
    const n = this.member(id).node
    if (n === undefined) throw new Error(`member ${id} is crashed`)
    return n
  }

  private addNodes(n: number, d: TestData): void {
    const ids = (k: string): MemberId[] => (findArg(d, k)?.vals ?? []).map((v) => MemberId(BigInt(v)))
    const voters = ids("voters")
    const learners = ids("learners")
    const index = Number(findArg(d, "index")?.vals[0] ?? "0")
    const flag = (k: string): boolean => findArg(d, k)?.vals[0] === "true"
    const num = (k: string, dflt: number): number => Number(findArg(d, k)?.vals[0] ?? dflt)
    for (let k = 0; k < n; k++) {
      const id = this.members.size + 1
      const storage = new MemoryStorage()
      if (voters.length > 0 || learners.length > 0) {
        storage.applySnapshot({
          metadata: { index: Index(index), term: Term(1), confState: { voters, learners } },
          data: new Uint8Array(0)
        })
      }
      const config: Config = {
        id: MemberId(BigInt(id)),
        electionTick: 10,
        heartbeatTick: 1,
        maxSizePerMsg: num("max-size", 1024 * 1024),
        maxInflightMsgs: num("max-inflight", 256),
        maxUncommittedEntriesSize: num("max-uncommitted", 0),
        preVote: flag("prevote"),
        checkQuorum: flag("checkquorum"),
        applied: Index(0),
        // The randomized election timeout is always electionTick, so tick-election campaigns.
        randomInt: () => 0
      }
      this.members.set(id, { node: new RawNode({ ...config, logger: this.logger() }, storage), storage, config })
    }
  }

  /** Handles one Ready of `id` as the shell would; returns false when there was none. */
  private processReady(id: number): boolean {
    const m = this.member(id)
    const node = m.node
    if (node === undefined || !node.hasReady()) return false
    this.print(`> ${id} handling Ready`)
    this.indent = "  "
    const rd = node.ready()
    for (const line of describeReady(rd)) this.print(line)
    if (rd.snapshot !== undefined) m.storage.applySnapshot(rd.snapshot)
    m.storage.append(rd.entries)
    if (rd.hardState !== undefined) m.storage.setHardState(rd.hardState)
    this.messages.push(...rd.messages)
    for (const e of rd.committedEntries) {
      if (e.type === "ConfChange") node.applyConfChange(decodeConfChange(e.data))
    }
    node.advance(rd)
    this.indent = ""
    return true
  }

  /** Delivers (or drops) every queued message addressed to `id`; returns whether there were any. */
  private deliver(id: number, drop: boolean): boolean {
    const mine = this.messages.filter((m) => m.to === BigInt(id))
    if (mine.length === 0) return false
    this.messages = this.messages.filter((m) => m.to !== BigInt(id))
    this.print(`> ${id} receiving messages`)
    this.indent = "  "
    for (const m of mine) {
      const node = this.member(id).node
      const cut = this.isolated.has(id) || this.isolated.has(Number(m.from))
      if (drop || cut || node === undefined) {
        this.print(`dropped: ${describeMessage(m)}`)
        continue
      }
      this.print(describeMessage(m))
      this.indent = "    "
      this.report(node.step(m))
      this.indent = "  "
    }
    this.indent = ""
    return true
  }

  private stabilize(ids: ReadonlyArray<number>): void {
    for (;;) {
      let done = true
      for (const id of ids) if (this.processReady(id)) done = false
      for (const id of ids) if (this.deliver(id, false)) done = false
      if (done) return
    }
  }

  private compact(id: number, index: number): void {
    const m = this.member(id)
    const err = m.storage.createSnapshot(Index(index), this.node(id).status().confState, new Uint8Array(0))
    if (typeof err === "string") this.print(`error: ${err}`)
    this.report(m.storage.compact(Index(index)))
    this.printRaftLog(id)
  }

  private printStatus(id: number): void {
    const st = this.node(id).status()
    for (const [pid, pr] of st.progress) {
      let s = `${pid}: ${pr.state} match=${pr.match} next=${pr.next}`
      if (pr.isLearner) s += " learner"
      if (pr.paused) s += " paused"
      if (pr.pendingSnapshot > 0) s += ` pendingSnap=${pr.pendingSnapshot}`
      if (!pr.recentActive) s += " inactive"
      if (pr.inflight > 0) s += ` inflight=${pr.inflight}`
      this.print(s)
    }
    if (st.leadTransferee !== 0n) this.print(`leadTransferee=${st.leadTransferee}`)
  }

  private printRaftState(): void {
    for (const [id, m] of this.members) {
      if (m.node === undefined) {
        this.print(`${id}: crashed`)
        continue
      }
      const st = m.node.status()
      const kind = st.confState.voters.includes(st.id) ? "Voter" : st.confState.learners.includes(st.id) ? "Learner" : "Non-member"
      this.print(`${id}: ${st.softState.raftState} (${kind}) Term:${st.hardState.term} Lead:${st.softState.lead}`)
    }
  }

  private printRaftLog(id: number): void {
    const s = this.member(id).storage
    const first = s.firstIndex()
    const last = s.lastIndex()
    if (last < first) {
      this.print(`log is empty: first index=${first}, last index=${last}`)
      return
    }
    const ents = s.entries(first, Index(last + 1), Number.POSITIVE_INFINITY)
    if (typeof ents === "string") throw new Error(ents)
    for (const e of ents) this.print(describeEntry(e))
  }
}
