/**
 * The raft process: one member's consensus, around the pure core in ./core.
 *
 *   node services/raft/main.ts --member=m1 [--initial-cluster=m1] [--heartbeat-interval=100]
 *     [--election-timeout=1000] (+ the common flags)
 *
 * On start it loads its log from the member's wal service (`wal.load`, page by page); an empty
 * log means a new member, bootstrapped with the `--initial-cluster` members as etcd does. It asks
 * the mvcc service for its applied index so committed entries already applied are not handed
 * over again. Then it serves:
 * - `raft.propose`: entry data from the gateway; replies once the core accepted it (NoLeader
 *   when there is no leader to take it);
 * - `raft.readindex`: the index a linearizable read must wait for;
 * - `raft.status`, `raft.entries` (committed entries for the mvcc service's gap repair).
 * Committed entries go to the mvcc service on `mvcc.apply`, in index order.
 */
import { Option } from "commander"
import { Effect, Layer, Schema } from "effect"
import { randomInt } from "node:crypto"
import { NoLeader, toErrorData } from "../../shared/errors.ts"
import { Index } from "../../shared/ids.ts"
import { clusterIdFor, memberIdFor } from "../../shared/membership.ts"
import type { Entry } from "../../shared/raft-types.ts"
import {
  EntriesBody,
  MvccStatus,
  ProposeBody,
  RaftStatus,
  ReadIndexBody,
  WalAppendReply,
  WalLoadReply
} from "../../shared/schema.ts"
import { subject } from "../../shared/subjects.ts"
import { endpointOptions, launch, Nats, parseFlags, positiveInt } from "../runtime/process.ts"
import { okOrError, serve } from "../runtime/rpc.ts"
import { RawNode } from "./core/raw-node.ts"
import { MemoryStorage } from "./core/storage.ts"
import { RaftDriver } from "./driver.ts"

interface RaftFlags {
  readonly initialCluster: string
  readonly heartbeatInterval: number
  readonly electionTimeout: number
}

const flags = parseFlags<RaftFlags>("raft", process.argv, (c) =>
  c
    .addOption(new Option("--initial-cluster <names>", "comma-separated member names of a new cluster").default("m1"))
    .addOption(new Option("--heartbeat-interval <ms>", "raft heartbeat interval (etcd default 100)").argParser(positiveInt).default(100))
    .addOption(new Option("--election-timeout <ms>", "raft election timeout (etcd default 1000)").argParser(positiveInt).default(1000))
)

/** Largest batch of committed entries in one mvcc.apply frame (entry data bytes). */
const maxApplyFrameBytes = 1024 * 1024

const RaftLive = Layer.effectDiscard(
  Effect.gen(function*() {
    const { nc, rpc, instance } = yield* Nats
    const at = { cluster: flags.cluster, member: flags.member }
    const names = flags.initialCluster.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    const memberId = memberIdFor(flags.cluster, flags.member)
    const peers = names.map((n) => memberIdFor(flags.cluster, n))
    const clusterId = clusterIdFor(peers)
    const walAppend = subject({ ...at, service: "wal", endpoint: "append" })
    const walLoad = subject({ ...at, service: "wal", endpoint: "load" })
    const mvccApply = subject({ ...at, service: "mvcc", endpoint: "apply" })

    // Appends to the wal service are numbered from 1 for this process run (see WalAppendBody).
    let seq = 0

    // 1. Load the log from the wal service (retrying until it answers).
    const storage = new MemoryStorage()
    const loaded = yield* Effect.promise(async () => {
      let from = 1
      const entries: Entry[] = []
      for (;;) {
        const frame = await callForever(() => rpc.call(walLoad, "wal.load", { fromIndex: from, maxBytes: 4 * 1024 * 1024 }, { timeoutMs: 5000 }))
        const page = Schema.decodeUnknownSync(WalLoadReply)(frame.body)
        for (const e of page.entries) entries.push(e)
        if (!page.more || page.entries.length === 0) return { hardState: page.hardState, entries }
        from = page.entries[page.entries.length - 1]!.index + 1
      }
    })
    const fresh = loaded.entries.length === 0 && loaded.hardState.term === 0
    if (fresh) {
      // Bootstrap writes the initial configuration entries into storage; make them durable
      // before anything depends on them.
      RawNode.bootstrap(storage, peers)
      const entries = storage.entries(Index(1), Index(storage.lastIndex() + 1), Number.MAX_SAFE_INTEGER)
      const hardState = storage.initialState().hardState
      yield* Effect.promise(() =>
        callForever(() =>
          rpc.call(walAppend, "wal.append", { writer: instance, seq: ++seq, hardState, entries: typeof entries === "string" ? [] : entries }, { timeoutMs: 5000 })
        ).then((frame) => okOrError(frame, WalAppendReply))
      )
    } else {
      storage.append(loaded.entries)
      storage.setHardState(loaded.hardState)
    }

    // 2. Ask mvcc how far it applied (best effort: it may not be up yet).
    const mvccApplied = yield* Effect.promise(() =>
      rpc.call(subject({ ...at, service: "mvcc", endpoint: "status" }), "mvcc.status", {}, { timeoutMs: 2000 }).then(
        (f) => Schema.decodeUnknownSync(MvccStatus)(f.body).appliedIndex,
        () => 0
      )
    )
    const commit = storage.initialState().hardState.commit
    // Raft re-delivers every committed entry after its snapshot (none yet), so ConfChange
    // entries reach the core again and rebuild the configuration, as etcd's restart does; the
    // mvcc service is only handed entries above what it already applied.
    const applied = 0
    const skipApplyUpTo = Math.min(mvccApplied, commit)
    const heartbeatTick = 1
    const electionTick = Math.max(2, Math.round(flags.electionTimeout / flags.heartbeatInterval))
    const node = new RawNode({
      id: memberId,
      electionTick,
      heartbeatTick,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 512,
      preVote: true,
      checkQuorum: true,
      applied: Index(applied),
      randomInt: (n) => randomInt(n)
    }, storage)

    // 3. The Ready loop, persisting through the wal service.
    let term = loaded.hardState.term as number
    const driver = new RaftDriver(node, storage, {
      persist: async (hardState, entries, traceparent) => {
        if (hardState !== undefined) term = hardState.term
        const body = { writer: instance, seq: ++seq, ...(hardState === undefined ? {} : { hardState }), entries }
        const frame = await callForever(() => rpc.call(walAppend, "wal.append", body, { timeoutMs: 5000, retryAfterMs: 500, traceparent }))
        okOrError(frame, WalAppendReply)
      },
      send: () => {
        // Single-member clusters send nothing; peer transport arrives with multi-member raft.
      },
      apply: (all, commitIndex) => {
        const entries = all[all.length - 1]!.index <= skipApplyUpTo ? [] : all.filter((e) => e.index > skipApplyUpTo)
        if (entries.length === 0) return
        let start = 0
        let bytes = 0
        for (let i = 0; i < entries.length; i++) {
          bytes += entries[i]!.data.length
          if (bytes > maxApplyFrameBytes && i > start) {
            rpc.publish(mvccApply, "apply", { entries: entries.slice(start, i), commitIndex, term })
            start = i
            bytes = entries[i]!.data.length
          }
        }
        rpc.publish(mvccApply, "apply", { entries: entries.slice(start), commitIndex, term })
      }
    }, (e) => {
      console.error(JSON.stringify({ level: "FATAL", service: "raft", member: flags.member, message: "raft loop failed", error: String((e as Error)?.stack ?? e) }))
      process.exit(1)
    })

    // 4. Endpoints.
    const opts = endpointOptions("raft")
    const endpoints = [
      serve(nc, subject({ ...at, service: "raft", endpoint: "propose" }), "propose", ProposeBody, (req) => {
        const err = driver.propose(req.body.data, req.traceparent)
        if (err !== undefined) req.reply("propose.reply", { err: toErrorData(new NoLeader()) })
        else req.reply("propose.reply", { ok: { leader: driver.leader() } })
      }, opts),
      serve(nc, subject({ ...at, service: "raft", endpoint: "readindex" }), "readindex", ReadIndexBody, (req) => {
        driver.readIndex().then((index) => {
          if (index === "NoLeader") req.reply("readindex.reply", { err: toErrorData(new NoLeader()) })
          else req.reply("readindex.reply", { ok: { index } })
        })
      }, opts),
      serve(nc, subject({ ...at, service: "raft", endpoint: "status" }), "raft.status", Schema.Struct({}), (req) => {
        const s = node.status()
        const status: typeof RaftStatus.Encoded = {
          memberId,
          clusterId,
          leader: s.softState.lead,
          term: s.hardState.term,
          commitIndex: s.commit,
          appliedIndex: driver.applied(),
          raftState: s.softState.raftState,
          isLearner: s.confState.learners.includes(memberId)
        }
        req.reply("raft.status.reply", status)
      }, opts),
      serve(nc, subject({ ...at, service: "raft", endpoint: "entries" }), "entries", EntriesBody, (req) => {
        const commitIndex = node.status().commit
        const hi = Math.min(commitIndex, driver.applied(), storage.lastIndex()) + 1
        const from = Math.max(req.body.from, storage.firstIndex())
        const entries = from >= hi ? [] : storage.entries(Index(from), Index(hi), req.body.maxBytes)
        req.reply("entries.reply", { entries: typeof entries === "string" ? [] : entries, commitIndex })
      }, opts)
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => endpoints.forEach((e) => e.stop())))

    // 5. Ticks. A member that is the only voter campaigns at once rather than waiting out an
    // election timeout (etcd fast-forwards its election ticks for the same reason).
    const soleVoterCampaign = () => {
      const s = node.status()
      const voters = s.confState.voters
      if (voters.length === 1 && voters[0] === memberId && s.softState.raftState === "StateFollower") driver.campaign()
    }
    const timer = setInterval(() => {
      soleVoterCampaign()
      driver.tick()
    }, flags.heartbeatInterval)
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
    yield* Effect.logInfo("raft started").pipe(
      Effect.annotateLogs({ memberId: memberId.toString(16), fresh, lastIndex: storage.lastIndex(), commit, applied, term })
    )
  })
)

/** Retries `call` until it resolves, 100 ms after each failure (for calls raft cannot do without). */
const callForever = async <A>(call: () => Promise<A>): Promise<A> => {
  for (;;) {
    try {
      return await call()
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

launch("raft", flags, RaftLive)
