// `tsbuild prune` in docker's shape: by default it reclaims what nothing needs (blobs no image or cache record names,
// snapshots, stale container directories, dead records) and says what it kept; `--all` also removes untagged images
// and the caches, `--filter until=` limits that by age. The library function (pruneStore) is tested without root over
// snapshots made by snapshotLayers; the CLI with snapshots made by `tsbuild run` and `tsbuild mount` (overlay: root).
import test, { type ExecutionContext } from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { link, mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxAvailable } from '../../fixtures/busybox.js';
import type { CacheRecord } from '../../builder/cache.js';
import { hexOf } from '../../layers/model/digest.js';
import { imageLayers } from '../../layers/model/layer.js';
import { findImage, getImage } from '../../layers/store/image.js';
import { parseUntil, untilFilter } from '../../cli/commands/prune.js';
import { humanSize } from '../../cli/progress.js';
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
  // import unpacks (snapshots at entry); these tests make the snapshots they need themselves, as a run would
  await rm(join(root, 'snapshots'), { recursive: true, force: true });
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

/** records puts build-cache records a/b/c (layers of a:1, b:1, none) and export-kernel records d/e (a:1, b:1) and f (not JSON). */
async function withRecords(t: ExecutionContext) {
  const { root, store } = await twoImages(t);
  const layerOf = async (name: string) => imageLayers(await getImage(store, name))[0]!;
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
  return { root, store, a, b, cache, key, kdir };
}

withBusybox(
  'build-cache and export-kernel records whose layer blob is gone are removed; the others stay',
  async (t) => {
    const { root, store, a, cache, key, kdir } = await withRecords(t);
    t.deepEqual((await pruneStore(store)).cacheRecords, [], 'every blob is still there');
    await rm(store.blobPath(a.descriptor.digest)); // lost by hand
    const r = await pruneStore(store);
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

withBusybox(
  'the default prune keeps the blobs that cache records name (the export kernel cache survives) and says what it kept',
  async (t) => {
    const { root, store, a, key } = await withRecords(t);
    await ok(['--root', root, 'rm', 'a:1']);
    const r = await pruneStore(store);
    t.false(r.blobs.includes(a.descriptor.digest), 'the layer that the records name stays');
    t.is(r.blobs.length, 2, "a:1's manifest and config go");
    t.deepEqual([r.cacheRecords, r.kernelRecords, r.images], [[], [], []]);
    t.true(await store.hasBlob(a.descriptor.digest));
    t.deepEqual(r.kept, [
      { what: 'export kernel cache', count: 2, bytes: a.descriptor.size, why: 'all' },
      { what: 'build cache', count: 3, bytes: 0, why: 'all' },
    ]);
    t.truthy(await new Records<CacheRecord>(store, 'build').get(key('a')), 'the cache still hits');
  },
);

withBusybox('prune with `all` removes untagged images and every cache record, then the blobs they kept', async (t) => {
  const { root, store, a, key, kdir } = await withRecords(t);
  const entry = await findImage(store, 'a:1');
  await ok(['--root', root, 'rm', 'a:1']);
  const { mediaType, digest, size } = entry.descriptor;
  await store.updateIndex((index) => void index.manifests.push({ mediaType, digest, size })); // as a build without -t
  const kept = (await pruneStore(store)).kept[0];
  t.like(kept, { what: 'untagged images', count: 1, why: 'all' });
  t.true(kept!.bytes > a.descriptor.size, 'its manifest, config and layer');
  const r = await pruneStore(store, { all: true });
  t.deepEqual(r.images, [digest]);
  t.true(r.blobs.includes(a.descriptor.digest));
  t.is(r.blobs.length, 3);
  t.deepEqual(r.cacheRecords, [key('a'), key('b'), key('c')]);
  t.deepEqual(r.kernelRecords, [key('d'), key('e')]);
  t.deepEqual(await readdir(kdir), [`${'f'.repeat(64)}.json`], 'an unreadable record is not ours to judge');
  t.deepEqual(r.kept, []);
  t.deepEqual((await ok(['--root', root, 'images', '-q'])).trim().split('\n').length, 1, 'b:1 stays');
  t.true(await store.hasBlob(imageLayers(await getImage(store, 'b:1'))[0]!.descriptor.digest));
});

withBusybox(
  'with `until`, prune `all` removes only the images and records older than it, and keeps the rest',
  async (t) => {
    const { root, store, a, b, key, kdir } = await withRecords(t);
    const old = new Date(Date.now() - 48 * 3600_000);
    for (const c of 'ac') await utimes(join(root, 'cache', `${c.repeat(64)}.json`), old, old);
    await utimes(join(kdir, `${'d'.repeat(64)}.json`), old, old);
    const untag = async (name: string) => {
      const e = await findImage(store, name);
      await ok(['--root', root, 'rm', name]);
      const { mediaType, digest, size } = e.descriptor;
      await store.updateIndex((index) => void index.manifests.push({ mediaType, digest, size }));
      return digest;
    };
    const oldImage = await untag('a:1');
    await utimes(store.blobPath(oldImage), old, old);
    const newImage = await untag('b:1');
    const r = await pruneStore(store, { all: true, until: Date.now() - 24 * 3600_000 });
    t.deepEqual(r.images, [oldImage]);
    t.deepEqual(r.cacheRecords, [key('a'), key('c')]);
    t.deepEqual(r.kernelRecords, [key('d')]);
    t.true(r.blobs.includes(a.descriptor.digest));
    t.true(await store.hasBlob(b.descriptor.digest));
    t.deepEqual(
      r.kept.map((k) => [k.what, k.count, k.why]),
      [
        ['untagged images', 1, 'until'],
        ['export kernel cache', 1, 'until'],
        ['build cache', 1, 'until'],
      ],
    );
    t.deepEqual(
      (await store.readIndex()).manifests.map((d) => d.digest),
      [newImage],
    );
  },
);

withBusybox("a cache hit refreshes the record's time, so `until` goes by last use", async (t) => {
  const { root, cache, key } = await withRecords(t);
  const path = join(root, 'cache', `${'b'.repeat(64)}.json`);
  const old = new Date(Date.now() - 48 * 3600_000);
  await utimes(path, old, old);
  t.truthy(await cache.get(key('b')));
  t.true((await stat(path)).mtimeMs > Date.now() - 60_000);
});

test("until= reads docker's durations, Unix times and dates", (t) => {
  const now = Date.UTC(2025, 0, 10, 12, 0, 0);
  t.is(parseUntil('24h', now), now - 86_400_000);
  t.is(parseUntil('1h30m', now), now - 5_400_000);
  t.is(parseUntil('1.5h', now), now - 5_400_000);
  t.is(parseUntil('90s', now), now - 90_000);
  t.is(parseUntil('250ms', now), now - 250);
  t.is(parseUntil('1700000000', now), 1_700_000_000_000);
  t.is(parseUntil('1700000000.5', now), 1_700_000_000_500);
  t.is(parseUntil('2024-05-01T10:00:00Z', now), Date.UTC(2024, 4, 1, 10));
  t.is(parseUntil('2024-05-01T10:00:00+02:00', now), Date.UTC(2024, 4, 1, 8));
  t.is(parseUntil('2024-05-01T10:00', now), new Date(2024, 4, 1, 10).getTime(), 'no zone: local time');
  t.is(parseUntil('2024-05-01', now), new Date(2024, 4, 1).getTime());
  for (const bad of ['', 'yesterday', '24x', '1e3', 'h', '2024-13-01', '1h-2m'])
    t.throws(() => parseUntil(bad, now), { code: 'E_INVALID' }, bad);
  t.deepEqual(untilFilter(['until=1m'], true, now), { ms: now - 60_000, text: '1m' });
  t.is(untilFilter([], false, now), undefined);
  t.throws(() => untilFilter(['until=1m'], false, now), { message: /add --all/ });
  t.throws(() => untilFilter(['label=a=b'], true, now), { message: /only until=TIME is supported/ });
  t.throws(() => untilFilter(['until=1m', 'until=2m'], true, now), { message: /twice/ });
});

withBusybox(
  'the CLI: prune keeps the caches and says so; prune -a -f removes them; --filter needs --all',
  async (t) => {
    const { root, store, a, key } = await withRecords(t);
    await ok(['--root', root, 'rm', 'a:1']);
    const out = await ok(['--root', root, 'prune']);
    t.regex(out, /^Deleted 2 blobs, 0 snapshots, 0 stale containers, 0 cache records$/m);
    t.true(
      out.includes(`kept: export kernel cache (2 records, ${humanSize(a.descriptor.size)}; remove with --all)`),
      out,
    );
    t.true(out.includes('kept: build cache (3 records, 0B; remove with --all)'), out);

    const noAll = await tsbuild(['--root', root, 'prune', '--filter', 'until=24h']);
    t.is(noAll.code, 1);
    t.regex(noAll.stderr, /^error: --filter until= limits what --all removes .*add --all\n/);
    const label = await tsbuild(['--root', root, 'prune', '-a', '--filter', 'label=x']);
    t.is(label.code, 1);
    t.regex(label.stderr, /only until=TIME is supported/);

    const kept = await ok(['--root', root, 'prune', '--all', '--filter', 'until=24h']);
    t.regex(kept, /^Deleted 0 blobs, 0 snapshots, 0 stale containers, 0 cache records$/m, 'all were used just now');
    t.true(kept.includes('kept: export kernel cache (2 records, '), kept);
    t.true(kept.includes('; newer than until=24h)'), kept);

    const all = await ok(['--root', root, 'prune', '-a', '-f']);
    t.true(all.includes(`deleted: ${a.descriptor.digest}`), all);
    t.true(all.includes(`deleted cache record: ${key('a')}`), all);
    t.true(all.includes(`deleted export-kernel cache record: ${key('d')}`), all);
    t.regex(all, /^Deleted 1 blob, 0 snapshots, 0 stale containers, 5 cache records$/m);
    t.false(all.includes('kept:'), all);
    t.false(await store.hasBlob(a.descriptor.digest));
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

rootWithBusybox('prune through the CLI keeps a cache record and its blob; prune --all removes both', async (t) => {
  const { root, store } = await twoImages(t);
  const image = await getImage(store, 'a:1');
  const layer = imageLayers(image)[0]!;
  const cache = new Records<CacheRecord>(store, 'build');
  const k = `sha256:${'1'.repeat(64)}`;
  await cache.put(k, { version: 1, layer, created: '2024-01-01T00:00:00Z' });
  await ok(['--root', root, 'rm', 'a:1']);
  const out = await ok(['--root', root, 'prune']);
  t.false(out.includes('deleted cache record:'), out);
  t.true(out.includes('kept: build cache (1 record, '), out);
  t.true(await store.hasBlob(layer.descriptor.digest));
  const all = await ok(['--root', root, 'prune', '--all']);
  t.true(all.includes(`deleted cache record: ${k}`), all);
  t.true(all.includes(`deleted: ${layer.descriptor.digest}`), all);
  t.true(all.includes('0 snapshots, 0 stale containers, 1 cache record'), all);
  t.false(existsSync(join(root, 'cache', `${'1'.repeat(64)}.json`)));
});

rootWithBusybox(
  'RUN cache mounts survive a default prune (which says so) and go with --all, or once unused for longer than until=',
  async (t) => {
    const root = await newStoreRoot(t);
    const tree = await busyboxTree(t);
    await ok(['--root', root, 'import', tree, 'bb:1']);
    const ctx = await makeTempDir('tsbuild-prune-ctx-');
    t.teardown(() => removeDir(ctx));
    await writeFile(
      join(ctx, 'Dockerfile'),
      'FROM bb:1\nRUN --mount=type=cache,target=/cache echo kept > /cache/file && ls /cache > /seen\n',
    );
    await ok(['--root', root, 'build', '--network', 'none', '-t', 'c:1', ctx]);
    const dirs = await readdir(join(root, 'cache-mounts'));
    t.is(dirs.length, 1);
    const dir = join(root, 'cache-mounts', dirs[0]!);
    t.is(readFileSync(join(dir, 'file'), 'utf8'), 'kept\n');

    t.regex(await ok(['--root', root, 'prune']), /^kept: cache mounts \(1 directory, .*; remove with --all\)$/m);
    t.true(existsSync(dir));
    t.notRegex(await ok(['--root', root, 'prune', '--all', '--filter', 'until=1h']), /deleted cache mount/);
    t.true(existsSync(dir), 'used a moment ago');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(dir, old, old);
    const pruned = await ok(['--root', root, 'prune', '--all', '--filter', 'until=1h']);
    t.regex(pruned, new RegExp(`^deleted cache mount: cache-mounts/${dirs[0]!}$`, 'm'));
    t.regex(pruned, /1 cache mount$/m);
    t.false(existsSync(dir));
  },
);
