// Layer compression: deterministic parallel gzip, multithreaded zstd, and the decompressors (plus bzip2/xz to read).
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Duplex, PassThrough } from 'node:stream';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import zstd from 'zstd-napi/binding.js';
import { spawnFilter } from '../../sys/filter.js';
import { InvalidInputError, ToolError, wrap } from '../../sys/errors.js';
import { createParallelGzip } from './gzip-parallel.js';
import { DecoderRelay, type ExpansionGuard } from './decoder-relay.js';
import { expansionFloor, maxExpansion } from '../limits.js';
import type { Compression } from '../model/types.js';

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
 *   (layers/compress/gzip-parallel.ts); every gzip reader accepts it.
 * - zstd: one frame with a content checksum, made by zstd-napi's zstd in a worker thread of its own with
 *   nbWorkers = threads (the bytes are those of zstd-napi's CompressStream). zstd's multithreaded output depends on
 *   the level, not on the worker count (nbWorkers >= 1 always, never the single-threaded mode, whose output
 *   differs).
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
      // A build without ZSTD_MULTITHREAD only allows 0 (and writes different, still valid, frames).
      const maxWorkers = zstd.cParamGetBounds(zstd.CParameter.nbWorkers).upperBound;
      return new ZstdCompressStream({ level, nbWorkers: Math.min(threads, maxWorkers) });
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

/** DecompressOptions: the expansion limit (layers/limits.ts) a decoder enforces. */
export interface DecompressOptions {
  /** names the input in errors (default: "gzip data", "the input") */
  what?: string;
  /** the whole compressed size when known; else the bytes read so far count */
  compressedSize?: number;
  /** uncompressed/compressed ratio allowed, or false for none (default TSBUILD_MAX_EXPANSION, else 100) */
  maxExpansion?: number | false;
  /** where TSBUILD_MAX_EXPANSION and TSBUILD_EXPANSION_FLOOR are read (default process.env) */
  env?: NodeJS.ProcessEnv;
}

/**
 * decompressStream returns a Duplex that decompresses a blob of compression `c` ('none' passes through). Corrupt,
 * truncated or empty input destroys it with a CorruptDataError naming the compression. gzip reads concatenated members and
 * ignores trailing zeros; zstd reads concatenated and skippable frames and refuses windows over 128 MiB; bzip2 and
 * xz run the host's `bzip2 -dc` / `xz -dc`. Every decoder respects back-pressure, so a small blob that expands
 * hugely is never held in memory, and output past the expansion limit (TSBUILD_MAX_EXPANSION times the compressed
 * size, never less than 1 GiB; layers/limits.ts) destroys the stream with an E_LIMIT error naming `what`.
 */
export function decompressStream(c: Compression | ReadOnlyCompression, opts: DecompressOptions = {}): Duplex {
  const guard = expansionGuard(opts, `${c} data`);
  const decoder = rawDecoder(c);
  if (c === 'none' || !guard) return decoder;
  return new DecoderRelay({ sniffBytes: 0, pick: () => ({ decoder, guard: true, name: c }), guard });
}

function expansionGuard(opts: DecompressOptions, what: string): ExpansionGuard | undefined {
  const ratio = opts.maxExpansion ?? maxExpansion(opts.env);
  if (ratio === false) return undefined;
  return {
    what: opts.what ?? what,
    ratio,
    floor: expansionFloor(opts.env),
    ...(opts.compressedSize === undefined ? {} : { compressedSize: opts.compressedSize }),
  };
}

function rawDecoder(c: Compression | ReadOnlyCompression): Duplex {
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
 * (see decompressStream, whose expansion limit applies) or passes anything else (a plain tar) through unchanged.
 * Read `detected` once the first bytes are in. Errors and back-pressure are those of the decoder chosen.
 */
export function autoDecompress(
  opts: DecompressOptions = {},
): Duplex & { readonly detected: Compression | ReadOnlyCompression | undefined } {
  const guard = expansionGuard(opts, 'the input');
  const relay = new DecoderRelay({
    sniffBytes: SNIFF_BYTES,
    pick: (head) => {
      const c = detectCompression(head);
      if (guard && !opts.what) guard.what = `the ${c} input`;
      return { decoder: rawDecoder(c), guard: c !== 'none', name: c };
    },
    ...(guard ? { guard } : {}),
  });
  return Object.defineProperty(relay, 'detected', {
    get: () => relay.chosen as Compression | ReadOnlyCompression | undefined,
  }) as DecoderRelay & { readonly detected: Compression | ReadOnlyCompression | undefined };
}

/**
 * The gunzip's output chunk: 1 MiB, not zlib's 16 KiB. Each chunk is a round trip to libuv's pool and one more chunk
 * through the streams after it. Applying Debian bookworm's gzip layer (61 MB, 170 MB of tar) from a store took
 * 1.10–1.22 s with 16 KiB and 0.48–0.58 s with 1 MiB; straight from the blob file into applyLayer, 16 KiB 0.95–1.18 s,
 * 64 KiB 0.62–0.77, 256 KiB 0.47–0.53, 1 MiB 0.45–0.50, 4 MiB 0.52–0.54 s (2026-12-05, 2 CPUs).
 */
const GUNZIP_CHUNK = 1 << 20;

/** GunzipStream is zlib's gunzip, in GUNZIP_CHUNK pieces, whose own failures say that the gzip data is corrupt. */
class GunzipStream extends zlib.Gunzip {
  constructor() {
    super({ chunkSize: GUNZIP_CHUNK });
  }

  override destroy(error?: Error): this {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const fromZlib = typeof code === 'string' && code.startsWith('Z_');
    return super.destroy(fromZlib ? new CorruptDataError('gzip', error) : error);
  }
}

/** The zstd thread's program (CommonJS, evaluated; see layers/compress/gzip-worker.ts for why a string). */
const ZSTD_WORKER_SOURCE = String.raw`'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const zstd = require(workerData.binding);
const cctx = new zstd.CCtx();
cctx.setParameter(zstd.CParameter.compressionLevel, workerData.level);
cctx.setParameter(zstd.CParameter.checksumFlag, 1);
cctx.setParameter(zstd.CParameter.nbWorkers, workerData.nbWorkers);
const dst = Buffer.allocUnsafe(zstd.cStreamOutSize());
const EMPTY = Buffer.alloc(0);
function run(src, op, outs) {
  for (;;) {
    const [ret, produced, consumed] = cctx.compressStream2(dst, src, op);
    if (produced > 0) outs.push(Buffer.from(dst.subarray(0, produced)));
    src = src.subarray(consumed);
    if (src.length === 0 && (op === zstd.EndDirective.continue || ret === 0)) return;
  }
}
parentPort.on('message', (m) => {
  try {
    const outs = [];
    if (m.data) run(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), zstd.EndDirective.continue, outs);
    if (m.end) run(EMPTY, zstd.EndDirective.end, outs);
    const joined = Buffer.concat(outs);
    const out = new Uint8Array(joined.length);
    out.set(joined);
    parentPort.postMessage({ id: m.id, out, end: m.end }, [out.buffer]);
    if (m.end) parentPort.close();
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

const ZSTD_BINDING = createRequire(import.meta.url).resolve('zstd-napi/binding.js');
/** Input bytes per message to the zstd thread, and how many messages may be in flight. */
const ZSTD_MESSAGE = 256 * 1024;
const ZSTD_IN_FLIGHT = 8;

type ZstdReply = { id: number; out: Uint8Array; end: boolean } | { id: number; error: string };

/**
 * ZstdCompressStream runs a zstd CCtx in a worker thread of its own (which runs zstd's own threads). Calling the
 * multithreaded CCtx on the main thread, as zstd-napi's CompressStream does, blocks the event loop whenever zstd's
 * job queue is full: 0.5 s stalls were measured on 2 CPUs. Input goes over in 256 KiB messages, at most 8 in
 * flight, and none while the reader is full. The worker is ref'd only while it has work.
 */
class ZstdCompressStream extends Duplex {
  private readonly worker: Worker;
  private staging: Buffer | undefined;
  private fill = 0;
  private inFlight = 0;
  private nextId = 0;
  private input: { chunk: Buffer; off: number; cb: (err?: Error | null) => void } | undefined;
  private finalCb: ((err?: Error | null) => void) | undefined;
  private endSent = false;
  private done = false;
  private blocked = false;

  constructor(params: { level: number; nbWorkers: number }) {
    super();
    this.worker = new Worker(ZSTD_WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      stdout: false,
      stderr: false,
      workerData: { binding: ZSTD_BINDING, ...params },
    });
    this.worker.unref();
    this.worker.on('message', (m: ZstdReply) => this.onReply(m));
    this.worker.on('error', (err) => this.destroy(wrap('zstd compression failed', err)));
    this.worker.on('exit', (code) => {
      if (!this.done && !this.destroyed)
        this.destroy(new Error(`zstd compression failed: worker thread exited with code ${code}`));
    });
  }

  private canSend(): boolean {
    return this.inFlight < ZSTD_IN_FLIGHT && !this.blocked;
  }

  private send(end: boolean): void {
    const data = this.staging ? new Uint8Array(this.staging.buffer, 0, this.fill) : null;
    this.staging = undefined;
    this.fill = 0;
    if (this.inFlight++ === 0) this.worker.ref();
    this.worker.postMessage({ id: this.nextId++, data, end }, data ? [data.buffer as ArrayBuffer] : []);
  }

  private pump(): void {
    const input = this.input;
    if (input) {
      for (;;) {
        if (this.staging && this.fill === ZSTD_MESSAGE) {
          if (!this.canSend()) return; // resumed by onReply or _read
          this.send(false);
        }
        if (input.off === input.chunk.length) break;
        this.staging ??= Buffer.allocUnsafeSlow(ZSTD_MESSAGE);
        const n = input.chunk.copy(
          this.staging,
          this.fill,
          input.off,
          Math.min(input.chunk.length, input.off + ZSTD_MESSAGE - this.fill),
        );
        this.fill += n;
        input.off += n;
      }
      this.input = undefined;
      input.cb();
    }
    if (this.finalCb && !this.endSent && this.canSend()) {
      this.endSent = true;
      this.send(true);
    }
  }

  private onReply(m: ZstdReply): void {
    if (this.destroyed) return;
    if ('error' in m) {
      this.destroy(new Error(`zstd compression failed: ${m.error}`));
      return;
    }
    if (--this.inFlight === 0) this.worker.unref();
    if (m.out.length > 0 && !this.push(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength)))
      this.blocked = true;
    if (m.end) {
      this.done = true;
      this.push(null);
      const cb = this.finalCb;
      this.finalCb = undefined;
      cb?.();
      return;
    }
    this.pump();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.input = { chunk, off: 0, cb };
    this.pump();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finalCb = cb;
    this.pump();
  }

  override _read(): void {
    this.blocked = false;
    this.pump();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.input = undefined;
    this.finalCb = undefined;
    if (!this.done) void this.worker.terminate();
    cb(err);
  }
}

/** zstd's recommended output buffer size, read on first use: asking the binding loads zstd's native module. */
let zstdOut = 0;

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
      const dst = Buffer.allocUnsafe((zstdOut ||= zstd.dStreamOutSize()));
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
