// `tsbuild prune` reclaims everything unreferenced: blobs, snapshots, stale container directories, cache records.
// The library function (pruneStore) is tested without root over snapshots made by snapshotLayers; the CLI with
// snapshots made by `tsbuild run` and `tsbuild mount` (overlay: root).
import test, { type ExecutionContext } from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { link, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxAvailable } from '../../fixtures/busybox.js';
import type { CacheRecord } from '../../builder/cache.js';
import { hexOf } from '../../layers/model/digest.js';
import { imageLayers } from '../../layers/model/layer.js';
import { getImage } from '../../layers/store/image.js';
import { Records } from '../../layers/store/records.js';
import { Store } from '../../layers/store/store.js';
import type { Digest } from '../../layers/model/types.js';
import { containersRoot, SNAPSHOTS_NOTE } from '../../unionfs/rootfs.js';
import { diskUsage, imageChainIds, pruneStore } from '../../unionfs/prune.js';
import { listSnapshots, snapshotLayers } from '../../unionfs/snapshot.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';

const withBusybox = busyboxAvailable() ? test.serial : (test.serial.skip as typeof test.serial);
const rootWithBusybox = busyboxAvailable() ? rootTest : (test.serial.skip as typeof test.serial);

async function ok(args: string[]): Promise<string> {
  const r = await tsbuild(args);
  if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** twoImages makes a store with `a:1` (busybox) and `b:1` (busybox plus a file): different layers, different chains. */
async function twoImages(
  t: ExecutionContext,
): Promise<{ root: string; store: Store; chains: Record<'a' | 'b', Digest> }> {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  await ok(['--root', root, 'import', tree, 'a:1']);
  await writeFile(join(tree, 'etc/b-only'), 'b\n');
  await ok(['--root', root, 'import', tree, 'b:1']);
  const store = await Store.open(root);
  const chain = async (name: string): Promise<Digest> =>
    (await getImage(store, name)).config.rootfs.diff_ids[0] as Digest; // one layer: ChainID = DiffID
  return { root, store, chains: { a: await chain('a:1'), b: await chain('b:1') } };
}

/** snapshot extracts an image's layers into the store's snapshots, as a build or run would (no root needed). */
async function snapshot(store: Store, name: string): Promise<void> {
  const image = await getImage(store, name);
  await snapshotLayers(store, imageLayers(image));
}

// Library: pruneStore, without root

withBusybox('imageChainIds lists the ChainID of every layer prefix of every image in the index', async (t) => {
  const { store, chains } = await twoImages(t);
  t.deepEqual([...(await imageChainIds(store))].sort(), [chains.a, chains.b].sort());
});

withBusybox('pruneStore removes the snapshots of a removed image and keeps those of a tagged one', async (t) => {
  const { root, store, chains } = await twoImages(t);
  await snapshot(store, 'a:1');
  await snapshot(store, 'b:1');
  t.deepEqual(await listSnapshots(root), [chains.a, chains.b].sort());
  await ok(['--root', root, 'rm', 'a:1']);
  const r = await pruneStore(store);
  t.deepEqual(r.snapshots, [chains.a]);
  t.deepEqual(await listSnapshots(root), [chains.b]);
  t.is(r.blobs.length, 3, 'manifest, config and layer of a:1');
  t.true(r.bytes.snapshots > 1_000_000, `the busybox snapshot is counted (${r.bytes.snapshots})`);
  t.is(r.bytesFreed, r.bytes.blobs + r.bytes.snapshots + r.bytes.containers + r.bytes.cacheRecords);
  t.deepEqual(r.notes, []);
  const again = await pruneStore(store);
  t.deepEqual([again.blobs, again.snapshots, again.bytesFreed], [[], [], 0], 'a second prune finds nothing');
});

withBusybox(
  'a snapshot that a live container notes stays; once its process is gone, the container and the snapshot go',
  async (t) => {
    const { root, store, chains } = await twoImages(t);
    await snapshot(store, 'a:1');
    await ok(['--root', root, 'rm', 'a:1']);
    const live = join(containersRoot(root), `${process.pid}-0123456789ab`);
    await mkdir(live, { recursive: true });
    await writeFile(join(live, SNAPSHOTS_NOTE), JSON.stringify({ chainIds: [chains.a] }));
    const kept = await pruneStore(store);
    t.deepEqual(kept.snapshots, []);
    t.deepEqual(kept.containers, []);
    t.deepEqual(await listSnapshots(root), [chains.a]);

    // the same directory under a pid that does not exist: a killed run
    const dead = join(containersRoot(root), '999999999-0123456789ab');
    await mkdir(join(dead, 'upper'), { recursive: true });
    await writeFile(join(dead, 'upper/big'), Buffer.alloc(100_000, 1));
    await writeFile(join(dead, SNAPSHOTS_NOTE), JSON.stringify({ chainIds: [chains.a] }));
    await removeDir(live);
    const r = await pruneStore(store);
    t.deepEqual(r.containers, ['999999999-0123456789ab']);
    t.deepEqual(r.snapshots, [chains.a]);
    t.true(r.bytes.containers >= 100_000, String(r.bytes.containers));
    t.false(existsSync(dead));
  },
);

withBusybox('`tsbuild mount` views are never stale, and their snapshots stay', async (t) => {
  const { root, store, chains } = await twoImages(t);
  await snapshot(store, 'a:1');
  await ok(['--root', root, 'rm', 'a:1']);
  const view = join(containersRoot(root), 'mount-0123456789ab');
  await mkdir(join(view, 'rootfs'), { recursive: true });
  await writeFile(join(view, SNAPSHOTS_NOTE), JSON.stringify({ chainIds: [chains.a] }));
  const r = await pruneStore(store);
  t.deepEqual([r.containers, r.snapshots], [[], []]);
  t.true(existsSync(view));
  t.deepEqual(await listSnapshots(root), [chains.a]);
});

withBusybox(
  'a live container that does not say what it uses (a build) keeps every snapshot, and prune says why',
  async (t) => {
    const { root, store, chains } = await twoImages(t);
    await snapshot(store, 'a:1');
    await ok(['--root', root, 'rm', 'a:1']);
    const build = join(containersRoot(root), `${process.pid}-ba11d0000000`);
    await mkdir(join(build, 's1/upper'), { recursive: true });
    t.teardown(() => removeDir(build));
    const r = await pruneStore(store);
    t.deepEqual(r.snapshots, []);
    t.deepEqual(await listSnapshots(root), [chains.a]);
    t.is(r.notes.length, 1);
    t.regex(r.notes[0] as string, /snapshots kept: .* does not say which snapshots it uses/);
    t.is(r.blobs.length, 3, 'blobs are pruned all the same');
  },
);

withBusybox('a live writer spares snapshots made since it began', async (t) => {
  const { root, store, chains } = await twoImages(t);
  const lease = await store.beginWrite();
  t.teardown(() => lease.end());
  await new Promise((r) => setTimeout(r, 10));
  await snapshot(store, 'a:1'); // as a build would, after its lease began
  await ok(['--root', root, 'rm', 'a:1']);
  t.deepEqual(await listSnapshots(root), [chains.a]);
  const r = await pruneStore(store);
  t.deepEqual(r.snapshots, []);
  await lease.end();
  t.deepEqual((await pruneStore(store)).snapshots, [chains.a]);
});

withBusybox(
  'build-cache and export-kernel records whose layer blob is gone are removed; the others stay',
  async (t) => {
    const { root, store } = await twoImages(t);
    const layerOf = async (name: string) => {
      const image = await getImage(store, name);
      return imageLayers(image)[0]!;
    };
    const a = await layerOf('a:1');
    const b = await layerOf('b:1');
    const cache = new Records<CacheRecord>(store, 'build');
    const key = (c: string) => `sha256:${c.repeat(64)}`;
    await cache.put(key('a'), { version: 1, layer: a, created: '2024-01-01T00:00:00Z' });
    await cache.put(key('b'), { version: 1, layer: b, created: '2024-01-01T00:00:00Z' });
    await cache.put(key('c'), { version: 1, layer: null, created: '2024-01-01T00:00:00Z' });
    const kdir = join(root, 'cache', 'export-kernel');
    await mkdir(kdir, { recursive: true });
    const record = (layer: typeof a) =>
      JSON.stringify({
        version: 1,
        key: key('d'),
        layer,
        kernel: {},
        depends: {},
        created: '2024-01-01T00:00:00Z',
        packages: [],
      });
    await writeFile(join(kdir, `${'d'.repeat(64)}.json`), record(a));
    await writeFile(join(kdir, `${'e'.repeat(64)}.json`), record(b));
    await writeFile(join(kdir, `${'f'.repeat(64)}.json`), 'not json');

    t.deepEqual((await pruneStore(store)).cacheRecords, [], 'every blob is still there');
    await ok(['--root', root, 'rm', 'a:1']);
    const r = await pruneStore(store);
    t.true(r.blobs.includes(a.descriptor.digest));
    t.deepEqual(r.cacheRecords, [key('a')]);
    t.deepEqual(r.kernelRecords, [key('d')]);
    t.true(r.bytes.cacheRecords > 0);
    t.deepEqual((await readdir(join(root, 'cache'))).sort(), [
      `${'b'.repeat(64)}.json`,
      `${'c'.repeat(64)}.json`,
      'export-kernel',
    ]);
    t.deepEqual((await readdir(kdir)).sort(), [`${'e'.repeat(64)}.json`, `${'f'.repeat(64)}.json`]);
    t.truthy(await cache.get(key('b')));
  },
);

test('diskUsage counts allocated blocks, each hard-linked file once', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'f'), Buffer.alloc(1 << 20, 7));
  const one = await diskUsage(dir);
  t.true(one >= 1 << 20 && one < (1 << 20) + 64 * 1024, String(one));
  await link(join(dir, 'f'), join(dir, 'g'));
  await mkdir(join(dir, 'sub'));
  await link(join(dir, 'f'), join(dir, 'sub/h'));
  const linked = await diskUsage(dir);
  t.true(linked - one <= 8192, `a hard link adds no data blocks (${one} → ${linked})`);
  t.is(await diskUsage(join(dir, 'missing')), 0);
});

// CLI, as root: snapshots made by `tsbuild run` and `tsbuild mount`

function snapshotNames(root: string): string[] {
  return existsSync(join(root, 'snapshots')) ? readdirSync(join(root, 'snapshots')).sort() : [];
}

rootWithBusybox(
  "after `tsbuild run` and `tsbuild rm`, prune removes the image's snapshots and blobs; a tagged image's stay",
  async (t) => {
    const { root, chains } = await twoImages(t);
    t.is(await ok(['--root', root, 'run', '--rm', 'a:1', 'echo', 'a']), 'a\n');
    t.is(await ok(['--root', root, 'run', '--rm', 'b:1', 'cat', '/etc/b-only']), 'b\n');
    t.deepEqual(snapshotNames(root), [hexOf(chains.a), hexOf(chains.b)].sort());

    const nothing = await ok(['--root', root, 'prune']);
    t.regex(
      nothing,
      /^Deleted 0 blobs, 0 snapshots, 0 stale containers, 0 cache records\nTotal reclaimed space: 0B \(0 bytes\)\n$/,
    );

    await ok(['--root', root, 'rm', 'a:1']);
    const out = await ok(['--root', root, 'prune']);
    const lines = out.trim().split('\n');
    t.is(lines.filter((l) => /^deleted: sha256:[a-f0-9]{64}$/.test(l)).length, 3, out);
    t.deepEqual(
      lines.filter((l) => l.startsWith('deleted snapshot: ')),
      [`deleted snapshot: ${chains.a}`],
    );
    t.true(lines.includes('Deleted 3 blobs, 1 snapshot, 0 stale containers, 0 cache records'), out);
    const total = Number(/^Total reclaimed space: \S+ \((\d+) bytes\)$/m.exec(out)?.[1]);
    t.true(total > 2_000_000, `compressed blobs plus the extracted snapshot (${total})`);
    t.deepEqual(snapshotNames(root), [hexOf(chains.b)]);
    t.false(existsSync(join(root, 'blobs/sha256', hexOf(chains.a))));
    t.is(await ok(['--root', root, 'run', '--rm', 'b:1', 'cat', '/etc/b-only']), 'b\n', 'the kept image still runs');
  },
);

rootWithBusybox("a mounted view's snapshots stay until umount, and prune does not touch the view", async (t) => {
  const { root, chains } = await twoImages(t);
  const view = (await ok(['--root', root, 'mount', 'a:1'])).trim();
  t.teardown(async () => void (await tsbuild(['--root', root, 'umount', view])));
  await writeFile(join(view, 'in-view'), 'kept\n');
  await ok(['--root', root, 'rm', 'a:1']);
  const out = await ok(['--root', root, 'prune']);
  t.false(out.includes('deleted snapshot:'), out);
  t.false(out.includes('deleted container:'), out);
  t.true(snapshotNames(root).includes(hexOf(chains.a)));
  t.is(readFileSync(join(view, 'in-view'), 'utf8'), 'kept\n');
  t.true(existsSync(join(view, 'bin/busybox')), 'the view still shows the image');
  t.true(readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${view} `));

  await ok(['--root', root, 'umount', view]);
  const after = await ok(['--root', root, 'prune']);
  t.true(after.includes(`deleted snapshot: ${chains.a}`), after);
  t.false(snapshotNames(root).includes(hexOf(chains.a)));
});

rootWithBusybox(
  'prune removes the container directory a killed `tsbuild run` left, and reports its bytes',
  async (t) => {
    const { root } = await twoImages(t);
    const { spawn } = await import('node:child_process');
    const { repoRoot } = await import('../helpers/index.js');
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, 'bin/tsbuild.js'),
        '--root',
        root,
        'run',
        '--rm',
        'a:1',
        'sh',
        '-c',
        'head -c 300000 /dev/zero > /big; echo ready; sleep 1000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.teardown(() => void child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => b.toString().includes('ready') && resolve());
      child.on('exit', () => reject(new Error('tsbuild run exited early')));
    });
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    const left = readdirSync(containersRoot(root));
    t.deepEqual(left, [`${child.pid}-${left[0]?.split('-')[1]}`]);
    // the container's last process may take a moment to go (it holds the overlay)
    let out = '';
    for (let i = 0; i < 50; i++) {
      out = await ok(['--root', root, 'prune']);
      if (out.includes('deleted container:')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.true(out.includes(`deleted container: ${left[0]}`), out);
    t.true(Number(/\((\d+) bytes\)/.exec(out)?.[1]) >= 300_000, out);
    t.deepEqual(readdirSync(containersRoot(root)), []);
  },
);

rootWithBusybox('prune through the CLI removes the cache records of the blobs it removed', async (t) => {
  const { root, store } = await twoImages(t);
  const image = await getImage(store, 'a:1');
  const cache = new Records<CacheRecord>(store, 'build');
  const k = `sha256:${'1'.repeat(64)}`;
  await cache.put(k, { version: 1, layer: imageLayers(image)[0]!, created: '2024-01-01T00:00:00Z' });
  await ok(['--root', root, 'rm', 'a:1']);
  const out = await ok(['--root', root, 'prune']);
  t.true(out.includes(`deleted cache record: ${k}`), out);
  t.true(out.includes('0 snapshots, 0 stale containers, 1 cache record'), out);
  t.false(existsSync(join(root, 'cache', `${'1'.repeat(64)}.json`)));
});
