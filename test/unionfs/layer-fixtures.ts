// Layers in a real store for the flatten and rootfs tests: small trees committed with tarFromDirectory.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layer } from '../../layers/model/layer.js';
import { commitLayer } from '../../layers/store/commit.js';
import type { Store } from '../../layers/store/store.js';
import { tarFromDirectory } from '../../layers/tar/create.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

/** storeLayer commits `files` (path → content; a path ending in `/` is a directory) as a layer of `store`. */
export async function storeLayer(store: Store, files: Record<string, string>): Promise<Layer> {
  const dir = await makeTempDir();
  try {
    for (const [p, content] of Object.entries(files)) {
      await mkdir(join(dir, p, '..'), { recursive: true });
      if (p.endsWith('/')) await mkdir(join(dir, p), { recursive: true });
      else await writeFile(join(dir, p), content);
    }
    const l = await commitLayer(store, tarFromDirectory(dir));
    return { descriptor: l.descriptor, diffId: l.diffId };
  } finally {
    await removeDir(dir);
  }
}
