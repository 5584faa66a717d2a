import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeSnapshot, stageLayers } from '../../convert/staging.js';
import { commitLayer } from '../../layers/store/commit.js';
import { Store } from '../../layers/store/store.js';
import { tarFromDirectory } from '../../layers/tar/create.js';
import { mknod, setXattr } from '../../sys/libc.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';

async function layer(store: Store, files: Record<string, string>): Promise<{ descriptor: Awaited<ReturnType<typeof commitLayer>>['descriptor']; diffId: Awaited<ReturnType<typeof commitLayer>>['diffId'] }> {
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

rootTest('snapshots are merged with whiteouts and opaque directories applied, files hard-linked', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const lower = join(dir, 'lower');
  const upper = join(dir, 'upper');
  const target = join(dir, 'target');
  for (const d of [lower, upper, target]) await mkdir(d);
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
  t.false(lstatSync(join(target, 'opt')).ino === lstatSync(join(upper, 'opt')).ino, 'directories are the tree\'s own');
});

test('staging layers gives the same tree from the snapshots as from extraction', async (t) => {
  const storeRoot = await makeTempDir();
  t.teardown(() => removeDir(storeRoot));
  const store = await Store.open(storeRoot);
  const base = await layer(store, { 'etc/hostname': 'base', 'usr/bin/tool': 'v1', 'var/lib/x/': '' });
  const app = await layer(store, { 'usr/bin/tool': 'v2', 'srv/app/run': 'app' });
  const a = join(storeRoot, 'a');
  const b = join(storeRoot, 'b');
  const howA = await stageLayers({ store, layers: [base, app], dir: a, method: 'apply' });
  t.is(howA, 'apply');
  if (process.getuid?.() === 0) t.is(await stageLayers({ store, layers: [base, app], dir: b }), 'snapshots');
  else await stageLayers({ store, layers: [base, app], dir: b, method: 'apply' });
  execFileSync('diff', ['-r', '--no-dereference', a, b]);
  t.is(readFileSync(join(b, 'usr/bin/tool'), 'utf8'), 'v2');
});
