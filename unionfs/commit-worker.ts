// The layer writer thread (started by unionfs/commit-thread.ts): commits the changes of a step's moved-aside upperdir
// as commit.ts does on the main thread (the tar walk, its sha256, the blob's write and fsync), so that the main
// thread stays free for the next step while a layer is written. One job at a time, in order; a job's failure is sent
// back as its fields (class, code, message, hint) for commit-thread.ts to rebuild.
import { parentPort } from 'node:worker_threads';
import { Store } from '../layers/store/store.js';
import { NoSpaceError, TsbuildError } from '../sys/errors.js';
import { commitChanges } from './commit.js';
import type { WriteFailure, WriteJob, WriteReply } from './commit-thread.js';

const port = parentPort;
if (!port) throw new Error('unionfs/commit-worker.ts runs as a worker thread');

const stores = new Map<string, Promise<Store>>();
let queue: Promise<void> = Promise.resolve();

port.on('message', (job: WriteJob) => {
  queue = queue.then(() => handle(job));
});

async function handle(job: WriteJob): Promise<void> {
  let reply: WriteReply;
  try {
    let store = stores.get(job.storeRoot);
    if (!store) stores.set(job.storeRoot, (store = Store.open(job.storeRoot)));
    const layer = await commitChanges(await store, job.dir, job.changes, job.opts);
    reply = { id: job.id, layer };
  } catch (err) {
    reply = { id: job.id, failure: failureOf(err) };
  }
  port!.postMessage(reply);
}

function failureOf(err: unknown): WriteFailure {
  if (err instanceof NoSpaceError) return { kind: 'no-space', device: err.device, what: err.what };
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return {
    kind: e instanceof TsbuildError ? 'tsbuild' : 'error',
    message: e.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(e instanceof TsbuildError && e.hint ? { hint: e.hint } : {}),
  };
}
