// The plan of a layer tar (layers/tar/create.ts): which entries, in which order. From a directory, a depth-first
// listing; from a change set, the changed paths, their parents and whiteout/opaque markers (named as in
// layers/tar/whiteout.ts), sorted by layers/tar/entry.ts's sortKey.
//
// A plan is the one structure a layer tar keeps per entry, so it is one string per entry: the entry's sort key
// (a latin1 string, from which its name, its type as planned and whether it is a marker are read back by itemAt).
// No lstat result is kept: the writer looks each entry up again when its turn comes. A layer of a million entries
// costs some 60 MB here (issue 14: export used 1.8 GB with a plan of objects, stats and Buffers per entry).
import { lstatSync, type BigIntStats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import type { Change } from '../model/changeset.js';
import { childKey, isMarkerKey, kindOf, nameOfKey, sortKey, type EntryStat } from './entry.js';
import { OCI_WHITEOUT_PREFIX, ociOpaquePath, ociWhiteoutPath } from './whiteout.js';

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

/** FsStat is the part of lstat a layer needs. */
export interface FsStat extends EntryStat {
  nlink: number;
  dev: bigint;
  ino: bigint;
  rdev: number;
}

/** PlanItem is one entry to write: a path of the tree (`rel` set) or a whiteout/opaque marker (`rel` unset). */
export interface PlanItem {
  /** entry name: relative, '/'-separated, directories end in '/' */
  name: string;
  /** the path below the root, without a trailing '/' */
  rel?: string;
  /** what the plan believes the type is (from readdir or an earlier lstat): a mismatch means the tree changed */
  isDir?: boolean;
}

export interface Plan {
  root: string;
  /** the entries' sort keys (layers/tar/entry.ts), in the order they are written */
  keys: string[];
  /** keys whose last component ranks as a marker are whiteout/opaque markers (a change set; in a directory such a
   *  name is a plain file, with a warning) */
  markers: boolean;
}

/** itemAt reads entry i of a plan back from its key. */
export function itemAt(plan: Plan, i: number): PlanItem {
  const key = plan.keys[i] as string;
  const name = nameOfKey(key);
  if (plan.markers && isMarkerKey(key)) return { name };
  const isDir = name.endsWith('/');
  return { name, rel: isDir ? name.slice(0, -1) : name, isDir };
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

export function lstatPath(abs: string): FsStat {
  try {
    return toFsStat(lstatSync(abs, { bigint: true }));
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
}

/** utf8Name returns a file name as a string, refusing bytes that are not UTF-8 (they could not round-trip). */
export function utf8Name(name: Buffer, where: string): string {
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
export async function planDirectory(dir: string, opts: TarWriteOptions): Promise<Plan> {
  const keys: string[] = [];
  const visit = async (rel: string, prefix: string): Promise<void> => {
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
    kids.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const k of kids) {
      const path = rel === '' ? k.name : `${rel}/${k.name}`;
      if (k.name.startsWith(OCI_WHITEOUT_PREFIX)) {
        opts.onWarn?.(
          WARN.WHITEOUT_NAME,
          `${join(dir, path)}: a file named ${OCI_WHITEOUT_PREFIX}* reads as a whiteout in a layer`,
        );
      }
      const key = [prefix, k.key].join(''); // one flat string, not a rope of the two
      keys.push(key);
      if (k.isDir) await visit(path, key);
    }
  };
  await visit('', '');
  return { root: dir, keys, markers: false };
}

export interface ChangeSet {
  /** path → change, after dropping deletes below deletes */
  changes: Map<string, Change>;
}

/** validateChanges checks the change set without touching the disk; throws InvalidInputError. */
export function validateChanges(changes: Change[]): ChangeSet {
  const byPath = new Map<string, Change>();
  for (const c of changes) {
    const p = c.path;
    if (typeof p !== 'string' || p === '') throw new InvalidInputError('change set: a change has an empty path');
    if (p.startsWith('/'))
      throw new InvalidInputError(
        `change set: path ${JSON.stringify(p)} is absolute (changes are relative to the root)`,
      );
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
    const prev = byPath.get(p);
    if (prev) {
      if ((prev.kind === 'delete') !== (c.kind === 'delete')) {
        throw new InvalidInputError(
          `change set: ${JSON.stringify(p)} is both deleted and ${c.kind === 'delete' ? prev.kind : c.kind}ed`,
        );
      }
      if (c.opaque) byPath.set(p, { ...prev, opaque: true });
      continue;
    }
    byPath.set(p, c); // kept as given: a change set of a million paths is not copied
  }
  const isDeleted = (p: string): boolean => byPath.get(p)?.kind === 'delete';
  // Deleting the entry being visited is safe while iterating a Map; ancestors are looked at top first, and the
  // top deleted one is never removed.
  for (const p of byPath.keys()) {
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
      const anc = p.slice(0, i);
      if (!isDeleted(anc)) continue;
      if (isDeleted(p)) byPath.delete(p);
      else
        throw new InvalidInputError(
          `change set: ${JSON.stringify(anc)} is deleted but ${JSON.stringify(p)} below it is not`,
        );
      break;
    }
  }
  return { changes: byPath };
}

/** parentOf is the parent of a relative path, '' for a top-level one. */
function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/**
 * planChanges lstats the changed paths and their parents (to know which are directories, and that every parent
 * is one) and orders the entries. Only the directories' paths are kept besides the keys.
 */
export async function planChanges(root: string, set: ChangeSet): Promise<Plan> {
  const changes = set.changes;
  // parents of changed paths that are not changes themselves: written as they are in root
  const parents = new Set<string>();
  for (const p of changes.keys()) {
    for (let a = parentOf(p); a !== '' && !changes.has(a) && !parents.has(a); a = parentOf(a)) parents.add(a);
  }
  const dirs = new Set<string>();
  const keys: string[] = [];
  let looked = 0;
  const look = async (p: string): Promise<boolean> => {
    const isDir = kindOf(lstatPath(join(root, p)).mode) === 'directory';
    if (isDir) dirs.add(p);
    if (++looked % 512 === 0) await new Promise((resolve) => setImmediate(resolve)); // let the event loop breathe
    return isDir;
  };
  for (const p of parents) {
    await look(p);
    keys.push(sortKey(`${p}/`));
  }
  for (const c of changes.values()) {
    if (c.kind === 'delete') {
      keys.push(sortKey(ociWhiteoutPath(c.path)));
      continue;
    }
    const isDir = await look(c.path);
    if (c.opaque && !isDir)
      throw new InvalidInputError(`change set: ${join(root, c.path)} is marked opaque but is not a directory`);
    keys.push(sortKey(isDir ? `${c.path}/` : c.path));
    if (c.opaque) keys.push(sortKey(ociOpaquePath(c.path)));
  }
  // A parent must be a real directory in root (not a symlink: that would lead the children's lstat out of root).
  // Every ancestor of a path is a parent or a change that is not a delete, so checking the nearest one checks all.
  const checkParent = (p: string): void => {
    const up = parentOf(p);
    if (up !== '' && !dirs.has(up))
      throw new InvalidInputError(
        `change set: ${join(root, up)} is not a directory, but the change set has paths below it`,
      );
  };
  for (const p of parents) checkParent(p);
  for (const p of changes.keys()) checkParent(p);
  keys.sort();
  return { root, keys, markers: true };
}
