/**
 * The one error the WAL core raises: the log on disk cannot be read back without losing
 * acknowledged data. It always names the segment file and the byte offset where reading
 * stopped, so an operator can inspect the damage (etcd raises `wal.ErrCRCMismatch`,
 * `ErrMetadataConflict`, `ErrSliceOutOfRange`, `ErrFileNotFound` in the same places, see
 * server/storage/wal/wal.go and decoder.go).
 *
 * A torn tail of the last segment is not an error: {@link ../core/repair.ts} turns it into a
 * repair decision instead.
 */

/**
 * Middle-of-log corruption or an inconsistent set of segments. `file` is a segment file name
 * (no directory), `offset` a byte offset inside it (0 for whole-file problems such as a missing
 * sequence number), `reason` a short lower-case description.
 */
export class WalCorruptError extends Error {
  override readonly name = "WalCorruptError"
  readonly file: string
  readonly offset: number
  readonly reason: string
  constructor(file: string, offset: number, reason: string) {
    super(`wal: ${file} at byte offset ${offset}: ${reason}`)
    this.file = file
    this.offset = offset
    this.reason = reason
  }
}
