// Layer compression: deterministic parallel gzip, multithreaded zstd, and the decompressors (plus bzip2/xz to read).
import { availableParallelism } from 'node:os';
import { Duplex, PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import zstd from 'zstd-napi/binding.js';
import { spawnFilter } from '../sys/filter.js';
import { InvalidInputError, ToolError } from './errors.js';
import { createParallelGzip } from './gzip-parallel.js';
import type { Compression } from './types.js';

export { shutdownGzipPool } from './gzip-parallel.js';

export interface CompressOptions {
  /** gzip 0–9 (default 6); zstd from its negative fast levels to 22 (default 3, 0 also means 3) */
  level?: number;
  /** worker threads (default os.availableParallelism()); the output bytes do not depend on it */
  threads?: number;
}

/** Compressions that tsbuild reads but does not write. */
export type ReadOnlyCompression = 'bzip2' | 'xz';

/** CorruptDataError is compressed input that its decoder refuses: "gzip data is corrupt: unexpected end of file". */
export class CorruptDataError extends InvalidInputError {
  constructor(
    readonly compression: string,
    cause: unknown,
  ) {
    super(`${compression} data is corrupt: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.cause = cause;
  }
}

/**
 * compressStream returns a Duplex: uncompressed bytes in, compressed bytes out; the caller ends the writable side.
 * Both compressors are deterministic: the same input and level give the same blob whatever `threads` is.
 * - gzip: one gzip member with MTIME 0 and OS 3, deflated in 128 KiB blocks on a pool of worker threads
 *   (layers/gzip-parallel.ts); every gzip reader accepts it.
 * - zstd: one frame with a content checksum, from zstd's own worker threads (nbWorkers = threads). zstd's
 *   multithreaded output depends on the level, not on the worker count (nbWorkers >= 1 always, never the
 *   single-threaded mode, whose output differs).
 * - none: the bytes pass through.
 * "Same blob" holds for one build of tsbuild: the deflate of Node's bundled zlib and zstd-napi's zstd (1.5.7) can
 * change their output in a new release, so a blob cache must not assume digests survive an upgrade of either.
 */
export function compressStream(c: Compression, opts: CompressOptions = {}): Duplex {
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidInputError(`compression threads must be an integer from 1 to 256, not ${threads}`);
  }
  switch (c) {
    case 'gzip': {
      const level = opts.level ?? 6;
      checkLevel('gzip', level, 0, 9);
      return createParallelGzip({ level, threads });
    }
    case 'zstd': {
      const level = opts.level ?? 3;
      checkLevel('zstd', level, zstd.minCLevel(), zstd.maxCLevel());
      const maxWorkers = zstd.cParamGetBounds(zstd.CParameter.nbWorkers).upperBound;
      return new CompressStream({
        compressionLevel: level,
        // A build without ZSTD_MULTITHREAD only allows 0 (and writes different, still valid, frames).
        nbWorkers: Math.min(threads, maxWorkers),
        checksumFlag: true,
      });
    }
    case 'none':
      return new PassThrough();
    default:
      throw new InvalidInputError(`unknown compression ${JSON.stringify(c)} (expected gzip, zstd or none)`);
  }
}

function checkLevel(name: string, level: number, min: number, max: number): void {
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new InvalidInputError(`${name} level must be an integer from ${min} to ${max}, not ${level}`);
  }
}

/**
 * decompressStream returns a Duplex that decompresses a blob of compression `c` ('none' passes through). Corrupt,
 * truncated or empty input destroys it with a CorruptDataError naming the compression. gzip reads concatenated members and
 * ignores trailing zeros; zstd reads concatenated and skippable frames and refuses windows over 128 MiB; bzip2 and
 * xz run the host's `bzip2 -dc` / `xz -dc`. Every decoder respects back-pressure, so a small blob that expands
 * hugely is never held in memory.
 */
export function decompressStream(c: Compression | ReadOnlyCompression): Duplex {
  switch (c) {
    case 'gzip':
      return new GunzipStream();
    case 'zstd':
      return new ZstdDecompressStream();
    case 'bzip2':
    case 'xz':
      return spawnFilter([c, '-dc'], { mapError: (e) => (e instanceof ToolError ? new CorruptDataError(c, e) : e) });
    case 'none':
      return new PassThrough();
    default:
      throw new InvalidInputError(`unknown compression ${JSON.stringify(c)}`);
  }
}

/** The longest magic number detectCompression looks at (xz). */
const SNIFF_BYTES = 6;

/**
 * detectCompression names the compression of a blob from its first bytes: gzip (1f 8b), zstd (28 b5 2f fd, or a
 * skippable frame), bzip2 ("BZh1"–"BZh9"), xz (fd "7zXZ" 00); anything else, including a head too short to tell,
 * is 'none'.
 */
export function detectCompression(head: Uint8Array): Compression | ReadOnlyCompression {
  const b = (i: number): number => head[i] ?? -1;
  if (b(0) === 0x1f && b(1) === 0x8b) return 'gzip';
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return 'zstd';
  if ((b(0) & 0xf0) === 0x50 && b(1) === 0x2a && b(2) === 0x4d && b(3) === 0x18) return 'zstd';
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68 && b(3) >= 0x31 && b(3) <= 0x39) return 'bzip2';
  if (b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58 && b(4) === 0x5a && b(5) === 0x00) return 'xz';
  return 'none';
}

/**
 * autoDecompress returns a Duplex that looks at the first bytes written, then decompresses gzip, zstd, bzip2 or xz
 * (see decompressStream) or passes anything else (a plain tar) through unchanged. Read `detected` once the first
 * bytes are in. Errors and back-pressure are those of the decoder chosen.
 */
export function autoDecompress(): Duplex & { readonly detected: Compression | ReadOnlyCompression | undefined } {
  return new AutoDecompressStream();
}

/** GunzipStream is zlib's gunzip whose own failures say that the gzip data is corrupt. */
class GunzipStream extends zlib.Gunzip {
  override destroy(error?: Error): this {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const fromZlib = typeof code === 'string' && code.startsWith('Z_');
    return super.destroy(fromZlib ? new CorruptDataError('gzip', error) : error);
  }
}

const ZSTD_OUT = zstd.dStreamOutSize();

/**
 * ZstdDecompressStream drives a zstd DCtx itself rather than using zstd-napi's DecompressStream, which pushes all
 * the output of a chunk at once: 8 KiB of zstd can expand to hundreds of MiB.
 */
class ZstdDecompressStream extends Duplex {
  private readonly dctx = new zstd.DCtx();
  private src: Buffer | undefined;
  private cb: ((err?: Error | null) => void) | undefined;
  private inFrame = false;
  private blocked = false;
  private seen = 0;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.seen += chunk.length;
    this.src = chunk;
    this.cb = cb;
    this.run();
  }

  private run(): void {
    while (this.src && !this.blocked && !this.destroyed) {
      const dst = Buffer.allocUnsafe(ZSTD_OUT);
      let ret: number, produced: number, consumed: number;
      try {
        [ret, produced, consumed] = this.dctx.decompressStream(dst, this.src);
      } catch (err) {
        this.destroy(new CorruptDataError('zstd', err));
        return;
      }
      this.src = this.src.subarray(consumed);
      this.inFrame = ret !== 0;
      if (produced > 0 && !this.push(dst.subarray(0, produced))) this.blocked = true;
      if (this.src.length === 0 && (produced < dst.length || ret === 0)) {
        const cb = this.cb;
        this.src = undefined;
        this.cb = undefined;
        cb?.();
      }
    }
  }

  override _read(): void {
    this.blocked = false;
    this.run();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.seen === 0) return cb(new CorruptDataError('zstd', 'unexpected end of file (no frame)'));
    if (this.inFrame) return cb(new CorruptDataError('zstd', 'unexpected end of file in the middle of a frame'));
    this.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.src = undefined;
    this.cb = undefined;
    cb(err);
  }
}

/** AutoDecompressStream buffers the first bytes, picks a decoder and then relays through it. */
class AutoDecompressStream extends Duplex {
  detected: Compression | ReadOnlyCompression | undefined;
  private inner: Duplex | undefined;
  private head: Buffer[] = [];
  private headLength = 0;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.inner) return this.relay(this.inner, chunk, cb);
    this.head.push(chunk);
    this.headLength += chunk.length;
    if (this.headLength < SNIFF_BYTES) return cb();
    const { inner, head } = this.start();
    this.relay(inner, head, cb);
  }

  /** start chooses the decoder from the bytes so far; they are returned for the caller to write to it. */
  private start(): { inner: Duplex; head: Buffer } {
    const head = Buffer.concat(this.head);
    this.head = [];
    this.detected = detectCompression(head);
    const inner = decompressStream(this.detected);
    this.inner = inner;
    inner.on('data', (b: Buffer) => {
      if (!this.push(b)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    return { inner, head };
  }

  private relay(inner: Duplex, chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (inner.write(chunk)) return cb();
    const done = (): void => {
      inner.off('drain', done);
      inner.off('close', done);
      cb();
    };
    inner.on('drain', done);
    inner.on('close', done);
  }

  override _final(cb: (err?: Error | null) => void): void {
    let inner = this.inner;
    if (!inner) {
      const started = this.start();
      inner = started.inner;
      if (started.head.length > 0) inner.write(started.head);
    }
    inner.end();
    inner.once('finish', () => cb());
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}
