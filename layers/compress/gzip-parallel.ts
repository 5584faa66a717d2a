// Parallel, deterministic gzip: pigz's block scheme on a pool of worker threads.
//
// The input is cut into fixed-size blocks. Each block is raw-deflated on its own, primed with the last 32 KiB of the
// block before it as the dictionary, and ended with a sync flush (the last block with a final block instead); the
// outputs are concatenated in order between one gzip header and one trailer. The bytes therefore depend only on the
// input, the level and the block size: not on the number of threads, the scheduling, or how the input was chunked.
import { Duplex } from 'node:stream';
import { Worker, type TransferListItem } from 'node:worker_threads';
import zlib from 'node:zlib';
import { wrap } from '../../sys/errors.js';
import { GZIP_WORKER_SOURCE, type DeflateJob, type DeflateResult } from './gzip-worker.js';

/** GZIP_BLOCK_SIZE is the input size of one deflate job. Changing it changes every gzip blob digest. */
export const GZIP_BLOCK_SIZE = 128 * 1024;
/** The deflate window: how much of the previous block primes the next one. */
const WINDOW = 32 * 1024;

export interface ParallelGzipOptions {
  /** zlib level 0–9 */
  level: number;
  /** how many workers compress this stream's blocks at once (the shared pool grows to the largest asked for) */
  threads: number;
  /** input bytes per block, >= 32 KiB; the default GZIP_BLOCK_SIZE is what gives stable digests */
  blockSize?: number;
}

/**
 * createParallelGzip returns a Duplex: uncompressed bytes in, one gzip member out (MTIME 0, OS 3 (Unix), XFL as
 * zlib sets it for the level). Output is byte-identical for any `threads`. At most 4×threads blocks are held at a
 * time, counting compressed blocks the reader has not taken yet, so memory stays flat whatever the input size. An
 * input of at most one block is deflated on the calling thread and equals `zlib.gzipSync(input, { level })`.
 * The caller ends the writable side; a worker failure destroys the stream with the cause.
 */
export function createParallelGzip(opts: ParallelGzipOptions): Duplex {
  return new ParallelGzip(opts);
}

/** gzipHeader is the 10-byte member header zlib writes for `level`: no name, no time. */
export function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level < 2 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]);
}

interface Entry {
  out?: Uint8Array;
}

class ParallelGzip extends Duplex {
  private readonly level: number;
  private readonly threads: number;
  private readonly blockSize: number;
  private readonly limit: number;
  private block: Buffer | undefined;
  private fill = 0;
  private dict: Uint8Array | null = null;
  private dispatched = 0;
  private crc = 0;
  private size = 0;
  private readonly queue: Entry[] = [];
  private input: { chunk: Buffer; off: number; cb: (err?: Error | null) => void } | undefined;
  private finalCb: ((err?: Error | null) => void) | undefined;
  private blocked = false;

  constructor(opts: ParallelGzipOptions) {
    super();
    this.level = opts.level;
    this.threads = opts.threads;
    this.blockSize = opts.blockSize ?? GZIP_BLOCK_SIZE;
    if (this.blockSize < WINDOW) throw new RangeError(`gzip block size must be at least ${WINDOW} bytes`);
    // Four blocks in hand per thread: with two, the threads ran dry whenever this thread was busy for a while (an
    // import unpacks its layer here meanwhile): `import --compression gzip` of a 170 MB rootfs on 2 CPUs, 5 rounds
    // A/B, 3.68 → 3.33 s (medians); eight per thread gave no more.
    this.limit = 4 * this.threads;
    this.push(gzipHeader(this.level));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.crc = zlib.crc32(chunk, this.crc);
    this.size += chunk.length;
    this.input = { chunk, off: 0, cb };
    this.pump();
  }

  /** pump copies pending input into blocks, sending each full block on once more input shows it is not the last. */
  private pump(): void {
    const input = this.input;
    if (!input) return;
    const { chunk } = input;
    while (input.off < chunk.length) {
      if (this.block && this.fill === this.blockSize) {
        if (this.queue.length >= this.limit) return; // resumed by drain()
        this.dispatch(false);
      }
      if (!this.block) {
        this.block = Buffer.allocUnsafeSlow(this.blockSize);
        this.fill = 0;
      }
      const n = chunk.copy(
        this.block,
        this.fill,
        input.off,
        Math.min(chunk.length, input.off + this.blockSize - this.fill),
      );
      this.fill += n;
      input.off += n;
    }
    this.input = undefined;
    input.cb();
  }

  private dispatch(last: boolean): void {
    const block = this.block as Buffer;
    const data = block.subarray(0, this.fill);
    const dict = this.dict;
    this.block = undefined;
    this.dict = last ? null : new Uint8Array(data.subarray(data.length - WINDOW)); // a copy: the block goes to the worker
    this.dispatched++;
    const entry: Entry = {};
    this.queue.push(entry);
    const transfer: TransferListItem[] = [block.buffer as ArrayBuffer];
    if (dict) transfer.push(dict.buffer as ArrayBuffer);
    deflatePool()
      .deflate({ data, dict, level: this.level, last }, this.threads, transfer)
      .then(
        (out) => {
          entry.out = out;
          this.drain();
        },
        (err: unknown) => {
          if (!this.destroyed) this.destroy(wrap('gzip compression failed', err));
        },
      );
  }

  /** drain pushes finished blocks in order while the reader has room, then lets more input in. */
  private drain(): void {
    if (this.destroyed) return;
    while (!this.blocked) {
      const head = this.queue[0];
      if (!head?.out) break;
      this.queue.shift();
      if (!this.push(head.out)) this.blocked = true;
    }
    if (this.queue.length === 0 && this.finalCb) {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.size % 2 ** 32, 4);
      this.push(trailer);
      this.push(null);
      const cb = this.finalCb;
      this.finalCb = undefined;
      cb();
      return;
    }
    this.pump();
  }

  override _read(): void {
    this.blocked = false;
    this.drain();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finalCb = cb;
    if (this.dispatched === 0) {
      // At most one block: no pool, and the result is exactly zlib's single-call gzip.
      const data = this.block ? this.block.subarray(0, this.fill) : Buffer.alloc(0);
      this.block = undefined;
      try {
        this.queue.push({ out: zlib.deflateRawSync(data, { level: this.level }) });
      } catch (err) {
        this.finalCb = undefined;
        return cb(wrap('gzip compression failed', err));
      }
    } else {
      this.dispatch(true);
    }
    this.drain();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.queue.length = 0;
    this.input = undefined;
    this.block = undefined;
    cb(err);
  }
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (out: Uint8Array) => void; reject: (err: Error) => void }>;
}

/**
 * DeflatePool runs DeflateJobs on worker threads, started lazily. An idle worker is unref'd, so the pool never keeps
 * the process alive; a worker with jobs is ref'd, so a pending stream does. A worker that dies fails its jobs and is
 * replaced on the next use.
 */
class DeflatePool {
  private readonly slots: (Slot | undefined)[] = [];
  private nextId = 1;

  /** deflate runs one job on the least busy of the first `width` workers. */
  deflate(job: Omit<DeflateJob, 'id'>, width: number, transfer: TransferListItem[]): Promise<Uint8Array> {
    let best: Slot | undefined;
    for (let i = 0; i < width; i++) {
      const slot = this.slots[i] ?? this.start(i);
      if (!best || slot.pending.size < best.pending.size) best = slot;
    }
    const slot = best as Slot;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve, reject });
      const msg: DeflateJob = { id, ...job };
      slot.worker.postMessage(msg, transfer);
    });
  }

  private start(i: number): Slot {
    const worker = new Worker(GZIP_WORKER_SOURCE, { eval: true, execArgv: [], stdout: false, stderr: false });
    const slot: Slot = { worker, pending: new Map() };
    this.slots[i] = slot;
    worker.unref();
    worker.on('message', (res: DeflateResult) => {
      const p = slot.pending.get(res.id);
      if (!p) return;
      slot.pending.delete(res.id);
      if (slot.pending.size === 0) worker.unref();
      if ('error' in res) p.reject(new Error(res.error));
      else p.resolve(res.out);
    });
    const fail = (err: Error): void => {
      if (this.slots[i] === slot) this.slots[i] = undefined;
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      worker.unref();
    };
    worker.on('error', fail);
    worker.on('messageerror', fail);
    worker.on('exit', (code) => fail(new Error(`gzip worker thread exited with code ${code}`)));
    return slot;
  }

  /** shutdown stops every worker; jobs still running fail. */
  async shutdown(): Promise<void> {
    const slots = this.slots.splice(0).filter((s): s is Slot => s !== undefined);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

let pool: DeflatePool | undefined;

function deflatePool(): DeflatePool {
  pool ??= new DeflatePool();
  return pool;
}

/**
 * shutdownGzipPool terminates the shared deflate workers (they would not keep the process alive anyway); streams
 * still compressing fail. The next gzip stream starts a new pool.
 */
export async function shutdownGzipPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.shutdown();
}
