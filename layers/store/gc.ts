// Garbage collection: delete blobs that no image references (and temp files of dead writers).
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
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

/**
 * pruneLayerRecords removes the cache records in `dir` (`<sha256 hex>.json`, each naming a layer as
 * `layer.descriptor`) whose layer blob the store no longer has. Unreadable records are left alone. Returns the
 * removed keys (`sha256:<hex>`) and their bytes.
 */
export async function pruneLayerRecords(store: Store, dir: string): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    const hex = /^([a-f0-9]{64})\.json$/.exec(name)?.[1];
    if (!hex) continue;
    let text: string;
    let digest: unknown;
    try {
      text = await readFile(join(dir, name), 'utf8');
      digest = (JSON.parse(text) as { layer?: { descriptor?: { digest?: unknown } } } | null)?.layer?.descriptor?.digest;
    } catch {
      continue; // unreadable: not ours to judge
    }
    if (typeof digest !== 'string' || (await store.hasBlob(digest as Digest))) continue;
    await rm(join(dir, name), { force: true });
    removed.push(`sha256:${hex}`);
    bytes += Buffer.byteLength(text);
  }
  return { removed, bytes };
}
