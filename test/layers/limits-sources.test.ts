// Decompression bombs through import and load (issue 14, part 4): the expansion limit stops a compressed tarball or
// archive while it streams, with an error naming it, and nothing is named in the store. The floor is lowered to
// 16 MiB for this file (TSBUILD_EXPANSION_FLOOR, read when a stream starts) so the bombs stay small.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Store } from '../../layers/store/store.js';
import { importImage } from '../../layers/sources/import.js';
import { loadArchive } from '../../layers/sources/archive-load.js';
import { makeTempDir, removeDir } from '../helpers/index.js';
import { newStoreRoot } from '../helpers/images.js';
import { bomb, MiB } from './bombs.js';

process.env.TSBUILD_EXPANSION_FLOOR = String(16 * MiB);
const gzBomb = bomb('gzip', 256 * MiB, 16 * MiB);
const zstBomb = bomb('zstd', 256 * MiB, 16 * MiB);

for (const [kind, data] of [
  ['gzip', gzBomb],
  ['zstd', zstBomb],
] as const) {
  test(`importing a ${kind} tarball that expands past the limit fails naming the file and stores nothing`, async (t) => {
    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    const file = join(dir, `bomb.tar.${kind}`);
    await writeFile(file, data);
    const store = await Store.open(await newStoreRoot(t));
    await t.throwsAsync(importImage(store, { source: file, name: 'bomb:1' }), {
      code: 'E_LIMIT',
      message: new RegExp(`^importing ${file}: ${file} expands past 100× its compressed size`),
    });
    t.is((await store.readIndex()).manifests.length, 0);
  });

  test(`loading a ${kind}-compressed archive that expands past the limit fails with the expansion error`, async (t) => {
    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    const file = join(dir, `bomb-archive.tar.${kind}`);
    await writeFile(file, data);
    const store = await Store.open(await newStoreRoot(t));
    await t.throwsAsync(loadArchive(store, { input: file }), {
      code: 'E_LIMIT',
      message: new RegExp(`^loading .*bomb-archive\\.tar\\.${kind}: the ${kind} input expands past 100×`),
    });
    t.is((await store.readIndex()).manifests.length, 0);
  });
}
