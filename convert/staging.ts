// The staging tree: the flattened image the disk is made from, a plain directory in the export's work directory.
//
// As root it is assembled from the store's per-layer snapshots (unionfs/snapshot.ts: each layer extracted once,
// keyed by ChainID, shared with builds): directories are created, everything else is hard-linked from the
// snapshots, and the overlay whiteouts of each snapshot are applied on the way. No mount is involved, so a killed
// export leaves nothing mounted, and a second export of the same image extracts nothing. The rule that makes
// this safe: files in the staging tree may be hard links into the snapshots, so the converter replaces files
// (unlink, then create) and never writes into an existing one. Unprivileged (or when the snapshots are on another
// filesystem), the layers are applied into the directory one after the other, as `tsbuild unpack` does.
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, rmSync, utimesSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { applyLayer } from '../layers/tar/apply.js';
import type { Descriptor, Digest } from '../layers/model/types.js';
import { getXattr } from '../sys/libc.js';
import { ensureSnapshots } from '../unionfs/snapshot.js';
import { isOpaqueValue, isOverlayWhiteout, OPAQUE_XATTR } from '../layers/tar/whiteout.js';

export interface StageLayer {
  descriptor: Descriptor;
  diffId: Digest;
}

export interface StageOptions {
  store: Store;
  /** the layers to add, base first; with `below`, the layers already in the tree come first in the chain */
  layers: StageLayer[];
  /** layers the tree already holds (their snapshots are not merged again; they key the new layers' ChainIDs) */
  below?: StageLayer[];
  dir: string;
  onWarn?: (code: string, message: string) => void;
  /** 'auto' (default): snapshots as root, layer by layer otherwise */
  method?: 'auto' | 'snapshots' | 'apply';
}

/**
 * stageLayers adds `layers` to the tree in `dir` (created when missing) and returns how: 'snapshots' (hard links from
 * the store's snapshots) or 'apply' (each layer extracted into the tree).
 */
export async function stageLayers(opts: StageOptions): Promise<'snapshots' | 'apply'> {
  mkdirSync(opts.dir, { recursive: true });
  const method = opts.method ?? 'auto';
  if (method === 'snapshots' || (method === 'auto' && process.getuid?.() === 0)) {
    const all = [...(opts.below ?? []), ...opts.layers];
    const dirs = await ensureSnapshots({
      storeRoot: opts.store.root,
      layers: all.map((l) => ({ diffId: l.diffId, open: async () => openLayer(opts.store, l.descriptor) })),
      apply: async (tar, root) => {
        await applyLayer(tar, { root, whiteouts: 'overlay' });
      },
    });
    const fresh = dirs.slice(all.length - opts.layers.length);
    try {
      for (const snap of fresh) mergeSnapshot(snap, opts.dir);
      return 'snapshots';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV' || method === 'snapshots') throw err;
      // the store's snapshots live on another filesystem than the work directory: extract instead
    }
  }
  for (const l of opts.layers) {
    await applyLayer(openLayer(opts.store, l.descriptor), {
      root: opts.dir,
      whiteouts: 'delete',
      ...(opts.onWarn ? { onWarn: opts.onWarn } : {}),
    });
  }
  return 'apply';
}

/**
 * mergeSnapshot lays one snapshot over the tree: a whiteout (char 0/0) removes the path, an opaque directory
 * empties the tree's directory first, directories are made (or kept) with the snapshot's owner, mode and times,
 * and every other entry replaces what the tree has with a hard link to the snapshot's file.
 */
export function mergeSnapshot(snapshot: string, target: string): void {
  const walk = (src: string, dst: string): void => {
    for (const name of readdirSync(src)) {
      const s = join(src, name);
      const d = join(dst, name);
      const st = lstatSync(s);
      const have = lstatSync(d, { throwIfNoEntry: false });
      if (isOverlayWhiteout(st)) {
        if (have) rmSync(d, { recursive: true, force: true });
        continue;
      }
      if (st.isDirectory()) {
        if (have && !have.isDirectory()) rmSync(d, { force: true });
        if (have?.isDirectory() && isOpaqueValue(getXattr(s, OPAQUE_XATTR))) {
          for (const child of readdirSync(d)) rmSync(join(d, child), { recursive: true, force: true });
        }
        if (!have?.isDirectory()) mkdirSync(d);
        walk(s, d);
        copyDirMeta(st, d);
        continue;
      }
      if (have) rmSync(d, { recursive: true, force: true });
      linkSync(s, d);
    }
  };
  walk(snapshot, target);
  copyDirMeta(lstatSync(snapshot), target);
}

function copyDirMeta(st: Stats, d: string): void {
  chownSync(d, st.uid, st.gid);
  chmodSync(d, st.mode & 0o7777);
  utimesSync(d, st.atime, st.mtime);
}
