// Making a store's root and naming why it cannot be opened (layers/store/store.ts's Store.open and checkWritable).
import { chmod, mkdir, stat } from 'node:fs/promises';
import { dirname, parse } from 'node:path';
import { TsbuildError } from '../../sys/errors.js';

/**
 * makeParents creates the missing parents of a store root one at a time. Node's recursive mkdir never returns when
 * the kernel answers ENOENT for a directory whose parent exists (`--root /proc/foo`): it retries at 100% CPU.
 */
export async function makeParents(root: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = dirname(root); dir !== parse(dir).root; dir = dirname(dir)) {
    if (
      await stat(dir).then(
        () => true,
        () => false,
      )
    )
      break;
    missing.unshift(dir);
  }
  for (const dir of missing) {
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  // the root itself: made here (0700, as ensurePrivateDir would) so that ensurePrivateDir's recursive mkdir only
  // ever meets an existing directory
  try {
    await mkdir(root, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return;
  }
  if (((await stat(root)).mode & 0o777) !== 0o700) await chmod(root, 0o700); // an odd umask (0277)
}

/** storeAccessError turns a refused access to the store into one line naming the path, or undefined. */
export function storeAccessError(root: string, err: unknown): TsbuildError | undefined {
  const e = err as NodeJS.ErrnoException;
  const path = e?.path ?? root;
  if (e?.code === 'EACCES' || e?.code === 'EPERM')
    return new TsbuildError('E_PERMISSION', `permission denied: ${path}`, {
      cause: err,
      hint: 'the store belongs to another user: use --root with a directory of your own, or run as its owner',
    });
  if (e?.code === 'EROFS')
    return new TsbuildError('E_PERMISSION', `read-only file system: ${path}`, {
      cause: err,
      hint: 'point --root at a writable directory',
    });
  if (e?.code === 'ENOENT' || e?.code === 'ENOTDIR')
    return new TsbuildError('E_NOT_FOUND', `cannot create the store ${root}: ${path} cannot hold a directory`, {
      cause: err,
      hint: 'point --root at a directory on an ordinary file system',
    });
  return undefined;
}
