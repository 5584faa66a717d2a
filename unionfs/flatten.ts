// flatten: the one way layers become a plain directory (the image's `/`, whiteouts resolved). Used by `tsbuild
// unpack` and `bundle`, the vfs root filesystems (unionfs/rootfs.ts), export staging and --squash.
//
// Two methods. 'apply': each layer's tar is extracted into the directory in turn (opened only when its turn comes).
// 'snapshots' (root): the store's per-layer snapshots (unionfs/snapshot.ts: each layer extracted once, keyed by
// ChainID, shared with builds) are laid over the directory: directories are created (owner through the Host, mode,
// times), everything else is hard-linked from the snapshots, and each snapshot's overlay whiteouts are applied on
// the way. No mount is involved, and a second flatten of the same image extracts nothing. The rule that makes this
// safe: files in the tree may be hard links into the snapshots, so whoever changes the tree replaces files (unlink,
// then create) and never writes into an existing one. 'auto' takes the snapshots when the host is root and falls
// back to 'apply' when they are on another filesystem (EXDEV).
import { chmodSync, linkSync, lstatSync, mkdirSync, readdirSync, rmSync, utimesSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Layer } from '../layers/model/layer.js';
import type { Digest } from '../layers/model/types.js';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { applyLayer } from '../layers/tar/apply.js';
import { isOverlayWhiteout } from '../layers/tar/whiteout.js';
import { InvalidInputError, wrap } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { isOpaqueDirectory } from './lower-view.js';
import { snapshotLayers } from './snapshot.js';

/** FlattenEvent: layer `index` (of `count`) is about to be laid into the directory. */
export type FlattenEvent = { type: 'layer'; index: number; count: number; digest: Digest };

export interface FlattenOptions {
  store: Store;
  host?: Host;
  /** the layers to lay down, base first */
  layers: readonly Layer[];
  /**
   * layers the directory already holds (flattened before): they are not laid down again, they only key the new
   * layers' snapshots (ChainIDs). Without `below`, `dir` must be missing or empty.
   */
  below?: readonly Layer[];
  /** created when missing */
  dir: string;
  /** 'auto' (default): 'snapshots' when host.caps().root (and whiteouts 'delete'), else 'apply' */
  method?: 'auto' | 'snapshots' | 'apply';
  /**
   * 'delete' (default): a plain tree, whiteouts remove what they hide. 'overlay': (apply only) whiteouts are kept as
   * overlay whiteouts, so the directory is an upperdir over the layers below (--squash).
   */
  whiteouts?: 'delete' | 'overlay';
  onEvent?: (e: FlattenEvent) => void;
  onWarn?: (code: string, message: string) => void;
}

/**
 * flatten lays `layers` into `dir` and returns how: 'snapshots' (hard links from the store's snapshots) or 'apply'
 * (each layer extracted). On failure the error names the layer; `dir` is left partly written for the caller to
 * remove.
 */
export async function flatten(opts: FlattenOptions): Promise<'snapshots' | 'apply'> {
  const host = opts.host ?? defaultHost();
  const whiteouts = opts.whiteouts ?? 'delete';
  const method = opts.method ?? 'auto';
  mkdirSync(opts.dir, { recursive: true });
  if (!opts.below && readdirSync(opts.dir).length > 0) throw new InvalidInputError(`${opts.dir} is not empty`);
  if (method === 'snapshots' || (method === 'auto' && whiteouts === 'delete' && host.caps().root)) {
    const below = opts.below ?? [];
    const dirs = await snapshotLayers(opts.store, [...below, ...opts.layers], host);
    try {
      for (const [i, snap] of dirs.slice(below.length).entries()) {
        opts.onEvent?.({
          type: 'layer',
          index: i,
          count: opts.layers.length,
          digest: opts.layers[i]!.descriptor.digest,
        });
        // without `below` the directory was checked empty above
        mergeSnapshot(snap, opts.dir, host, i === 0 && opts.below === undefined);
      }
      return 'snapshots';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV' || method === 'snapshots') throw err;
      // the store's snapshots live on another filesystem than the directory: extract instead
    }
  }
  for (const [i, l] of opts.layers.entries()) {
    const count = opts.layers.length;
    opts.onEvent?.({ type: 'layer', index: i, count, digest: l.descriptor.digest });
    let tar: Readable | undefined;
    try {
      tar = openLayer(opts.store, l.descriptor);
      await applyLayer(tar, { root: opts.dir, whiteouts, host, ...(opts.onWarn ? { onWarn: opts.onWarn } : {}) });
    } catch (err) {
      tar?.destroy();
      throw wrap(`applying layer ${i + 1}/${count} (${l.descriptor.digest}) into ${opts.dir}`, err);
    }
  }
  return 'apply';
}

/**
 * mergeSnapshot lays one snapshot over the tree: a whiteout (char 0/0) removes the path, an opaque directory
 * empties the tree's directory first, directories are made (or kept) with the snapshot's owner (host.lchown), mode
 * and times, and every other entry replaces what the tree has with a hard link to the snapshot's file. `empty`
 * says that `target` holds nothing yet (the first layer): like a directory this walk makes, its paths are not
 * looked up, so most entries cost one link(2). Given for a tree that is not empty, a mkdir or link fails (EEXIST).
 */
export function mergeSnapshot(snapshot: string, target: string, host: Host = defaultHost(), empty = false): void {
  // `fresh`: the tree's directory is new, so nothing in it can be in the way (and a whiteout has nothing to remove)
  const walk = (src: string, dst: string, fresh: boolean): void => {
    for (const ent of readdirSync(src, { withFileTypes: true })) {
      const s = join(src, ent.name);
      const d = join(dst, ent.name);
      const have = fresh ? undefined : lstatSync(d, { throwIfNoEntry: false });
      if (ent.isCharacterDevice() && isOverlayWhiteout(lstatSync(s))) {
        if (have) rmSync(d, { recursive: true, force: true });
        continue;
      }
      if (ent.isDirectory()) {
        if (have && !have.isDirectory()) rmSync(d, { force: true });
        if (have?.isDirectory() && isOpaqueDirectory(s)) {
          for (const child of readdirSync(d)) rmSync(join(d, child), { recursive: true, force: true });
        }
        const made = !have?.isDirectory();
        if (made) mkdirSync(d);
        walk(s, d, made);
        copyDirMeta(host, lstatSync(s), d);
        continue;
      }
      if (have) rmSync(d, { recursive: true, force: true });
      linkSync(s, d);
    }
  };
  walk(snapshot, target, empty);
  copyDirMeta(host, lstatSync(snapshot), target);
}

function copyDirMeta(host: Host, st: Stats, d: string): void {
  host.lchown(d, st.uid, st.gid);
  chmodSync(d, st.mode & 0o7777);
  utimesSync(d, st.atime, st.mtime);
}
