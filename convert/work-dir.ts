// The export's work directory: everything an export makes (the staging tree, the raw disk, the output before it is
// moved) lives in one directory in the store's tmp, `export-<pid>-<random>`, removed at the end whatever happens.
// After a SIGKILL only that directory remains; the next export removes those of dead processes.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { privateDir } from '../layers/store/private-dirs.js';
import type { Host } from '../sys/host.js';
import { cleanStale } from '../unionfs/stale.js';

/** EXPORT_TMP is the prefix of work directories in `<store>/tmp`: `export-<pid>-<random>`. */
const EXPORT_TMP = 'export-';

/**
 * cleanStaleExports removes the work directories that killed exports left in `<store>/tmp` (their pid is gone)
 * and returns their names. exportImage calls it first, so a later export cleans up after a `kill -9`. Anything
 * still mounted below one is detached first, and a directory whose mounts stay is kept (unionfs/stale.ts).
 */
export async function cleanStaleExports(storeRoot: string, opts: { host?: Host } = {}): Promise<string[]> {
  const r = await cleanStale(storeRoot, ['export'], opts);
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
export { removeTree } from '../sys/remove-tree.js';
