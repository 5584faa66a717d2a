// The userspace diff: a tree now against the manifest recorded before the step. Same Change[] as diffUpperdir
// gives for the same changes made on an overlay mount; cost grows with the size of the tree.
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Change } from '../layers/model/changeset.js';
import { sortChanges } from '../layers/model/changeset.js';
import { wrap } from '../sys/errors.js';
import { entryOf, hashFile, type ManifestEntry, type TreeManifest } from './manifest.js';
import { childPath, listNames, parentPath, yieldToLoop } from './tree-walk.js';
import { isComparedXattr } from '../layers/tar/whiteout.js';

/**
 * diffManifest walks `root` and compares it with `before` (recordManifest of the same root before the step). The
 * result, sorted with sortChanges, follows the overlay rules so both paths commit the same layer:
 * - a path that is gone → delete; a deleted directory is one delete (its children are not listed);
 * - a new path → add, and so is everything below a new directory;
 * - a path whose type changed → modify (a file replaced by a directory lists the directory's children as adds);
 * - a directory deleted and recreated (another inode, or the same inode number born later) → modify, opaque, and
 *   everything below it is listed ('modify' where the old tree had the path);
 * - a directory whose mode, owner, mtime or xattrs changed → modify; a directory only passed through is not listed;
 * - a non-directory → modify when its inode, mode, owner, size, mtime, xattrs, link target or device number
 *   changed, a hard link to it was added, or its ctime moved without its link count dropping (a write that
 *   restored the mtime, a chmod back and forth: overlayfs would have copied it up too). A file hashed at record
 *   time whose stat is unchanged is re-hashed.
 * Throws (wrapped, naming root) when a path cannot be read. The tree must not change during the walk.
 */
export async function diffManifest(opts: { root: string; before: TreeManifest }): Promise<Change[]> {
  const { root } = opts;
  const before = opts.before.entries;
  const childrenBefore = new Map<string, string[]>();
  for (const path of Object.keys(before)) {
    const dir = parentPath(path);
    const list = childrenBefore.get(dir);
    if (list) list.push(path);
    else childrenBefore.set(dir, [path]);
  }
  const changes: Change[] = [];
  let seen = 0;

  const walk = async (dir: string, listAll: boolean): Promise<void> => {
    const present = new Set<string>();
    for (const name of listNames(join(root, dir))) {
      if (++seen % 4096 === 0) await yieldToLoop();
      const path = childPath(dir, name);
      present.add(path);
      const abs = join(root, path);
      const now = entryOf(abs, lstatSync(abs, { bigint: true }));
      const old = Object.hasOwn(before, path) ? before[path] : undefined;
      const kind = old === undefined ? 'add' : 'modify';
      if (now.type !== 'dir') {
        if (listAll || old === undefined || (await fileChanged(abs, old, now)))
          changes.push({ path, kind, dir: false });
        continue;
      }
      if (listAll || old === undefined || old.type !== 'dir') {
        changes.push({ path, kind, dir: true });
        await walk(path, true);
      } else if (!sameInode(old, now)) {
        changes.push({ path, kind: 'modify', opaque: true, dir: true });
        await walk(path, true);
      } else {
        if (dirChanged(old, now)) changes.push({ path, kind: 'modify', dir: true });
        await walk(path, false);
      }
    }
    if (listAll) return;
    // This directory is the one the manifest saw: what it had and has no more was deleted.
    for (const path of childrenBefore.get(dir) ?? []) if (!present.has(path)) changes.push({ path, kind: 'delete' });
  };

  try {
    await walk('', false);
  } catch (e) {
    throw wrap(`diffing ${root} against its manifest`, e);
  }
  return sortChanges(changes);
}

function sameInode(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.btime === b.btime;
}

function dirChanged(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.mtime !== b.mtime || !sameXattrs(a, b);
}

async function fileChanged(abs: string, a: ManifestEntry, b: ManifestEntry): Promise<boolean> {
  if (a.type !== b.type || !sameInode(a, b)) return true;
  if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.size !== b.size || a.mtime !== b.mtime) return true;
  if (a.link !== b.link || a.rdev !== b.rdev || !sameXattrs(a, b)) return true;
  if (b.nlink > a.nlink) return true; // a new hard link: the layer must carry the file for the link to point at
  if (a.ctime !== b.ctime) return b.nlink === a.nlink; // only a removed hard link explains a ctime move otherwise
  if (a.hash !== undefined && b.type === 'file') return (await hashFile(abs)) !== a.hash;
  return false;
}

function sameXattrs(a: ManifestEntry, b: ManifestEntry): boolean {
  const xa = Object.entries(a.xattrs ?? {}).filter(([k]) => isComparedXattr(k));
  const xb = b.xattrs ?? {};
  const nb = Object.keys(xb).filter(isComparedXattr).length;
  return xa.length === nb && xa.every(([k, v]) => xb[k] === v);
}
