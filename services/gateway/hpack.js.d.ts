/**
 * Types for the parts of hpack.js (RFC 7541 HPACK, the header compression of HTTP/2) that natcd
 * uses; the package ships none. Header names and values are strings of octets, one char per
 * byte (latin1), as the package reads and writes them.
 */
declare module "hpack.js" {
  /** One header field; `neverIndex` marks a field sent as never indexed (RFC 7541 §6.2.3). */
  export interface HpackHeader {
    readonly name: string
    readonly value: string
    readonly neverIndex?: boolean
    readonly huffman?: boolean
  }

  /** Options of both directions: the dynamic table's maximum size in bytes. */
  export interface HpackOptions {
    readonly table: { readonly maxSize: number }
  }

  /** Decodes header blocks: write() a block, execute(), then read() each header until null. */
  export interface Decompressor {
    write(block: Buffer): boolean
    execute(): void
    read(): { name: string; value: string; neverIndex: boolean } | null
    on(event: "error", listener: (error: Error) => void): this
  }

  /** Encodes header blocks: write() a list of headers, then read() the block's chunks until null. */
  export interface Compressor {
    write(headers: ReadonlyArray<HpackHeader>): boolean
    read(): Buffer | null
  }

  const hpack: {
    readonly decompressor: { create(options: HpackOptions): Decompressor }
    readonly compressor: { create(options: HpackOptions): Compressor }
  }
  export default hpack
}
