// flatten: layers → one directory, by extraction ('apply') or from the store's snapshots ('snapshots'). The
// 'snapshots' method's ownership through the Host is tested without root in rootfs-fake.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { sha256 } from '../../layers/model/digest.js';
import type { Layer } from '../../layers/model/layer.js';
import { MediaType } from '../../layers/model/types.js';
import { Store } from '../../layers/store/store.js';
import { mknod, setXattr } from '../../sys/libc.js';
import { flatten, mergeSnapshot } from '../../unionfs/flatten.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { tempDir } from './helpers.js';
import { storeLayer } from './layer-fixtures.js';

const PREFIX = 'tsbuild-unionfs-flatten-';

test('flatten applies the layers bottom first, opening each when its turn comes', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const store = await Store.open(join(dir, 'store'));
  const base = await storeLayer(store, { 'etc/motd': 'base', 'etc/keep': 'keep' });
  const top = await storeLayer(store, { 'etc/motd': 'top', 'app/x': 'x' });
  const log: string[] = [];
  const openBlob = store.openBlob.bind(store);
  store.openBlob = (d, o) => (log.push(`open ${d === base.descriptor.digest ? 0 : 1}`), openBlob(d, o));
  const target = join(dir, 'rootfs');
  const how = await flatten({
    store,
    layers: [base, top],
    dir: target,
    method: 'apply',
    onEvent: (e) => log.push(`layer ${e.index}/${e.count} ${e.digest === [base, top][e.index]!.descriptor.digest}`),
  });
  t.is(how, 'apply');
  t.deepEqual(log, ['layer 0/2 true', 'open 0', 'layer 1/2 true', 'open 1']);
  t.is(await readFile(join(target, 'etc', 'motd'), 'utf8'), 'top');
  t.is(await readFile(join(target, 'etc', 'keep'), 'utf8'), 'keep');
  t.is(await readFile(join(target, 'app', 'x'), 'utf8'), 'x');
});

test('flatten refuses a directory that is not empty', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const store = await Store.open(join(dir, 'store'));
  await mkdir(join(dir, 'rootfs'));
  await writeFile(join(dir, 'rootfs', 'junk'), '');
  await t.throwsAsync(flatten({ store, layers: [], dir: join(dir, 'rootfs') }), {
    code: 'E_INVALID',
    message: /is not empty/,
  });
});

test('a failing layer stops the flatten, destroys its stream and is named in the error', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const store = await Store.open(join(dir, 'store'));
  const data = Buffer.from('not a tar');
  const bad: Layer = { descriptor: await store.putBlobBytes(data, MediaType.OciLayer), diffId: sha256(data) };
  let stream: Readable | undefined;
  const openBlob = store.openBlob.bind(store);
  store.openBlob = (d, o) => (stream = openBlob(d, o));
  await t.throwsAsync(flatten({ store, layers: [bad], dir: join(dir, 'rootfs'), method: 'apply' }), {
    message: new RegExp(`applying layer 1/1 \\(${bad.descriptor.digest}\\) into .*rootfs: .+`),
  });
  t.true(stream?.destroyed);
});

test('flatten with `below` lays new layers over a tree that holds the layers below', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const store = await Store.open(join(dir, 'store'));
  const base = await storeLayer(store, { 'etc/hostname': 'base', 'usr/bin/tool': 'v1' });
  const app = await storeLayer(store, { 'usr/bin/tool': 'v2', 'srv/app/run': 'app' });
  const once = join(dir, 'once');
  const twice = join(dir, 'twice');
  await flatten({ store, layers: [base, app], dir: once, method: 'apply' });
  await flatten({ store, layers: [base], dir: twice, method: 'apply' });
  await flatten({ store, layers: [app], below: [base], dir: twice, method: 'apply' });
  execFileSync('diff', ['-r', '--no-dereference', once, twice]);
  t.is(readFileSync(join(twice, 'usr/bin/tool'), 'utf8'), 'v2');
});

/** mergeDirs makes two snapshot directories and an empty tree to merge them into, all removed after the test. */
async function mergeDirs(t: {
  teardown: (fn: () => Promise<void>) => void;
}): Promise<Record<'lower' | 'upper' | 'target', string>> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const [lower, upper, target] = ['lower', 'upper', 'target'].map((n) => join(dir, n)) as [string, string, string];
  for (const d of [lower, upper, target]) await mkdir(d);
  return { lower, upper, target };
}

rootTest('snapshots are merged with whiteouts and opaque directories applied, files hard-linked', async (t) => {
  const { lower, upper, target } = await mergeDirs(t);
  await mkdir(join(lower, 'opt'));
  await writeFile(join(lower, 'opt/old'), 'old');
  await writeFile(join(lower, 'gone'), 'x');
  await writeFile(join(lower, 'keep'), 'k');
  await mkdir(join(upper, 'opt'));
  setXattr(join(upper, 'opt'), 'trusted.overlay.opaque', Buffer.from('y'));
  await writeFile(join(upper, 'opt/new'), 'new');
  mknod(join(upper, 'gone'), 0o020000, 0, 0); // overlay whiteout
  mergeSnapshot(lower, target);
  mergeSnapshot(upper, target);
  t.false(existsSync(join(target, 'gone')));
  t.false(existsSync(join(target, 'opt/old')));
  t.is(readFileSync(join(target, 'opt/new'), 'utf8'), 'new');
  t.is(statSync(join(target, 'keep')).ino, statSync(join(lower, 'keep')).ino, 'hard link, no copy');
  t.false(lstatSync(join(target, 'opt')).ino === lstatSync(join(upper, 'opt')).ino, "directories are the tree's own");
});

rootTest(
  'merged into an empty tree or a directory new to it, whiteouts are dropped and every other entry is hard-linked',
  async (t) => {
    const { lower, upper, target } = await mergeDirs(t);
    await mkdir(join(lower, 'etc'));
    await writeFile(join(lower, 'etc/motd'), 'base');
    mknod(join(lower, 'stray'), 0o020000, 0, 0); // a whiteout in the first layer hides nothing
    await mkdir(join(upper, 'srv/app'), { recursive: true });
    await writeFile(join(upper, 'srv/app/run'), 'app');
    mknod(join(upper, 'srv/app/gone'), 0o020000, 0, 0); // a whiteout in a directory new to the tree
    mknod(join(upper, 'srv/app/null'), 0o020000 | 0o666, 1, 3); // a device that is not a whiteout
    mergeSnapshot(lower, target, undefined, true);
    mergeSnapshot(upper, target);
    t.is(readFileSync(join(target, 'etc/motd'), 'utf8'), 'base');
    t.false(existsSync(join(target, 'stray')), 'whiteouts are never linked into the tree');
    t.false(existsSync(join(target, 'srv/app/gone')));
    t.is(readFileSync(join(target, 'srv/app/run'), 'utf8'), 'app');
    const dev = lstatSync(join(target, 'srv/app/null'));
    t.true(dev.isCharacterDevice());
    t.is(dev.ino, lstatSync(join(upper, 'srv/app/null')).ino, 'the device is hard-linked like any file');
    // `empty` promises an empty tree: given for one that is not, the merge fails rather than mix the trees
    t.throws(() => mergeSnapshot(lower, target, undefined, true), { code: 'EEXIST' });
  },
);

test('flattening for the export staging tree gives the same tree from the snapshots as from extraction', async (t) => {
  const storeRoot = await makeTempDir();
  t.teardown(() => removeDir(storeRoot));
  const store = await Store.open(storeRoot);
  const base = await storeLayer(store, { 'etc/hostname': 'base', 'usr/bin/tool': 'v1', 'var/lib/x/': '' });
  const app = await storeLayer(store, { 'usr/bin/tool': 'v2', 'srv/app/run': 'app' });
  const a = join(storeRoot, 'a');
  const b = join(storeRoot, 'b');
  const howA = await flatten({ store, layers: [base, app], dir: a, method: 'apply' });
  t.is(howA, 'apply');
  if (process.getuid?.() === 0) t.is(await flatten({ store, layers: [base, app], dir: b }), 'snapshots');
  else await flatten({ store, layers: [base, app], dir: b, method: 'apply' });
  execFileSync('diff', ['-r', '--no-dereference', a, b]);
  t.is(readFileSync(join(b, 'usr/bin/tool'), 'utf8'), 'v2');
});
