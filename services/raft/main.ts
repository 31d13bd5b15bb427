/**
 * The raft process: one member's consensus, around the pure core in ./core.
 *
 *   node services/raft/main.ts --member=m1 [--initial-cluster=m1,m2,m3]
 *     [--initial-cluster-state=new|existing] [--advertise-client-urls=http://127.0.0.1:2379]
 *     [--heartbeat-interval=100] [--election-timeout=1000] (+ the common flags)
 *
 * On start it loads its log from the member's wal service (`wal.load`, page by page). An empty
 * log with `--initial-cluster-state=new` bootstraps the `--initial-cluster` members (the same
 * entries on every member, as etcd); with `existing` the member starts empty and the leader
 * brings it up to date after `etcdctl member add`. It asks the mvcc service how far it applied,
 * so committed entries already applied are not handed over again. Once a member of a cluster
 * with a leader, it publishes its name and client URLs through raft (etcd's publish).
 *
 * Endpoints (shared/subjects.ts): raft.propose, raft.readindex, raft.status, raft.entries (for
 * mvcc gap repair), raft.msg (peers), raft.members, and the leader-only raft.confchange and
 * raft.transfer. Committed entries go to the mvcc service on `mvcc.apply` in index order;
 * ConfChange and member-attribute entries reach it as no-ops, since only raft acts on them.
 *
 * This file only parses the flags and launches the layer; ./service.ts composes the process
 * from its pieces, and its opening comment says which file owns what.
 */
import { Option } from "commander"
import { clientUrlList, launch, parseFlags, positiveInt } from "../runtime/process.ts"
import { raftLayer } from "./service.ts"
import type { RaftFlags } from "./service.ts"

const flags = parseFlags<RaftFlags>("raft", process.argv, (c) =>
  c
    .addOption(new Option("--initial-cluster <names>", "comma-separated member names of a new cluster (default: this member alone)"))
    .addOption(new Option("--initial-cluster-state <state>", "new: bootstrap; existing: join a running cluster").choices(["new", "existing"]).default("new"))
    .addOption(new Option("--advertise-client-urls <urls>", "client URLs this member publishes (http:// or https://)").argParser(clientUrlList).default([]))
    .addOption(new Option("--heartbeat-interval <ms>", "raft heartbeat interval (etcd default 100)").argParser(positiveInt).default(100))
    .addOption(new Option("--election-timeout <ms>", "raft election timeout (etcd default 1000)").argParser(positiveInt).default(1000))
    .addOption(new Option("--snapshot-count <n>", "applied entries between snapshots (etcd --snapshot-count)").env("NATCD_SNAPSHOT_COUNT").argParser(positiveInt).default(100000))
    .addOption(new Option("--snapshot-catchup-entries <n>", "entries kept before a snapshot for slow followers (etcd SnapshotCatchUpEntries)").env("NATCD_SNAPSHOT_CATCHUP_ENTRIES").argParser(positiveInt).default(5000))
    .addOption(new Option("--snapshot-bytes <n>", "bytes of entry data applied between snapshots, next to --snapshot-count (natcd's own)").env("NATCD_SNAPSHOT_BYTES").argParser(positiveInt).default(64 * 1024 * 1024))
    .addOption(new Option("--snapshot-catchup-bytes <n>", "bytes of entry data kept before a snapshot for slow followers, next to --snapshot-catchup-entries (natcd's own)").env("NATCD_SNAPSHOT_CATCHUP_BYTES").argParser(positiveInt).default(16 * 1024 * 1024))
)

launch("raft", flags, raftLayer(flags))
