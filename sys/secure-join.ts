// Resolve a path inside a rootfs the way the container will see it, so that a symlink in the image can never make
// the runtime mount or create something outside the rootfs.
import { lstatSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import { InvalidInputError } from './errors.js';

const MAX_LINKS = 255;

/**
 * secureJoin returns the host path of `path` inside `root`, resolving every symlink as if `root` were `/`: absolute
 * targets restart at `root`, `..` stops at `root`. Missing components are kept as plain names (the caller may create
 * them). The result always lies under `root`.
 */
export function secureJoin(root: string, path: string): string {
  const pending = posix.normalize(`/${path}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let target: string | undefined;
    try {
      if (lstatSync(host).isSymbolicLink()) target = readlinkSync(host);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    if (target === undefined) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw new InvalidInputError(`too many levels of symbolic links resolving ${path} in ${root}`);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return join(root, ...resolved);
}
