// What a path looks like in the union of read-only layer directories, without mounting them: overlayfs lookup
// rules (whiteouts, opaque directories, a non-directory hiding what lies below it) applied to plain lstat calls.
import { lstatSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { getXattr } from '../sys/libc.js';
import { liteLstat } from '../sys/lite-stat.js';
import { parentPath } from './tree-walk.js';
import { isOpaqueValue, isOverlayWhiteout, OPAQUE_XATTRS } from '../layers/tar/whiteout.js';

/** isOpaqueDirectory tells whether a layer directory carries an overlay opaque mark (either xattr name). */
export function isOpaqueDirectory(abs: string): boolean {
  return OPAQUE_XATTRS.some((name) => isOpaqueValue(getXattr(abs, name)));
}

/** LowerEntry is a path found in the union: the layer directory it comes from and its lstat there. */
export interface LowerEntry {
  layer: string;
  /** absolute path of the entry inside that layer */
  path: string;
  st: BigIntStats;
}

/**
 * LowerView looks paths up in layer directories as overlayfs would merge them (lowerdirs top first, each an
 * extracted snapshot with overlay whiteouts: char 0/0 and `trusted.overlay.opaque=y`). Directory lookups are
 * cached, so the cost grows with the number of paths asked about, never with the size of the layers. The layers
 * must not change while a view is in use.
 */
export class LowerView {
  private readonly dirLayers = new Map<string, string[]>();

  constructor(readonly lowerdirs: readonly string[]) {
    this.dirLayers.set('', [...lowerdirs]);
  }

  /** lookup returns the entry visible at `path` (relative, '/'-separated), or undefined when the union has none. */
  lookup(path: string): LowerEntry | undefined {
    for (const layer of this.layersOf(parentPath(path))) {
      const abs = join(layer, path);
      const st = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      if (st === undefined) continue;
      if (isOverlayWhiteout(st)) return undefined;
      return { layer, path: abs, st };
    }
    return undefined;
  }

  /** has tells whether lookup finds something at `path`, from liteLstat (no Node stats). */
  has(path: string): boolean {
    for (const layer of this.layersOf(parentPath(path))) {
      const st = liteLstat(join(layer, path), { throwIfNoEntry: false });
      if (st !== undefined) return !isOverlayWhiteout(st);
    }
    return false;
  }

  /** layersOf lists, top first, the layers whose directory `dir` takes part in the merged directory. */
  private layersOf(dir: string): string[] {
    const cached = this.dirLayers.get(dir);
    if (cached) return cached;
    const out: string[] = [];
    for (const layer of this.layersOf(parentPath(dir))) {
      const abs = join(layer, dir);
      const st = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      if (st === undefined) continue;
      if (!st.isDirectory()) break; // a whiteout or a non-directory hides every lower layer
      out.push(layer);
      if (isOpaqueDirectory(abs)) break;
    }
    this.dirLayers.set(dir, out);
    return out;
  }
}
