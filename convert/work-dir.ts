// The export's work directory: everything an export makes (the staging tree, the raw disk, the output before it is
// moved) lives in one directory in the store's tmp, `export-<pid>-<random>`, removed at the end whatever happens;
// only the raw disk may be made in memory instead (below), in a directory removed with it. After a SIGKILL only
// those directories remain; the next export removes those of dead processes.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { privateDir } from '../layers/store/private-dirs.js';
import { availableMemory } from '../sys/cgroups.js';
import { TsbuildError } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { isAlive } from '../sys/pid.js';
import { removeTree } from '../sys/remove-tree.js';
import { cleanStale } from '../unionfs/stale.js';

/** EXPORT_TMP is the prefix of work directories in `<store>/tmp`: `export-<pid>-<random>`. */
const EXPORT_TMP = 'export-';

/**
 * cleanStaleExports removes the work directories that killed exports left in `<store>/tmp` (their pid is gone)
 * and returns their names; their memory directories too (cleanStaleMemoryDirs). exportImage calls it first, so a
 * later export cleans up after a `kill -9`. Anything still mounted below one is detached first, and a directory
 * whose mounts stay is kept (unionfs/stale.ts).
 */
export async function cleanStaleExports(
  storeRoot: string,
  opts: { host?: Host; memoryRoot?: string } = {},
): Promise<string[]> {
  await cleanStaleMemoryDirs((opts.host ?? defaultHost()).caps().uid, opts.memoryRoot);
  const r = await cleanStale(storeRoot, ['export'], opts.host ? { host: opts.host } : {});
  return r.removed.map((rel) => rel.slice('tmp/'.length));
}

/** makeWorkDir creates this export's work directory (mode 0700) and returns its path. */
export async function makeWorkDir(storeRoot: string): Promise<string> {
  const work = join(
    await privateDir(storeRoot, 'tmp'),
    `${EXPORT_TMP}${process.pid}-${randomBytes(6).toString('hex')}`,
  );
  await mkdir(work, { mode: 0o700 });
  return work;
}

/** removeTree: the export removes its staging tree and work directory with sys/remove-tree.ts (bounded memory). */
export { removeTree };

// ─── the raw disk in memory ─────────────────────────────────────────────────────────────────────────────────────
// mkfs.ext4 -d writes the filesystem one 4 KiB block per pwrite(2); into a file on a disk filesystem each write pays
// for block allocation (on the hosts of 2026-12-05, 1.01–1.07 s against 0.72–0.77 s on tmpfs for the bench image's
// 90,725 writes). The raw disk is only scratch when the output is converted (QCOW2, VMDK, VHDX), so
// it is made in /dev/shm when the whole disk fits in half of the memory that is free, in a private directory
// (mode 0700) named like the work directory. If the memory fills up all the same (another program), mkfs runs again
// with the raw disk in the work directory (recipe.ts). `TSBUILD_EXPORT_SCRATCH=disk` keeps it in the work directory
// from the start; `memory` puts it in /dev/shm whatever its size.

/** SCRATCH_ENV chooses where the raw disk is made: `auto` (the default: in memory when it fits), `memory` or `disk`. */
export const SCRATCH_ENV = 'TSBUILD_EXPORT_SCRATCH';
export const MEMORY_ROOT = '/dev/shm';
/** statfs(2)'s f_type of a tmpfs */
export const TMPFS_MAGIC = 0x01021994;
/** memory directories are `<MEMORY_PREFIX><pid>-<hex>` */
const MEMORY_PREFIX = 'tsbuild-export-';
const MEMORY_DIR = new RegExp(`^${MEMORY_PREFIX}(\\d+)-[a-f0-9]+$`);

/** scratchMode reads SCRATCH_ENV; any value but `auto`, `memory`, `disk` or empty is an error. */
export function scratchMode(env: NodeJS.ProcessEnv = process.env): 'auto' | 'memory' | 'disk' {
  const v = env[SCRATCH_ENV];
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'disk' || v === 'memory') return v;
  throw new TsbuildError('E_INVALID', `${SCRATCH_ENV} must be auto, memory or disk (got ${JSON.stringify(v)})`);
}

/** RawDisk: where the raw disk file is, and the memory directory holding it (removed with the work directory). */
export interface RawDisk {
  raw: string;
  memoryDir?: string;
}

export interface RawDiskOptions {
  env?: NodeJS.ProcessEnv;
  /** make it in the work directory whatever the memory (the retry after a full memory) */
  onDisk?: boolean;
  /** the tmpfs to use (tests); default /dev/shm */
  memoryRoot?: string;
  /** bytes of memory free for it (tests); default availableMemory() (sys/cgroups.ts) */
  free?: number;
}

/**
 * makeRawDisk creates the sparse raw disk file of `diskBytes` (its virtual size, an upper bound of what mkfs
 * writes): in a new private directory in `memoryRoot` when that is a tmpfs with room for twice the disk and the free
 * memory (availableMemory) is as large, else as `disk.raw` in the work directory.
 */
export async function makeRawDisk(work: string, diskBytes: number, opts: RawDiskOptions = {}): Promise<RawDisk> {
  const place = await rawDiskPlace(work, diskBytes, opts);
  const fh = await open(place.raw, 'wx');
  try {
    await fh.truncate(diskBytes);
  } finally {
    await fh.close();
  }
  return place;
}

async function rawDiskPlace(work: string, diskBytes: number, opts: RawDiskOptions): Promise<RawDisk> {
  const onDisk = { raw: join(work, 'disk.raw') };
  const mode = scratchMode(opts.env);
  if (opts.onDisk || mode === 'disk') return onDisk;
  const root = opts.memoryRoot ?? MEMORY_ROOT;
  const fs = await statfs(root).catch(() => undefined);
  if (!fs || fs.type !== TMPFS_MAGIC) {
    if (mode === 'memory') throw memoryUnusable(`${root} is not a tmpfs`);
    return onDisk;
  }
  const room = Math.min(fs.bavail * fs.bsize, opts.free ?? (await availableMemory()));
  if (mode === 'auto' && room < 2 * diskBytes) return onDisk;
  const memoryDir = join(root, `${MEMORY_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(memoryDir, { mode: 0o700 }); // fails on a name someone made first: never a directory we do not own
  } catch (err) {
    if (mode === 'memory') throw memoryUnusable(`cannot make a directory in ${root}: ${(err as Error).message}`, err);
    return onDisk;
  }
  return { raw: join(memoryDir, 'disk.raw'), memoryDir };
}

/** memoryUnusable is the error of `TSBUILD_EXPORT_SCRATCH=memory` where the memory cannot hold the raw disk. */
function memoryUnusable(why: string, cause?: unknown): TsbuildError {
  return new TsbuildError('E_SCRATCH', `${SCRATCH_ENV}=memory: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    hint: `unset ${SCRATCH_ENV} to make the raw disk in the store when memory is not usable`,
  });
}

/**
 * cleanStaleMemoryDirs removes the memory directories (rawDiskPlace) that killed exports left in `memoryRoot`:
 * only real directories of this user whose pid is gone, never through a symbolic link. Returns their names.
 */
export async function cleanStaleMemoryDirs(uid: number, memoryRoot: string = MEMORY_ROOT): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(memoryRoot).catch(() => [] as string[])) {
    const m = MEMORY_DIR.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    const st = await lstat(join(memoryRoot, name)).catch(() => undefined);
    if (!st?.isDirectory() || st.uid !== uid) continue;
    await removeTree(join(memoryRoot, name));
    removed.push(name);
  }
  return removed.sort();
}
