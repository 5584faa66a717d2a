// The userspace fallback's "before" picture of a tree: one record per path, enough to tell later what changed
// without a copy of the old content (aufs-style naive diff, as umoci's mtree manifests, but cheaper).
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readlinkSync, type BigIntStats } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InvalidInputError, wrap } from '../sys/errors.js';
import { getXattrs } from '../sys/libc.js';
import { childPath, listNames, yieldToLoop } from './tree-walk.js';
import { isOverlayXattr } from '../layers/tar/whiteout.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/**
 * ManifestEntry is one path as it was. Nanosecond times and inode numbers are decimal strings (they exceed 2^53);
 * xattr values are base64. `hash` (sha256 hex of the content) is only there for a regular file whose size and
 * mtime cannot vouch for its content: one changed so shortly before the walk that a later write could land in the
 * same timestamp tick.
 */
export interface ManifestEntry {
  type: EntryType;
  /** permission bits, setuid/setgid/sticky included (st_mode & 0o7777) */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: string;
  ctime: string;
  /** birth time, when the filesystem reports one: with ino it tells a recreated path from the old one */
  btime?: string;
  dev: string;
  ino: string;
  nlink: number;
  /** device number of a char or block device */
  rdev?: number;
  /** symlink target */
  link?: string;
  xattrs?: Record<string, string>;
  hash?: string;
}

/** TreeManifest is a recorded tree: entries by relative path ('/'-separated; the root itself is not an entry). */
export interface TreeManifest {
  version: 1;
  /** when the walk started, ns since the epoch */
  recordedAt: string;
  entries: Record<string, ManifestEntry>;
}

/** Entries changed within this long before the walk started get a content hash (more than a timestamp tick). */
export const RACY_NS = 50_000_000n;
/** After the walk, wait until the clock is this far past the newest ctime seen, so later changes get later times. */
const SETTLE_NS = 20_000_000n;
/** Never wait longer than this (a clock that went backwards, a file stamped in the future). */
const SETTLE_MAX_NS = 200_000_000n;

/**
 * recordManifest walks `root` (without following symlinks) and records every path below it. It hashes a regular
 * file's content only when the file changed within RACY_NS of the start. Before returning it waits, if needed,
 * until the clock has moved a tick past the newest change time it recorded (at most a few tens of ms), so that
 * whatever changes afterwards gets a different ctime (and a recreated path a different birth time) even when the
 * kernel reuses the inode number. The tree must not change during the walk. Throws (wrapped, naming root) when a
 * path cannot be read.
 */
export async function recordManifest(root: string): Promise<TreeManifest> {
  const start = nowNs();
  const entries: Record<string, ManifestEntry> = Object.create(null) as Record<string, ManifestEntry>; // a file may be named __proto__
  let newest = 0n;
  let seen = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const name of listNames(join(root, dir))) {
      if (++seen % 4096 === 0) await yieldToLoop();
      const path = childPath(dir, name);
      const abs = join(root, path);
      const st = lstatSync(abs, { bigint: true });
      const entry = entryOf(abs, st);
      const changed = st.ctimeNs > st.birthtimeNs ? st.ctimeNs : st.birthtimeNs;
      if (changed > newest) newest = changed;
      if (entry.type === 'file' && changed + RACY_NS >= start) entry.hash = await hashFile(abs);
      entries[path] = entry;
      if (entry.type === 'dir') await walk(path);
    }
  };
  try {
    await walk('');
  } catch (e) {
    throw wrap(`recording a manifest of ${root}`, e);
  }
  await settle(newest);
  return { version: 1, recordedAt: start.toString(), entries };
}

/** entryOf turns an lstat result (and the path's xattrs, link target) into a manifest entry, without a hash. */
export function entryOf(abs: string, st: BigIntStats): ManifestEntry {
  const type = typeOf(st);
  const e: ManifestEntry = {
    type,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: type === 'dir' ? 0 : Number(st.size),
    mtime: st.mtimeNs.toString(),
    ctime: st.ctimeNs.toString(),
    dev: st.dev.toString(),
    ino: st.ino.toString(),
    nlink: Number(st.nlink),
  };
  if (st.birthtimeNs > 0n) e.btime = st.birthtimeNs.toString();
  if (type === 'char' || type === 'block') e.rdev = Number(st.rdev);
  if (type === 'symlink') e.link = readlinkSync(abs);
  const xattrs: Record<string, string> = {};
  let any = false;
  for (const [k, v] of Object.entries(getXattrs(abs))) {
    if (isOverlayXattr(k)) continue;
    xattrs[k] = v.toString('base64');
    any = true;
  }
  if (any) e.xattrs = xattrs;
  return e;
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** hashFile is the sha256 hex of a file's content. */
export async function hashFile(abs: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(abs), h);
  return h.digest('hex');
}

function nowNs(): bigint {
  // Date.now() reads CLOCK_REALTIME, the clock file timestamps come from (ms precision is plenty here).
  return BigInt(Date.now()) * 1_000_000n;
}

async function settle(newest: bigint): Promise<void> {
  const until = newest + SETTLE_NS;
  const deadline = nowNs() + SETTLE_MAX_NS;
  while (nowNs() <= until && nowNs() < deadline) {
    await new Promise((r) => setTimeout(r, Math.max(1, Number((until - nowNs()) / 1_000_000n) + 1)));
  }
}

/** serializeManifest is the manifest as JSON text (the form writeManifest stores). */
export function serializeManifest(m: TreeManifest): string {
  return JSON.stringify(m);
}

/** parseManifest reads serializeManifest's text back; throws InvalidInputError for anything else. */
export function parseManifest(text: string): TreeManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError(`tree manifest is not JSON: ${(e as Error).message}`);
  }
  const o = m as Partial<TreeManifest> | null;
  if (
    !o ||
    o.version !== 1 ||
    typeof o.recordedAt !== 'string' ||
    typeof o.entries !== 'object' ||
    o.entries === null
  ) {
    throw new InvalidInputError('not a tree manifest (version 1)');
  }
  return o as TreeManifest;
}

/** writeManifest stores a manifest at `file` atomically (temp file in the same directory, then rename). */
export async function writeManifest(file: string, m: TreeManifest): Promise<void> {
  const tmp = join(dirname(file), `.tmp-manifest-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    await writeFile(tmp, serializeManifest(m));
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw wrap(`writing manifest ${file}`, e);
  }
}

/** readManifest loads a manifest stored by writeManifest. */
export async function readManifest(file: string): Promise<TreeManifest> {
  return parseManifest(await readFile(file, 'utf8'));
}
