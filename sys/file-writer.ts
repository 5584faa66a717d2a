// The real host's batched file writer (Host.fileWriter): small regular files of an applied layer (layers/tar/apply.ts)
// are created off the main thread, with their owner set here (fchown) when the applier says so: it lives in sys/
// because it performs privileged work (chown) that a FakeHost must never do; a FakeHost has no file writer, so
// every file goes through host.lchown on the main thread and is recorded.
//
// Applying a layer of many small files costs about as much in syscalls (open, write, fchown, futimes, close per
// file) as in reading the tar. FileBatcher lets the main thread keep parsing while a worker thread makes the
// files: the main thread resolves every path (sys/secure-path.ts), makes every directory, symlink and device
// itself, and queues only new regular files, whose parents it has made and which it knows do not exist (and new
// hardlinks to such files, made after them). The worker creates each file with O_CREAT|O_EXCL|O_NOFOLLOW and each
// link with link(2), which never follows or replaces anything: a queued job can never write through anything; at
// worst it fails with EEXIST and the layer fails. The main thread must flush() before it removes a path that holds or
// contains a queued file (see layers/tar/apply-state.ts: NEED_FLUSH), and before setting directory times at the end.
//
// The worker's code is a plain-JavaScript string run with `eval: true` (as in layers/compress/gzip-worker.ts): it works the
// same from source under tsx, from dist/ and from a bundle.
import { Worker } from 'node:worker_threads';
import { wrap } from './errors.js';

/**
 * Numbers per job in a batch's `nums`: mode, uid, gid, flags (1 chown, 2 chmod, 4 a hardlink to `targets[i]`: no
 * other number counts), atime, mtime, offset, length.
 */
const NUMS = 8;
/** A batch is sent when it holds this many files or bytes; files larger than BATCH_BYTES / 4 are never queued. */
const BATCH_FILES = 256;
export const BATCH_BYTES = 1 << 20;
/** Batches sent and not yet done before the main thread waits. */
const MAX_IN_FLIGHT = 4;

interface Batch {
  id: number;
  paths: string[];
  /** for a hardlink job, the file it links to (a file an earlier job made); '' for a file */
  targets: string[];
  /** NUMS numbers per file; a view of a pooled ArrayBuffer that goes to the worker and comes back */
  nums: Float64Array;
  /** the files' contents back to back; a view of a pooled ArrayBuffer, as nums */
  data: Uint8Array;
}

/** Reply gives a batch's buffers back (transferred) and, for a failed file, its index and the error. */
interface Reply {
  id: number;
  nums: ArrayBuffer;
  data: ArrayBuffer;
  failed?: { index: number; message: string; code?: string };
}

const WORKER_SOURCE = String.raw`'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
let failed = false;
parentPort.on('message', (b) => {
  const reply = { id: b.id, nums: b.nums.buffer, data: b.data.buffer };
  const n = failed ? 0 : b.paths.length;
  const nums = b.nums;
  const data = Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  for (let i = 0; i < n; i++) {
    const k = i * ${NUMS};
    const mode = nums[k], flags = nums[k + 3];
    let off = nums[k + 6];
    const end = off + nums[k + 7];
    try {
      if (flags & 4) {
        fs.linkSync(b.targets[i], b.paths[i]);
        continue;
      }
      const fd = fs.openSync(b.paths[i], FLAGS, mode & 0o777);
      try {
        while (off < end) off += fs.writeSync(fd, data, off, end - off);
        if (flags & 1) fs.fchownSync(fd, nums[k + 1], nums[k + 2]);
        if (flags & 2) fs.fchmodSync(fd, mode);
        fs.futimesSync(fd, nums[k + 4], nums[k + 5]);
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      failed = true;
      reply.failed = { index: i, message: String((e && e.message) || e), code: e && e.code };
      break;
    }
  }
  parentPort.postMessage(reply, [reply.nums, reply.data]);
});
`;

/**
 * QueuedLink is a hardlink for the worker to make to a file queued before it (`target`, which does not exist yet),
 * with link(2): like a queued file, its path is new and its parents exist.
 */
export interface QueuedLink {
  entry: string;
  rel: string;
  abs: string;
  target: string;
}

/** QueuedFile is one regular file for the worker to make; `chunks` is its whole content. */
export interface QueuedFile {
  entry: string;
  rel: string;
  abs: string;
  mode: number;
  uid: number;
  gid: number;
  chown: boolean;
  chmod: boolean;
  atime: number;
  mtime: number;
  chunks: Uint8Array[];
  size: number;
}

/**
 * FileBatcher queues new regular files for one worker thread, in batches. Not thread-safe, one per applyLayer.
 * Call close() when done (also after a failure); a failed file makes `failure` set and flush() reject.
 */
export class FileBatcher {
  /** the first error the worker reported (already names the entry), or undefined */
  failure: Error | undefined;
  /** real relative paths queued since the worker was last idle */
  readonly pending = new Set<string>();
  private worker: Worker | undefined;
  private nextId = 0;
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  private cur: Batch | undefined;
  private count = 0;
  private used = 0;
  /** the entry names of the batches in flight, for the error message of a failed file */
  private readonly entries = new Map<number, string[]>();
  private curEntries: string[] = [];
  /** buffers the worker gave back, reused so that a big layer allocates a handful, not one per batch */
  private readonly pool: Array<{ nums: ArrayBuffer; data: ArrayBuffer }> = [];

  /** busy tells whether some queued file may not exist yet. */
  get busy(): boolean {
    return this.inFlight > 0 || this.count > 0;
  }

  /** add queues one file (size <= BATCH_BYTES / 4); it copies the content. */
  add(f: QueuedFile): void {
    const b = this.batchFor(f.size);
    const k = this.count * NUMS;
    b.paths.push(f.abs);
    b.targets.push('');
    this.curEntries.push(f.entry);
    b.nums[k] = f.mode;
    b.nums[k + 1] = f.uid;
    b.nums[k + 2] = f.gid;
    b.nums[k + 3] = (f.chown ? 1 : 0) | (f.chmod ? 2 : 0);
    b.nums[k + 4] = f.atime;
    b.nums[k + 5] = f.mtime;
    b.nums[k + 6] = this.used;
    b.nums[k + 7] = f.size;
    for (const c of f.chunks) {
      b.data.set(c, this.used);
      this.used += c.byteLength;
    }
    this.count++;
    this.pending.add(f.rel);
  }

  /**
   * addLink queues a hardlink to a file that is itself queued (in `pending`): the worker makes it after the file,
   * so the main thread need not wait for the file (a flush) to link to it.
   */
  addLink(l: QueuedLink): void {
    const b = this.batchFor(0);
    const k = this.count * NUMS;
    b.paths.push(l.abs);
    b.targets.push(l.target);
    this.curEntries.push(l.entry);
    b.nums.fill(0, k, k + NUMS);
    b.nums[k + 3] = 4;
    b.nums[k + 6] = this.used;
    this.count++;
    this.pending.add(l.rel);
  }

  /** batchFor returns the batch being filled, after sending the current one when it has no room for `size` more. */
  private batchFor(size: number): Batch {
    if (this.cur === undefined || this.count === BATCH_FILES || this.used + size > BATCH_BYTES) {
      this.send();
      const buffers = this.pool.pop() ?? {
        nums: new ArrayBuffer(BATCH_FILES * NUMS * 8),
        data: new ArrayBuffer(BATCH_BYTES),
      };
      this.cur = {
        id: this.nextId++,
        paths: [],
        targets: [],
        nums: new Float64Array(buffers.nums),
        data: new Uint8Array(buffers.data),
      };
      this.curEntries = [];
    }
    return this.cur;
  }

  /** room resolves when fewer than MAX_IN_FLIGHT batches are in flight (undefined when there already are). */
  room(): Promise<void> | undefined {
    if (this.inFlight < MAX_IN_FLIGHT) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** flush sends what is queued and resolves when the worker has made every file; rejects with `failure`. */
  async flush(): Promise<void> {
    this.send();
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure;
  }

  /**
   * close waits for the batches already sent, drops what was queued but not sent, and stops the worker: once
   * it resolves, no file is being made. It never rejects (`failure` says what went wrong).
   */
  async close(): Promise<void> {
    this.cur = undefined;
    this.count = 0;
    this.used = 0;
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
    this.wake();
  }

  private send(): void {
    const b = this.cur;
    if (b === undefined || this.count === 0) return;
    const batch: Batch = {
      id: b.id,
      paths: b.paths,
      targets: b.targets,
      nums: b.nums.subarray(0, this.count * NUMS),
      data: b.data.subarray(0, this.used),
    };
    this.entries.set(b.id, this.curEntries);
    this.cur = undefined;
    this.count = 0;
    this.used = 0;
    this.inFlight++;
    this.start().postMessage(batch, [b.nums.buffer as ArrayBuffer, b.data.buffer as ArrayBuffer]);
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], stdout: false, stderr: false });
    w.on('message', (r: Reply) => {
      const names = this.entries.get(r.id);
      this.entries.delete(r.id);
      if (r.failed && !this.failure) {
        const cause = Object.assign(new Error(r.failed.message), r.failed.code ? { code: r.failed.code } : {});
        this.failure = wrap(`applying layer entry ${JSON.stringify(names?.[r.failed.index] ?? '?')}`, cause);
      }
      if (this.pool.length < MAX_IN_FLIGHT + 1) this.pool.push({ nums: r.nums, data: r.data });
      this.inFlight--;
      if (this.inFlight === 0 && this.count === 0) this.pending.clear();
      this.wake();
    });
    w.on('error', (e) => {
      this.failure ??= wrap('layer file writer thread', e);
      this.inFlight = 0;
      this.wake();
    });
    w.on('exit', (code) => {
      if (this.inFlight === 0) return;
      this.failure ??= new Error(`layer file writer thread exited (code ${code}) with files still to make`);
      this.inFlight = 0;
      this.wake();
    });
    this.worker = w;
    return w;
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const resolve of ws) resolve();
  }
}
