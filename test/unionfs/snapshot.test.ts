import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { chainId, hexOf } from '../../layers/model/digest.js';
import {
  baseSnapshotFromTar,
  cleanStaleSnapshots,
  ensureSnapshots,
  listSnapshots,
  removeSnapshot,
  snapshotDir,
  snapshotsRoot,
} from '../../unionfs/snapshot.js';
import { repoRoot } from '../helpers/index.js';
import { FakeHost } from '../../sys/fake-host.js';
import { tempDir } from './helpers.js';
import { gnuTarApply, makeTar } from './tar-fixtures.js';

const PREFIX = 'tsbuild-unionfs-snap-';

async function twoLayers(dir: string) {
  const base = await makeTar(dir, 'base', { 'etc/os-release': 'ID=test\n', 'bin/sh': 'sh' });
  const app = await makeTar(dir, 'app', { 'app/main': 'main' });
  return [base, app];
}

test('snapshotDir is <store>/snapshots/<hex of the ChainID>', (t) => {
  const id = chainId([`sha256:${'a'.repeat(64)}`]);
  t.is(snapshotDir('/store', id), `/store/snapshots/${hexOf(id)}`);
});

test('ensureSnapshots extracts each layer once into its ChainID dir and returns the dirs bottom first', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const layers = await twoLayers(dir);
  let opened = 0;
  const counted = layers.map((l) => ({ diffId: l.diffId, open: () => (opened++, l.open()) }));
  const dirs = await ensureSnapshots({ storeRoot, layers: counted, apply: gnuTarApply });
  const chains = [chainId([layers[0]!.diffId]), chainId([layers[0]!.diffId, layers[1]!.diffId])];
  t.deepEqual(
    dirs,
    chains.map((c) => snapshotDir(storeRoot, c)),
  );
  t.is(await readFile(join(dirs[0]!, 'etc', 'os-release'), 'utf8'), 'ID=test\n');
  t.is(await readFile(join(dirs[1]!, 'app', 'main'), 'utf8'), 'main');
  t.false(existsSync(join(dirs[1]!, 'etc')), 'a snapshot holds its own layer only');
  t.is(opened, 2);
  t.deepEqual(await ensureSnapshots({ storeRoot, layers: counted, apply: gnuTarApply }), dirs);
  t.is(opened, 2, 'existing snapshots are not extracted again');
  t.deepEqual(await listSnapshots(storeRoot), [...chains].sort());
  t.deepEqual(
    (await readdir(snapshotsRoot(storeRoot))).filter((n) => n.startsWith('.')),
    [],
  );
});

test('the same layer on another base is another snapshot', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const [base, app] = await twoLayers(dir);
  const a = await ensureSnapshots({ storeRoot, layers: [base!, app!], apply: gnuTarApply });
  const b = await ensureSnapshots({ storeRoot, layers: [app!], apply: gnuTarApply });
  t.not(b[0], a[1]);
  t.is((await listSnapshots(storeRoot)).length, 3);
});

test('concurrent callers both succeed, and the loser discards its copy', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const layers = await twoLayers(dir);
  // A barrier per layer: each extraction waits until the other caller extracts the same layer too.
  let applied = 0;
  const arrived = new Map<string, () => void>();
  const slowApply = async (tar: Readable, into: string) => {
    applied++;
    await gnuTarApply(tar, into);
    const key = /\.tmp-([0-9a-f]+)-/.exec(into)?.[1] ?? '';
    const other = arrived.get(key);
    if (other) other();
    else await new Promise<void>((r) => arrived.set(key, r));
  };
  const [a, b] = await Promise.all([
    ensureSnapshots({ storeRoot, layers, apply: slowApply }),
    ensureSnapshots({ storeRoot, layers, apply: slowApply }),
  ]);
  t.deepEqual(a, b);
  t.is(applied, 4, 'both extracted every layer');
  t.deepEqual((await readdir(snapshotsRoot(storeRoot))).sort(), (await listSnapshots(storeRoot)).map(hexOf).sort());
  t.is(await readFile(join(a[1]!, 'app', 'main'), 'utf8'), 'main');
});

test('a failed extraction leaves no snapshot and no temp dir, and names the layer', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const layers = await twoLayers(dir);
  const failing = async (tar: Readable, into: string) => {
    await gnuTarApply(tar, into);
    if (into.includes(hexOf(chainId([layers[0]!.diffId, layers[1]!.diffId])).slice(0, 16)))
      throw new Error('disk full');
  };
  await t.throwsAsync(ensureSnapshots({ storeRoot, layers, apply: failing }), {
    message: new RegExp(`extracting layer ${layers[1]!.diffId}.*disk full`),
  });
  t.deepEqual(await listSnapshots(storeRoot), [chainId([layers[0]!.diffId])], 'the finished layer stays');
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), [hexOf(chainId([layers[0]!.diffId]))]);
});

test('a killed extraction leaves only a temp dir, which cleanStaleSnapshots removes', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test', 'unionfs', 'snapshot-child.ts'), storeRoot, dir],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('extracting') && resolve());
    child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
  });
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  t.deepEqual(await listSnapshots(storeRoot), []);
  const left = await readdir(snapshotsRoot(storeRoot));
  t.is(left.length, 1);
  t.true(left[0]?.startsWith('.tmp-'));
  t.true(existsSync(join(snapshotsRoot(storeRoot), left[0]!, 'big', 'file')), 'a half extraction');
  t.deepEqual(await cleanStaleSnapshots(storeRoot), left);
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), []);
});

test('cleanStaleSnapshots keeps the temp dirs of live processes', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const layers = await twoLayers(dir);
  let during: string[] = [];
  await ensureSnapshots({
    storeRoot,
    layers: layers.slice(0, 1),
    apply: async (tar, into) => {
      await gnuTarApply(tar, into);
      during = await cleanStaleSnapshots(storeRoot);
    },
  });
  t.deepEqual(during, []);
  t.is((await listSnapshots(storeRoot)).length, 1);
});

test('removeSnapshot deletes a snapshot and is idempotent', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const layers = await twoLayers(dir);
  await ensureSnapshots({ storeRoot, layers, apply: gnuTarApply });
  const top = chainId(layers.map((l) => l.diffId));
  t.true(await removeSnapshot(storeRoot, top));
  t.false(await removeSnapshot(storeRoot, top));
  t.deepEqual(await listSnapshots(storeRoot), [chainId([layers[0]!.diffId])]);
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), [hexOf(chainId([layers[0]!.diffId]))]);
});

test('listSnapshots of a store without snapshots is empty', async (t) => {
  const dir = await tempDir(t, PREFIX);
  t.deepEqual(await listSnapshots(dir), []);
  t.deepEqual(await cleanStaleSnapshots(dir), []);
});

test('baseSnapshotFromTar extracts a bottom layer as it streams and keeps it under its ChainID', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const [base] = await twoLayers(dir);
  const host = new FakeHost({ caps: { mount: true } });
  const early = baseSnapshotFromTar(storeRoot, host);
  if (!early) return t.fail('no snapshot where snapshots are used');
  await early.extract(await base!.open());
  t.deepEqual(await listSnapshots(storeRoot), [], 'nothing under a snapshot name before keep');
  t.true(await early.keep(base!.diffId));
  await early.discard();
  t.deepEqual(await listSnapshots(storeRoot), [chainId([base!.diffId])]);
  t.is(await readFile(join(snapshotDir(storeRoot, chainId([base!.diffId])), 'etc', 'os-release'), 'utf8'), 'ID=test\n');
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), [hexOf(chainId([base!.diffId]))], 'no temp dir left');
  // a second one of the same layer gives way to the first
  const again = baseSnapshotFromTar(storeRoot, host);
  await again?.extract(await base!.open());
  t.true(await again?.keep(base!.diffId));
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), [hexOf(chainId([base!.diffId]))]);
});

test('baseSnapshotFromTar: a failed or discarded extraction leaves nothing; none where snapshots are not used', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const storeRoot = join(dir, 'store');
  const [base] = await twoLayers(dir);
  t.is(baseSnapshotFromTar(storeRoot, new FakeHost()), undefined);
  const host = new FakeHost({ caps: { mount: true } });
  for (const delay of [0, 50]) {
    const failed = baseSnapshotFromTar(storeRoot, host);
    // as importImage's tee: the producer keeps a listener, and may fail before or after the extraction starts reading
    const tar = new PassThrough().on('error', () => {});
    tar.write((await readFile(base!.file)).subarray(0, 1024));
    const extracting = failed!.extract(tar);
    setTimeout(() => tar.destroy(new Error('the import failed')), delay);
    await t.throwsAsync(extracting, { message: /the import failed/ });
    t.false(await failed!.keep(base!.diffId), 'an unfinished extraction is not kept');
    await failed!.discard();
  }
  const unused = baseSnapshotFromTar(storeRoot, host);
  await unused!.extract(await base!.open());
  await unused!.discard();
  t.deepEqual(await listSnapshots(storeRoot), []);
  t.deepEqual(await readdir(snapshotsRoot(storeRoot)), []);
});
