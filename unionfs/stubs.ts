// Stubs: the mount points a step needs (/proc, /etc/hosts, /run/secrets/x…) that the image lacks. Over overlay they
// are an extra read-only lowerdir (makeStubs), so they never reach the upperdir, hence never a layer, and no parent
// directory's mtime moves; in a plain (vfs) root they are created in place (makeStubsIn) and removed after the diff.
import {
  chmodSync,
  closeSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmdirSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { isOverlayXattr } from '../layers/tar/whiteout.js';
import type { Host } from '../sys/host.js';
import { getXattrs, setXattr } from '../sys/libc.js';
import type { LowerView } from './lower-view.js';

/** Stub is a mount point a step needs: a container path and whether it is a directory. */
export interface Stub {
  path: string;
  dir: boolean;
}

/**
 * planStubs lists the mount points (and their missing parents) that the union lacks. A mount point below a
 * symlink or a non-directory is left to the runtime (it resolves it inside the rootfs).
 */
export function planStubs(view: LowerView, stubs: readonly Stub[]): Stub[] {
  const out = new Map<string, boolean>();
  for (const s of stubs) {
    const parts = s.path.split('/').filter(Boolean);
    const planned: Array<[string, boolean]> = [];
    let ok = true;
    for (let i = 0; i < parts.length; i++) {
      const p = parts.slice(0, i + 1).join('/');
      const last = i === parts.length - 1;
      const known = out.get(p);
      if (known !== undefined) {
        if (!known && !last) ok = false;
        if (last) planned.length = 0;
        if (!ok || last) break;
        continue;
      }
      const e = planned.length ? undefined : view.lookup(p);
      if (e) {
        if (last) break; // the mount point exists
        if (!e.st.isDirectory()) {
          ok = false;
          break;
        }
        continue;
      }
      planned.push([p, last ? s.dir : true]);
    }
    if (ok) for (const [p, d] of planned) out.set(p, d);
  }
  return [...out].map(([path, dir]) => ({ path, dir }));
}

/**
 * makeStubs fills the stub lowerdir: the missing mount points, and copies of the existing directories above them
 * with the same mode, owner, xattrs and times (the topmost layer of a merged directory gives its attributes, so
 * the image's directories must look unchanged).
 */
export function makeStubs(host: Host, dir: string, view: LowerView, stubs: readonly Stub[]): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const planned = new Set(stubs.map((s) => s.path));
  const copied: Array<{ abs: string; atime: number; mtime: number }> = [];
  const ensureParent = (rel: string): void => {
    const parts = rel.split('/');
    parts.pop();
    let cur = '';
    for (const part of parts) {
      cur = cur ? `${cur}/${part}` : part;
      const abs = join(dir, cur);
      if (lstatSync(abs, { throwIfNoEntry: false })) continue;
      mkdirSync(abs, 0o755);
      if (planned.has(cur)) continue;
      const lower = view.lookup(cur);
      if (!lower) continue;
      chmodSync(abs, Number(lower.st.mode) & 0o7777);
      host.lchown(abs, Number(lower.st.uid), Number(lower.st.gid));
      for (const [k, v] of Object.entries(getXattrs(lower.path))) {
        if (isOverlayXattr(k)) continue;
        try {
          setXattr(abs, k, v);
        } catch {
          // the filesystem refused it
        }
      }
      copied.push({ abs, atime: Number(lower.st.atimeNs) / 1e9, mtime: Number(lower.st.mtimeNs) / 1e9 });
    }
  };
  for (const s of [...stubs].sort((a, b) => a.path.length - b.path.length)) {
    ensureParent(s.path);
    const p = join(dir, s.path);
    if (lstatSync(p, { throwIfNoEntry: false })) continue;
    if (s.dir) mkdirSync(p, 0o755);
    else closeSync(openSync(p, 'w', 0o644));
  }
  for (const c of copied.reverse()) lutimesSync(c.abs, c.atime, c.mtime);
}

/** makeStubsIn creates missing mount points directly in a vfs root; returns the relative paths it made. */
export function makeStubsIn(root: string, stubs: readonly Stub[]): Set<string> {
  const made = new Set<string>();
  for (const s of stubs) {
    const parts = s.path.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      const abs = join(root, cur);
      const st = lstatSync(abs, { throwIfNoEntry: false });
      const last = i === parts.length - 1;
      if (st) {
        if (!st.isDirectory() && !last) break;
        continue;
      }
      if (last && !s.dir) closeSync(openSync(abs, 'w', 0o644));
      else mkdirSync(abs, 0o755);
      made.add(cur);
    }
  }
  return made;
}

/** removeStubs removes the mount points makeStubsIn made, when still empty (deepest first). */
export function removeStubs(root: string, made: Set<string>): void {
  for (const p of [...made].sort((a, b) => b.length - a.length)) {
    const abs = join(root, p);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st) continue;
    try {
      if (st.isDirectory()) {
        if (readdirSync(abs).length === 0) rmdirSync(abs);
      } else if (st.isFile() && st.size === 0) unlinkSync(abs);
    } catch {
      // left in place: the next step's manifest sees it as it is
    }
  }
}
