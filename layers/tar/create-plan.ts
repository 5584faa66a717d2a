// The plan of a layer tar (layers/tar/create.ts): which entries, in which order. From a directory, a depth-first
// listing; from a change set, the changed paths, their parents and whiteout/opaque markers (named as in
// layers/tar/whiteout.ts), in the order of layers/tar/plan-tree.ts.
//
// A plan is the one structure a layer tar keeps for every entry, so it is one string per directory
// (layers/tar/plan-tree.ts), and a change set is read in path order without a map of its paths. No lstat result is
// kept: the writer looks each entry up again when its turn comes. A layer of a million entries costs some 20 MB
// here (issue 14: 1.8 GB with a plan of objects, stats and Buffers per entry; 60 MB with a key string per entry and
// 50 MB more for a map of the change set).
import { constants as fsc, lstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { isAscii } from 'node:buffer';
import { join, normalize } from 'node:path';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { closeFd, Lstat, lstatInto, openFd, readDirents } from '../../sys/libc.js';
import { sortChanges, type Change } from '../model/changeset.js';
import { kindOf, type EntryStat } from './entry.js';
import { childKey, PlanTree, rawKey, type PlanItem } from './plan-tree.js';
import { OCI_OPAQUE_NAME, OCI_WHITEOUT_PREFIX } from './whiteout.js';

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

// ─── the plan: which entries, in which order ────────────────────────────────────────────────────────────────────

/** FsStat is the part of lstat a layer needs, in plain numbers. */
export interface FsStat extends EntryStat {
  nlink: number;
  /** st_dev and st_ino, in 32-bit parts: together, the key of a multiply linked file */
  devMajor: number;
  devMinor: number;
  inoHigh: number;
  inoLow: number;
  /** st_rdev's major and minor (devices only) */
  rdevMajor: number;
  rdevMinor: number;
}

export type { PlanItem } from './plan-tree.js';

/** Plan is the entries of a layer tar in the order they are written, read once from the first to the last. */
export interface Plan {
  root: string;
  /** how many entries `next` gives */
  count: number;
  /** the next entry (called `count` times, in order) */
  next: () => PlanItem | undefined;
}

const U32 = 0xffffffffn;

/** glibc's major() and minor() of a dev_t (the inverse of the makedev libuv builds st_dev and st_rdev with) */
function splitDev(d: bigint): [number, number] {
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn & U32);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn & U32);
  return [Number(major), Number(minor)];
}

function toFsStat(s: BigIntStats): FsStat {
  let mtime = s.mtimeNs / 1_000_000_000n;
  if (s.mtimeNs < 0n && s.mtimeNs % 1_000_000_000n !== 0n) mtime -= 1n; // floor, not truncate
  const [devMajor, devMinor] = splitDev(s.dev);
  const [rdevMajor, rdevMinor] = splitDev(s.rdev);
  return {
    mode: Number(s.mode),
    uid: Number(s.uid),
    gid: Number(s.gid),
    size: Number(s.size),
    mtime: Number(mtime),
    nlink: Number(s.nlink),
    devMajor,
    devMinor,
    inoHigh: Number((s.ino >> 32n) & U32),
    inoLow: Number(s.ino & U32),
    rdevMajor,
    rdevMinor,
  };
}

/**
 * pathPrefix is what join(root, rel) starts with, for every clean relative rel (no '', '.' or '..' component): then
 * join(root, rel) === pathPrefix(root) + rel, without normalizing each path.
 */
export function pathPrefix(root: string): string {
  const n = normalize(root);
  if (n === '.' || n === './') return '';
  return n.endsWith('/') ? n : `${n}/`;
}

/** lstatPath is Node's lstat of a path, its error wrapped with the path (the slow way: see ReadAhead's). */
export function lstatPath(abs: string): FsStat {
  try {
    return toFsStat(lstatSync(abs, { bigint: true }));
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
}

/** utf8Name returns a file name as a string, refusing bytes that are not UTF-8 (they could not round-trip). */
export function utf8Name(name: Buffer, where: string): string {
  if (isAscii(name)) return name.toString('latin1');
  const s = name.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(name)) {
    throw new InvalidInputError(
      `${where}: ${JSON.stringify(name.toString('latin1'))} is not valid UTF-8, which layer tars written by tsbuild require`,
      'rename the file',
    );
  }
  return s;
}

/**
 * A directory's entries as plan keys (layers/tar/plan-tree.ts: rank, the name's bytes as latin1 chars, '/' for a
 * directory; flat strings, which sort several times faster than concatenated ones), and which of the names are not
 * ASCII.
 */
interface Listing {
  keys: string[];
  nonAscii: number[];
}

const DT_UNKNOWN = 0;
const DT_DIR = 4;

/**
 * DirReader lists directories with getdents64 into one reused buffer: no Buffer and Dirent per entry as Node's
 * readdir makes, and each key is made in the buffer and read out as one string. When a call fails, Node's readdir
 * lists the directory instead (its error is the one reported).
 */
class DirReader {
  private readonly buf = Buffer.allocUnsafe(64 << 10);

  /** list returns the entries of `abs` (without . and ..), in no particular order. */
  list(abs: string): Listing {
    return this.read(abs) ?? nodeListing(abs);
  }

  private read(abs: string): Listing | undefined {
    const fd = openFd(abs, fsc.O_RDONLY | fsc.O_DIRECTORY);
    if (fd < 0) return undefined;
    const keys: string[] = [];
    const nonAscii: number[] = [];
    const buf = this.buf;
    try {
      for (;;) {
        const n = readDirents(fd, buf);
        if (n < 0) return undefined;
        if (n === 0) break;
        for (let off = 0; off < n; off += (buf[off + 16] as number) | ((buf[off + 17] as number) << 8)) {
          const start = off + 19;
          let end = start;
          let bits = 0;
          for (let c = buf[end] as number; c !== 0; c = buf[++end] as number) bits |= c;
          if (buf[start] === 0x2e && (end === start + 1 || (end === start + 2 && buf[start + 1] === 0x2e))) continue;
          let isDir = buf[off + 18] === DT_DIR;
          if (buf[off + 18] === DT_UNKNOWN) {
            // a filesystem that does not give types: ask lstat, as Node's readdir does
            try {
              isDir = lstatSync(Buffer.concat([Buffer.from(`${abs}/`), buf.subarray(start, end)])).isDirectory();
            } catch {
              return undefined;
            }
          }
          if (bits > 0x7f) nonAscii.push(keys.length);
          // the key in place: the rank over d_type, '/' over the name's NUL
          buf[off + 18] = rankOf(buf, start, end);
          if (isDir) buf[end++] = 0x2f;
          keys.push(buf.toString('latin1', off + 18, end));
        }
      }
    } finally {
      closeFd(fd);
    }
    return { keys, nonAscii };
  }
}

/** rankOf is the rank char code of the name in buf[start, end): the opaque marker, a whiteout, or anything else. */
function rankOf(buf: Buffer, start: number, end: number): number {
  if (end - start < 4 || buf[start] !== 0x2e || buf[start + 1] !== 0x77 || buf[start + 2] !== 0x68) return RANK_OTHER;
  if (buf[start + 3] !== 0x2e) return RANK_OTHER;
  return end - start === OPAQUE.length && OPAQUE.equals(buf.subarray(start, end)) ? RANK_OPAQUE : RANK_WHITEOUT;
}
const OPAQUE = Buffer.from(OCI_OPAQUE_NAME);
const RANK_OPAQUE = 1;
const RANK_WHITEOUT = 2;
const RANK_OTHER = 3;

/** nodeListing lists a directory with Node's readdir (the slow way, for its errors). */
function nodeListing(abs: string): Listing {
  let ents;
  try {
    ents = readdirSync(abs, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    throw wrap(`reading directory ${abs}`, err);
  }
  const out: Listing = { keys: [], nonAscii: [] };
  for (const d of ents) {
    if (!isAscii(d.name)) out.nonAscii.push(out.keys.length);
    out.keys.push(rawKey(d.name.toString('latin1'), d.isDirectory()));
  }
  return out;
}

/**
 * planDirectory lists the tree depth first, each directory's children in entry order (one string per directory).
 * The listing is made with blocking calls, the event loop let through every few hundred directories.
 */
export async function planDirectory(dir: string, opts: TarWriteOptions): Promise<Plan> {
  const tree = new PlanTree();
  const reader = new DirReader();
  const prefix = pathPrefix(dir);
  let listed = 0;
  // Lists one directory into the tree and returns its subdirectories (the listing itself is not kept meanwhile).
  // The entries come in the directory's own order; what is reported about them is in bytewise order, as Node's
  // readdir listed them before: the whiteout-named files, and the first name that is not UTF-8 (after the
  // whiteout-named files before it).
  const list = (rel: string): string[] => {
    const abs = rel === '' ? dir : prefix + rel;
    const { keys, nonAscii } = reader.list(abs);
    const subdirs: string[] = [];
    let whiteouts: string[] | undefined;
    let bad: string | undefined;
    const names = new Map<number, string>(); // the non-ASCII names, decoded
    for (const i of nonAscii) {
      const key = keys[i] as string;
      const raw = key.endsWith('/') ? key.slice(1, -1) : key.slice(1);
      const name = Buffer.from(raw, 'latin1').toString('utf8');
      if (Buffer.from(name, 'utf8').toString('latin1') === raw) names.set(i, name);
      else if (bad === undefined || raw < bad) bad = raw;
    }
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      if (key.charCodeAt(0) !== RANK_OTHER)
        (whiteouts ??= []).push(key.endsWith('/') ? key.slice(1, -1) : key.slice(1));
      if (key.endsWith('/')) {
        const name = names.get(i) ?? key.slice(1, -1);
        subdirs.push(rel === '' ? name : `${rel}/${name}`);
      }
    }
    if (whiteouts) {
      for (const raw of whiteouts.sort()) {
        if (bad !== undefined && raw > bad) break;
        const name = Buffer.from(raw, 'latin1').toString('utf8');
        opts.onWarn?.(
          WARN.WHITEOUT_NAME,
          `${join(dir, rel === '' ? name : `${rel}/${name}`)}: a file named ${OCI_WHITEOUT_PREFIX}* reads as a whiteout in a layer`,
        );
      }
    }
    if (bad !== undefined) utf8Name(Buffer.from(bad, 'latin1'), abs); // throws
    tree.addAll(rel, keys);
    tree.close(rel);
    return subdirs.sort();
  };
  const visit = async (rel: string): Promise<void> => {
    if (++listed % 256 === 0) await new Promise((resolve) => setImmediate(resolve)); // let the event loop breathe
    for (const sub of list(rel)) await visit(sub);
  };
  await visit('');
  return { root: dir, count: tree.count, next: tree.cursor(false) };
}

export interface ChangeSet {
  /** the changes sorted by path (sortChanges; the caller's array when it already is), duplicates still there */
  sorted: readonly Change[];
}

/**
 * validateChanges checks the change set without touching the disk; throws InvalidInputError. It keeps no map of
 * the paths (issue 14: a million changes): the changes are checked in path order, where a path's duplicates are
 * next to it and its ancestors come before it; only the deleted paths are remembered.
 */
export function validateChanges(changes: readonly Change[]): ChangeSet {
  const sorted = isSorted(changes) ? changes : sortChanges(changes as Change[]);
  forEachChange(sorted, new Set(), () => {});
  return { sorted };
}

function isSorted(changes: readonly Change[]): boolean {
  for (let i = 1; i < changes.length; i++) {
    const a = (changes[i - 1] as Change).path;
    const b = (changes[i] as Change).path;
    if (typeof a !== 'string' || typeof b !== 'string' || a > b) return false;
  }
  return true;
}

function checkChange(c: Change): void {
  const p = c.path;
  if (typeof p !== 'string' || p === '') throw new InvalidInputError('change set: a change has an empty path');
  if (p.startsWith('/'))
    throw new InvalidInputError(`change set: path ${JSON.stringify(p)} is absolute (changes are relative to the root)`);
  const parts = p.split('/');
  if (parts.includes('..')) throw new InvalidInputError(`change set: path ${JSON.stringify(p)} escapes the root`);
  if (parts.some((s) => s === '' || s === '.') || p.includes('\0')) {
    throw new InvalidInputError(`change set: path ${JSON.stringify(p)} is not a clean relative path`);
  }
  if ((parts.at(-1) as string).startsWith(OCI_WHITEOUT_PREFIX)) {
    throw new InvalidInputError(
      `change set: ${JSON.stringify(p)} is named ${OCI_WHITEOUT_PREFIX}*, which a layer reads as a whiteout`,
      'rename the file',
    );
  }
  if (c.kind !== 'add' && c.kind !== 'modify' && c.kind !== 'delete') {
    throw new InvalidInputError(`change set: ${JSON.stringify(p)} has unknown kind ${JSON.stringify(c.kind)}`);
  }
  if (c.kind === 'delete' && c.opaque)
    throw new InvalidInputError(`change set: ${JSON.stringify(p)} is deleted and marked opaque`);
}

/**
 * forEachChange checks the sorted changes and calls `each` once per path (duplicates merged: opaque if any says
 * so), leaving out deletes below deletes; `deleted` collects the deleted paths (carried over between calls on
 * consecutive slices of one sorted set). It throws InvalidInputError for a malformed change, conflicting kinds for
 * one path, or a path that is not deleted below a deleted one.
 */
function forEachChange(
  sorted: readonly Change[],
  deleted: Set<string>,
  each: (path: string, kind: Change['kind'], opaque: boolean, dir: boolean | undefined) => void,
): void {
  for (let i = 0; i < sorted.length; i++) {
    const c = sorted[i] as Change;
    checkChange(c);
    const p = c.path;
    let opaque = c.opaque === true;
    let dir = c.dir;
    for (; i + 1 < sorted.length && (sorted[i + 1] as Change).path === p; i++) {
      const d = sorted[i + 1] as Change;
      checkChange(d);
      if ((d.kind === 'delete') !== (c.kind === 'delete')) {
        throw new InvalidInputError(
          `change set: ${JSON.stringify(p)} is both deleted and ${c.kind === 'delete' ? d.kind : c.kind}ed`,
        );
      }
      if (d.opaque) opaque = true;
      if (d.dir !== dir) dir = undefined; // hints that disagree: the tree is asked
    }
    const anc = deleted.size ? deletedAncestor(deleted, p) : undefined;
    if (anc !== undefined) {
      if (c.kind === 'delete') continue; // the outer whiteout covers it
      throw new InvalidInputError(
        `change set: ${JSON.stringify(anc)} is deleted but ${JSON.stringify(p)} below it is not`,
      );
    }
    if (c.kind === 'delete') deleted.add(p);
    each(p, c.kind, opaque, typeof dir === 'boolean' ? dir : undefined);
  }
}

/** deletedAncestor is the topmost ancestor of p in `deleted`, if any. */
function deletedAncestor(deleted: Set<string>, p: string): string | undefined {
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
    const anc = p.slice(0, i);
    if (deleted.has(anc)) return anc;
  }
  return undefined;
}

/** parentOf is the parent of a relative path, '' for a top-level one. */
function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/** baseOf is the last component of a relative path. */
function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/**
 * planChanges lstats the changed paths that have no `dir` hint and the parents that are not changes (to know which
 * are directories, and that every parent is one) and orders the entries. In path order a directory's children all
 * come in one run (the paths that start with `dir/`), so each directory's keys are joined into one string as soon as
 * the run ends: besides that, only the paths of the directories (and of the deletes) are kept.
 */
export async function planChanges(root: string, set: ChangeSet): Promise<Plan> {
  const tree = new PlanTree();
  /** paths known to be directories in root: the changed ones and the parents */
  const dirs = new Set<string>();
  const opaque = new Set<string>();
  /** directories whose run of children is being read, outermost first ('' is the root, always there) */
  const runs: string[] = [''];
  let looked = 0;
  const prefix = pathPrefix(root); // checkChange let only clean relative paths through: prefix + p is join(root, p)
  const st = new Lstat();
  const isDirectory = async (p: string): Promise<boolean> => {
    // statx into a reused buffer; Node's lstat when that fails (its error, or its result where statx is refused)
    const mode = lstatInto(prefix + p, st) === 0 ? st.mode : lstatPath(join(root, p)).mode;
    const isDir = kindOf(mode) === 'directory';
    if (++looked % 512 === 0) await new Promise((resolve) => setImmediate(resolve)); // let the event loop breathe
    return isDir;
  };
  const closeRun = (): void => {
    const dir = runs.pop() as string;
    if (opaque.has(dir)) tree.add(dir, childKey(OCI_OPAQUE_NAME, false));
    tree.close(dir);
  };
  // Ends the runs that do not hold p, then enters p's ancestors: each one that is not a change is a parent entry.
  const enter = async (p: string): Promise<void> => {
    while (runs.length > 1 && !p.startsWith(`${runs.at(-1) as string}/`)) closeRun();
    const parent = parentOf(p);
    const top = runs.at(-1) as string;
    if (parent === top) return;
    const missing: string[] = [];
    for (let a = parent; a !== top; a = parentOf(a)) missing.push(a);
    for (const a of missing.reverse()) {
      if (!dirs.has(a)) {
        // not a change (a change comes before its children, and a directory change is in dirs): a parent
        if (!(await isDirectory(a)))
          throw new InvalidInputError(
            `change set: ${join(root, a)} is not a directory, but the change set has paths below it`,
          );
        dirs.add(a);
        tree.add(parentOf(a), childKey(baseOf(a), true));
      }
      runs.push(a);
    }
  };
  const work: Array<{ path: string; kind: Change['kind']; opaque: boolean; dir: boolean | undefined }> = [];
  // forEachChange is synchronous; the lstats are not: take the checked changes a batch at a time
  const flush = async (): Promise<void> => {
    for (const c of work) {
      await enter(c.path);
      const parent = parentOf(c.path);
      if (c.kind === 'delete') {
        tree.add(parent, childKey(`${OCI_WHITEOUT_PREFIX}${baseOf(c.path)}`, false));
        continue;
      }
      // the change set's hint when it has one (ReadAhead refuses an entry whose type is not the hint's)
      const isDir = c.dir ?? (await isDirectory(c.path));
      if (c.opaque && !isDir)
        throw new InvalidInputError(`change set: ${join(root, c.path)} is marked opaque but is not a directory`);
      if (isDir) dirs.add(c.path);
      if (c.opaque) opaque.add(c.path);
      tree.add(parent, childKey(baseOf(c.path), isDir));
    }
    work.length = 0;
  };
  const sorted = set.sorted;
  const deleted = new Set<string>();
  for (let from = 0; from < sorted.length;) {
    let to = Math.min(sorted.length, from + 4096);
    while (to < sorted.length && (sorted[to] as Change).path === (sorted[to - 1] as Change).path) to++;
    forEachChange(sorted.slice(from, to), deleted, (path, kind, o, dir) => work.push({ path, kind, opaque: o, dir }));
    from = to;
    await flush();
  }
  while (runs.length > 0) closeRun();
  // an opaque directory with no changed children: its run never started
  for (const d of opaque) if (!tree.isOpen(d) && !tree.isClosed(d)) tree.add(d, childKey(OCI_OPAQUE_NAME, false));
  return { root, count: tree.count, next: tree.cursor(true) };
}
