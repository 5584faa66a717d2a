// Deterministic, uncompressed layer tars from a directory or from a change set (OCI image-spec layer.md).
//
// The bytes depend only on the tree: entries in a fixed order (see sortKey in layers/tar/entry.ts), numeric uid/gid with
// empty names, whole-second mtimes (clamped to SOURCE_DATE_EPOCH when given), no atime/ctime, PAX for long or
// non-ASCII names and link targets, big ids and xattrs. Compression and hashing happen downstream.
//
// Reading is pipelined. The whole list of paths is made first (readdir, or lstat of the changed paths); then, while
// entries are written in order, the metadata (lstat, readlink, xattrs) of the next WINDOW entries is looked up in
// batches with blocking calls (on a warm page cache a thread-pool round trip costs several times the syscall, and
// a layer is mostly small files), tiny files are read with blocking calls when their turn comes, mid-sized ones are
// read ahead in the thread pool within a byte budget, and big ones are streamed in chunks with one chunk read
// ahead. Only files up to SMALL_FILE bytes are ever held in memory whole.
//
// Split by concern: layers/tar/create-plan.ts (the list of entries and their order), create-read.ts (reading
// ahead), entry.ts (header building), and this file (the tar stream and the writing loop).
import { Readable } from 'node:stream';
import { pack as tarPack, type Pack } from 'tar-stream';
import { InvalidInputError } from '../../sys/errors.js';
import { majorMinor } from '../../sys/libc.js';
import type { Change } from '../model/changeset.js';
import {
  planChanges,
  planDirectory,
  validateChanges,
  WARN,
  type ChangeSet,
  type Plan,
  type TarWriteOptions,
} from './create-plan.js';
import {
  CHUNK,
  FileChangedError,
  openFile,
  ReadAhead,
  readFull,
  readWhole,
  readWholeSync,
  Slab,
  SMALL_FILE,
  SYNC_FILE,
} from './create-read.js';
import { headerFor, kindOf, markerHeader, type EntryHeader } from './entry.js';
import { installPaxCodec } from './pax.js';

export { WARN, type TarWriteOptions } from './create-plan.js';
export { FileChangedError } from './create-read.js';

/** The smallest chunk the stream hands on (smaller pieces from tar-stream are joined). */
const COALESCE = 64 << 10;

/**
 * tarFromDirectory streams a layer tar of everything below `dir` (dir itself is not an entry).
 * Nothing is read until the stream is read. The stream fails (error event) with an error naming the path when a
 * path cannot be read, a file changes size while read (FileChangedError), or a name is not valid UTF-8
 * (InvalidInputError); destroying the stream stops reading and closes every file. The caller consumes or destroys it.
 */
export function tarFromDirectory(dir: string, opts: TarWriteOptions = {}): Readable {
  checkOptions(opts);
  return startTar(opts, () => planDirectory(dir, opts));
}

/**
 * tarFromChanges streams a layer tar of the change set, reading added/modified paths from `root`.
 * add/modify → the path as it is now in root; every parent directory of a changed path is included once (as it is in
 * root); delete → a whiteout `<dir>/.wh.<name>`; opaque → the directory, then `<dir>/.wh..wh..opq`. Markers are
 * regular files of size 0 with mode 0, uid/gid 0 and mtime 0. A delete below another delete is dropped (the outer
 * whiteout covers it). Throws InvalidInputError at once for a malformed change set (empty, absolute or `..` path,
 * a `.wh.` name, opaque on a delete, conflicting kinds for one path); errors found while reading fail the stream as
 * with tarFromDirectory (a path missing from root, a parent that is not a directory in root, opaque on a
 * non-directory).
 */
export function tarFromChanges(root: string, changes: Change[], opts: TarWriteOptions = {}): Readable {
  checkOptions(opts);
  let set: ChangeSet | undefined = validateChanges(changes);
  return startTar(opts, () => {
    const s = set as ChangeSet;
    set = undefined; // the plan is all the writer keeps
    return planChanges(root, s);
  });
}

function checkOptions(opts: TarWriteOptions): void {
  const sde = opts.sourceDateEpoch;
  if (sde !== undefined && !(Number.isSafeInteger(sde) && sde >= 0)) {
    throw new InvalidInputError(`SOURCE_DATE_EPOCH ${sde} is not a whole number of seconds ≥ 0`);
  }
}

// ─── writing ────────────────────────────────────────────────────────────────────────────────────────────────────

/** startTar wires the pack stream to a Node Readable; the work starts on the first read. */
function startTar(opts: TarWriteOptions, makePlan: () => Promise<Plan>): Readable {
  installPaxCodec();
  const pack = tarPack();
  let started = false;
  let stopped = false;
  // Backpressure: tar-stream takes a whole small entry at once and calls back at once, so the writer could run
  // ahead of a slow consumer by the whole tar (100 MB of headers for 200k empty files). While the consumer has
  // enough, the writer waits at `gate` before its next entry.
  let full = false;
  let wake: (() => void) | undefined;
  const gate = (): Promise<void> | undefined =>
    full && !stopped ? new Promise<void>((resolve) => (wake = resolve)) : undefined;
  const open = (): void => {
    full = false;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      if (!started) {
        started = true;
        // tar-stream pushes each header and padding as its own small buffer: hand them on in batches of at least
        // COALESCE bytes (big file chunks pass through without a copy), so that consumers see fewer, bigger chunks.
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        const flush = (): boolean => {
          if (pendingBytes === 0) return true;
          const b = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
          return out.push(b);
        };
        pack.on('data', (data: unknown) => {
          const b = data as Buffer;
          let ok = true;
          if (b.length >= COALESCE) {
            ok = flush();
            ok = out.push(b) && ok;
          } else {
            pending.push(b);
            pendingBytes += b.length;
            if (pendingBytes >= COALESCE) ok = flush();
          }
          if (!ok) {
            full = true;
            pack.pause();
          }
        });
        pack.on('end', () => {
          flush();
          out.push(null);
        });
        pack.on('error', (err: Error) => out.destroy(err));
        write(pack, makePlan, opts, () => stopped, gate).catch((err: unknown) => {
          stopped = true;
          out.destroy(err as Error);
        });
      } else {
        pack.resume();
        open();
      }
    },
    destroy(err, cb) {
      stopped = true;
      open();
      pack.destroy();
      cb(err);
    },
  });
  return out;
}

async function write(
  pack: Pack,
  makePlan: () => Promise<Plan>,
  opts: TarWriteOptions,
  stopped: () => boolean,
  gate: () => Promise<void> | undefined,
): Promise<void> {
  const plan = await makePlan();
  const ahead = new ReadAhead(plan, opts);
  /** (dev, ino) of multiply linked files written so far → their entry name */
  const links = new Map<string, string>();
  const slab = new Slab();
  for (let i = 0; i < plan.count; i++) {
    const wait = gate();
    if (wait) await wait;
    if (stopped()) return;
    const e = await ahead.take(i);
    if (stopped()) return;
    if (e.skip) continue;
    if (!e.st || !e.abs) {
      await addEntry(pack, markerHeader(e.item.name));
      continue;
    }
    const st = e.st;
    const kind = kindOf(st.mode);
    let hardlinkTo: string | undefined;
    if (kind !== 'directory' && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      hardlinkTo = links.get(key);
      if (hardlinkTo === undefined) links.set(key, e.item.name);
    }
    const dev = kind === 'character-device' || kind === 'block-device' ? majorMinor(st.rdev) : undefined;
    const header = headerFor(e.item.name, st, {
      ...(hardlinkTo !== undefined
        ? { hardlink: true, linkname: hardlinkTo }
        : e.linkname !== undefined
          ? { linkname: e.linkname }
          : {}),
      ...(dev ? { devmajor: dev.major, devminor: dev.minor } : {}),
      ...(e.xattrs ? { xattrs: e.xattrs } : {}),
      ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
    });
    if (st.mtime < 0) opts.onWarn?.(WARN.MTIME, `${e.abs}: mtime ${st.mtime} is before 1970`);
    if (header.type !== 'file' || st.size === 0) await addEntry(pack, header);
    else if (e.content) await addEntry(pack, header, await e.content);
    else if (st.size <= SYNC_FILE) await addEntry(pack, header, readWholeSync(e.abs, st.size, slab));
    else if (st.size <= SMALL_FILE) await addEntry(pack, header, await readWhole(e.abs, st.size));
    else await addStreamed(pack, header, e.abs, st.size, stopped);
  }
  if (!stopped()) pack.finalize();
}

/** addEntry writes one entry with its whole body and resolves once pack has taken it (backpressure). */
function addEntry(pack: Pack, header: EntryHeader, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, cb);
    else if (header.type === 'file')
      pack.entry(header, cb).end(undefined); // an empty file: its body ends at once
    else pack.entry(header, cb);
  });
}

/** addStreamed writes a big file chunk by chunk, reading the next chunk while the current one is written. */
async function addStreamed(
  pack: Pack,
  header: EntryHeader,
  abs: string,
  size: number,
  stopped: () => boolean,
): Promise<void> {
  const fh = await openFile(abs);
  const readChunk = async (pos: number): Promise<Buffer> => {
    const len = Math.min(CHUNK, size - pos);
    const buf = Buffer.allocUnsafe(len);
    const got = await readFull(fh, abs, buf, len, pos);
    if (got !== len) throw new FileChangedError(abs, size, `it ended after ${pos + got} bytes`);
    return buf;
  };
  let reading: Promise<Buffer> | undefined = readChunk(0);
  try {
    let done: (err?: Error | null) => void = () => {};
    const finished = new Promise<void>((resolve, reject) => {
      done = (err) => (err ? reject(err) : resolve());
    });
    finished.catch(() => {}); // awaited below; the pack may fail it before that
    const sink = pack.entry(header, done);
    for (let pos = 0; pos < size;) {
      const buf: Buffer = await (reading as Promise<Buffer>);
      pos += buf.length;
      reading = pos < size ? readChunk(pos) : undefined;
      reading?.catch(() => {}); // awaited next round, or in finally
      if (stopped()) return;
      if (!sink.write(buf)) await drained(sink);
    }
    if ((await readFull(fh, abs, Buffer.alloc(1), 1, size)) > 0)
      throw new FileChangedError(abs, size, 'it grew while read');
    sink.end(undefined);
    await finished;
  } finally {
    await reading?.catch(() => {});
    await fh.close().catch(() => {});
  }
}

/** drained resolves when a writable asks for more, or when it is closed (the pack was destroyed). */
function drained(w: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}
