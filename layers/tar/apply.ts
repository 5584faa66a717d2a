// Applying one uncompressed layer tar to a directory: OCI whiteouts, ownership, modes, xattrs, times.
//
// applyLayer() only iterates over the tar; applyEntry() does the work for one header, so tests can feed it
// hand-made headers. The work is split by concern: layers/tar/apply-state.ts (what one layer remembers, the
// options, the Host's decisions), apply-entry.ts (one entry of each type), apply-whiteout.ts (whiteouts and opaque
// directories), sys/file-writer.ts (the host's worker thread for small files). Every path goes through sys/secure-path.ts
// (PathResolver): a hostile entry is refused with UnsafeEntryError before anything is written outside the root.
// Privileged calls (device nodes, owners) go through the Host given in the options (`host`, default defaultHost()).
//
// The per-entry work is synchronous fs calls (one syscall each, no thread-pool hop); once a layer shows many
// small files, applyLayer hands the making of new regular files to a worker thread (Host.fileWriter: sys/file-writer.ts; a FakeHost has none)
// so that their syscalls overlap with reading the tar. That is what keeps a layer of many small files close
// to `tar -x`.
import { chmodSync, lstatSync, lutimesSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import { noSpace } from '../../sys/disk-full.js';
import { startEntry, type FileWriter } from './apply-entry.js';
import {
  createApplyState,
  NEED_FLUSH,
  type ApplyOptions,
  type ApplyResult,
  type ApplyState,
  type EntryHeader,
} from './apply-state.js';
import { installFastHeaderDecoder } from './header-fast.js';
import { installPaxCodec } from './pax.js';

export {
  createApplyState,
  type ApplyOptions,
  type ApplyResult,
  type ApplyState,
  type EntryHeader,
} from './apply-state.js';

/**
 * applyLayer applies one uncompressed layer tar to opts.root and resolves with what it applied.
 * It consumes `tar` fully. On any error it rejects (UnsafeEntryError for a hostile entry, InvalidInputError for
 * a truncated or corrupt tar, others wrapped with the entry name) and destroys `tar`; the state of the root is
 * then undefined: applying is not atomic (entries before the failing one are applied, directory times are not
 * set), though nothing is ever written outside the root.
 */
export async function applyLayer(tar: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  installPaxCodec();
  installFastHeaderDecoder();
  let state: ApplyState;
  try {
    // A stream destroyed before it reaches us (its producer failed first) would never end: fail with its error.
    if (tar.destroyed) throw tar.errored ?? new InvalidInputError('the layer tar stream was closed before it was read');
    state = createApplyState(opts);
  } catch (e) {
    tar.destroy();
    throw e;
  }
  state.allowBatcher = opts.writerThread ?? true;
  try {
    await readLayer(tar, state);
    await state.batcher?.flush();
    return finishApply(state);
  } finally {
    // After a failure too: no file is made after this function has settled.
    await state.batcher?.close();
  }
}

/** readLayer is the tar loop: it feeds each entry to startEntry and resolves when the tar has ended. */
function readLayer(tar: Readable, state: ApplyState): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const ex = extract();
    let failed = false;
    // The entry being read (entries come one at a time): its header, its file writer, tar-stream's `next`.
    let curName = '';
    let curWriter: FileWriter | undefined;
    let curNext: () => void = noop;
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      const err = noSpace(e, state.root, curName ? `${curName} into ${state.root}` : `a layer into ${state.root}`);
      curWriter?.abort();
      tar.unpipe(ex as unknown as NodeJS.WritableStream);
      tar.destroy();
      ex.destroy();
      reject(err);
    };
    // Go on to the next entry, unless the worker failed or has too much in hand.
    const proceed = (next: () => void): void => {
      const b = state.batcher;
      if (b?.failure) return fail(b.failure);
      const wait = b?.room();
      if (wait === undefined) return next();
      wait.then(() => (b?.failure ? fail(b.failure) : next()), fail);
    };
    const onData = (chunk: unknown): void => {
      if (failed || curWriter === undefined) return;
      try {
        curWriter.write(chunk as Uint8Array);
      } catch (e) {
        fail(entryError(curName, e));
      }
    };
    const onEnd = (): void => {
      const w = curWriter;
      if (failed || w === undefined) return;
      curWriter = undefined;
      try {
        w.end();
      } catch (e) {
        fail(entryError(curName, e));
        return;
      }
      proceed(curNext);
    };
    const begin = (header: Header, body: Readable, next: () => void): void => {
      let w: FileWriter | undefined;
      try {
        w = startEntry(state, header);
      } catch (e) {
        if (e === NEED_FLUSH && state.batcher) {
          // The entry touches a path the worker may still be making: let it finish, then start the entry again.
          state.batcher.flush().then(() => begin(header, body, next), fail);
          return;
        }
        fail(entryError(header.name, e));
        return;
      }
      if (w === undefined) {
        body.resume(); // nothing to read; drop whatever a malformed entry carries
        proceed(next);
        return;
      }
      curName = header.name;
      curWriter = w;
      curNext = next;
      body.on('data', onData);
      body.on('end', onEnd);
    };
    tar.on('error', (e) => fail(e instanceof TsbuildError ? e : wrap('reading layer tar', e)));
    ex.on('error', (e) => fail(new InvalidInputError(`layer tar is truncated or corrupt: ${e.message}`)));
    ex.on('finish', () => {
      if (!failed) resolve();
    });
    ex.on('entry', (header, body, next) => {
      if (failed) return;
      state.entries++;
      // The extract destroys an entry that is still being read with its own error, which it reports itself.
      if (header.size > 0) body.on('error', noop);
      begin(header, body as unknown as Readable, next);
    });
    tar.pipe(ex as unknown as NodeJS.WritableStream);
  });
}

/**
 * applyEntry applies one entry to state.root. It reads `body` (the entry's content) only for regular files and
 * leaves closing it to the caller. Errors name the entry; see applyLayer for what a failure leaves.
 */
export async function applyEntry(state: ApplyState, header: EntryHeader, body: AsyncIterable<unknown>): Promise<void> {
  let w: FileWriter | undefined;
  state.entries++;
  try {
    w = startEntry(state, header);
    if (w === undefined) return;
    for await (const data of body) w.write(typeof data === 'string' ? Buffer.from(data) : (data as Uint8Array));
    const done = w;
    w = undefined;
    done.end();
  } catch (e) {
    w?.abort();
    throw noSpace(entryError(header.name, e), state.root, `${header.name} into ${state.root}`);
  }
}

function entryError(name: string, e: unknown): Error {
  if (e instanceof TsbuildError) return e; // ours already name the entry
  return wrap(`applying layer entry ${JSON.stringify(name)}`, e);
}

/** finishApply sets the directory times (deepest first, after every entry) and returns the counts. */
export function finishApply(state: ApplyState): ApplyResult {
  const dirs = [...state.dirs.values()].sort((a, b) => b.depth - a.depth);
  for (const d of dirs) {
    const st = lstatSync(d.abs, { throwIfNoEntry: false });
    if (!st?.isDirectory()) continue; // removed or replaced later in the layer
    if (d.mode !== undefined) chmodSync(d.abs, d.mode);
    lutimesSync(d.abs, d.atime, d.mtime);
  }
  state.dirs.clear();
  return { entries: state.entries, bytes: state.bytes };
}

function noop(): void {}
