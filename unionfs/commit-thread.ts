// Writing a build's layers on a thread of their own. A step's layer is written while the next steps run
// (rootfs-drivers.ts, commitLater); on the main thread its tar walk and sha256 took most of the thread between their
// chunks, and the next step's start (its mounts, its container's spawn: dozens of awaits) waited behind them, about
// 60–90 ms per step for a 40 MB layer. LayerWriter hands each layer to a worker thread (commit-worker.ts; up to two,
// so that the last step's layer need not wait for an earlier one), which runs commit.ts as the main thread would:
// the same bytes, blob and errors. The threads are only a speed-up: when one cannot start or dies, the layers it had
// not finished, and every later one, are written here instead.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Change } from '../layers/model/changeset.js';
import type { Layer } from '../layers/model/layer.js';
import type { Store } from '../layers/store/store.js';
import { NoSpaceError, TsbuildError } from '../sys/errors.js';
import type { CommitOptions } from './rootfs.js';

/** WriteJob is one layer for the thread: commitChanges(store at storeRoot, dir, changes, opts). */
export interface WriteJob {
  id: number;
  storeRoot: string;
  dir: string;
  changes: Change[];
  opts: Pick<CommitOptions, 'compression' | 'sourceDateEpoch'>;
}

/** WriteFailure is a job's error as fields (an Error's class and properties do not cross threads). */
export type WriteFailure =
  | { kind: 'no-space'; device: string; what: string }
  | { kind: 'tsbuild' | 'error'; message: string; code?: string; hint?: string };

export type WriteReply = { id: number; layer: Layer } | { id: number; failure: WriteFailure };

interface Job {
  job: WriteJob;
  store: Store;
  thread: Thread;
  resolve(layer: Layer): void;
  reject(err: unknown): void;
}

interface Thread {
  worker: Worker;
  /** jobs sent and not answered */
  busy: number;
}

/** MAX_THREADS: layers written at once at most; a step's layer waits for no earlier one when a thread is free. */
const MAX_THREADS = Math.max(1, Math.min(2, availableParallelism()));

export class LayerWriter {
  private readonly threads: Thread[] = [];
  /** a thread could not start or died: every later layer is written on the main thread */
  private broken = false;
  private readonly jobs = new Map<number, Job>();
  private next = 0;

  /** `start` starts a thread (default: commit-worker.js next to this code; tests give another) */
  constructor(
    private readonly start: () => Worker = startThread,
    private readonly max = MAX_THREADS,
  ) {}

  /** threaded tells whether the next layer goes to a thread (false once one could not start or died, or closed) */
  get threaded(): boolean {
    return this.pick() !== undefined;
  }

  /**
   * prepare makes sure a thread will be free for the layer of a step that opens: when every running thread has a
   * layer in hand (an earlier step's), it starts another while fewer than `max` run. Loading a thread's code (an
   * isolate, Node's internal modules, commit.ts: 50–80 ms of CPU) then overlaps the step instead of delaying its
   * layer, which for the last step is the end of the build.
   */
  prepare(): void {
    if (this.broken || this.threads.some((t) => t.busy === 0)) return;
    if (this.threads.length < this.max) this.pick();
  }

  /** write stores `changes` of the tree at `dir` as a layer, on a thread when one runs. */
  write(store: Store, dir: string, changes: Change[], opts: CommitOptions): Promise<Layer> {
    const job: WriteJob = {
      id: ++this.next,
      storeRoot: store.root,
      dir,
      changes,
      opts: {
        compression: opts.compression,
        ...(opts.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: opts.sourceDateEpoch }),
      },
    };
    const thread = this.pick();
    if (!thread) return inline(store, job);
    return new Promise<Layer>((resolve, reject) => {
      this.jobs.set(job.id, { job, store, thread, resolve, reject });
      if (thread.busy++ === 0) thread.worker.ref(); // a job in flight keeps the process alive, an idle thread does not
      thread.worker.postMessage(job);
    });
  }

  /** close stops the threads; the caller has waited for every layer it asked for. */
  async close(): Promise<void> {
    this.broken = true;
    const threads = this.threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  /** pick is an idle thread, a new one while fewer than `max` run, else the least busy; none when broken. */
  private pick(): Thread | undefined {
    if (this.broken) return undefined;
    const idle = this.threads.find((t) => t.busy === 0);
    if (idle) return idle;
    if (this.threads.length < this.max) {
      try {
        const worker = this.start();
        worker.unref();
        const thread: Thread = { worker, busy: 0 };
        worker.on('message', (reply: WriteReply) => this.reply(thread, reply));
        worker.on('error', () => this.lost(thread));
        worker.on('exit', () => this.lost(thread));
        this.threads.push(thread);
        return thread;
      } catch {
        this.broken = true;
        if (this.threads.length === 0) return undefined;
      }
    }
    return this.threads.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  private reply(thread: Thread, r: WriteReply): void {
    const j = this.jobs.get(r.id);
    if (!j) return;
    this.jobs.delete(r.id);
    if (--thread.busy === 0) thread.worker.unref();
    if ('layer' in r) j.resolve(r.layer);
    else j.reject(errorOf(r.failure));
  }

  /** lost: a thread failed to load or died; what it had not finished is written here, in order. */
  private lost(thread: Thread): void {
    const i = this.threads.indexOf(thread);
    if (i < 0) return; // closed
    this.threads.splice(i, 1);
    this.broken = true;
    const left = [...this.jobs.values()].filter((j) => j.thread === thread);
    for (const j of left) this.jobs.delete(j.job.id);
    void (async () => {
      for (const j of left) await inline(j.store, j.job).then(j.resolve, j.reject);
    })();
  }
}

/**
 * startThread starts commit-worker.js next to this code (dist/unionfs/, or dist/bundle/ beside the CLI bundle). From
 * sources (tests, tsx) the thread registers tsx's loader first: Node 20 does not pass it on to a worker.
 */
export function startThread(): Worker {
  const opts = { stdout: false, stderr: false } as const;
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./commit-worker.js', import.meta.url), opts);
  const api = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(new URL('./commit-worker.ts', import.meta.url).href);
  return new Worker(`import(${api}).then((tsx) => { tsx.register(); return import(${entry}); })`, {
    ...opts,
    eval: true,
  });
}

async function inline(store: Store, job: WriteJob): Promise<Layer> {
  const { commitChanges } = await import('./commit.js');
  return commitChanges(store, job.dir, job.changes, job.opts);
}

/** errorOf rebuilds a job's failure: a NoSpaceError as one, a TsbuildError with its code and hint, else an Error. */
function errorOf(f: WriteFailure): Error {
  if (f.kind === 'no-space') return new NoSpaceError(f.device, f.what);
  if (f.kind === 'tsbuild') return new TsbuildError(f.code ?? 'E_LAYER', f.message, f.hint ? { hint: f.hint } : {});
  return Object.assign(new Error(f.message), f.code === undefined ? {} : { code: f.code });
}
