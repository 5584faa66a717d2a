// Images are unpacked when they enter the store (issue 15: docker, buildah and BuildKit unpack at pull time), so the
// first build or run on them does not wait for the extraction: import and load leave the snapshots of every layer.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIds } from '../../layers/model/digest.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';
import { snapshotDir } from '../../unionfs/snapshot.js';

interface Inspected {
  config: { rootfs: { diff_ids: string[] } };
}

rootTest('import and load leave the snapshots a build or run needs, so the first RUN does not extract', async (t) => {
  const tree = await busyboxTree(t);
  const a = await newStoreRoot(t);
  const b = await newStoreRoot(t);
  const i = await tsbuild(['--root', a, 'import', tree, 'bb:1']);
  t.is(i.code, 0, i.stderr);
  const info = JSON.parse((await tsbuild(['--root', a, 'inspect', 'bb:1'])).stdout) as Inspected;
  const chains = chainIds(info.config.rootfs.diff_ids as `sha256:${string}`[]);
  for (const c of chains) t.true(existsSync(snapshotDir(a, c)), `import: snapshot of chain ${c}`);

  const dir = await makeTempDir('tsbuild-unpack-');
  t.teardown(() => removeDir(dir));
  const archive = join(dir, 'bb.tar');
  t.is((await tsbuild(['--root', a, 'save', 'bb:1', '-o', archive])).code, 0);
  const l = await tsbuild(['--root', b, 'load', '-i', archive]);
  t.is(l.code, 0, l.stderr);
  for (const c of chains) t.true(existsSync(snapshotDir(b, c)), `load: snapshot of chain ${c}`);
  // and the snapshot is what runs use: a run works at once
  const r = await tsbuild(['--root', b, 'run', '--rm', 'bb:1', 'cat', '/etc/passwd']);
  t.is(r.code, 0, r.stderr);
});

rootTest(
  'a store named by a relative --root builds on overlay: each step leaves its snapshot, no vfs fallback',
  async (t) => {
    // A relative root once made the overlay probe refuse ("overlay paths must be absolute") and every build fell back
    // to the vfs driver, which copies the layers for each step, silently.
    const tree = await busyboxTree(t);
    const dir = await makeTempDir('tsbuild-relroot-');
    t.teardown(() => removeDir(dir));
    t.is((await tsbuild(['--root', 'store', 'import', tree, 'bb:1'], { cwd: dir })).code, 0);
    await writeFile(join(dir, 'Dockerfile'), 'FROM bb:1\nRUN echo one > /one\nRUN echo two > /two\n');
    const b = await tsbuild(['--root', 'store', 'build', '--progress', 'plain', '-t', 'two:1', '.'], { cwd: dir });
    t.is(b.code, 0, b.stderr);
    t.notRegex(b.stderr, /vfs|overlay mount refused/);
    const info = JSON.parse((await tsbuild(['--root', join(dir, 'store'), 'inspect', 'two:1'])).stdout) as Inspected;
    const chains = chainIds(info.config.rootfs.diff_ids as `sha256:${string}`[]);
    for (const c of chains) t.true(existsSync(snapshotDir(join(dir, 'store'), c)), `snapshot of chain ${c}`);
  },
);

rootTest(
  'import without a name keeps the image untagged, as docker import does: listed, found by its digest, unpacked, no warning',
  async (t) => {
    const tree = await busyboxTree(t);
    const root = await newStoreRoot(t);
    const i = await tsbuild(['--root', root, 'import', tree]);
    t.is(i.code, 0, i.stderr);
    t.is(i.stderr, '');
    const digest = i.stdout.trim();
    t.regex(digest, /^sha256:[a-f0-9]{64}$/);
    const images = await tsbuild(['--root', root, 'images', '--format', 'json']);
    t.true(images.stdout.includes(digest), images.stdout);
    const info = JSON.parse((await tsbuild(['--root', root, 'inspect', digest])).stdout) as Inspected;
    for (const c of chainIds(info.config.rootfs.diff_ids as `sha256:${string}`[]))
      t.true(existsSync(snapshotDir(root, c)), `snapshot of chain ${c}`);
    const r = await tsbuild(['--root', root, 'run', '--rm', digest, 'cat', '/etc/passwd']);
    t.is(r.code, 0, r.stderr);
    // prune keeps it; prune --all removes it, as docker's image prune -a removes an unused untagged image
    t.is((await tsbuild(['--root', root, 'prune'])).code, 0);
    t.is((await tsbuild(['--root', root, 'inspect', digest])).code, 0);
    t.is((await tsbuild(['--root', root, 'prune', '--all'])).code, 0);
    t.not((await tsbuild(['--root', root, 'inspect', digest])).code, 0);
  },
);
