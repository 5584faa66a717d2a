// Deterministic, uncompressed layer tars from a directory or from a change set (OCI image-spec layer.md).
//
// The bytes depend only on the tree: entries in a fixed order (see sortKey in fs-entry.ts), numeric uid/gid with
// empty names, whole-second mtimes (clamped to SOURCE_DATE_EPOCH when given), no atime/ctime, PAX for long or
// non-ASCII names and link targets, big ids and xattrs. Compression and hashing happen downstream.
//
// Reading is pipelined. The whole list of paths is made first (readdir, or lstat of the changed paths); then, while
// entries are written in order, the metadata (lstat, readlink, xattrs) of the next WINDOW entries is looked up in
// batches with blocking calls (on a warm page cache a thread-pool round trip costs several times the syscall, and
// a layer is mostly small files), tiny files are read with blocking calls when their turn comes, mid-sized ones are
// read ahead in the thread pool within a byte budget, and big ones are streamed in chunks with one chunk read
// ahead. Only files up to SMALL_FILE bytes are ever held in memory whole.
import { closeSync, constants as fsc, lstatSync, openSync, readlinkSync, readSync, type BigIntStats } from 'node:fs';
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack, type Pack } from 'tar-stream';
import { getXattr, listXattrs, majorMinor } from '../../sys/libc.js';
import type { Change } from '../model/changeset.js';
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import {
  headerFor,
  keepXattr,
  kindOf,
  markerHeader,
  opaqueName,
  sortKey,
  childKey,
  whiteoutName,
  WHITEOUT_PREFIX,
  type EntryHeader,
  type EntryStat,
} from './entry.js';
import { installPaxCodec } from './pax.js';

export interface TarWriteOptions {
  /** SOURCE_DATE_EPOCH in seconds: mtimes later than it are clamped to it. */
  sourceDateEpoch?: number;
  /** recoverable oddities (a socket skipped, an xattr that could not be read): code + one-line message */
  onWarn?: (code: string, message: string) => void;
}

/** Warning codes passed to onWarn. */
export const WARN = {
  /** a socket (or a file of unknown type) was left out of the layer */
  SKIPPED: 'W_TAR_SKIPPED',
  /** an xattr could not be listed or read; the entry was written without it */
  XATTR: 'W_TAR_XATTR',
  /** a file in the directory is named `.wh.*`: readers of the layer will take it for a whiteout */
  WHITEOUT_NAME: 'W_TAR_WHITEOUT_NAME',
  /** an mtime before 1970 was written as is in PAX (ustar field 0) */
  MTIME: 'W_TAR_MTIME',
} as const;

/** FileChangedError: a file's size changed between lstat and the end of reading it; the tar stream fails. */
export class FileChangedError extends TsbuildError {
  constructor(
    readonly path: string,
    expected: number,
    how: string,
  ) {
    super('E_FILE_CHANGED', `${path} changed while it was being archived (lstat said ${expected} bytes, ${how})`, {
      hint: 'stop whatever writes to the tree (a process still running in the container?) and commit again',
    });
  }
}

/** Files up to this size are read whole with blocking calls when their turn comes. */
const SYNC_FILE = 64 << 10;
/** Files up to this size are read whole in the thread pool, ahead of writing, within PREFETCH_BUDGET bytes in total. */
const SMALL_FILE = 1 << 20;
const PREFETCH_BUDGET = 16 << 20;
/** Bigger files are streamed in chunks of this size. */
const CHUNK = 1 << 20;
/** The smallest chunk the stream hands on (smaller pieces from tar-stream are joined). */
const COALESCE = 64 << 10;
/** How many entries ahead metadata is looked up. */
const WINDOW = 64;

/** O_NOFOLLOW: a path swapped for a symlink after lstat is not followed; O_NONBLOCK: nor does a fifo hang us. */
const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

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
  const set = validateChanges(changes);
  return startTar(opts, () => planChanges(root, set));
}

function checkOptions(opts: TarWriteOptions): void {
  const sde = opts.sourceDateEpoch;
  if (sde !== undefined && !(Number.isSafeInteger(sde) && sde >= 0)) {
    throw new InvalidInputError(`SOURCE_DATE_EPOCH ${sde} is not a whole number of seconds ≥ 0`);
  }
}

// ─── the plan: which entries, in which order ────────────────────────────────────────────────────────────────────

/** FsStat is the part of lstat a layer needs. */
interface FsStat extends EntryStat {
  nlink: number;
  dev: bigint;
  ino: bigint;
  rdev: number;
}

/** PlanItem is one entry to write: a path of the tree (`rel` set) or a whiteout/opaque marker (`rel` unset). */
interface PlanItem {
  /** entry name: relative, '/'-separated, directories end in '/' */
  name: string;
  /** the path below the root, without a trailing '/' */
  rel?: string;
  /** what the plan believes the type is (from readdir or an earlier lstat): a mismatch means the tree changed */
  isDir?: boolean;
  /** lstat already done while planning */
  st?: FsStat;
}

interface Plan {
  root: string;
  items: PlanItem[];
}

function toFsStat(s: BigIntStats): FsStat {
  let mtime = s.mtimeNs / 1_000_000_000n;
  if (s.mtimeNs < 0n && s.mtimeNs % 1_000_000_000n !== 0n) mtime -= 1n; // floor, not truncate
  return {
    mode: Number(s.mode),
    uid: Number(s.uid),
    gid: Number(s.gid),
    size: Number(s.size),
    mtime: Number(mtime),
    nlink: Number(s.nlink),
    dev: s.dev,
    ino: s.ino,
    rdev: Number(s.rdev),
  };
}

function lstatPath(abs: string): FsStat {
  try {
    return toFsStat(lstatSync(abs, { bigint: true }));
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
}

/** utf8Name returns a file name as a string, refusing bytes that are not UTF-8 (they could not round-trip). */
function utf8Name(name: Buffer, where: string): string {
  const s = name.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(name)) {
    throw new InvalidInputError(
      `${where}: ${JSON.stringify(name.toString('latin1'))} is not valid UTF-8, which layer tars written by tsbuild require`,
      'rename the file',
    );
  }
  return s;
}

/** planDirectory lists the tree depth first, each directory's children in entry order. */
async function planDirectory(dir: string, opts: TarWriteOptions): Promise<Plan> {
  const items: PlanItem[] = [];
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '' ? dir : join(dir, rel);
    let ents;
    try {
      ents = await readdir(abs, { withFileTypes: true, encoding: 'buffer' });
    } catch (err) {
      throw wrap(`reading directory ${abs}`, err);
    }
    const kids = ents.map((d) => {
      const isDir = d.isDirectory();
      return { name: utf8Name(d.name, abs), isDir, key: childKey(d.name, isDir) };
    });
    kids.sort((a, b) => Buffer.compare(a.key, b.key));
    for (const k of kids) {
      const path = rel === '' ? k.name : `${rel}/${k.name}`;
      if (k.name.startsWith(WHITEOUT_PREFIX)) {
        opts.onWarn?.(WARN.WHITEOUT_NAME, `${join(dir, path)}: a file named ${WHITEOUT_PREFIX}* reads as a whiteout in a layer`);
      }
      items.push({ name: k.isDir ? `${path}/` : path, rel: path, isDir: k.isDir });
      if (k.isDir) await visit(path);
    }
  };
  await visit('');
  return { root: dir, items };
}

interface ChangeSet {
  /** path → change, after dropping deletes below deletes */
  changes: Map<string, Change>;
}

/** validateChanges checks the change set without touching the disk; throws InvalidInputError. */
function validateChanges(changes: Change[]): ChangeSet {
  const byPath = new Map<string, Change>();
  for (const c of changes) {
    const p = c.path;
    if (typeof p !== 'string' || p === '') throw new InvalidInputError('change set: a change has an empty path');
    if (p.startsWith('/')) throw new InvalidInputError(`change set: path ${JSON.stringify(p)} is absolute (changes are relative to the root)`);
    const parts = p.split('/');
    if (parts.includes('..')) throw new InvalidInputError(`change set: path ${JSON.stringify(p)} escapes the root`);
    if (parts.some((s) => s === '' || s === '.') || p.includes('\0')) {
      throw new InvalidInputError(`change set: path ${JSON.stringify(p)} is not a clean relative path`);
    }
    if ((parts.at(-1) as string).startsWith(WHITEOUT_PREFIX)) {
      throw new InvalidInputError(`change set: ${JSON.stringify(p)} is named ${WHITEOUT_PREFIX}*, which a layer reads as a whiteout`, 'rename the file');
    }
    if (c.kind !== 'add' && c.kind !== 'modify' && c.kind !== 'delete') {
      throw new InvalidInputError(`change set: ${JSON.stringify(p)} has unknown kind ${JSON.stringify(c.kind)}`);
    }
    if (c.kind === 'delete' && c.opaque) throw new InvalidInputError(`change set: ${JSON.stringify(p)} is deleted and marked opaque`);
    const prev = byPath.get(p);
    if (prev) {
      if ((prev.kind === 'delete') !== (c.kind === 'delete')) {
        throw new InvalidInputError(`change set: ${JSON.stringify(p)} is both deleted and ${c.kind === 'delete' ? prev.kind : c.kind}ed`);
      }
      if (c.opaque) byPath.set(p, { ...prev, opaque: true });
      continue;
    }
    byPath.set(p, { path: p, kind: c.kind, ...(c.opaque ? { opaque: true } : {}) });
  }
  const isDeleted = (p: string): boolean => byPath.get(p)?.kind === 'delete';
  for (const [p] of [...byPath]) {
    for (const anc of ancestors(p)) {
      if (!isDeleted(anc)) continue;
      if (isDeleted(p)) byPath.delete(p);
      else throw new InvalidInputError(`change set: ${JSON.stringify(anc)} is deleted but ${JSON.stringify(p)} below it is not`);
      break;
    }
  }
  return { changes: byPath };
}

/** ancestors of 'a/b/c' are 'a' and 'a/b'. */
function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
}

/** planChanges lstats the changed paths and their parents (to know which are directories) and orders the entries. */
async function planChanges(root: string, set: ChangeSet): Promise<Plan> {
  const parents = new Set<string>();
  for (const p of set.changes.keys()) for (const a of ancestors(p)) if (!set.changes.has(a)) parents.add(a);
  const present = [...parents, ...[...set.changes.values()].filter((c) => c.kind !== 'delete').map((c) => c.path)];
  const stats = new Map<string, FsStat>();
  for (const [i, p] of present.entries()) {
    stats.set(p, lstatPath(join(root, p)));
    if (i % 512 === 511) await new Promise((resolve) => setImmediate(resolve)); // let the event loop breathe
  }
  // A parent must be a real directory in root (not a symlink: that would lead the children's lstat out of root).
  for (const p of [...parents, ...[...set.changes.keys()].flatMap(ancestors)]) {
    const st = stats.get(p);
    if (st && kindOf(st.mode) !== 'directory') {
      throw new InvalidInputError(`change set: ${join(root, p)} is not a directory, but the change set has paths below it`);
    }
  }
  const items: PlanItem[] = [];
  for (const p of parents) items.push({ name: `${p}/`, rel: p, isDir: true, st: stats.get(p) as FsStat });
  for (const c of set.changes.values()) {
    if (c.kind === 'delete') {
      items.push({ name: whiteoutName(c.path) });
      continue;
    }
    const st = stats.get(c.path) as FsStat;
    const isDir = kindOf(st.mode) === 'directory';
    if (c.opaque && !isDir) throw new InvalidInputError(`change set: ${join(root, c.path)} is marked opaque but is not a directory`);
    items.push({ name: isDir ? `${c.path}/` : c.path, rel: c.path, isDir, st });
    if (c.opaque) items.push({ name: opaqueName(c.path) });
  }
  const keyed = items.map((it) => ({ it, key: sortKey(it.name) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return { root, items: keyed.map((k) => k.it) };
}

// ─── reading ahead ──────────────────────────────────────────────────────────────────────────────────────────────

/** Prepared is an entry with everything but the hardlink decision looked up. */
interface Prepared {
  item: PlanItem;
  abs?: string;
  st?: FsStat;
  linkname?: string;
  xattrs?: Record<string, Buffer>;
  /** the whole content, being read ahead (mid-sized files only) */
  content?: Promise<Buffer>;
  /** set when the entry is left out (a socket) */
  skip?: boolean;
}

/**
 * ReadAhead looks entries up in batches ahead of the writer. Metadata (lstat, readlink, xattrs) is read with
 * blocking calls, a batch at a time: on a warm page cache a libuv round trip costs several times the syscall, and
 * a layer has mostly small files. Mid-sized files are read whole in the thread pool, ahead, within a byte budget.
 */
class ReadAhead {
  private readonly ready = new Map<number, Prepared | Error>();
  private looked = 0;
  /** bytes read ahead and not yet written */
  private budgetUsed = 0;

  constructor(
    private readonly plan: Plan,
    private readonly opts: TarWriteOptions,
  ) {}

  /** take returns entry i (in order: i = 0, 1, 2, …); an error found while looking it up is thrown now. */
  async take(i: number): Promise<Prepared> {
    if (this.looked - i < WINDOW / 2) {
      const end = Math.min(this.plan.items.length, i + WINDOW);
      for (; this.looked < end; this.looked++) {
        let got: Prepared | Error;
        try {
          got = this.lookup(this.plan.items[this.looked] as PlanItem);
        } catch (err) {
          got = err as Error;
        }
        this.ready.set(this.looked, got);
      }
    }
    const got = this.ready.get(i) as Prepared | Error;
    this.ready.delete(i);
    if (got instanceof Error) throw got;
    if (got.content) {
      try {
        await got.content;
      } finally {
        this.budgetUsed -= got.st?.size ?? 0;
      }
    }
    return got;
  }

  private lookup(item: PlanItem): Prepared {
    if (item.rel === undefined) return { item };
    const abs = join(this.plan.root, item.rel);
    const st = item.st ?? lstatPath(abs);
    const kind = kindOf(st.mode);
    if (kind === undefined || kind === 'socket') {
      this.opts.onWarn?.(WARN.SKIPPED, `${abs}: ${kind ?? `unknown file type ${(st.mode >>> 12).toString(8)}`} left out of the layer`);
      return { item, skip: true };
    }
    if ((kind === 'directory') !== item.isDir) {
      throw new TsbuildError('E_FILE_CHANGED', `${abs} changed type while it was being archived`);
    }
    const out: Prepared = { item, abs, st };
    const xattrs = this.readXattrs(abs);
    if (xattrs) out.xattrs = xattrs;
    if (kind === 'symlink') {
      let target: Buffer;
      try {
        target = readlinkSync(abs, { encoding: 'buffer' });
      } catch (err) {
        throw wrap(`reading symlink ${abs}`, err);
      }
      out.linkname = utf8Name(target, `symlink ${abs}`);
    }
    if (kind === 'file' && st.size > SYNC_FILE && st.size <= SMALL_FILE && st.nlink === 1 && this.budgetUsed + st.size <= PREFETCH_BUDGET) {
      this.budgetUsed += st.size;
      out.content = readWhole(abs, st.size);
      out.content.catch(() => {}); // reported when taken; one never taken (the stream stopped) must not be unhandled
    }
    return out;
  }

  /** readXattrs returns the xattrs to record; one that cannot be read is reported and left out. */
  private readXattrs(abs: string): Record<string, Buffer> | undefined {
    let names: string[];
    try {
      names = listXattrs(abs);
    } catch (err) {
      this.opts.onWarn?.(WARN.XATTR, `${abs}: cannot list xattrs: ${(err as Error).message}`);
      return undefined;
    }
    if (names.length === 0) return undefined;
    const out: Record<string, Buffer> = {};
    for (const name of names.filter(keepXattr).sort()) {
      try {
        const v = getXattr(abs, name);
        if (v !== undefined) out[name] = v;
      } catch (err) {
        this.opts.onWarn?.(WARN.XATTR, `${abs}: cannot read xattr ${name}: ${(err as Error).message}`);
      }
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }
}

/**
 * Slab hands out pieces of 1 MiB buffers, so that thousands of small files do not each cost an ArrayBuffer (the
 * garbage collector's work grows with their number). A piece is never handed out twice; a slab is freed when the
 * last piece of it has been written and dropped.
 */
class Slab {
  private buf = Buffer.alloc(0);
  private used = 0;
  take(n: number): Buffer {
    if (n > SLAB_SIZE / 4) return Buffer.allocUnsafe(n);
    if (this.used + n > this.buf.length) {
      this.buf = Buffer.allocUnsafe(SLAB_SIZE);
      this.used = 0;
    }
    const out = this.buf.subarray(this.used, this.used + n);
    this.used += (n + 7) & ~7;
    return out;
  }
}
const SLAB_SIZE = 1 << 20;

/** readWholeSync reads a small file with blocking calls; a size other than lstat's is a FileChangedError. */
function readWholeSync(abs: string, size: number, slab: Slab): Buffer {
  let fd: number;
  try {
    fd = openSync(abs, OPEN_FLAGS);
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
  try {
    const buf = slab.take(size + 1);
    let got = 0;
    try {
      for (let n = 1; n > 0 && got <= size; got += n) n = readSync(fd, buf, got, size + 1 - got, got);
    } catch (err) {
      throw wrap(`reading ${abs}`, err);
    }
    if (got !== size) throw new FileChangedError(abs, size, got > size ? 'it grew while read' : `read ${got}`);
    return buf.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

async function openFile(abs: string): Promise<FileHandle> {
  try {
    return await open(abs, OPEN_FLAGS);
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
}

/** readFull reads up to `len` bytes at `pos`, fewer only at end of file. */
async function readFull(fh: FileHandle, abs: string, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0;
  try {
    while (got < len) {
      const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
  return got;
}

/** readWhole reads a file that lstat said has `size` bytes; a different size is a FileChangedError. */
async function readWhole(abs: string, size: number): Promise<Buffer> {
  const fh = await openFile(abs);
  try {
    const buf = Buffer.allocUnsafe(size + 1);
    const got = await readFull(fh, abs, buf, size + 1, 0);
    if (got !== size) throw new FileChangedError(abs, size, got > size ? 'it grew while read' : `read ${got}`);
    return buf.subarray(0, size);
  } finally {
    await fh.close().catch(() => {});
  }
}

// ─── writing ────────────────────────────────────────────────────────────────────────────────────────────────────

/** startTar wires the pack stream to a Node Readable; the work starts on the first read. */
function startTar(opts: TarWriteOptions, makePlan: () => Promise<Plan>): Readable {
  installPaxCodec();
  const pack = tarPack();
  let started = false;
  let stopped = false;
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
          if (!ok) pack.pause();
        });
        pack.on('end', () => {
          flush();
          out.push(null);
        });
        pack.on('error', (err: Error) => out.destroy(err));
        write(pack, makePlan, opts, () => stopped).catch((err: unknown) => {
          stopped = true;
          out.destroy(err as Error);
        });
      } else {
        pack.resume();
      }
    },
    destroy(err, cb) {
      stopped = true;
      pack.destroy();
      cb(err);
    },
  });
  return out;
}

async function write(pack: Pack, makePlan: () => Promise<Plan>, opts: TarWriteOptions, stopped: () => boolean): Promise<void> {
  const plan = await makePlan();
  const ahead = new ReadAhead(plan, opts);
  /** (dev, ino) of multiply linked files written so far → their entry name */
  const links = new Map<string, string>();
  const slab = new Slab();
  for (let i = 0; i < plan.items.length; i++) {
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
      ...(hardlinkTo !== undefined ? { hardlink: true, linkname: hardlinkTo } : e.linkname !== undefined ? { linkname: e.linkname } : {}),
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
    else if (header.type === 'file') pack.entry(header, cb).end(undefined); // an empty file: its body ends at once
    else pack.entry(header, cb);
  });
}

/** addStreamed writes a big file chunk by chunk, reading the next chunk while the current one is written. */
async function addStreamed(pack: Pack, header: EntryHeader, abs: string, size: number, stopped: () => boolean): Promise<void> {
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
    for (let pos = 0; pos < size; ) {
      const buf: Buffer = await (reading as Promise<Buffer>);
      pos += buf.length;
      reading = pos < size ? readChunk(pos) : undefined;
      reading?.catch(() => {}); // awaited next round, or in finally
      if (stopped()) return;
      if (!sink.write(buf)) await drained(sink);
    }
    if ((await readFull(fh, abs, Buffer.alloc(1), 1, size)) > 0) throw new FileChangedError(abs, size, 'it grew while read');
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
