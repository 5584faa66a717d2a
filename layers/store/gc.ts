// Garbage collection: delete blobs that no image references (and temp files of dead writers). The records that
// name layers (build cache, kernel cache) are pruned by layers/store/records.ts (pruneRecords).
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

/**
 * pruneBlobs removes every blob that no index entry reaches. It runs under the store lock, and spares blobs
 * touched since the oldest live writer began (a build or import that has not named its image yet).
 */
export async function pruneBlobs(store: Store): Promise<PruneResult> {
  return store.withLock(async () => {
    const keep = await reachableBlobs(store);
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
