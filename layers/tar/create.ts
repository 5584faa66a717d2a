// Deterministic, uncompressed layer tars from a directory or from a change set (OCI image-spec layer.md).
//
// The bytes depend only on the tree: entries in a fixed order (see sortKey in layers/tar/entry.ts), numeric uid/gid with
// empty names, whole-second mtimes (clamped to SOURCE_DATE_EPOCH when given), no atime/ctime, PAX for long or
// non-ASCII names and link targets, big ids and xattrs. Compression and hashing happen downstream.
//
// Reading is pipelined. The whole list of paths is made first (readdir, or lstat of the changed paths); then, while
// entries are written in order, the metadata (lstat, readlink, xattrs) of the next WINDOW entries is looked up in
// batches with blocking calls (on a warm page cache a thread-pool round trip costs several times the syscall, and
// a layer is mostly small files); contents are read with blocking calls when their turn comes, straight into the
// output chunk after their header: files up to SMALL_FILE whole, bigger ones a chunk at a time, the consumer
// setting the pace between chunks. Headers that need no PAX are written in place (putUstarHeader, the bytes of
// tar-stream's encoder); the others go through tar-stream's encoders. The syscalls are sys/libc.ts's, into reused
// buffers; Node's only report a failure. Memory held: the output chunks the consumer has not taken.
//
// Split by concern: layers/tar/create-plan.ts (the list of entries and their order), create-read.ts (reading
// ahead), entry.ts (header building), and this file (the tar stream and the writing loop).
import { createRequire } from 'node:module';
import { openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { closeFd, openFd, ReadTarget } from '../../sys/libc.js';
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
import { CHUNK, FileChangedError, OPEN_FLAGS, ReadAhead, readWholeSync, SMALL_FILE } from './create-read.js';
import {
  clampMtime,
  headerFor,
  kindOf,
  markerHeader,
  needsPax,
  putUstarHeader,
  TYPEFLAG,
  type EntryHeader,
  type EntryKind,
} from './entry.js';
import { installPaxCodec } from './pax.js';

export { WARN, type TarWriteOptions } from './create-plan.js';
export { FileChangedError } from './create-read.js';

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

/**
 * writeTarFromChanges writes the bytes tarFromChanges streams into `sink`, a chunk at a time, and resolves when the
 * tar is complete; it rejects as that stream fails. Each chunk is valid only during the call: its memory is reused
 * for the next (no buffer per MiB, so no garbage, and the chunk is still in the CPU's cache when the sink hashes and
 * writes it). Between chunks it lets the event loop run. The sink's exception stops the writing and is the rejection.
 */
export async function writeTarFromChanges(
  root: string,
  changes: Change[],
  sink: (chunk: Buffer) => void,
  opts: TarWriteOptions = {},
): Promise<void> {
  checkOptions(opts);
  const set = validateChanges(changes);
  let handed = false;
  const out = new TarOut((b) => {
    sink(b);
    handed = true;
  }, true);
  const gate = (): Promise<void> | undefined => {
    if (!handed) return undefined;
    handed = false;
    return new Promise<void>((resolve) => setImmediate(resolve));
  };
  const plan = (): Promise<Plan> => planChanges(root, set);
  await write(out, plan, opts, () => false, gate);
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

/** Output is handed on in chunks of this size (or less, where a file's content is handed on as it was read). */
const OUT_CHUNK = 1 << 20;

/** roundUp512 is a body's size with its padding. */
const roundUp512 = (n: number): number => (n + 511) & ~511;

/**
 * TarOut lays out the bytes of a tar exactly as tar-stream's pack() does (the headers of its Pack.entry, _encode and
 * _encodePax, the padding of overflow, the end of finalize) into chunks of OUT_CHUNK bytes: headers and small
 * bodies are written in place, so a chunk holds many entries. Chunks are not zeroed when made (most of a chunk is
 * file content): every byte up to `pos` is written, the zeros of headers and padding included. Big files are read
 * into the chunks too, a chunk at a time.
 */
class TarOut {
  /** the chunk being filled: bytes [start, pos) are not handed on yet, bytes from pos on are not written yet */
  buf = Buffer.alloc(0);
  /** reads into buf */
  target = new ReadTarget(this.buf);
  pos = 0;
  private start = 0;
  /**
   * `reuse`: emit consumes each chunk before it returns, so a chunk's memory is written again once handed on (a new
   * one is made only for a header bigger than it); otherwise every chunk handed on is the consumer's to keep.
   */
  constructor(
    private readonly emit: (b: Buffer) => void,
    private readonly reuse = false,
  ) {}

  /** room makes `n` bytes available at `pos` (handing on what the chunk holds when they do not fit). */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (!(this.reuse && n <= this.buf.length)) {
      this.buf = Buffer.allocUnsafe(Math.max(OUT_CHUNK, n));
      this.target = new ReadTarget(this.buf);
    }
    this.pos = 0;
    this.start = 0;
  }

  /** free is how many bytes the chunk has left. */
  free(): number {
    return this.buf.length - this.pos;
  }

  /** zeros writes `n` zero bytes (with room for them). */
  zeros(n: number): void {
    this.room(n);
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  /** pad writes the zeros that end a body of `size` bytes on a 512-byte boundary. */
  pad(size: number): void {
    const n = size & 511;
    if (n) this.zeros(512 - n);
  }

  /**
   * ustar writes a header that needs no PAX in place (putUstarHeader), with room for `extra` bytes after it; false
   * (nothing written) when its name or link target needs PAX.
   */
  ustar(
    extra: number,
    name: string,
    mode: number,
    uid: number,
    gid: number,
    size: number,
    mtime: number,
    typeflag: number,
    linkname: string | undefined,
    devmajor: number,
    devminor: number,
  ): boolean {
    this.room(512 + extra);
    const buf = this.buf;
    const at = this.pos;
    buf.fill(0, at, at + 512);
    if (!putUstarHeader(buf, at, name, mode, uid, gid, size, mtime, typeflag, linkname, devmajor, devminor))
      return false;
    this.pos = at + 512;
    return true;
  }

  /** header writes an entry's header with pack.entry's defaults, through tar-stream's encoders (any entry). */
  header(h: EntryHeader, extra = 0): void {
    const parts = encodeHeader(h);
    let n = 0;
    for (const b of parts) n += b.length;
    this.room(n + extra);
    for (const b of parts) {
      this.buf.set(b, this.pos);
      this.pos += b.length;
    }
  }

  finalize(): void {
    this.zeros(1024);
    this.flush();
  }

  /** flush hands on what the chunk holds; the rest of it is filled later. */
  flush(): void {
    if (this.pos === this.start) return;
    const b = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    this.emit(b);
  }
}

const PAD = Buffer.alloc(512);

/**
 * encodeHeader is the bytes pack.entry writes for a header: one ustar block, or when it needs PAX (records, or a
 * name or link target encode refuses) the PAX header, its records and padding, then the entry's own block.
 */
function encodeHeader(h: EntryHeader): Buffer[] {
  if (!h.size || h.type === 'symlink') h.size = 0;
  if (!h.mode) h.mode = h.type === 'directory' ? 0o755 : 0o644;
  if (h.type === 'symlink' && !h.linkname) h.linkname = ''; // pack reads the target from the body: none here
  if (!h.uid) h.uid = 0;
  if (!h.gid) h.gid = 0;
  const c = headerCodec();
  if (!h.pax) {
    const buf = c.encode(h);
    if (buf) return [buf];
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
  const parts = [c.encode(outer) as Buffer, paxHeader];
  if (paxHeader.byteLength & 511) parts.push(PAD.subarray(0, 512 - (paxHeader.byteLength & 511)));
  outer.size = h.size;
  outer.type = h.type;
  parts.push(c.encode(outer) as Buffer);
  return parts;
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
      const bytes = new TarOut((b) => {
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
  out: TarOut,
  makePlan: () => Promise<Plan>,
  opts: TarWriteOptions,
  stopped: () => boolean,
  gate: () => Promise<void> | undefined,
): Promise<void> {
  const plan = await makePlan();
  const ahead = new ReadAhead(plan, opts);
  const sde = opts.sourceDateEpoch;
  /** (dev, ino) of multiply linked files written so far → their entry name */
  const links = new Map<string, string>();
  for (let i = 0; i < plan.count; i++) {
    const wait = gate();
    if (wait) await wait;
    if (stopped()) return;
    const e = ahead.take(i);
    if (e.skip) continue;
    const name = e.item.name;
    if (!e.st || !e.abs) {
      // a whiteout or opaque marker: a regular file, size 0, mode 0, uid/gid 0, mtime 0 (markerHeader)
      if (!out.ustar(0, name, 0, 0, 0, 0, 0, TYPEFLAG.file, undefined, 0, 0)) out.header(markerHeader(name));
      continue;
    }
    const st = e.st;
    const kind = kindOf(st.mode) as Exclude<EntryKind, 'socket'>;
    let hardlinkTo: string | undefined;
    if (kind !== 'directory' && st.nlink > 1) {
      const key = `${st.devMajor}:${st.devMinor}:${st.inoHigh}:${st.inoLow}`;
      hardlinkTo = links.get(key);
      if (hardlinkTo === undefined) links.set(key, name);
    }
    const isDev = kind === 'character-device' || kind === 'block-device';
    if (st.mtime < 0) opts.onWarn?.(WARN.MTIME, `${e.abs}: mtime ${st.mtime} is before 1970`);
    const size = hardlinkTo === undefined && kind === 'file' ? st.size : 0;
    // the body's room (and one byte more: a file read whole with blocking calls is read to size + 1, to see growth)
    const bodyRoom = size > 0 && size <= SMALL_FILE ? roundUp512(size) + 1 : 0;

    // The header: written in place when it needs no PAX (the common case), else through tar-stream's encoders.
    const mtime = clampMtime(st.mtime, sde);
    if (
      !(e.xattrs === undefined || hardlinkTo !== undefined) ||
      needsPax(st.uid, st.gid, mtime, size) ||
      !out.ustar(
        bodyRoom,
        name,
        st.mode,
        st.uid,
        st.gid,
        size,
        mtime,
        hardlinkTo === undefined ? TYPEFLAG[kind] : TYPEFLAG.link,
        hardlinkTo ?? e.linkname,
        isDev ? st.rdevMajor : 0,
        isDev ? st.rdevMinor : 0,
      )
    ) {
      const header = headerFor(name, st, {
        ...(hardlinkTo !== undefined
          ? { hardlink: true, linkname: hardlinkTo }
          : e.linkname !== undefined
            ? { linkname: e.linkname }
            : {}),
        ...(isDev ? { devmajor: st.rdevMajor, devminor: st.rdevMinor } : {}),
        ...(e.xattrs ? { xattrs: e.xattrs } : {}),
        ...(sde !== undefined ? { sourceDateEpoch: sde } : {}),
      });
      out.header(header, bodyRoom);
    }

    // The body.
    if (size === 0) continue;
    if (size <= SMALL_FILE) {
      readInto(e.abs, size, out.target, out.pos);
      out.pos += size;
      out.pad(size);
    } else await addStreamed(out, e.abs, size, stopped, gate);
  }
  if (!stopped()) out.finalize();
}

/**
 * readInto reads a small file whole into buf at `at` (size + 1 bytes of room: the byte after the content must stay
 * unread, or the file grew), with sys/libc.ts's calls; when one fails, again with Node's (its error is the one
 * reported). A size other than lstat's is a FileChangedError.
 */
function readInto(abs: string, size: number, target: ReadTarget, at: number): void {
  const fd = openFd(abs, OPEN_FLAGS);
  if (fd >= 0) {
    let got = 0;
    let n = 1;
    try {
      for (; n > 0 && got <= size; got += n) n = target.pread(fd, at + got, size + 1 - got, got);
    } finally {
      closeFd(fd);
    }
    if (n >= 0) {
      if (got === size) return;
      throw new FileChangedError(abs, size, got > size ? 'it grew while read' : `read ${got}`);
    }
  }
  target.buf.set(readWholeSync(abs, size, Buffer.allocUnsafe(size + 1)), at);
}

/**
 * addStreamed writes a big file's body into the output chunks with blocking reads, a chunk at a time, the consumer
 * setting the pace between chunks. (A read in the thread pool cost the main thread some 50 µs per fresh MiB Buffer
 * of its own, besides the copy in the pool.) A size other than lstat's is a FileChangedError.
 */
async function addStreamed(
  out: TarOut,
  abs: string,
  size: number,
  stopped: () => boolean,
  gate: () => Promise<void> | undefined,
): Promise<void> {
  let fd = openFd(abs, OPEN_FLAGS);
  if (fd < 0) {
    try {
      fd = openSync(abs, OPEN_FLAGS);
    } catch (err) {
      throw wrap(`reading ${abs}`, err);
    }
  }
  try {
    for (let pos = 0; pos < size;) {
      // fill what the chunk has left, or a new chunk
      if (out.free() < STREAM_MIN) out.room(Math.min(size - pos, CHUNK));
      const len = Math.min(size - pos, out.free());
      const got = readFullSync(fd, abs, out.target, out.pos, len, pos);
      if (got !== len) throw new FileChangedError(abs, size, `it ended after ${pos + got} bytes`);
      out.pos += len;
      pos += len;
      if (stopped()) return;
      const wait = gate();
      if (wait) await wait;
    }
    out.room(1);
    if (readFullSync(fd, abs, out.target, out.pos, 1, size) > 0)
      throw new FileChangedError(abs, size, 'it grew while read');
    out.pad(size);
  } finally {
    closeFd(fd);
  }
}

/** Streamed bodies go into what is left of a chunk when at least this much is. */
const STREAM_MIN = 64 << 10;

/**
 * readFullSync reads up to `len` bytes at file offset `pos` into target at `at`, fewer only at end of file; a read
 * that fails is made again with Node's readSync, whose error is the one reported.
 */
function readFullSync(fd: number, abs: string, target: ReadTarget, at: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    let n = target.pread(fd, at + got, len - got, pos + got);
    if (n < 0) {
      try {
        n = readSync(fd, target.buf, at + got, len - got, pos + got);
      } catch (err) {
        throw wrap(`reading ${abs}`, err);
      }
    }
    if (n === 0) break;
    got += n;
  }
  return got;
}
