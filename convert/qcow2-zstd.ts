// zstd compression of qcow2 clusters on a pool of worker threads (convert/qcow2.ts): the chunk the writer just read
// is shared with the workers (a SharedArrayBuffer, never copied), each worker compresses the clusters it is told to
// as one zstd frame each, and answers with the frames packed in one transferred buffer.
//
// A frame depends only on the cluster's bytes and the level (ZSTD_compressCCtx resets the context at every call), so
// the output is the same whatever the number of workers or the order in which jobs finish: the writer places the
// answers in guest order. The worker's program is a string, as in layers/compress/gzip-worker.ts (and for the same
// reasons: it runs the same from source, from dist/ and from a bundle, without a loader).
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { wrap } from '../sys/errors.js';

/** ClusterJob asks a worker to compress `clusters` (indexes) of the `length` bytes at `offset` of `shared`. */
interface ClusterJob {
  id: number;
  shared: SharedArrayBuffer;
  offset: number;
  clusterSize: number;
  clusters: number[];
  level: number;
}

/**
 * ClusterReply: `sizes[k]` is the frame length of job cluster k, or -1 when the frame would not be smaller than the
 * cluster (stored plainly); the frames lie one after another in `frames`.
 */
type ClusterReply = { id: number; frames: Uint8Array; sizes: Int32Array } | { id: number; error: string };

const WORKER_SOURCE = String.raw`'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const zstd = require(workerData.binding);
const cctx = new zstd.CCtx();
parentPort.on('message', (job) => {
  try {
    const C = job.clusterSize;
    const bound = zstd.compressBound(C);
    const frames = Buffer.allocUnsafeSlow(bound * job.clusters.length);
    const sizes = new Int32Array(job.clusters.length);
    let used = 0;
    job.clusters.forEach((i, k) => {
      const src = Buffer.from(job.shared, job.offset + i * C, C);
      const n = cctx.compress(frames.subarray(used, used + bound), src, job.level);
      if (n < C) {
        sizes[k] = n;
        used += n;
      } else sizes[k] = -1;
    });
    const out = new Uint8Array(used);
    out.set(frames.subarray(0, used));
    parentPort.postMessage({ id: job.id, frames: out, sizes }, [out.buffer, sizes.buffer]);
  } catch (e) {
    parentPort.postMessage({ id: job.id, error: String((e && e.message) || e) });
  }
});
`;

const BINDING = createRequire(import.meta.url).resolve('zstd-napi/binding.js');

interface Pending {
  job: ClusterJob;
  resolve: (frames: Array<Buffer | undefined>) => void;
  reject: (err: Error) => void;
}

/**
 * ZstdClusterPool compresses clusters on up to `threads` workers (default: the CPUs this process may use), started
 * on first use. `close` ends them; a pool is used by one writeQcow2 call.
 */
export class ZstdClusterPool {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(
    private readonly level: number,
    threads = availableParallelism(),
  ) {
    this.threads = Math.max(1, threads);
  }

  /**
   * compress returns, for each index in `clusters`, the zstd frame of that cluster of `data` (a view of a
   * SharedArrayBuffer, `clusterSize` bytes per cluster), or undefined when the frame is not smaller than the cluster.
   * `data` must not change until the promise settles.
   */
  compress(data: Buffer, clusterSize: number, clusters: number[]): Promise<Array<Buffer | undefined>> {
    if (!(data.buffer instanceof SharedArrayBuffer)) throw new TypeError('ZstdClusterPool needs a SharedArrayBuffer');
    if (this.failure) return Promise.reject(this.failure);
    if (clusters.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const job: ClusterJob = {
        id: this.nextId++,
        shared: data.buffer as SharedArrayBuffer,
        offset: data.byteOffset,
        clusterSize,
        clusters,
        level: this.level,
      };
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** close stops the workers; jobs still queued or running are rejected. */
  async close(): Promise<void> {
    this.fail(new Error('the zstd cluster pool was closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let worker = this.idle.pop();
      if (!worker && this.workers.length < this.threads) worker = this.start();
      if (!worker) return;
      const p = this.queue.shift()!;
      this.running.set(worker, p);
      worker.postMessage(p.job);
    }
  }

  private start(): Worker {
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      stdout: false,
      stderr: false,
      workerData: { binding: BINDING },
    });
    this.workers.push(w);
    w.on('message', (m: ClusterReply) => this.onReply(w, m));
    w.on('error', (err) => this.fail(wrap('zstd compression of qcow2 clusters failed', err)));
    w.on('exit', (code) => {
      if (this.running.has(w) || this.queue.length > 0)
        this.fail(new Error(`zstd compression of qcow2 clusters failed: worker thread exited with code ${code}`));
    });
    return w;
  }

  private onReply(w: Worker, m: ClusterReply): void {
    const p = this.running.get(w);
    this.running.delete(w);
    this.idle.push(w);
    if (p) {
      if ('error' in m) p.reject(new Error(`zstd compression of qcow2 clusters failed: ${m.error}`));
      else {
        const all = Buffer.from(m.frames.buffer, m.frames.byteOffset, m.frames.byteLength);
        let off = 0;
        p.resolve(
          Array.from(m.sizes, (n) => {
            if (n < 0) return undefined;
            off += n;
            return all.subarray(off - n, off);
          }),
        );
      }
    }
    this.dispatch();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of [...this.running.values(), ...this.queue]) p.reject(this.failure);
    this.running.clear();
    this.queue.length = 0;
  }
}
