// --squash: the layers a build added on top of its base image, folded into one.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { commitLayer } from '../layers/store/commit.js';
import { wrap } from '../sys/errors.js';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { applyLayer } from '../layers/tar/apply.js';
import { tarFromChanges } from '../layers/tar/create.js';
import type { Compression, HistoryEntry } from '../layers/model/types.js';
import { diffUpperdir } from '../unionfs/diff-upper.js';
import { ensureSnapshots } from '../unionfs/snapshot.js';
import type { LayerRef } from './cache.js';
import type { StageResult } from './execute.js';
import type { StorageDriver } from './rootfs.js';

/**
 * squash merges the layers added on top of the base image into one: each is applied (overlay whiteouts) into one
 * directory, which is then diffed against the base. New history entries keep their text; only the first one that
 * had a layer keeps it.
 */
export async function squash(
  store: Store,
  driver: StorageDriver,
  result: StageResult,
  baseCount: number,
  history: HistoryEntry[],
  o: { compression: Compression; sourceDateEpoch?: number; tmpDir: string },
): Promise<{ layers: LayerRef[]; history: HistoryEntry[] }> {
  const base = result.layers.slice(0, baseCount);
  const added = result.layers.slice(baseCount);
  if (added.length <= 1) return { layers: result.layers, history };
  const dir = join(o.tmpDir, 'squash');
  await mkdir(dir, { recursive: true });
  try {
    for (const l of added) await applyLayer(openLayer(store, l.descriptor), { root: dir, whiteouts: driver === 'overlay' ? 'overlay' : 'delete' });
    const lowers = driver === 'overlay' ? (await ensureSnapshots({ storeRoot: store.root, layers: base.map((l) => ({ diffId: l.diffId, open: async () => openLayer(store, l.descriptor) })), apply: async (tar, d) => void (await applyLayer(tar, { root: d, whiteouts: 'overlay' })) })).reverse() : [];
    const changes = await diffUpperdir({ upperdir: dir, lowerdirs: lowers });
    const c = await commitLayer(store, tarFromChanges(dir, changes, o.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: o.sourceDateEpoch }), { compression: o.compression });
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
    return { layers: [...base, { descriptor: c.descriptor, diffId: c.diffId }], history: hist };
  } catch (err) {
    throw wrap('squashing the new layers', err);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
