/**
 * Modes of everything natcd keeps at rest, as etcd: directories 0700, files 0600 (etcd
 * client/pkg/fileutil `PrivateDirMode`, `PrivateFileMode`). Each service sets its umask to 0077
 * at start (./process.ts `parseFlags`), and the file code passes these modes explicitly as well,
 * so neither a lax umask nor a missed call leaves data readable by other users.
 */
import { chmodSync, mkdirSync, statSync } from "node:fs"

/** Mode of every file under the data directory (etcd fileutil.PrivateFileMode). */
export const privateFileMode = 0o600
/** Mode of every directory under the data directory (etcd fileutil.PrivateDirMode). */
export const privateDirMode = 0o700

/**
 * Makes `dir` (and missing parents) with mode 0700, or, when it exists with another mode, sets
 * it to 0700 and returns the mode it had so the caller can warn. Follows etcd's
 * fileutil.TouchDirAll, which for an existing directory runs CheckDirPermission; departure:
 * etcd only warns ("directory ... exist, but the permission is ... The recommended permission is
 * -rwx------ to prevent possible unprivileged access to the data"), natcd also tightens it, so a
 * member directory made under a lax umask by an older version or by hand stops being readable
 * by other users. Throws when `dir` cannot be made or changed.
 */
export const touchPrivateDir = (dir: string): { readonly previousMode?: number } => {
  let mode: number
  try {
    mode = statSync(dir).mode & 0o777
  } catch (e) {
    if ((e as { code?: unknown }).code !== "ENOENT") throw e
    mkdirSync(dir, { recursive: true, mode: privateDirMode })
    return {}
  }
  if (mode === privateDirMode) return {}
  chmodSync(dir, privateDirMode)
  return { previousMode: mode }
}
