// What a killed process left in the store: its container directories (`<store>/containers/<pid>-<hex>`) and its
// scratch directories (`<store>/tmp/build-<pid>-<hex>`, `<store>/tmp/export-<pid>-<hex>`), with whatever it had
// mounted below them. A directory is stale only when the pid in its name is gone (isAlive); `mount-*` views
// (`tsbuild mount`) are never stale. Nothing is ever removed through a mount: the mounts below a stale directory
// are detached lazily through the Host (deepest first), the mount table is read again, and the directory is removed
// only when nothing is mounted below it any more; otherwise it is kept and reported.
import { readdir, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { privateDirPath } from '../layers/store/private-dirs.js';
import { TsbuildError } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { MNT_DETACH } from '../sys/libc.js';
import { isAlive } from '../sys/pid.js';
import { removeTree } from '../sys/remove-tree.js';

/** where stale directories are looked for, and how their names carry the pid */
const KINDS = {
  containers: { dir: 'containers', name: /^(\d+)-[a-f0-9]+$/ },
  build: { dir: 'tmp', name: /^build-(\d+)-[a-f0-9]+$/ },
  export: { dir: 'tmp', name: /^export-(\d+)-[a-f0-9]+$/ },
} as const;
export type StaleKind = keyof typeof KINDS;
/** every kind: what a command that opens the store for writing cleans */
export const STALE_KINDS: readonly StaleKind[] = ['containers', 'build', 'export'];

export interface StaleResult {
  /** removed directories, relative to the store root (`containers/123-ab12`, `tmp/build-123-ab12`) */
  removed: string[];
  /** mount points of dead processes detached (absolute paths) */
  detached: string[];
  /** directories kept because something below them stayed mounted (one line each) */
  kept: string[];
}

/** mountPointsUnder lists the mount points below `dir` in a mountinfo text, deepest first. */
export function mountPointsUnder(mountinfo: string, dir: string): string[] {
  return mountinfo
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((mp) => mp.startsWith(`${dir}/`) || mp === dir)
    .sort((a, b) => b.length - a.length);
}

/** staleDirs lists the directories of dead processes of the given kinds, relative to the store root. */
export async function staleDirs(storeRoot: string, kinds: readonly StaleKind[]): Promise<string[]> {
  const found: string[] = [];
  for (const kind of kinds) {
    const { dir, name } = KINDS[kind];
    for (const n of await readdir(privateDirPath(storeRoot, dir)).catch(() => [] as string[])) {
      const m = name.exec(n);
      if (m && !isAlive(Number(m[1]))) found.push(`${dir}/${n}`);
    }
  }
  return found.sort();
}

/**
 * cleanStale removes the directories of dead processes of the given kinds (see the top of this file). With
 * `detach: false` a stale directory with a mount below it is kept (and listed in `kept`) without unmounting.
 */
export async function cleanStale(
  storeRoot: string,
  kinds: readonly StaleKind[],
  opts: { host?: Host; detach?: boolean } = {},
): Promise<StaleResult> {
  const host = opts.host ?? defaultHost();
  const result: StaleResult = { removed: [], detached: [], kept: [] };
  // mountinfo names canonical absolute paths: a relative or symlinked --root must not hide a mount from the check
  const root = await realpath(storeRoot).catch(() => resolve(storeRoot));
  for (const rel of await staleDirs(root, kinds)) {
    const path = join(root, rel);
    const points = mountPointsUnder(host.mountinfo(), path);
    if (points.length) {
      if (opts.detach === false) {
        result.kept.push(`${path} is still mounted (unmount it first: umount -R ${points.at(-1) ?? path})`);
        continue;
      }
      for (const mp of points) {
        try {
          host.umount(mp, MNT_DETACH);
        } catch {
          // gone with its parent, or busy: the mount table says which
        }
      }
      const left = mountPointsUnder(host.mountinfo(), path);
      result.detached.push(...points.filter((mp) => !left.includes(mp)));
      if (left.length) {
        result.kept.push(`${path} is still mounted at ${left.join(', ')}`);
        continue;
      }
    }
    try {
      await removeTree(path);
    } catch (err) {
      throw new TsbuildError('E_BUSY', `cannot remove stale ${path}: ${(err as Error).message}`, { cause: err });
    }
    result.removed.push(rel);
  }
  return result;
}
