// --squash: the layers a build added on top of its base image, folded into one.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layer } from '../layers/model/layer.js';
import type { Compression, HistoryEntry } from '../layers/model/types.js';
import type { Store } from '../layers/store/store.js';
import { wrap } from '../sys/errors.js';
import type { Host } from '../sys/host.js';
import { diffUpperdir } from '../unionfs/diff-upper.js';
import { flatten } from '../unionfs/flatten.js';
import { commitChanges } from '../unionfs/commit.js';
import type { StorageDriver } from '../unionfs/rootfs.js';
import { snapshotLayers } from '../unionfs/snapshot.js';

/**
 * squash merges the layers added on top of the base image into one: they are flattened (overlay whiteouts with the
 * overlay driver, so the directory is an upperdir over the base's snapshots) into one directory, which is then
 * diffed against the base. New history entries keep their text; only the first one that had a layer keeps it.
 */
export async function squash(
  store: Store,
  driver: StorageDriver,
  result: { layers: readonly Layer[] },
  baseCount: number,
  history: HistoryEntry[],
  o: { compression: Compression; sourceDateEpoch?: number; tmpDir: string; host?: Host },
): Promise<{ layers: Layer[]; history: HistoryEntry[] }> {
  const base = result.layers.slice(0, baseCount);
  const added = result.layers.slice(baseCount);
  if (added.length <= 1) return { layers: [...result.layers], history };
  const dir = join(o.tmpDir, 'squash');
  await mkdir(dir, { recursive: true });
  try {
    const overlay = driver === 'overlay';
    await flatten({
      store,
      ...(o.host ? { host: o.host } : {}),
      layers: added,
      dir,
      method: 'apply',
      whiteouts: overlay ? 'overlay' : 'delete',
    });
    const lowers = overlay ? (await snapshotLayers(store, base, o.host)).reverse() : [];
    const changes = await diffUpperdir({ upperdir: dir, lowerdirs: lowers });
    const layer = await commitChanges(store, dir, changes, {
      compression: o.compression,
      ...(o.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: o.sourceDateEpoch }),
    });
    let nonEmpty = 0;
    let kept = false;
    const hist = history.map((h) => {
      if (h.empty_layer) return h;
      nonEmpty++;
      if (nonEmpty <= baseCount) return h;
      if (!kept) {
        kept = true;
        return h;
      }
      return { ...h, empty_layer: true };
    });
    return { layers: [...base, layer], history: hist };
  } catch (err) {
    throw wrap('squashing the new layers', err);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
