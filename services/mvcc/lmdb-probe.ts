/**
 * Opens an LMDB file that came from elsewhere (a fetched snapshot, a pending install) and prints
 * the consistent index stored in it as JSON: `{"consistentIndex":N}`. Run as its own process by
 * ./snapshot.ts `consistentIndexOf`: LMDB trusts its file's pages, and a file that is not a
 * sound LMDB environment can crash the process that opens it (a segmentation fault, not an
 * exception), so the mvcc service never opens such a file itself before a probe succeeded.
 *
 *   node services/mvcc/lmdb-probe.ts <file>
 *
 * Exit status 0 with the JSON line on stdout; non-zero (or a signal) when the file does not open.
 */
import { LmdbBackend } from "./backend-lmdb.ts"
import { unsafeReadConsistentIndex } from "./core/backend.ts"

const path = process.argv[2]
if (path === undefined) {
  console.error("usage: lmdb-probe.ts <file>")
  process.exit(2)
}
const backend = LmdbBackend.open(path)
const consistentIndex = unsafeReadConsistentIndex(backend.read)
await backend.close()
process.stdout.write(`${JSON.stringify({ consistentIndex })}\n`)
