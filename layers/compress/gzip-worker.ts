// The deflate worker thread of the parallel gzip compressor (layers/compress/gzip-parallel.ts).
//
// The worker's code is a plain-JavaScript string run with `new Worker(source, { eval: true })` rather than a file
// next to this one: a file would have to be found relative to import.meta.url with the right extension (`.ts` under
// tsx, `.js` in dist/) and would need the tsx loader inside the worker when run from source. A string works the same
// from source, from dist/ and from a bundle, and needs no loader (the pool starts workers with `execArgv: []`).
// The message shapes below are the contract between the two sides; keep the string in step with them.

/** DeflateJob asks a worker to raw-deflate one block of input. */
export interface DeflateJob {
  id: number;
  /** the uncompressed block; its buffer is transferred to the worker */
  data: Uint8Array;
  /** the last 32 KiB of the previous block (the deflate window), or null for the first block */
  dict: Uint8Array | null;
  level: number;
  /** true for the last block of the stream: end it with a final deflate block (Z_FINISH), else Z_SYNC_FLUSH */
  last: boolean;
}

/** DeflateResult answers one DeflateJob: the raw deflate bytes, or the error message. */
export type DeflateResult = { id: number; out: Uint8Array } | { id: number; error: string };

/**
 * GZIP_WORKER_SOURCE is the worker's program (CommonJS, evaluated): it answers each DeflateJob with
 * `zlib.deflateRawSync(data, { level, dictionary, finishFlush })`, so a block's output depends only on its bytes,
 * the previous block's last 32 KiB and the level: never on which worker ran it or when.
 */
export const GZIP_WORKER_SOURCE = String.raw`'use strict';
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
const { Z_FINISH, Z_SYNC_FLUSH } = zlib.constants;
parentPort.on('message', (job) => {
  let reply;
  const transfer = [];
  try {
    const opts = { level: job.level, finishFlush: job.last ? Z_FINISH : Z_SYNC_FLUSH };
    if (job.dict) opts.dictionary = job.dict;
    const raw = zlib.deflateRawSync(job.data, opts);
    // Copy into a buffer of its own: zlib's result may be a slice of a larger or pooled buffer.
    const out = new Uint8Array(raw.length);
    out.set(raw);
    reply = { id: job.id, out };
    transfer.push(out.buffer);
  } catch (e) {
    reply = { id: job.id, error: String((e && e.message) || e) };
  }
  parentPort.postMessage(reply, transfer);
});
`;
