// What applying one layer tar remembers between entries (layers/tar/apply.ts), and the path steps every entry kind
// shares: resolving an entry's own path inside the root, replacing what is there, recording what the layer wrote.
//
// Privilege comes from the Host (sys/host.ts): whether to chown (caps.chown), make device nodes (caps.mknod) and
// write into directories whatever their mode (caps.root) is decided once here, from host.caps(), never getuid().
import { lstatSync, readdirSync, readFileSync, realpathSync, rmSync, unlinkSync } from 'node:fs';
import { InvalidInputError, UnsafeEntryError, wrap } from '../../sys/errors.js';
import { defaultHost, type Host } from '../../sys/host.js';
import { dirnameOf, PathResolver, type ResolvedPath } from '../../sys/secure-path.js';
import type { FileBatcher } from '../../sys/file-writer.js';
import { PathSet } from './path-set.js';
import type { TarHeader } from './read-header.js';
import { warn } from '../../sys/warnings.js';

export interface ApplyOptions {
  /** the directory the layer is applied to; must exist */
  root: string;
  /**
   * 'delete' (default): a plain rootfs: whiteouts remove what they hide. 'overlay': the root is an overlay
   * lowerdir/upperdir: a whiteout becomes a char device 0/0, an opaque marker the xattr trusted.overlay.opaque=y.
   */
  whiteouts?: 'delete' | 'overlay';
  /** chown entries to their uid/gid (default: when the host may chown, host.caps().chown) */
  sameOwner?: boolean;
  /** recoverable oddities (device node skipped when not root, xattr refused by the filesystem) */
  onWarn?: (code: string, message: string) => void;
  /**
   * let a worker thread make the small files of a big layer while the tar is read (default: when the machine has
   * more than 2 CPUs; see WRITER_THREAD_DEFAULT in layers/tar/apply.ts)
   */
  writerThread?: boolean;
  /** the host that makes device nodes and sets owners (default: defaultHost()) */
  host?: Host;
  /**
   * for a layer applied alone into an empty directory above the layers below it (a snapshot): the target of the
   * symlink at `rel` in those layers, or undefined when there is none there. Entries below such a symlink are
   * written where applying onto the lower layers would write them (throughLower).
   */
  lower?: (rel: string) => string | undefined;
}

/** ApplyResult counts the tar entries seen (whiteouts and skipped ones included) and the file bytes written. */
export interface ApplyResult {
  entries: number;
  bytes: number;
}

/** EntryHeader is a header as layers/tar/read.ts (or tar-stream) gives it; hand-made ones may leave out all but the name. */
export type EntryHeader = Partial<Omit<TarHeader, 'name' | 'pax'>> &
  Pick<TarHeader, 'name'> & { pax?: Record<string, string> | null | undefined };

export interface DirFinish {
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
  readonly host: Host;
  readonly sameOwner: boolean;
  /** the host is root: it writes into any directory and keeps security.capability (caps.root) */
  readonly privileged: boolean;
  /** the host may create device nodes (caps.mknod); fifos are made either way */
  readonly mayMknod: boolean;
  readonly onWarn: (code: string, message: string) => void;
  readonly resolver: PathResolver;
  /**
   * real relative paths this layer wrote, plus their ancestors (an opaque whiteout keeps them): 8 bytes a path
   * (layers/tar/path-set.ts), not the paths, so that a layer of a million entries stays small (issue 14)
   */
  readonly written: PathSet;
  /** real relative paths of the symlinks this layer created (never written through, never replaced) */
  readonly layerSymlinks: Set<string>;
  /** directories whose mtime (and maybe mode) is set at the end, by absolute path */
  readonly dirs: Map<string, DirFinish>;
  readonly umask: number;
  /** the root was empty when the layer started: a path this layer did not write does not exist */
  readonly freshRoot: boolean;
  readonly lower: ((rel: string) => string | undefined) | undefined;
  /** paths known not to be a symlink of a lower layer (nor to lie below one) */
  readonly plainParents: Set<string>;
  /** this process's ids: a new file already has them, unless its directory is setgid */
  readonly uid: number;
  readonly gid: number;
  /** false while every directory this layer writes into is known not to be setgid (a fresh root, no g+s dirs) */
  setgidDirs: boolean;
  /** the worker that makes small new files (applyLayer only, once the layer shows many of them) */
  /** the host's file writer once started; null when the host has none */
  batcher: FileBatcher | null | undefined;
  /** whether a batcher may be started: only applyLayer, which flushes and closes it, sets this */
  allowBatcher: boolean;
  /**
   * the last entry queued a hardlink for the worker: applyLayer then waits until the worker has room (a file is
   * only queued when it has: otherwise this thread makes it)
   */
  queuedLink: boolean;
  /** the worker has as much in hand as it may (until a batch comes back): new small files are made on this thread */
  workerFull: boolean;
  /** small regular files seen so far */
  smallFiles: number;
  entries: number;
  bytes: number;
}

/** NEED_FLUSH is thrown (before anything changed) by an entry that must wait for the file worker. */
export const NEED_FLUSH = Symbol('need flush');

/** createApplyState prepares to apply one layer to opts.root (which must be an existing directory). */
export function createApplyState(opts: ApplyOptions): ApplyState {
  let root: string;
  try {
    root = realpathSync(opts.root);
  } catch (e) {
    throw wrap(`layer root ${opts.root}`, e);
  }
  if (!lstatSync(root).isDirectory()) throw new InvalidInputError(`layer root ${opts.root} is not a directory`);
  const host = opts.host ?? defaultHost();
  const caps = host.caps();
  const layerSymlinks = new Set<string>();
  const written = new PathSet();
  const freshRoot = readdirSync(root).length === 0;
  const rootSetgid = (lstatSync(root).mode & 0o2000) !== 0;
  const state: ApplyState = {
    root,
    whiteouts: opts.whiteouts ?? 'delete',
    host,
    sameOwner: opts.sameOwner ?? caps.chown,
    privileged: caps.root || caps.userns,
    mayMknod: caps.mknod,
    onWarn: opts.onWarn ?? warn, // the process's sink (sys/warnings.ts) when the caller gave none
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
    lower: opts.lower,
    plainParents: new Set(),
    uid: caps.uid,
    gid: caps.gid,
    setgidDirs: !freshRoot || rootSetgid,
    batcher: undefined,
    allowBatcher: false,
    queuedLink: false,
    workerFull: false,
    smallFiles: 0,
    entries: 0,
    bytes: 0,
  };
  return state;
}

/**
 * throughLower gives the path an entry of a layer applied alone (a snapshot) takes when applied onto the layers
 * below (unpack): a parent that is a symlink in the lower layers (`a -> /etc` below, `a/x` here) is followed inside
 * the root as the PathResolver follows it in a plain root (absolute targets from the root, `..` stopping at the
 * root), so the entry lands at `etc/x` in the snapshot too. A parent this layer made itself (a directory that
 * replaced the lower symlink, or its own symlink, which the PathResolver refuses to write through) is not looked up
 * below. Without opts.lower (a plain root) the path is returned as is.
 */
export function throughLower(state: ApplyState, entry: string, rel: string): string {
  if (!state.lower) return rel;
  for (let hops = 0; ; hops++) {
    if (hops > 40) throw new UnsafeEntryError(entry, 'too many levels of symbolic links in the layers below');
    const parts = rel.split('/');
    let next: string | undefined;
    for (let i = 1; i < parts.length && next === undefined; i++) {
      const q = parts.slice(0, i).join('/');
      if (state.plainParents.has(q)) continue;
      const own = lstatSync(`${state.root}/${q}`, { throwIfNoEntry: false });
      if (own?.isSymbolicLink()) return rel; // this layer's own symlink: the PathResolver decides
      const link = own ? undefined : state.lower(q);
      if (link === undefined) {
        state.plainParents.add(q);
        continue;
      }
      next = joinInside(link.startsWith('/') ? '' : dirnameOf(q), link, parts.slice(i).join('/'));
    }
    if (next === undefined) return rel;
    rel = next;
  }
}

/** joinInside joins relative paths and a symlink target the way a lookup inside the root does ('..' stops at it). */
function joinInside(...paths: string[]): string {
  const out: string[] = [];
  for (const c of paths.join('/').split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return out.join('/');
}

/** target resolves an entry's own path (creating its parents) and refuses to retype the root. */
export function target(state: ApplyState, entry: string, rel: string, what: string): ResolvedPath {
  rel = throughLower(state, entry, rel);
  const p = state.resolver.resolve(entry, rel, { create: true });
  if (p === undefined || p.rel === '')
    throw new UnsafeEntryError(entry, `it would change the type of the root directory to a ${what}`);
  if (state.batcher?.pending.has(p.rel)) throw NEED_FLUSH; // a duplicate of a file the worker may not have made yet
  return p;
}

/** createFresh runs `make` (which creates p.abs exclusively); if something is there, removes it and retries. */
export function createFresh<T>(state: ApplyState, entry: string, p: ResolvedPath, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if ((e as { code?: string }).code !== 'EEXIST') throw e;
  }
  removeExisting(state, entry, p);
  return make();
}

/** removeExisting removes whatever is at p (recursively, never following a symlink). */
export function removeExisting(state: ApplyState, entry: string, p: ResolvedPath): void {
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
export function mayRemove(state: ApplyState, rel: string): void {
  if (state.batcher?.busy && state.written.has(rel)) throw NEED_FLUSH;
}

/** markWritten records that this layer wrote rel (and so, its ancestors). */
export function markWritten(state: ApplyState, rel: string): void {
  const w = state.written;
  for (let r = rel; r !== ''; r = dirnameOf(r)) {
    if (!w.add(r)) return; // already there, and so are its ancestors
  }
}

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
