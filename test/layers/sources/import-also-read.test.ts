// importImage's second reader (alsoRead): the CLI extracts an imported image's snapshot from the layer tar while
// the tar is committed. The reader sees the very bytes of the layer, and it never changes what the import does.
import test from 'ava';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { importImage } from '../../../layers/sources/import.js';
import { Store } from '../../../layers/store/store.js';
import { verifyImage } from '../../../layers/store/verify.js';
import { getImage } from '../../../layers/store/image.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';
import { newStoreRoot } from '../../helpers/images.js';
import { tarOf } from '../../helpers/layers.js';

async function layerFile(t: { teardown(fn: () => unknown): void }, files = 200): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const entries = Array.from({ length: files }, (_, i) => ({
    name: `d/f${i}`,
    type: 'file' as const,
    body: `${i}\n`.repeat(i * 40),
  }));
  const chunks: Buffer[] = [];
  for await (const c of await tarOf(entries)) chunks.push(c as Buffer);
  const file = join(dir, 'layer.tar');
  await writeFile(file, Buffer.concat(chunks));
  return file;
}

async function sha256Of(tar: Readable, slow = false): Promise<string> {
  const h = createHash('sha256');
  for await (const c of tar) {
    h.update(c as Buffer);
    if (slow) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return `sha256:${h.digest('hex')}`;
}

test('the second reader gets the layer tar whose digest is the diffID, slow or not', async (t) => {
  const file = await layerFile(t);
  for (const slow of [false, true]) {
    const store = await Store.open(await newStoreRoot(t));
    let seen: string | undefined;
    const r = await importImage(store, {
      source: file,
      name: 'x:1',
      compression: 'zstd',
      alsoRead: async (tar) => (seen = await sha256Of(tar, slow)),
    });
    t.is(seen, r.diffId);
    t.deepEqual(await verifyImage(store, await getImage(store, 'x:1')), []);
  }
});

test('the import stores the same image with or without a second reader', async (t) => {
  const file = await layerFile(t);
  const digests = [];
  for (const alsoRead of [undefined, (tar: Readable) => sha256Of(tar)]) {
    const store = await Store.open(await newStoreRoot(t));
    const r = await importImage(store, {
      source: file,
      compression: 'gzip',
      sourceDateEpoch: 1700000000,
      ...(alsoRead ? { alsoRead } : {}),
    });
    digests.push(r.descriptor.digest);
  }
  t.is(digests[0], digests[1]);
});

test('a second reader that fails or stops reading does not fail the import', async (t) => {
  const file = await layerFile(t);
  const readers: Array<(tar: Readable) => Promise<unknown>> = [
    async () => {
      throw new Error('the reader failed at once');
    },
    async (tar) => {
      for await (const _ of tar) throw new Error('the reader failed on the first chunk');
    },
    async (tar) => {
      tar.destroy(); // stops reading
    },
  ];
  for (const alsoRead of readers) {
    const store = await Store.open(await newStoreRoot(t));
    const r = await importImage(store, { source: file, name: 'x:1', alsoRead });
    t.deepEqual(await verifyImage(store, await getImage(store, 'x:1')), []);
    t.regex(r.diffId, /^sha256:/);
  }
});

test('when the import fails, the second reader sees its stream fail and the import waits for it', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const file = join(dir, 'not-a-tar');
  await writeFile(file, 'this is not a tar archive at all'.repeat(100));
  const store = await Store.open(await newStoreRoot(t));
  let reader: 'pending' | 'resolved' | 'rejected' = 'pending';
  await t.throwsAsync(
    importImage(store, {
      source: file,
      name: 'x:1',
      alsoRead: (tar) =>
        sha256Of(tar).then(
          () => void (reader = 'resolved'),
          (e: unknown) => {
            reader = 'rejected';
            throw e;
          },
        ),
    }),
    { message: /not a valid tar archive/ },
  );
  t.is(reader, 'rejected');
  t.is((await store.readIndex()).manifests.length, 0);
});
