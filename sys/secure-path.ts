// The one place that turns a name into a path on disk without ever leaving a root: layer tar entries (PathResolver)
// and container paths (secureJoin) are resolved by the same walk (stepInto), under a policy (ConfinePolicy) that
// says where the two differ.
//
// The walk goes through the components one by one with lstat, like a kernel path walk confined to the root:
// - a symlink is followed *inside* the root: an absolute target starts again at the root and `..` at the root
//   stays there when it comes from an absolute target (chroot semantics);
// - `..` that climbs above the root otherwise (a relative target): policy `escape: 'refuse'` refuses it (tar
//   entries, UnsafeEntryError), `escape: 'clamp'` stays at the root (container paths, as the kernel does in a chroot);
// - symlinks followed in one resolution are bounded (ELOOP), 40 for entries, 255 for container paths.
//
// PathResolver (tar entries, layers/tar/apply*.ts): a name is cleaned lexically first (cleanEntryPath: absolute
// names and `..` that climbs above the root are refused); a parent component that is a symlink this layer created
// is refused (a layer must never write through its own links: the classic planted-symlink escape); a parent that is
// neither a directory nor a symlink is an error; missing parents are created on request; the final component is
// never followed: callers lstat/unlink/create it with no-follow calls. Resolved parents are cached by their name in
// the tar so that a layer of many files costs one Map lookup per entry; callers call forget() whenever they remove
// or replace a directory or a symlink.
//
// secureJoin (container paths: COPY in builder/, mounts in runtime/, convert/): `..` is clamped lexically too, every
// component (the last one included) is followed, and missing or non-directory components are kept as plain names.
import { lstatSync, mkdirSync, readlinkSync, type Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { InvalidInputError, UnsafeEntryError } from './errors.js';

/** NEEDS_CLEANING matches a name with an empty, '.' or '..' component. */
const NEEDS_CLEANING = /(?:^|\/)\.{0,2}(?:\/|$)/;

/** ConfinePolicy is what differs between the two ways of resolving a path inside a root (see the top of this file). */
export interface ConfinePolicy {
  /** `..` above the root through a relative symlink target: refuse it, or stay at the root */
  readonly escape: 'refuse' | 'clamp';
  /** symlinks followed in one resolution before giving up, as the kernel's ELOOP */
  readonly maxLinks: number;
}

/** Layer tar entries: an escape is a hostile layer; 40 links as the kernel. */
export const ENTRY_POLICY: ConfinePolicy = Object.freeze({ escape: 'refuse', maxLinks: 40 });
/** Container paths: resolved as the container will see them (chroot semantics). */
export const CONTAINER_POLICY: ConfinePolicy = Object.freeze({ escape: 'clamp', maxLinks: 255 });

/**
 * cleanEntryPath turns a tar entry name into a relative path: components joined by '/', no '.', '' for the root.
 * It refuses (UnsafeEntryError naming `entry`) absolute names and `..` that climbs above the root.
 */
export function cleanEntryPath(name: string, entry = name): string {
  if (name.startsWith('/'))
    throw new UnsafeEntryError(entry, name === entry ? 'absolute path' : `absolute path ${JSON.stringify(name)}`);
  if (name.includes('\0')) throw new UnsafeEntryError(entry, 'path contains a NUL byte');
  // Fast path, most names: no empty, '.' or '..' component once a leading './' and a trailing '/' are gone.
  let s = name.startsWith('./') ? name.slice(2) : name;
  if (s.endsWith('/')) s = s.slice(0, -1);
  if (s !== '' && !NEEDS_CLEANING.test(s)) return s;
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0)
        throw new UnsafeEntryError(
          entry,
          name === entry ? 'it climbs out of the root' : `${JSON.stringify(name)} climbs out of the root`,
        );
      out.pop();
    } else {
      out.push(part);
    }
  }
  return out.join('/');
}

/** dirnameOf returns the parent of a cleaned relative path ('' for a top-level name or the root). */
export function dirnameOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** basenameOf returns the last component of a cleaned relative path. */
export function basenameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

export interface ResolveOptions {
  /** create missing parent directories (mode 0755) instead of reporting the path missing */
  create?: boolean;
  /** refuse any symlink on the way, lower layer or not (hardlink targets) */
  noSymlinks?: boolean;
}

/** ResolvedPath is where an entry lives on disk; `rel` is relative to the root ('' is the root itself). */
export interface ResolvedPath {
  rel: string;
  abs: string;
  /** whether a lower-layer symlink was followed to get here */
  viaLink: boolean;
}

export interface PathResolverOptions {
  /** the absolute root directory */
  root: string;
  /** tells whether the symlink at this real relative path was created by the layer being applied */
  isLayerSymlink?: (rel: string) => boolean;
  /** called for each parent directory that `create` made (real relative path) */
  onCreateDir?: (rel: string) => void;
  /** called before `create` makes a missing parent directory; may throw to stop the resolution */
  beforeCreateDir?: (rel: string) => void;
}

interface Cached {
  real: string;
  viaLink: boolean;
}

/** PathResolver resolves cleaned entry paths inside one root; see the top of this file for the rules. */
export class PathResolver {
  readonly root: string;
  private readonly isLayerSymlink: (rel: string) => boolean;
  private readonly onCreateDir: (rel: string) => void;
  private readonly beforeCreateDir: (rel: string) => void;
  private cache = new Map<string, Cached>();

  constructor(opts: PathResolverOptions) {
    this.root = opts.root.length > 1 && opts.root.endsWith('/') ? opts.root.slice(0, -1) : opts.root;
    this.isLayerSymlink = opts.isLayerSymlink ?? (() => false);
    this.onCreateDir = opts.onCreateDir ?? (() => {});
    this.beforeCreateDir = opts.beforeCreateDir ?? (() => {});
  }

  /** abs turns a real relative path into an absolute one. */
  abs(rel: string): string {
    return rel === '' ? this.root : this.root === '/' ? `/${rel}` : `${this.root}/${rel}`;
  }

  /**
   * resolve finds where the cleaned path `rel` lives: its parent directories are resolved (and created with
   * `create`), its last component is not followed. Returns undefined when a parent is missing and `create` is
   * off. Throws UnsafeEntryError (naming `entry`) for an escape, InvalidInputError when a parent is not a directory.
   */
  resolve(entry: string, rel: string, opts: ResolveOptions = {}): ResolvedPath | undefined {
    if (rel === '') return { rel: '', abs: this.root, viaLink: false };
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? undefined : this.resolveDir(entry, rel.slice(0, slash), opts);
    if (parent === null) return undefined;
    const base = slash < 0 ? rel : rel.slice(slash + 1);
    const real = parent === undefined || parent.real === '' ? base : `${parent.real}/${base}`;
    return { rel: real, abs: this.abs(real), viaLink: parent?.viaLink ?? false };
  }

  /**
   * resolveFile resolves a hardlink target: every component must be a plain directory (no symlink of any
   * layer) and the last one an existing regular file. Throws UnsafeEntryError naming `entry` otherwise.
   */
  resolveFile(entry: string, rel: string): ResolvedPath {
    const p = this.resolve(entry, rel, { noSymlinks: true });
    const st = p === undefined || p.rel === '' ? undefined : lstatOrUndefined(p.abs);
    if (p === undefined || st === undefined || !st.isFile()) {
      const what = st?.isSymbolicLink() ? 'is a symlink' : st ? 'is not a regular file' : 'does not exist';
      throw new UnsafeEntryError(entry, `hardlink target ${JSON.stringify(rel)} ${what} inside the root`);
    }
    return p;
  }

  /** remember records that the cleaned name `rel` is now a real directory at `real` (a directory entry). */
  remember(rel: string, real: string, viaLink: boolean): void {
    if (rel !== '') this.cache.set(rel, { real, viaLink });
  }

  /** forget drops every cached resolution: call it after removing or replacing a directory or a symlink. */
  forget(): void {
    if (this.cache.size) this.cache = new Map();
  }

  /** resolveDir resolves a cleaned directory name to its real path; null when missing (no `create`). */
  private resolveDir(entry: string, dir: string, opts: ResolveOptions): Cached | null {
    const hit = this.cache.get(dir);
    if (hit) {
      if (opts.noSymlinks && hit.viaLink)
        throw new UnsafeEntryError(entry, `path ${JSON.stringify(dir)} passes through a symlink`);
      return hit;
    }
    const parts = dir.split('/');
    // Start from the longest cached prefix.
    let k = parts.length - 1;
    let start: Cached = { real: '', viaLink: false };
    let prefix = '';
    for (; k > 0; k--) {
      prefix = parts.slice(0, k).join('/');
      const c = this.cache.get(prefix);
      if (c) {
        start = c;
        break;
      }
    }
    if (k === 0) prefix = '';
    if (opts.noSymlinks && start.viaLink)
      throw new UnsafeEntryError(entry, `path ${JSON.stringify(dir)} passes through a symlink`);
    const walk: Walk = { real: start.real === '' ? [] : start.real.split('/'), links: 0, followed: false };
    const hooks = this.hooks(entry, opts);
    const abs = (rel: string): string => this.abs(rel);
    let viaLink = start.viaLink;
    for (let i = k; i < parts.length; i++) {
      const part = parts[i] as string;
      if (!stepInto(ENTRY_POLICY, hooks, abs, walk, part, false)) return null;
      viaLink ||= walk.followed;
      prefix = prefix === '' ? part : `${prefix}/${part}`;
      this.cache.set(prefix, { real: walk.real.join('/'), viaLink });
    }
    return { real: walk.real.join('/'), viaLink };
  }

  /** hooks are the entry rules of the walk for one resolution of `entry`. */
  private hooks(entry: string, opts: ResolveOptions): WalkHooks {
    return {
      missing: (rel, abs) => {
        if (!opts.create) return false;
        this.beforeCreateDir(rel);
        mkdirSync(abs, 0o755);
        this.onCreateDir(rel);
        return true;
      },
      notDirectory: (rel) => {
        throw new InvalidInputError(`layer entry ${JSON.stringify(entry)}: ${rel} is not a directory`);
      },
      follow: (rel) => {
        if (opts.noSymlinks) throw new UnsafeEntryError(entry, `path passes through the symlink ${rel}`);
        if (this.isLayerSymlink(rel))
          throw new UnsafeEntryError(entry, `path passes through the symlink ${rel} created by this layer`);
      },
      escaped: () => new UnsafeEntryError(entry, 'a symlink on its path leads out of the root'),
      tooManyLinks: () => new UnsafeEntryError(entry, 'too many levels of symbolic links'),
    };
  }
}

interface Walk {
  /** real components walked so far, relative to the root */
  real: string[];
  links: number;
  followed: boolean;
}

/** WalkHooks are the rules of one kind of resolution where the policy's two values are not enough. */
interface WalkHooks {
  /** a missing component (real relative path, absolute path): true to go on with it as a plain name, false to stop */
  missing(rel: string, abs: string): boolean;
  /** a component that is neither a directory nor a symlink: throw to refuse, return to keep it as a plain name */
  notDirectory(rel: string): void;
  /** a symlink about to be followed: throw to refuse */
  follow(rel: string): void;
  /** the error for a `..` that leaves the root (policy 'refuse') */
  escaped(): Error;
  /** the error for more than policy.maxLinks symlinks */
  tooManyLinks(): Error;
}

/**
 * stepInto moves the walk into `name` (one component), following a symlink inside the root; false when the
 * component is missing and hooks.missing says stop. `fromAbsolute`: the name comes from an absolute symlink target.
 */
function stepInto(
  policy: ConfinePolicy,
  hooks: WalkHooks,
  absOf: (rel: string) => string,
  walk: Walk,
  name: string,
  fromAbsolute: boolean,
): boolean {
  if (name === '' || name === '.') return true;
  if (name === '..') {
    if (walk.real.length > 0) walk.real.pop();
    else if (!fromAbsolute && policy.escape === 'refuse') throw hooks.escaped();
    return true;
  }
  walk.real.push(name);
  const rel = walk.real.join('/');
  const abs = absOf(rel);
  const st = lstatOrUndefined(abs);
  if (st === undefined) return hooks.missing(rel, abs);
  if (st.isDirectory()) return true;
  if (!st.isSymbolicLink()) {
    hooks.notDirectory(rel);
    return true;
  }
  hooks.follow(rel);
  if (++walk.links > policy.maxLinks) throw hooks.tooManyLinks();
  const target = readlinkSync(abs);
  walk.followed = true;
  walk.real.pop();
  const absolute = target.startsWith('/');
  if (absolute) walk.real.length = 0;
  for (const part of target.split('/')) {
    if (!stepInto(policy, hooks, absOf, walk, part, absolute)) return false;
  }
  return true;
}

/** lstatOrUndefined: undefined when the path is missing (ENOENT) or a component of it is not a directory (ENOTDIR). */
function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
}

// ─── container paths ─────────────────────────────────────────────────────────────────────────────────────────────
// Resolve a path inside a rootfs the way the container will see it, so that a symlink in the image can never make
// the runtime mount or create something outside the rootfs.

/**
 * secureJoin returns the host path of `path` inside `root`, resolving every symlink as if `root` were `/`: absolute
 * targets restart at `root`, `..` stops at `root` (CONTAINER_POLICY). Missing components are kept as plain names
 * (the caller may create them). The result always lies under `root`.
 */
export function secureJoin(root: string, path: string): string {
  const walk: Walk = { real: [], links: 0, followed: false };
  const hooks: WalkHooks = {
    missing: () => true,
    notDirectory: () => {},
    follow: () => {},
    escaped: () => new InvalidInputError(`${path} leads out of ${root}`), // never: the policy clamps
    tooManyLinks: () => new InvalidInputError(`too many levels of symbolic links resolving ${path} in ${root}`),
  };
  const absOf = (rel: string): string => join(root, rel);
  for (const part of posix.normalize(`/${path}`).split('/'))
    stepInto(CONTAINER_POLICY, hooks, absOf, walk, part, false);
  return join(root, ...walk.real);
}
