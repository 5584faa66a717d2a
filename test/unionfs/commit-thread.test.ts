// unionfs/commit-thread.ts: a build's layers are written on a thread of their own, with the bytes, digests and
// errors the main thread gives; the thread is only a speed-up, so a thread that dies or cannot start leaves its
// layers to the main thread.
import test from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Change } from '../../layers/model/changeset.js';
import { Store } from '../../layers/store/store.js';
import { commitChanges } from '../../unionfs/commit.js';
import { LayerWriter, startThread } from '../../unionfs/commit-thread.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

type Teardown = { teardown(fn: () => unknown): void };

/** tree makes a small upperdir-like tree and the changes that list all of it. */
async function tree(t: Teardown): Promise<{ dir: string; changes: Change[]; stores: string }> {
  const base = await makeTempDir('tsbuild-commit-thread-');
  t.teardown(() => removeDir(base));
  const dir = join(base, 'upper');
  await mkdir(join(dir, 'app', 'src'), { recursive: true });
  await writeFile(join(dir, 'app', 'src', 'main.js'), 'console.log(1)\n'.repeat(5000));
  await writeFile(join(dir, 'app', 'config.txt'), 'x=1\n');
  await symlink('src/main.js', join(dir, 'app', 'main'));
  const changes: Change[] = ['app', 'app/config.txt', 'app/main', 'app/src', 'app/src/main.js'].map((path) => ({
    path,
    kind: 'add',
  }));
  return { dir, changes, stores: base };
}

test('a layer written on the layer thread is the layer the main thread writes: the same blob, digest and DiffID', async (t) => {
  const { dir, changes, stores } = await tree(t);
  const opts = { compression: 'none' as const, sourceDateEpoch: 1_700_000_000 };
  const here = await commitChanges(await Store.open(join(stores, 's1')), dir, changes, opts);
  const writer = new LayerWriter();
  t.teardown(() => writer.close());
  t.true(writer.threaded);
  const store = await Store.open(join(stores, 's2'));
  const there = await writer.write(store, dir, changes, opts);
  t.deepEqual(there, here);
  t.true(await store.hasBlob(there.descriptor.digest, there.descriptor.size));
  const gz = await writer.write(store, dir, changes, { ...opts, compression: 'gzip' });
  t.is(gz.diffId, here.diffId, 'compressed on the thread, the DiffID is the same');
  t.deepEqual(gz, await commitChanges(store, dir, changes, { ...opts, compression: 'gzip' }));
});

test('a layer that fails on the thread fails with the message and code it has on the main thread', async (t) => {
  const { dir, changes, stores } = await tree(t);
  const store = await Store.open(join(stores, 's'));
  const gone = [...changes, { path: 'app/missing', kind: 'add' as const }];
  const opts = { compression: 'none' as const };
  const here = await t.throwsAsync(commitChanges(store, dir, gone, opts));
  const writer = new LayerWriter();
  t.teardown(() => writer.close());
  const there = await t.throwsAsync(writer.write(store, dir, gone, opts));
  t.is(there!.message, here!.message);
  t.is((there as { code?: string }).code, (here as { code?: string }).code);
  t.true(writer.threaded, 'a failed layer does not stop the thread');
  t.truthy(await writer.write(store, dir, changes, opts));
});

test('when the layer thread dies, the layers it had not written are written on the main thread, in order', async (t) => {
  const { dir, changes, stores } = await tree(t);
  const store = await Store.open(join(stores, 's'));
  const opts = { compression: 'none' as const };
  // a thread that takes the jobs and exits before answering any
  const writer = new LayerWriter(() => new Worker('setTimeout(() => process.exit(3), 100)', { eval: true }));
  t.teardown(() => writer.close());
  const layers = await Promise.all([1, 2, 3].map(() => writer.write(store, dir, changes, opts)));
  const expected = await commitChanges(store, dir, changes, opts);
  t.deepEqual(layers, [expected, expected, expected]);
  t.false(writer.threaded);
});

test('a layer thread that cannot start leaves every layer to the main thread', async (t) => {
  const { dir, changes, stores } = await tree(t);
  const store = await Store.open(join(stores, 's'));
  const writer = new LayerWriter(() => {
    throw new Error('no threads here');
  });
  t.false(writer.threaded);
  const layer = await writer.write(store, dir, changes, { compression: 'none' });
  t.deepEqual(layer, await commitChanges(store, dir, changes, { compression: 'none' }));
  await writer.close();
});

test('a step that opens while every layer thread has a layer in hand starts another thread, up to the limit', async (t) => {
  const { dir, changes, stores } = await tree(t);
  const store = await Store.open(join(stores, 's'));
  let started = 0;
  const writer = new LayerWriter(() => {
    started++;
    return startThread();
  }, 2);
  t.teardown(() => writer.close());
  writer.prepare();
  t.is(started, 1, 'the first step starts a thread');
  writer.prepare();
  t.is(started, 1, 'an idle thread is enough');
  const first = writer.write(store, dir, changes, { compression: 'none' });
  writer.prepare();
  t.is(started, 2, 'the first thread is busy: the next step starts a second one');
  const second = writer.write(store, dir, changes, { compression: 'gzip' });
  writer.prepare();
  t.is(started, 2, 'never more than the limit');
  await Promise.all([first, second]);
  writer.prepare();
  t.is(started, 2);
  t.deepEqual(await first, await commitChanges(store, dir, changes, { compression: 'none' }));
});
