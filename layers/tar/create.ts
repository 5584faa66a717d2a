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
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
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

/** tar-stream's header encoders: the functions its pack() calls (after installPaxCodec, the binary-safe PAX one). */
interface HeaderCodec {
  encode(h: CodecHeader): Buffer | null;
  encodePax(o: { name?: string; linkname?: string; pax?: EntryHeader['pax'] }): Buffer;
}
/** a header as the encoders take it: an entry's, or the `pax-header` that carries its PAX records */
type CodecHeader = Omit<EntryHeader, 'type'> & { type?: EntryHeader['type'] | 'pax-header' };
let codec: HeaderCodec | undefined;
function headerCodec(): HeaderCodec {
  if (codec) return codec;
  installPaxCodec();
  const require = createRequire(import.meta.url);
  return (codec = createRequire(require.resolve('tar-stream'))('./headers.js') as HeaderCodec);
}

const ZEROS = Buffer.alloc(1024);

/**
 * TarBytes lays out the bytes of a tar exactly as tar-stream's pack() does, through the same header encoders and
 * with the same defaults (its Pack.entry, _encode, _encodePax, overflow and finalize), without a stream and a few
 * promises per entry: a layer is mostly small entries, and those cost more than their bytes. Output is handed on in
 * chunks of at least COALESCE bytes; big file chunks pass through without a copy.
 */
class TarBytes {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  constructor(private readonly emit: (b: Buffer) => void) {}

  /** entry writes a header (and a PAX header before it when needed) with pack.entry's defaults. */
  header(h: EntryHeader): void {
    if (!h.size || h.type === 'symlink') h.size = 0;
    if (!h.mode) h.mode = h.type === 'directory' ? 0o755 : 0o644;
    if (h.type === 'symlink' && !h.linkname) h.linkname = ''; // pack reads the target from the body: none here
    if (!h.uid) h.uid = 0;
    if (!h.gid) h.gid = 0;
    const c = headerCodec();
    if (!h.pax) {
      const buf = c.encode(h);
      if (buf) return this.add(buf);
    }
    const paxHeader = c.encodePax({
      name: h.name,
      ...(h.linkname === undefined ? {} : { linkname: h.linkname }),
      ...(h.pax === undefined ? {} : { pax: h.pax }),
    });
    const outer: CodecHeader = {
      name: 'PaxHeader',
      mode: h.mode as number,
      uid: h.uid,
      gid: h.gid,
      size: paxHeader.byteLength,
      mtime: h.mtime as Date,
      type: 'pax-header',
      ...(h.linkname ? { linkname: 'PaxHeader' } : {}),
      ...(h.devmajor === undefined ? {} : { devmajor: h.devmajor }),
      ...(h.devminor === undefined ? {} : { devminor: h.devminor }),
    };
    this.add(c.encode(outer) as Buffer);
    this.add(paxHeader);
    this.pad(paxHeader.byteLength);
    outer.size = h.size;
    outer.type = h.type;
    this.add(c.encode(outer) as Buffer);
  }

  /** pad writes the zeros that end a body of `size` bytes on a 512-byte boundary. */
  pad(size: number): void {
    const n = size & 511;
    if (n) this.add(ZEROS.subarray(0, 512 - n));
  }

  add(b: Buffer): void {
    if (b.length >= COALESCE) {
      this.flush();
      this.emit(b);
      return;
    }
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= COALESCE) this.flush();
  }

  finalize(): void {
    this.add(ZEROS);
    this.flush();
  }

  flush(): void {
    if (this.pendingBytes === 0) return;
    const b = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.emit(b);
  }
}

/** startTar makes the Node Readable of a layer tar; the work starts on the first read. */
function startTar(opts: TarWriteOptions, makePlan: () => Promise<Plan>): Readable {
  let started = false;
  let stopped = false;
  // Backpressure: while the consumer has enough, the writer waits at `gate` before its next entry.
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
  const out: Readable = new Readable({
    highWaterMark: 1 << 20,
    read() {
      if (started) return open();
      started = true;
      const bytes = new TarBytes((b) => {
        if (!stopped && !out.push(b)) full = true;
      });
      write(bytes, makePlan, opts, () => stopped, gate).then(
        () => {
          if (!stopped) out.push(null);
        },
        (err: unknown) => {
          stopped = true;
          out.destroy(err as Error);
        },
      );
    },
    destroy(err, cb) {
      stopped = true;
      open();
      cb(err);
    },
  });
  return out;
}

async function write(
  out: TarBytes,
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
    const taken = ahead.take(i);
    const e = taken instanceof Promise ? await taken : taken;
    if (stopped()) return;
    if (e.skip) continue;
    if (!e.st || !e.abs) {
      out.header(markerHeader(e.item.name));
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
    if (header.type !== 'file' || st.size === 0) out.header(header);
    else if (e.content) addWhole(out, header, await e.content);
    else if (st.size <= SYNC_FILE) addWhole(out, header, readWholeSync(e.abs, st.size, slab));
    else if (st.size <= SMALL_FILE) addWhole(out, header, await readWhole(e.abs, st.size));
    else await addStreamed(out, header, e.abs, st.size, stopped, gate);
  }
  if (!stopped()) out.finalize();
}

/** addWhole writes an entry and its whole body (pack.entry with a Buffer: the size is the body's). */
function addWhole(out: TarBytes, header: EntryHeader, body: Buffer): void {
  header.size = body.byteLength;
  out.header(header);
  out.add(body);
  out.pad(body.byteLength);
}

/** addStreamed writes a big file chunk by chunk, reading the next chunk while the current one is handed on. */
async function addStreamed(
  out: TarBytes,
  header: EntryHeader,
  abs: string,
  size: number,
  stopped: () => boolean,
  gate: () => Promise<void> | undefined,
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
    out.header(header);
    for (let pos = 0; pos < size;) {
      const buf: Buffer = await (reading as Promise<Buffer>);
      pos += buf.length;
      reading = pos < size ? readChunk(pos) : undefined;
      reading?.catch(() => {}); // awaited next round, or in finally
      if (stopped()) return;
      out.add(buf);
      const wait = gate();
      if (wait) await wait;
    }
    if ((await readFull(fh, abs, Buffer.alloc(1), 1, size)) > 0)
      throw new FileChangedError(abs, size, 'it grew while read');
    out.pad(size);
  } finally {
    await reading?.catch(() => {});
    await fh.close().catch(() => {});
  }
}
