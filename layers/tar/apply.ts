// Applying one uncompressed layer tar to a directory: OCI whiteouts, ownership, modes, xattrs, times.
//
// applyLayer() only iterates over the tar; applyEntry() does the work for one header, so tests can feed it
// hand-made headers. Every path goes through sys/secure-path.ts (PathResolver): a hostile entry is refused
// with UnsafeEntryError before anything is written outside the root. The final component of a path is never
// followed: existing things are lstat'ed and unlinked, files are created with O_EXCL|O_NOFOLLOW, owners and
// times are set with fchown/lchown/futimes/lutimes, so a planted symlink never redirects a write.
//
// The per-entry work is synchronous fs calls (one syscall each, no thread-pool hop); once a layer shows many
// small files, applyLayer hands the making of new regular files to a worker thread (layers/tar/apply-writer.ts)
// so that their syscalls overlap with reading the tar. That is what keeps a layer of many small files close
// to `tar -x`.
import {
  chmodSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { mknod, setXattr } from '../../sys/libc.js';
import { InvalidInputError, TsbuildError, UnsafeEntryError, wrap } from '../../sys/errors.js';
import { BATCH_BYTES, FileBatcher } from './apply-writer.js';
import { basenameOf, cleanEntryPath, dirnameOf, PathResolver, type ResolvedPath } from '../../sys/secure-path.js';
import { installFastHeaderDecoder } from './header-fast.js';
import { installPaxCodec, xattrsFromPax } from './pax.js';

export interface ApplyOptions {
  /** the directory the layer is applied to; must exist */
  root: string;
  /**
   * 'delete' (default): a plain rootfs: whiteouts remove what they hide. 'overlay': the root is an overlay
   * lowerdir/upperdir: a whiteout becomes a char device 0/0, an opaque marker the xattr trusted.overlay.opaque=y.
   */
  whiteouts?: 'delete' | 'overlay';
  /** chown entries to their uid/gid (default: true when running as root) */
  sameOwner?: boolean;
  /** recoverable oddities (device node skipped when not root, xattr refused by the filesystem) */
  onWarn?: (code: string, message: string) => void;
  /** let a worker thread make the small files of a big layer while the tar is read (default: true) */
  writerThread?: boolean;
}

/** ApplyResult counts the tar entries seen (whiteouts and skipped ones included) and the file bytes written. */
export interface ApplyResult {
  entries: number;
  bytes: number;
}

/** EntryHeader is a tar-stream header; hand-made ones may leave out everything but the name. */
export type EntryHeader = Omit<Partial<Header>, 'type'> & Pick<Header, 'name'> & { type?: Header['type'] | null };

interface DirFinish {
  abs: string;
  depth: number;
  atime: number;
  mtime: number;
  /** the final mode, when it had to be widened (u+rwx) while children were written as non-root */
  mode: number | undefined;
}

/** ApplyState is what applying one layer remembers between entries; make it with createApplyState(). */
export interface ApplyState {
  readonly root: string;
  readonly whiteouts: 'delete' | 'overlay';
  readonly sameOwner: boolean;
  readonly privileged: boolean;
  readonly onWarn: (code: string, message: string) => void;
  readonly resolver: PathResolver;
  /** real relative paths this layer wrote, plus their ancestors (an opaque whiteout keeps them) */
  readonly written: Set<string>;
  /** real relative paths of the symlinks this layer created (never written through, never replaced) */
  readonly layerSymlinks: Set<string>;
  /** directories whose mtime (and maybe mode) is set at the end, by absolute path */
  readonly dirs: Map<string, DirFinish>;
  readonly umask: number;
  /** the root was empty when the layer started: a path this layer did not write does not exist */
  readonly freshRoot: boolean;
  /** this process's ids: a new file already has them, unless its directory is setgid */
  readonly uid: number;
  readonly gid: number;
  /** false while every directory this layer writes into is known not to be setgid (a fresh root, no g+s dirs) */
  setgidDirs: boolean;
  /** the worker that makes small new files (applyLayer only, once the layer shows many of them) */
  batcher: FileBatcher | undefined;
  /** whether a batcher may be started: only applyLayer, which flushes and closes it, sets this */
  allowBatcher: boolean;
  /** small regular files seen so far */
  smallFiles: number;
  entries: number;
  bytes: number;
}

/** createApplyState prepares to apply one layer to opts.root (which must be an existing directory). */
export function createApplyState(opts: ApplyOptions): ApplyState {
  let root: string;
  try {
    root = realpathSync(opts.root);
  } catch (e) {
    throw wrap(`layer root ${opts.root}`, e);
  }
  if (!lstatSync(root).isDirectory()) throw new InvalidInputError(`layer root ${opts.root} is not a directory`);
  const privileged = process.getuid?.() === 0;
  const layerSymlinks = new Set<string>();
  const written = new Set<string>();
  const freshRoot = readdirSync(root).length === 0;
  const rootSetgid = (lstatSync(root).mode & 0o2000) !== 0;
  const state: ApplyState = {
    root,
    whiteouts: opts.whiteouts ?? 'delete',
    sameOwner: opts.sameOwner ?? privileged,
    privileged,
    onWarn: opts.onWarn ?? (() => {}),
    resolver: new PathResolver({
      root,
      isLayerSymlink: (rel) => layerSymlinks.has(rel),
      onCreateDir: (rel) => markWritten(state, rel),
      // A missing parent may be a file the worker has not made yet (a file used as a directory: an error).
      beforeCreateDir: (rel) => {
        if (state.batcher?.pending.has(rel)) throw NEED_FLUSH;
      },
    }),
    written,
    layerSymlinks,
    dirs: new Map(),
    umask: readUmask(),
    freshRoot,
    uid: process.geteuid?.() ?? -1,
    gid: process.getegid?.() ?? -1,
    setgidDirs: !freshRoot || rootSetgid,
    batcher: undefined,
    allowBatcher: false,
    smallFiles: 0,
    entries: 0,
    bytes: 0,
  };
  return state;
}

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
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
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
    throw entryError(header.name, e);
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

const WH = '.wh.';
const WH_OPAQUE = '.wh..wh..opq';
const WH_META = '.wh..wh.';
/** NEED_FLUSH is thrown (before anything changed) by an entry that must wait for the file worker. */
const NEED_FLUSH = Symbol('need flush');
/** The worker starts once a layer has shown this many small regular files. */
const BATCH_AFTER = 64;
const OPEN_NEW = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW; // libuv adds O_CLOEXEC

/** FileWriter receives a regular file's content; end() sets its metadata, abort() only closes it. */
interface FileWriter {
  write(chunk: Uint8Array): void;
  end(): void;
  abort(): void;
}

/** startEntry applies everything but a regular file's content, which goes through the returned FileWriter. */
function startEntry(state: ApplyState, header: EntryHeader): FileWriter | undefined {
  const entry = header.name;
  const rel = cleanEntryPath(entry);
  const base = basenameOf(rel);
  if (base.startsWith(WH)) {
    whiteout(state, entry, rel, base);
    return undefined;
  }
  switch (header.type === undefined ? 'file' : header.type) {
    case 'file':
    case 'contiguous-file':
      return beginRegular(state, entry, rel, header);
    case 'directory':
      makeDirectory(state, entry, rel, header);
      return undefined;
    case 'symlink':
      makeSymlink(state, entry, rel, header);
      return undefined;
    case 'link':
      makeHardlink(state, entry, rel, header);
      return undefined;
    case 'character-device':
    case 'block-device':
    case 'fifo':
      makeNode(state, entry, rel, header);
      return undefined;
    default:
      throw new InvalidInputError(`layer entry ${JSON.stringify(entry)} has an unsupported type (sparse or vendor-specific)`);
  }
}

interface Meta {
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  xattrs: Record<string, Buffer>;
}

function metaOf(header: EntryHeader): Meta {
  const mode = (header.mode ?? (header.type === 'directory' ? 0o755 : 0o644)) & 0o7777;
  const mtime = header.mtime ? header.mtime.getTime() / 1000 : 0;
  const pax = (header.pax ?? undefined) as Record<string, string> | undefined;
  if (pax === undefined) return { mode, uid: header.uid ?? 0, gid: header.gid ?? 0, atime: mtime, mtime, xattrs: NO_XATTRS };
  // PAX records carry sub-second times and ids too large for the ustar fields.
  const paxMtime = paxTime(pax.mtime, mtime);
  return {
    mode,
    uid: paxNumber(pax.uid, header.uid ?? 0),
    gid: paxNumber(pax.gid, header.gid ?? 0),
    atime: paxTime(pax.atime, paxMtime),
    mtime: paxMtime,
    xattrs: xattrsOrNone(xattrsFromPax(pax)),
  };
}

const NO_XATTRS: Record<string, Buffer> = Object.freeze({}) as Record<string, Buffer>;

function xattrsOrNone(x: Record<string, Buffer>): Record<string, Buffer> {
  for (const _ in x) return x;
  return NO_XATTRS;
}

/**
 * paxTime reads a PAX time ("1700000000.123456789") for Node's utimes calls, which take seconds as a double and
 * (through libuv) keep whole microseconds: it returns the middle of the time's microsecond, so that the time set
 * is the PAX time truncated to the microsecond, exactly, whatever the double rounding.
 */
function paxTime(v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const m = /^(\d+)(?:\.(\d*))?$/.exec(v);
  if (!m) return paxNumber(v, fallback);
  const sec = Number(m[1]);
  const frac = m[2] ?? '';
  if (/^0*$/.test(frac)) return sec;
  return sec + (Number(frac.slice(0, 6).padEnd(6, '0')) + 0.5) / 1e6;
}

function paxNumber(v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : fallback;
}

/** target resolves an entry's own path (creating its parents) and refuses to retype the root. */
function target(state: ApplyState, entry: string, rel: string, what: string): ResolvedPath {
  const p = state.resolver.resolve(entry, rel, { create: true });
  if (p === undefined || p.rel === '') throw new UnsafeEntryError(entry, `it would change the type of the root directory to a ${what}`);
  if (state.batcher?.pending.has(p.rel)) throw NEED_FLUSH; // a duplicate of a file the worker may not have made yet
  return p;
}

/** createFresh runs `make` (which creates p.abs exclusively); if something is there, removes it and retries. */
function createFresh<T>(state: ApplyState, entry: string, p: ResolvedPath, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if ((e as { code?: string }).code !== 'EEXIST') throw e;
  }
  removeExisting(state, entry, p);
  return make();
}

/** removeExisting removes whatever is at p (recursively, never following a symlink). */
function removeExisting(state: ApplyState, entry: string, p: ResolvedPath): void {
  const st = lstatSync(p.abs, { throwIfNoEntry: false });
  if (!st) return;
  mayRemove(state, p.rel);
  if (st.isSymbolicLink() && state.layerSymlinks.has(p.rel)) {
    throw new UnsafeEntryError(entry, `it replaces the symlink ${p.rel} that this layer created (a planted symlink)`);
  }
  if (st.isDirectory()) {
    rmSync(p.abs, { recursive: true, force: true });
    state.resolver.forget();
  } else {
    unlinkSync(p.abs);
    if (st.isSymbolicLink()) state.resolver.forget();
  }
  state.dirs.delete(p.abs);
}

/** mayRemove throws NEED_FLUSH when rel is, or holds, something this layer wrote while the worker is busy. */
function mayRemove(state: ApplyState, rel: string): void {
  if (state.batcher?.busy && state.written.has(rel)) throw NEED_FLUSH;
}

function markWritten(state: ApplyState, rel: string): void {
  const w = state.written;
  for (let r = rel; r !== ''; r = dirnameOf(r)) {
    const n = w.size;
    w.add(r);
    if (w.size === n) return; // already there, and so are its ancestors
  }
}

function beginRegular(state: ApplyState, entry: string, rel: string, header: EntryHeader): FileWriter {
  const p = target(state, entry, rel, 'file');
  const meta = metaOf(header);
  const size = header.size ?? 0;
  if (state.allowBatcher && size <= BATCH_BYTES / 4 && meta.xattrs === NO_XATTRS) {
    if (state.batcher === undefined && ++state.smallFiles >= BATCH_AFTER) state.batcher = new FileBatcher();
    if (state.batcher) {
      // The worker only creates: whatever is at the path goes first (in a fresh root, only what this layer wrote can be).
      if (!state.freshRoot || state.written.has(p.rel)) removeExisting(state, entry, p);
      return new QueuedWriter(state, entry, p, meta);
    }
  }
  const fd = createFresh(state, entry, p, () => openSync(p.abs, OPEN_NEW, meta.mode & 0o777));
  return new DirectWriter(state, entry, p, meta, fd);
}

/** needsChown tells whether a file or symlink this process creates must be chowned to end up owned by meta's ids. */
function needsChown(state: ApplyState, meta: Meta): boolean {
  return state.sameOwner && (meta.uid !== state.uid || meta.gid !== state.gid || state.setgidDirs);
}

/** needsChmod: chown clears setuid/setgid, and the umask trimmed the creation mode. */
function needsChmod(state: ApplyState, meta: Meta): boolean {
  return (meta.mode & 0o7000) !== 0 || (meta.mode & state.umask) !== 0;
}

/** DirectWriter writes a regular file on this thread, chunk by chunk, into an fd it opened O_EXCL|O_NOFOLLOW. */
class DirectWriter implements FileWriter {
  private closed = false;
  constructor(
    private readonly state: ApplyState,
    private readonly entry: string,
    private readonly p: ResolvedPath,
    private readonly meta: Meta,
    private readonly fd: number,
  ) {}

  write(chunk: Uint8Array): void {
    for (let off = 0; off < chunk.byteLength; ) off += writeSync(this.fd, chunk, off);
    this.state.bytes += chunk.byteLength;
  }

  end(): void {
    const { state, meta, fd } = this;
    this.closed = true;
    try {
      if (needsChown(state, meta)) fchownSync(fd, meta.uid, meta.gid);
      if (needsChmod(state, meta)) fchmodSync(fd, meta.mode);
      setXattrs(state, this.entry, this.p.abs, meta.xattrs); // after chown, which clears security.capability
      futimesSync(fd, meta.atime, meta.mtime);
    } finally {
      closeSync(fd);
    }
    markWritten(state, this.p.rel);
  }

  abort(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** QueuedWriter collects a small file's content and hands it to the worker, which creates it exclusively. */
class QueuedWriter implements FileWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  constructor(
    private readonly state: ApplyState,
    private readonly entry: string,
    private readonly p: ResolvedPath,
    private readonly meta: Meta,
  ) {}

  write(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
  }

  end(): void {
    const { state, meta, p } = this;
    (state.batcher as FileBatcher).add({
      entry: this.entry,
      rel: p.rel,
      abs: p.abs,
      mode: meta.mode,
      uid: meta.uid,
      gid: meta.gid,
      chown: needsChown(state, meta),
      chmod: needsChmod(state, meta),
      atime: meta.atime,
      mtime: meta.mtime,
      chunks: this.chunks,
      size: this.size,
    });
    state.bytes += this.size;
    markWritten(state, p.rel);
  }

  abort(): void {}
}

function makeDirectory(state: ApplyState, entry: string, rel: string, header: EntryHeader): void {
  const meta = metaOf(header);
  const p = rel === '' ? { rel: '', abs: state.root, viaLink: false } : target(state, entry, rel, 'directory');
  if (p.rel !== '') {
    try {
      mkdirSync(p.abs, 0o700);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
      // A directory over a directory keeps its contents; anything else is replaced.
      if (!lstatSync(p.abs).isDirectory()) {
        removeExisting(state, entry, p);
        mkdirSync(p.abs, 0o700);
      }
    }
  }
  if (state.sameOwner) lchownSync(p.abs, meta.uid, meta.gid);
  if ((meta.mode & 0o2000) !== 0) state.setgidDirs = true; // new files below take the directory's group
  // As non-root, keep u+rwx until the end so that the children can still be written.
  const widen = !state.privileged && (meta.mode & 0o700) !== 0o700;
  chmodSync(p.abs, widen ? meta.mode | 0o700 : meta.mode); // p.abs is a directory we just checked or made
  setXattrs(state, entry, p.abs, meta.xattrs);
  state.dirs.set(p.abs, {
    abs: p.abs,
    depth: p.rel === '' ? 0 : p.rel.split('/').length,
    atime: meta.atime,
    mtime: meta.mtime,
    mode: widen ? meta.mode : undefined,
  });
  state.resolver.remember(rel, p.rel, p.viaLink);
  markWritten(state, p.rel);
}

function makeSymlink(state: ApplyState, entry: string, rel: string, header: EntryHeader): void {
  const p = target(state, entry, rel, 'symlink');
  const meta = metaOf(header);
  const linkname = header.linkname ?? '';
  if (linkname === '') throw new InvalidInputError(`layer entry ${JSON.stringify(entry)} is a symlink with an empty target`);
  createFresh(state, entry, p, () => symlinkSync(linkname, p.abs));
  state.layerSymlinks.add(p.rel);
  if (needsChown(state, meta)) lchownSync(p.abs, meta.uid, meta.gid);
  setXattrs(state, entry, p.abs, meta.xattrs);
  lutimesSync(p.abs, meta.atime, meta.mtime);
  markWritten(state, p.rel);
}

function makeHardlink(state: ApplyState, entry: string, rel: string, header: EntryHeader): void {
  const linkname = header.linkname ?? '';
  let targetRel: string;
  try {
    targetRel = cleanEntryPath(linkname, entry);
  } catch {
    throw new UnsafeEntryError(entry, `hardlink target ${JSON.stringify(linkname)} is outside the root`);
  }
  if (targetRel === '') throw new UnsafeEntryError(entry, 'hardlink target is the root directory');
  if (state.batcher?.busy) {
    // The target may be a file the worker has not made yet.
    const queued = state.resolver.resolve(entry, targetRel, { noSymlinks: true });
    if (queued !== undefined && state.batcher.pending.has(queued.rel)) throw NEED_FLUSH;
  }
  const t = state.resolver.resolveFile(entry, targetRel);
  const p = target(state, entry, rel, 'hardlink');
  if (p.abs === t.abs) return;
  createFresh(state, entry, p, () => linkSync(t.abs, p.abs));
  markWritten(state, p.rel);
}

function makeNode(state: ApplyState, entry: string, rel: string, header: EntryHeader): void {
  const meta = metaOf(header);
  const major = header.devmajor ?? 0;
  const minor = header.devminor ?? 0;
  if (header.type !== 'fifo' && !state.privileged) {
    state.onWarn('device-skipped', `skipped ${header.type} ${major}:${minor} at ${entry}: creating devices needs root`);
    return;
  }
  const kind = header.type === 'fifo' ? fsc.S_IFIFO : header.type === 'block-device' ? fsc.S_IFBLK : fsc.S_IFCHR;
  const p = target(state, entry, rel, header.type ?? 'device');
  createFresh(state, entry, p, () => mknod(p.abs, kind | (meta.mode & 0o777), major, minor));
  if (state.sameOwner) lchownSync(p.abs, meta.uid, meta.gid);
  chmodSync(p.abs, meta.mode); // just made, not a symlink
  setXattrs(state, entry, p.abs, meta.xattrs);
  lutimesSync(p.abs, meta.atime, meta.mtime);
  markWritten(state, p.rel);
}

function whiteout(state: ApplyState, entry: string, rel: string, base: string): void {
  if (base === WH_OPAQUE) return opaque(state, entry, rel);
  if (base.startsWith(WH_META)) return; // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image
  const name = base.slice(WH.length);
  if (name === '') throw new InvalidInputError(`layer entry ${JSON.stringify(entry)} is a whiteout that names nothing`);
  if (name === '.' || name === '..') throw new UnsafeEntryError(entry, `whiteout of ${JSON.stringify(name)}`);
  const dir = dirnameOf(rel);
  const victim = dir === '' ? name : `${dir}/${name}`;
  if (state.whiteouts === 'overlay') {
    const p = state.resolver.resolve(entry, victim, { create: true }) as ResolvedPath;
    createFresh(state, entry, p, () => mknod(p.abs, fsc.S_IFCHR, 0, 0));
    markWritten(state, p.rel);
    return;
  }
  const p = state.resolver.resolve(entry, victim);
  if (p === undefined) return; // its directory is not there: nothing to hide
  const st = lstatSync(p.abs, { throwIfNoEntry: false });
  if (!st) return;
  mayRemove(state, p.rel);
  if (st.isDirectory()) rmSync(p.abs, { recursive: true, force: true });
  else unlinkSync(p.abs); // a symlink: remove the link, not what it points to
  if (st.isDirectory() || st.isSymbolicLink()) state.resolver.forget();
  state.dirs.delete(p.abs);
}

/** opaque handles `<dir>/.wh..wh..opq`: hide every lower child of dir (delete) or mark dir opaque (overlay). */
function opaque(state: ApplyState, entry: string, markerRel: string): void {
  const overlay = state.whiteouts === 'overlay';
  // Resolving the marker itself resolves its directory the way every other entry under it is resolved.
  const marker = state.resolver.resolve(entry, markerRel, { create: overlay });
  if (marker === undefined) return;
  const dirRel = dirnameOf(marker.rel);
  const dirAbs = state.resolver.abs(dirRel);
  if (overlay) {
    setXattr(dirAbs, 'trusted.overlay.opaque', Buffer.from('y'));
    markWritten(state, dirRel);
    return;
  }
  if (clearLower(state, dirRel)) state.resolver.forget();
}

/** clearLower removes the children of a directory that this layer did not write; true when it removed some. */
function clearLower(state: ApplyState, dirRel: string): boolean {
  let removed = false;
  for (const d of readdirSync(state.resolver.abs(dirRel), { withFileTypes: true })) {
    const childRel = dirRel === '' ? d.name : `${dirRel}/${d.name}`;
    if (!state.written.has(childRel)) {
      const abs = state.resolver.abs(childRel);
      rmSync(abs, { recursive: true, force: true });
      state.dirs.delete(abs);
      removed = true;
    } else if (d.isDirectory()) {
      removed = clearLower(state, childRel) || removed;
    }
  }
  return removed;
}

/** xattrs never applied: host-specific labels, and overlay's own (a layer must not forge an opaque marker). */
function xattrIgnored(name: string): 'silent' | 'warn' | false {
  if (name === 'security.selinux' || name === 'system.nfs4_acl') return 'silent';
  if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) return 'warn';
  return false;
}

const XATTR_REFUSALS = new Set(['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'E2BIG', 'ERANGE', 'ENOSPC', 'EINVAL']);

function setXattrs(state: ApplyState, entry: string, abs: string, xattrs: Record<string, Buffer>): void {
  if (xattrs === NO_XATTRS) return;
  for (const [name, value] of Object.entries(xattrs)) {
    const ignored = xattrIgnored(name);
    if (ignored) {
      if (ignored === 'warn') state.onWarn('xattr-ignored', `ignored xattr ${name} on ${entry}`);
      continue;
    }
    try {
      setXattr(abs, name, value);
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (!XATTR_REFUSALS.has(code) || (name === 'security.capability' && state.privileged)) throw e;
      state.onWarn('xattr-refused', `the filesystem refused xattr ${name} on ${entry} (${code})`);
    }
  }
}

function noop(): void {}

/** readUmask reads the process umask without changing it (process.umask() with no argument is deprecated). */
function readUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m?.[1]) return Number.parseInt(m[1], 8);
  } catch {
    // no /proc: assume the worst, so that every mode is set explicitly
  }
  return 0o777;
}
