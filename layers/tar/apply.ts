// Applying one uncompressed layer tar to a directory: OCI whiteouts, ownership, modes, xattrs, times.
//
// applyLayer() only iterates over the tar (layers/tar/read.ts: our own reader, which hands each entry's data on as
// slices of the chunks read, no stream per entry); applyEntry() does the work for one header, so tests can feed it
// hand-made headers. The work is split by concern: layers/tar/apply-state.ts (what one layer remembers, the
// options, the Host's decisions), apply-entry.ts (one entry of each type), apply-whiteout.ts (whiteouts and opaque
// directories), sys/file-writer.ts (the host's worker thread for small files). Every path goes through sys/secure-path.ts
// (PathResolver): a hostile entry is refused with UnsafeEntryError before anything is written outside the root.
// Privileged calls (device nodes, owners) go through the Host given in the options (`host`, default defaultHost()).
//
// The per-entry work is synchronous fs calls (one syscall each, no thread-pool hop); once a layer shows many
// small files and the machine more than 2 CPUs, applyLayer hands the making of new regular files to a worker thread
// (Host.fileWriter: sys/file-writer.ts; a FakeHost has none) so that their syscalls overlap with reading the tar;
// while the worker has as much in hand as it may, this thread makes the next files itself instead of waiting.
import { chmodSync, lstatSync, lutimesSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
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
import { readTar, TarFormatError, type TarHeader, type TarSink, type Wait } from './read.js';

export {
  createApplyState,
  type ApplyOptions,
  type ApplyResult,
  type ApplyState,
  type EntryHeader,
} from './apply-state.js';

/**
 * Whether applyLayer uses the file writer thread when not told: only with more than 2 CPUs. The thread is a new
 * isolate for every layer: on bench/layer-commit.ts's 10k-entry layer it used about 100 ms of CPU (start-up,
 * compiling its code, its GC on V8's helper threads, then the files) to take about 40 ms of file syscalls off this
 * thread (process CPU 0.30 s against 0.19 s without it). On 2 CPUs, where the reads and the GC already use the
 * other one, that made applying no faster idle and up to twice as slow when other work shares the CPUs.
 */
const WRITER_THREAD_DEFAULT = availableParallelism() > 2;

/**
 * applyLayer applies one uncompressed layer tar to opts.root and resolves with what it applied.
 * It consumes `tar` fully. On any error it rejects (UnsafeEntryError for a hostile entry, InvalidInputError for
 * a truncated or corrupt tar, others wrapped with the entry name) and destroys `tar`; the state of the root is
 * then undefined: applying is not atomic (entries before the failing one are applied, directory times are not
 * set), though nothing is ever written outside the root.
 */
export async function applyLayer(tar: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  let state: ApplyState;
  try {
    // A stream destroyed before it reaches us (its producer failed first) would never end: fail with its error.
    if (tar.destroyed) throw tar.errored ?? new InvalidInputError('the layer tar stream was closed before it was read');
    state = createApplyState(opts);
  } catch (e) {
    tar.destroy();
    throw e;
  }
  state.allowBatcher = opts.writerThread ?? WRITER_THREAD_DEFAULT;
  try {
    await readLayer(tar, state);
    await state.batcher?.flush();
    return finishApply(state);
  } finally {
    // After a failure too: no file is made after this function has settled.
    await state.batcher?.close();
  }
}

/**
 * readLayer is the tar loop: layers/tar/read.ts hands each header to startEntry and the file's data to its
 * writer, as slices of the chunks read; it waits (reading no further) while the file writer thread must finish a
 * file an entry touches, or has too much in hand after a queued hardlink.
 */
async function readLayer(tar: Readable, state: ApplyState): Promise<void> {
  const sink = new LayerSink(state);
  try {
    await readTar(tar, sink, { sourceError: (e) => (e instanceof TsbuildError ? e : wrap('reading layer tar', e)) });
  } catch (e) {
    sink.writer?.abort();
    tar.destroy();
    const err =
      e instanceof TarFormatError ? new InvalidInputError(`layer tar is truncated or corrupt: ${e.message}`) : e;
    throw noSpace(err, state.root, sink.name ? `${sink.name} into ${state.root}` : `a layer into ${state.root}`);
  }
}

/** LayerSink applies the entries readTar hands it (one at a time). */
class LayerSink implements TarSink {
  /** the entry being read: its name, and its file writer (a regular file) */
  name = '';
  writer: FileWriter | undefined;
  constructor(private readonly state: ApplyState) {}

  header(h: TarHeader): Wait {
    this.state.entries++;
    return this.begin(h);
  }

  private begin(h: TarHeader): Wait {
    const { state } = this;
    this.name = h.name;
    try {
      this.writer = startEntry(state, h);
    } catch (e) {
      // The entry touches a path the worker may still be making: let it finish, then start the entry again.
      if (e === NEED_FLUSH && state.batcher) return state.batcher.flush().then(() => this.begin(h));
      throw entryError(h.name, e);
    }
    return undefined;
  }

  data(chunk: Buffer): void {
    const w = this.writer;
    if (w === undefined) return; // nothing to write; drop whatever a malformed entry carries
    try {
      w.write(chunk);
    } catch (e) {
      throw entryError(this.name, e);
    }
  }

  end(): Wait {
    const w = this.writer;
    if (w !== undefined) {
      this.writer = undefined;
      try {
        w.end();
      } catch (e) {
        throw entryError(this.name, e);
      }
    }
    // Go on to the next entry, unless the worker failed, or has too much in hand after a queued hardlink (a file is
    // queued only while it has room: apply-entry.ts's beginRegular).
    const b = this.state.batcher;
    if (!b) return undefined;
    if (b.failure) throw b.failure;
    if (!this.state.queuedLink) return undefined;
    this.state.queuedLink = false;
    const wait = b.room();
    if (wait === undefined) return undefined;
    return wait.then(() => {
      if (b.failure) throw b.failure;
    });
  }
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
