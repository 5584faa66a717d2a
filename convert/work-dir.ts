// The export's work directory: everything an export makes (the staging tree, the raw disk, the output before it is
// moved) lives in one directory in the store's tmp, `export-<pid>-<random>`, removed at the end whatever happens.
// After a SIGKILL only that directory remains; the next export removes those of dead processes.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { privateDir, privateDirPath } from '../layers/store/private-dirs.js';
import { isAlive } from '../sys/pid.js';

/** EXPORT_TMP is the prefix of work directories in `<store>/tmp`: `export-<pid>-<random>`. */
const EXPORT_TMP = 'export-';

/**
 * cleanStaleExports removes the work directories that killed exports left in `<store>/tmp` (their pid is gone)
 * and returns their names. exportImage calls it first, so a later export cleans up after a `kill -9`.
 */
export async function cleanStaleExports(storeRoot: string): Promise<string[]> {
  const tmp = privateDirPath(storeRoot, 'tmp');
  const removed: string[] = [];
  for (const name of await readdir(tmp).catch(() => [] as string[])) {
    const m = /^export-(\d+)-[a-f0-9]+$/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    await rm(join(tmp, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
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
