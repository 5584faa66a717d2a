// The work for one entry of a layer tar being applied (layers/tar/apply.ts): a regular file, directory, symlink,
// hardlink, device node or fifo made at its confined path, with its owner, mode, xattrs and times.
//
// The final component of a path is never followed: existing things are lstat'ed and unlinked, files are created
// with O_EXCL|O_NOFOLLOW, owners are set with host.lchown and times with futimes/lutimes, so a planted symlink never
// redirects a write. Device nodes are made with host.mknod. Small new regular files of a big layer go to the worker
// thread (the host's file writer, sys/file-writer.ts), which sets their owner itself (fchown) when told to by a per-file flag.
import {
  chmodSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  futimesSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { InvalidInputError, UnsafeEntryError } from '../../sys/errors.js';
import { setXattr } from '../../sys/libc.js';
import { basenameOf, cleanEntryPath, type ResolvedPath } from '../../sys/secure-path.js';
import {
  createFresh,
  markWritten,
  removeExisting,
  target,
  throughLower,
  type ApplyState,
  type EntryHeader,
} from './apply-state.js';
import { whiteout } from './apply-whiteout.js';
import { BATCH_BYTES, type FileBatcher } from '../../sys/file-writer.js';
import { xattrsFromPax } from './pax.js';
import { isOciWhiteoutName, isOverlayXattr } from './whiteout.js';

/** The worker starts once a layer has shown this many small regular files. */
const BATCH_AFTER = 64;
/** Larger files are written on this thread, straight from the tar's chunks. */
const QUEUE_MAX = BATCH_BYTES / 4;
const OPEN_NEW = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW; // libuv adds O_CLOEXEC

/** FileWriter receives a regular file's content; end() sets its metadata, abort() only closes it. */
export interface FileWriter {
  write(chunk: Uint8Array): void;
  end(): void;
  abort(): void;
}

/** startEntry applies everything but a regular file's content, which goes through the returned FileWriter. */
export function startEntry(state: ApplyState, header: EntryHeader): FileWriter | undefined {
  const entry = header.name;
  const rel = cleanEntryPath(entry);
  const base = basenameOf(rel);
  if (isOciWhiteoutName(base)) {
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
      throw new InvalidInputError(
        `layer entry ${JSON.stringify(entry)} has an unsupported type (sparse or vendor-specific)`,
      );
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
  if (pax === undefined)
    return { mode, uid: header.uid ?? 0, gid: header.gid ?? 0, atime: mtime, mtime, xattrs: NO_XATTRS };
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

function beginRegular(state: ApplyState, entry: string, rel: string, header: EntryHeader): FileWriter {
  const p = target(state, entry, rel, 'file');
  const meta = metaOf(header);
  const size = header.size ?? 0;
  if (state.allowBatcher && size <= QUEUE_MAX && meta.xattrs === NO_XATTRS) {
    if (state.batcher === undefined && ++state.smallFiles >= BATCH_AFTER)
      state.batcher = state.host.fileWriter?.() ?? null;
    // While the worker has as much in hand as it may (room() would wait), this thread makes the file itself
    // rather than wait: both threads make files, neither idles.
    if (state.batcher && workerHasRoom(state, state.batcher)) {
      // The worker only creates: whatever is at the path goes first (in a fresh root, only what this layer wrote can be).
      if (!state.freshRoot || state.written.has(p.rel)) removeExisting(state, entry, p);
      return new QueuedWriter(state, entry, p, meta);
    }
  }
  const fd = createFresh(state, entry, p, () => openSync(p.abs, OPEN_NEW, meta.mode & 0o777));
  return new DirectWriter(state, entry, p, meta, fd);
}

/** workerHasRoom tells whether the worker may take another file; while it may not, asks once when it may again. */
function workerHasRoom(state: ApplyState, b: FileBatcher): boolean {
  if (state.workerFull) return false;
  const wait = b.room();
  if (wait === undefined) return true;
  state.workerFull = true;
  void wait.then(() => {
    state.workerFull = false;
  });
  return false;
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
    for (let off = 0; off < chunk.byteLength;) off += writeSync(this.fd, chunk, off);
    this.state.bytes += chunk.byteLength;
  }

  end(): void {
    const { state, meta, fd } = this;
    this.closed = true;
    try {
      // lchown of the path just made with O_EXCL|O_NOFOLLOW: a regular file, never a link to follow.
      if (needsChown(state, meta)) state.host.lchown(this.p.abs, meta.uid, meta.gid);
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
  if (state.sameOwner) state.host.lchown(p.abs, meta.uid, meta.gid);
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
  if (linkname === '')
    throw new InvalidInputError(`layer entry ${JSON.stringify(entry)} is a symlink with an empty target`);
  createFresh(state, entry, p, () => symlinkSync(linkname, p.abs));
  state.layerSymlinks.add(p.rel);
  if (needsChown(state, meta)) state.host.lchown(p.abs, meta.uid, meta.gid);
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
  targetRel = throughLower(state, entry, targetRel);
  if (state.batcher?.busy) {
    // The target may be a file the worker has not made yet: a regular file this layer queued, reached through plain
    // directories (as resolveFile requires). The worker makes the link right after it, without a flush.
    const queued = state.resolver.resolve(entry, targetRel, { noSymlinks: true });
    if (queued !== undefined && state.batcher.pending.has(queued.rel)) {
      const p = target(state, entry, rel, 'hardlink');
      if (p.abs === queued.abs) return;
      // The worker only creates: whatever is at the path goes first (as for a queued file).
      if (!state.freshRoot || state.written.has(p.rel)) removeExisting(state, entry, p);
      state.batcher.addLink({ entry, rel: p.rel, abs: p.abs, target: queued.abs });
      state.queuedLink = true; // applyLayer waits for room after it, if need be
      markWritten(state, p.rel);
      return;
    }
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
  if (header.type !== 'fifo' && !state.mayMknod) {
    state.onWarn('device-skipped', `skipped ${header.type} ${major}:${minor} at ${entry}: creating devices needs root`);
    return;
  }
  const kind = header.type === 'fifo' ? fsc.S_IFIFO : header.type === 'block-device' ? fsc.S_IFBLK : fsc.S_IFCHR;
  const p = target(state, entry, rel, header.type ?? 'device');
  createFresh(state, entry, p, () => state.host.mknod(p.abs, kind | (meta.mode & 0o777), major, minor));
  if (state.sameOwner) state.host.lchown(p.abs, meta.uid, meta.gid);
  chmodSync(p.abs, meta.mode); // just made, not a symlink
  setXattrs(state, entry, p.abs, meta.xattrs);
  lutimesSync(p.abs, meta.atime, meta.mtime);
  markWritten(state, p.rel);
}

/** xattrs never applied: host-specific labels, and overlay's own (a layer must not forge an opaque marker). */
function xattrIgnored(name: string): 'silent' | 'warn' | false {
  if (name === 'security.selinux' || name === 'system.nfs4_acl') return 'silent';
  if (isOverlayXattr(name)) return 'warn';
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
