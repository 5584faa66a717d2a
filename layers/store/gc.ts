// Garbage collection: delete blobs that no image references and no caller keeps (and temp files of dead writers).
// `tsbuild prune` keeps the blobs that cache records name (layers/store/records.ts recordBlobs); the records whose
// blob is gone are pruned there (pruneRecords).
import { rm, stat } from 'node:fs/promises';
import { reachableBlobs } from './image.js';
import type { Store } from './store.js';
import type { Digest } from '../model/types.js';

export interface PruneResult {
  /** blobs removed */
  removed: Digest[];
  /** bytes freed: removed blobs plus stale temp files */
  bytesFreed: number;
}

export interface PruneBlobsOptions {
  /** more blobs to keep besides those the index reaches (the records' layers); asked under the store lock */
  keep?: () => Promise<Iterable<Digest>>;
}

/**
 * pruneBlobs removes every blob that no index entry reaches and `opts.keep` does not name. It runs under the store
 * lock, and spares blobs touched since the oldest live writer began (a build or import that has not named its image
 * yet).
 */
export async function pruneBlobs(store: Store, opts: PruneBlobsOptions = {}): Promise<PruneResult> {
  return store.withLock(async () => {
    const keep = await reachableBlobs(store);
    for (const d of (await opts.keep?.()) ?? []) keep.add(d);
    const since = await store.oldestLiveWriter();
    const removed: Digest[] = [];
    let bytesFreed = await store.removeTempFiles(since === undefined ? 0 : 60_000);
    for (const d of await store.listBlobs()) {
      if (keep.has(d)) continue;
      const st = await stat(store.blobPath(d)).catch(() => undefined);
      if (!st) continue;
      if (since !== undefined && st.mtimeMs >= since) continue;
      await rm(store.blobPath(d), { force: true });
      removed.push(d);
      bytesFreed += st.size;
    }
    return { removed, bytesFreed };
  });
}
