// A streaming tar reader of our own: headers are decoded straight from the chunks the source gives
// (layers/tar/read-header.ts), each entry's data is handed on as slices of those chunks, and the consumer (a
// TarSink) may make the reader wait after any header or entry. No stream, promise or event per entry: on a layer
// of many small files tar-stream's extract (a Readable per entry, microtasks between them) cost as much as the
// writing.
//
// What it reads is what tar-stream 3.x's extract reads (test/layers/tar/read-compare.test.ts holds it to that on a
// corpus of archives and on mangled ones): ustar and GNU headers, base-256 numbers, PAX extended headers (`x`, over
// the global `g` ones, as tar-stream merges them), GNU long names (`L`, `N`) and link targets (`K`), PAX `path`,
// `linkpath` and `size`. Like tar-stream, and unlike GNU tar or Go's archive/tar:
// - a block of zeros is skipped wherever it is, and what follows the end-of-archive blocks is read as more entries
//   (trailing garbage fails the archive; trailing zeros, in whole blocks, do not);
// - a directory's size is not data: the blocks after its header are the next header;
// - an archive may end right after an entry (no end-of-archive blocks), but not inside one, its padding or a header.
// Where tar-stream goes wrong on a malformed archive, the reader refuses it instead: a size that is not a whole
// number of bytes (negative, NaN, a base-256 field it could not read: its extract waited forever) and a PAX or GNU
// long-name header of size 0 (which made tar-stream read the next entry's data as the long name), which is read as
// empty.
import type { Readable } from 'node:stream';
import {
  decodeHeader,
  decodeLongPath,
  decodePax,
  HEADER_TOO_BIG,
  INVALID_HEADER,
  MAX_LONG_HEADER,
  TarFormatError,
  UNEXPECTED_END,
  type TarHeader,
} from './read-header.js';

export { TarFormatError, type TarHeader, type TarType } from './read-header.js';

/** Wait is what a sink returns to make the reader stop until it settles (undefined: go on at once). */
export type Wait = Promise<unknown> | undefined | void;

/**
 * TarSink receives the entries of a tar, one at a time: header(), then data() for each slice of its content (none
 * when it is empty), then end(). A slice is a view of the source's chunk: copy what must outlive the entry. A throw
 * stops the reader, which throws it on. header() and end() may return a promise: the reader waits for it (and
 * does not read the source meanwhile) before it goes on.
 */
export interface TarSink {
  header(h: TarHeader): Wait;
  data(chunk: Buffer): void;
  end(): Wait;
}

const HEADER = 0;
const DATA = 1;
const LONG = 2;
const SKIP = 3;

const EMPTY = Buffer.alloc(0);

/**
 * TarParser is the reader's state machine: write() each chunk of the archive, and when write() (or resume())
 * returns a promise, wait for it and call resume() before writing more; end() at the end of the input. Errors
 * (TarFormatError, or whatever the sink threw) are thrown; the parser is then unusable.
 */
export class TarParser {
  private state = HEADER;
  /** bytes still to read in the current state: entry data, long header, padding */
  private remaining = 0;
  /** padding after the current entry's data or long header */
  private pad = 0;
  /** a header block that spans chunks */
  private readonly block = Buffer.alloc(512);
  private blockLen = 0;
  /** a PAX or GNU long-name header's content being gathered */
  private long: Buffer = EMPTY;
  private longLen = 0;
  private longType: TarHeader['type'] = null;
  private gnuPath: string | undefined;
  private gnuLink: string | undefined;
  private pax: Record<string, string> | undefined;
  private paxGlobal: Record<string, string> | undefined;
  /** the chunk being read, where in it, and where it starts in the archive */
  private chunk: Buffer = EMPTY;
  private off = 0;
  private base = 0;
  /** an entry was handed to the sink and its end() is still to be called */
  private inEntry = false;

  constructor(private readonly sink: TarSink) {}

  /** write reads one chunk of the archive; a promise means: wait for it, then resume(). */
  write(chunk: Uint8Array): Wait {
    this.base += this.chunk.length;
    this.chunk = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.off = 0;
    return this.run();
  }

  /** resume goes on after a wait; it may return another. */
  resume(): Wait {
    return this.run();
  }

  /** end checks that the archive did not stop inside an entry, its padding or a header. */
  end(): void {
    if (this.state !== HEADER || this.blockLen !== 0 || this.off !== this.chunk.length)
      throw new TarFormatError(UNEXPECTED_END);
  }

  /** offset is how many bytes of the archive have been read. */
  get offset(): number {
    return this.base + this.off;
  }

  private run(): Wait {
    const buf = this.chunk;
    const len = buf.length;
    let off = this.off;
    for (;;) {
      if (this.state === DATA && this.remaining === 0 && this.inEntry) {
        // the entry is whole (or empty): on to its padding and the next header
        this.inEntry = false;
        this.state = this.pad > 0 ? SKIP : HEADER;
        this.remaining = this.pad;
        const wait = this.sink.end();
        if (wait) {
          this.off = off;
          return wait;
        }
        continue;
      }
      if (off >= len) break;
      switch (this.state) {
        case HEADER: {
          let block: Buffer;
          let at: number;
          if (this.blockLen === 0 && len - off >= 512) {
            block = buf;
            at = off;
            off += 512;
          } else {
            const n = Math.min(512 - this.blockLen, len - off);
            buf.copy(this.block, this.blockLen, off, off + n);
            off += n;
            this.blockLen += n;
            if (this.blockLen < 512) continue;
            this.blockLen = 0;
            block = this.block;
            at = 0;
          }
          this.off = off;
          const wait = this.onHeader(block, at);
          if (wait) return wait;
          break;
        }
        case DATA: {
          const n = Math.min(this.remaining, len - off);
          const slice = buf.subarray(off, off + n);
          off += n;
          this.remaining -= n;
          this.off = off;
          this.sink.data(slice);
          break;
        }
        case LONG: {
          const n = Math.min(this.remaining, len - off);
          buf.copy(this.long, this.longLen, off, off + n);
          off += n;
          this.longLen += n;
          this.remaining -= n;
          if (this.remaining === 0) this.endLong();
          break;
        }
        default: {
          // SKIP: padding
          const n = Math.min(this.remaining, len - off);
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = HEADER;
        }
      }
    }
    this.off = off;
    return undefined;
  }

  /** onHeader takes a whole header block (this.off is past it). */
  private onHeader(block: Buffer, at: number): Wait {
    const h = decodeHeader(block, at);
    if (h === null) return undefined; // a block of zeros: skipped
    h.byteOffset = this.base + this.off;
    switch (h.type) {
      case 'gnu-long-path':
      case 'gnu-long-link-path':
      case 'pax-global-header':
      case 'pax-header': {
        const size = h.size;
        if (size > MAX_LONG_HEADER) throw new TarFormatError(HEADER_TOO_BIG);
        if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError(INVALID_HEADER);
        this.longType = h.type;
        this.long = size === 0 ? EMPTY : Buffer.allocUnsafe(size);
        this.longLen = 0;
        this.pad = padding(size);
        this.remaining = size;
        this.state = LONG;
        if (size === 0) this.endLong();
        return undefined;
      }
    }
    if (this.gnuPath !== undefined) {
      if (this.gnuPath) h.name = this.gnuPath;
      this.gnuPath = undefined;
    }
    if (this.gnuLink !== undefined) {
      if (this.gnuLink) h.linkname = this.gnuLink;
      this.gnuLink = undefined;
    }
    const pax = this.pax;
    if (pax !== undefined) {
      if (pax.path) h.name = pax.path;
      if (pax.linkpath) h.linkname = pax.linkpath;
      if (pax.size) h.size = Number.parseInt(pax.size, 10);
      h.pax = pax;
      this.pax = undefined;
    }
    const size = h.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError(INVALID_HEADER);
    // tar-stream reads no data for a directory, whatever its size says
    const data = h.type === 'directory' ? 0 : size;
    this.state = DATA;
    this.remaining = data;
    this.pad = padding(data);
    this.inEntry = true;
    return this.sink.header(h);
  }

  private endLong(): void {
    const buf = this.long;
    this.long = EMPTY;
    switch (this.longType) {
      case 'gnu-long-path':
        this.gnuPath = decodeLongPath(buf);
        break;
      case 'gnu-long-link-path':
        this.gnuLink = decodeLongPath(buf);
        break;
      case 'pax-global-header':
        this.paxGlobal = decodePax(buf);
        break;
      default: {
        const own = decodePax(buf);
        this.pax = this.paxGlobal === undefined ? own : Object.assign({}, this.paxGlobal, own);
      }
    }
    this.state = this.pad > 0 ? SKIP : HEADER;
    this.remaining = this.pad;
  }
}

function padding(size: number): number {
  const r = size % 512;
  return r === 0 ? 0 : 512 - r;
}

export interface ReadTarOptions {
  /** maps an error of the source (its iterator threw) before it is thrown on */
  sourceError?: (e: unknown) => unknown;
}

/**
 * readTar reads a whole tar from `source` (a Readable or any async iterable of bytes) into `sink`, asking for one
 * chunk ahead of the one being read, and no more while the sink makes it wait (back-pressure). It throws TarFormatError for a malformed
 * or truncated archive, and whatever the sink or the source threw. It does not destroy the source on an error:
 * the caller does.
 */
export async function readTar(
  source: Readable | AsyncIterable<Uint8Array>,
  sink: TarSink,
  opts: ReadTarOptions = {},
): Promise<void> {
  const parser = new TarParser(sink);
  const it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  // One chunk asked for ahead of the one being read, so that the source reads while this thread parses.
  let next = it.next();
  for (;;) {
    let r: IteratorResult<Uint8Array>;
    try {
      r = await next;
    } catch (e) {
      throw opts.sourceError ? opts.sourceError(e) : e;
    }
    if (r.done) break;
    next = it.next();
    next.catch(() => {}); // an error is thrown above, when it is awaited (or not at all, after a failure here)
    if (typeof r.value === 'string') throw new TypeError('readTar: the source gave a string, not bytes');
    let wait = parser.write(r.value);
    while (wait) {
      await wait;
      wait = parser.resume();
    }
  }
  parser.end();
}
