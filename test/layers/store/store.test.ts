import test from 'ava';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { sha256 } from '../../../layers/model/digest.js';
import { tagImage } from '../../../layers/store/image.js';
import { Store } from '../../../layers/store/store.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

async function newStore(t: { teardown(fn: () => Promise<void>): void }): Promise<Store> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  return Store.open(dir);
}

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('open() creates an empty OCI image layout', async (t) => {
  const store = await newStore(t);
  t.deepEqual(JSON.parse(await readFile(join(store.root, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const index = await store.readIndex();
  t.deepEqual(index.manifests, []);
  t.deepEqual(await readdir(store.blobDir), []);
});

test('putBlob() of identical bytes twice returns the same digest and writes once', async (t) => {
  const store = await newStore(t);
  const a = await store.putBlob(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
  const b = await store.putBlob(Readable.from([Buffer.from('hello world')]));
  t.is(a.digest, sha256('hello world'));
  t.is(b.digest, a.digest);
  t.true(a.written);
  t.false(b.written);
  t.deepEqual(await store.listBlobs(), [a.digest]);
});

test('putBlob() with a wrong expected digest fails and leaves nothing behind', async (t) => {
  const store = await newStore(t);
  const err = await t.throwsAsync(
    store.putBlob(Readable.from([Buffer.from('abc')]), { digest: sha256('xyz'), size: 3 }),
  );
  t.is((err as { code?: string }).code, 'E_DIGEST_MISMATCH');
  t.deepEqual(await readdir(store.blobDir), []);
});

test('putBlob() with a wrong expected size fails and leaves nothing behind', async (t) => {
  const store = await newStore(t);
  const err = await t.throwsAsync(
    store.putBlob(Readable.from([Buffer.from('abcd')]), { digest: sha256('abcd'), size: 3 }),
  );
  t.is((err as { code?: string }).code, 'E_SIZE_MISMATCH');
  t.deepEqual(await readdir(store.blobDir), []);
});

test('putBlob() that sees a read error deletes what it stored', async (t) => {
  const store = await newStore(t);
  const failing = new Readable({
    read() {
      this.push(Buffer.alloc(1 << 16, 1));
      this.destroy(new Error('network went away'));
    },
  });
  await t.throwsAsync(store.putBlob(failing), { message: /network went away/ });
  t.deepEqual(await readdir(store.blobDir), []);
});

test('putBlobWith() stores what its fill writes, chunk by chunk into reused memory, once per content', async (t) => {
  const store = await newStore(t);
  const fill = async (write: (chunk: Uint8Array) => void): Promise<void> => {
    const chunk = Buffer.alloc(3 << 20); // more than one writeback step in all
    for (let i = 0; i < 4; i++) {
      chunk.fill(i);
      write(chunk); // written before write returns: the chunk is filled again at once
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const expected = Buffer.concat([0, 1, 2, 3].map((i) => Buffer.alloc(3 << 20, i)));
  const a = await store.putBlobWith(fill);
  t.deepEqual(a, { digest: sha256(expected), size: expected.length, written: true });
  t.true((await readFile(store.blobPath(a.digest))).equals(expected));
  const b = await store.putBlobWith(fill);
  t.deepEqual(b, { ...a, written: false });
  t.deepEqual(await readdir(store.blobDir), [a.digest.slice('sha256:'.length)]);
});

test('putBlobWith() whose fill fails leaves nothing behind', async (t) => {
  const store = await newStore(t);
  await t.throwsAsync(
    store.putBlobWith(async (write) => {
      write(Buffer.alloc(1 << 16, 1));
      throw new Error('the tree changed');
    }),
    { message: 'the tree changed' },
  );
  t.deepEqual(await readdir(store.blobDir), []);
});

test('openBlob() fails at EOF naming a blob whose bytes were corrupted on disk', async (t) => {
  const store = await newStore(t);
  const { digest } = await store.putBlob(Readable.from([Buffer.from('precious data')]));
  await writeFile(store.blobPath(digest), 'precious dat4');
  const err = await t.throwsAsync(readAll(store.openBlob(digest)));
  t.is((err as { code?: string }).code, 'E_DIGEST_MISMATCH');
  t.true(err?.message.includes(digest));
  await t.throwsAsync(store.readJson(digest), { message: new RegExp(digest) });
});

test('openBlob() of a missing blob names it', async (t) => {
  const store = await newStore(t);
  const d = sha256('nothing');
  const err = await t.throwsAsync(readAll(store.openBlob(d)));
  t.true(err?.message.includes(d));
  t.is((err as { code?: string }).code, 'E_NOT_FOUND');
});

test('concurrent updateIndex() calls from one process lose nothing', async (t) => {
  const store = await newStore(t);
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      store.updateIndex(async (index) => {
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        index.manifests.push({
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: sha256(String(i)),
          size: i,
        });
      }),
    ),
  );
  const index = await store.readIndex();
  t.is(index.manifests.length, 20);
});

test('tagging an image with the name it already has leaves index.json as it is; another image under the name replaces it', async (t) => {
  const store = await newStore(t);
  const desc = (n: number) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: sha256(`manifest ${n}`),
    size: 100 + n,
  });
  await tagImage(store, desc(1), 'app:1');
  await tagImage(store, desc(2), 'other:1');
  const path = join(store.root, 'index.json');
  const before = await stat(path);
  const text = await readFile(path, 'utf8');
  await tagImage(store, desc(1), 'app:1');
  const after = await stat(path);
  t.is(after.ino, before.ino, 'not replaced (a write is a new file renamed over it)');
  t.is(await readFile(path, 'utf8'), text);
  await tagImage(store, desc(3), 'app:1');
  const index = await store.readIndex();
  t.deepEqual(
    index.manifests.map((d) => d.digest),
    [desc(2).digest, desc(3).digest],
  );
  t.not((await stat(path)).ino, before.ino);
});

test('readIndex() tolerates `manifests: null` as docker save writes it', async (t) => {
  const store = await newStore(t);
  await writeFile(join(store.root, 'index.json'), '{"schemaVersion":2,"manifests":null}');
  t.deepEqual((await store.readIndex()).manifests, []);
});

test('open() refuses a layout of an unknown version', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"9.9.9"}');
  await t.throwsAsync(Store.open(dir), { message: /unsupported imageLayoutVersion/ });
});
