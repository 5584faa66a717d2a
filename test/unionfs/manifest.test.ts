import test from 'ava';
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, symlink, utimes, writeFile, rm, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { setXattr } from '../../sys/libc.js';
import { diffManifest } from '../../unionfs/diff-manifest.js';
import {
  parseManifest,
  RACY_NS,
  readManifest,
  recordManifest,
  serializeManifest,
  writeManifest,
  type ManifestEntry,
  type TreeManifest,
} from '../../unionfs/manifest.js';
import { sh, tempDir, typed } from './helpers.js';

const PREFIX = 'tsbuild-unionfs-manifest-';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('recordManifest records type, mode, owner, size, ns mtime, xattrs, link target and shared inodes', async (t) => {
  const root = await tempDir(t, PREFIX);
  await mkdir(join(root, 'd'));
  await writeFile(join(root, 'd', 'f'), 'hello');
  await chmod(join(root, 'd', 'f'), 0o4750);
  await utimes(join(root, 'd', 'f'), 1_600_000_000.123456, 1_600_000_000.123456);
  await link(join(root, 'd', 'f'), join(root, 'hard'));
  await symlink('d/f', join(root, 's'));
  setXattr(join(root, 'd'), 'user.note', Buffer.from('hi'));
  const m = await recordManifest(root);
  t.deepEqual(Object.keys(m.entries).sort(), ['d', 'd/f', 'hard', 's']);
  const f = m.entries['d/f'];
  t.like(f, { type: 'file', mode: 0o4750, uid: process.getuid?.(), size: 5, nlink: 2 });
  t.is(f?.mtime, (await lstat(join(root, 'd', 'f'), { bigint: true })).mtimeNs.toString());
  t.is(m.entries.hard?.ino, f?.ino);
  t.is(m.entries.hard?.dev, f?.dev);
  t.like(m.entries.s, { type: 'symlink', link: 'd/f' });
  t.like(m.entries.d, { type: 'dir', size: 0, xattrs: { 'user.note': Buffer.from('hi').toString('base64') } });
});

test('a manifest survives serialization and a round trip through a file', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, '__proto__'), 'x');
  await writeFile(join(root, 'a'), 'y');
  const m = await recordManifest(root);
  t.deepEqual(Object.keys(m.entries).sort(), ['__proto__', 'a']);
  t.deepEqual(parseManifest(serializeManifest(m)), JSON.parse(JSON.stringify(m)) as TreeManifest);
  const file = join(root, '..', `${PREFIX}${process.pid}.json`);
  t.teardown(() => rm(file, { force: true }));
  await writeManifest(file, m);
  const back = await readManifest(file);
  t.deepEqual(typed(t, root, await diffManifest({ root, before: back })), []);
  await writeFile(join(root, '__proto__'), 'changed!');
  t.deepEqual(typed(t, root, await diffManifest({ root, before: back })), [{ path: '__proto__', kind: 'modify' }]);
});

test('parseManifest refuses what is not a manifest', (t) => {
  t.throws(() => parseManifest('{'), { code: 'E_INVALID' });
  t.throws(() => parseManifest('{"version":2,"recordedAt":"1","entries":{}}'), { code: 'E_INVALID' });
  t.throws(() => parseManifest('null'), { code: 'E_INVALID' });
});

test('only files changed just before the walk get a content hash', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'old'), 'old');
  await sleep(Number(RACY_NS / 1_000_000n) + 20);
  // On a loaded machine the walk may start late; try a few times to catch 'fresh' inside the window.
  for (let attempt = 0; attempt < 10; attempt++) {
    await writeFile(join(root, 'fresh'), 'fresh');
    const m = await recordManifest(root);
    t.is(m.entries.old?.hash, undefined);
    const fresh = m.entries.fresh;
    const racy = BigInt(fresh?.ctime ?? 0) + RACY_NS >= BigInt(m.recordedAt);
    t.is(fresh?.hash !== undefined, racy, 'hashed exactly when changed within the window');
    if (racy) {
      t.is(fresh?.hash, createHash('sha256').update('fresh').digest('hex'));
      return;
    }
  }
  t.fail('the walk never started within the racy window of a file just written');
});

test('after recordManifest returns, any change gets a ctime later than every recorded one', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'f'), 'x');
  const m = await recordManifest(root);
  await chmod(join(root, 'f'), 0o600);
  await chmod(join(root, 'f'), 0o644);
  const now = await lstat(join(root, 'f'), { bigint: true });
  t.true(now.ctimeNs > BigInt(m.entries.f?.ctime ?? '0'));
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'f', kind: 'modify' }]);
});

test('a same-size rewrite with the mtime put back is caught by the ctime', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'f'), 'aaaa');
  await utimes(join(root, 'f'), 1_500_000_000, 1_500_000_000);
  const m = await recordManifest(root);
  await writeFile(join(root, 'f'), 'bbbb');
  await utimes(join(root, 'f'), 1_500_000_000, 1_500_000_000);
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'f', kind: 'modify' }]);
});

test('where the stat cannot tell (a coarse-timestamp filesystem), a recorded hash decides', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'same'), 'aaaa');
  await writeFile(join(root, 'other'), 'aaaa');
  const oldHash = createHash('sha256').update('aaaa').digest('hex');
  await writeFile(join(root, 'other'), 'bbbb');
  // Pretend the filesystem stamped nothing new: the manifest has today's stat but the content hashes of before.
  const m = await recordManifest(root);
  for (const p of ['same', 'other']) m.entries[p] = { ...(m.entries[p] as ManifestEntry), hash: oldHash };
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'other', kind: 'modify' }]);
});

test('an mtime-only change of the same size is a modify', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'f'), 'data');
  await utimes(join(root, 'f'), 1_500_000_000, 1_500_000_000);
  const m = await recordManifest(root);
  await utimes(join(root, 'f'), 1_500_000_000, 1_500_000_001);
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'f', kind: 'modify' }]);
});

test('removing one of two hard links deletes that path and leaves the other unchanged', async (t) => {
  const root = await tempDir(t, PREFIX);
  await writeFile(join(root, 'a'), 'x');
  await link(join(root, 'a'), join(root, 'b'));
  await mkdir(join(root, 'd'));
  const m = await recordManifest(root);
  await rm(join(root, 'b'));
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'b', kind: 'delete' }]);
});

test('a deleted tree is one delete, and nothing changed is no change', async (t) => {
  const root = await tempDir(t, PREFIX);
  await sh('mkdir -p a/b/c && touch a/b/c/f a/g && mkdir keep && touch keep/k', root);
  const m = await recordManifest(root);
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), []);
  await rm(join(root, 'a'), { recursive: true });
  t.deepEqual(typed(t, root, await diffManifest({ root, before: m })), [{ path: 'a', kind: 'delete' }]);
});

test('file names that are not UTF-8 are refused with the path', async (t) => {
  const root = await tempDir(t, PREFIX);
  const bad = Buffer.from(`${root}/bad-\xff`, 'latin1');
  await writeFile(bad, 'x');
  t.teardown(() => rm(bad, { force: true }));
  await t.throwsAsync(recordManifest(root), { message: /bad-.*not valid UTF-8/ });
});
