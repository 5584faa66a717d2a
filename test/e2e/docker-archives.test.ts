// Interop with docker (Debian's docker.io, started by the test): `tsbuild save` loads and runs in docker;
// `docker save` loads into tsbuild with the same layer diffIDs.
import test from 'ava';
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { makeTempDir, removeDir, rootTest, runCommand, tsbuild } from '../helpers/index.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { type Dockerd, startDockerd } from '../helpers/dockerd.js';

async function ok(args: string[]): Promise<string> {
  const r = await tsbuild(args);
  if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** problems is what verifyImage finds wrong with a stored image ([] for a sound one). */
async function problems(root: string, name: string): Promise<string[]> {
  const store = await Store.open(root);
  return verifyImage(store, await getImage(store, name));
}

let dockerd: Dockerd | undefined;
const withDocker = async (): Promise<Dockerd> => {
  dockerd ??= await startDockerd();
  return dockerd;
};
test.after.always(async () => {
  await dockerd?.stop();
});

rootTest('an archive from tsbuild save loads with docker load and docker run runs it', async (t) => {
  const d = await withDocker();
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  for (const compression of ['gzip', 'none']) {
    await ok([
      '--root',
      root,
      'import',
      tree,
      `tsb-bb:${compression}`,
      '--compression',
      compression,
      '-c',
      'CMD ["/bin/echo", "hello from tsbuild"]',
    ]);
    t.deepEqual(await problems(root, `tsb-bb:${compression}`), []);
    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    const archive = join(dir, 'img.tar');
    await ok(['--root', root, 'save', `tsb-bb:${compression}`, '-o', archive]);
    const loaded = await d.docker(['load', '-i', archive]);
    t.regex(loaded.stdout, new RegExp(`Loaded image: tsb-bb:${compression}`));
    const run = await d.docker(['run', '--rm', '--network', 'none', `tsb-bb:${compression}`]);
    t.is(run.stdout.trim(), 'hello from tsbuild');
    const sh = await d.docker([
      'run',
      '--rm',
      '--network',
      'none',
      `tsb-bb:${compression}`,
      'sh',
      '-c',
      'cat /etc/hostname; id -u user',
    ]);
    t.is(sh.stdout.split('\n')[1], '1000');
  }
});

rootTest('an archive from docker save loads into tsbuild with the same layer diffIDs', async (t) => {
  const d = await withDocker();
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  // give docker an image of its own making: import, then a second layer from a container commit
  await d.docker(['import', '-c', 'CMD ["/bin/sh"]', '-', 'dkr-bb:1'], { input: await tarOf(tree) });
  await d.docker([
    'run',
    '--name',
    'tsb-commit',
    '--network',
    'none',
    'dkr-bb:1',
    'sh',
    '-c',
    'echo layer2 > /etc/layer2; rm /etc/group',
  ]);
  await d.docker(['commit', 'tsb-commit', 'dkr-bb:2']);
  await d.docker(['rm', 'tsb-commit']);
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const archive = join(dir, 'docker.tar');
  await d.docker(['save', '-o', archive, 'dkr-bb:2']);
  const want = JSON.parse(
    (await d.docker(['inspect', '--format', '{{json .RootFS.Layers}}', 'dkr-bb:2'])).stdout,
  ) as string[];
  t.is(want.length, 2);
  const out = await ok(['--root', root, 'load', '-i', archive]);
  t.regex(out, /Loaded image: dkr-bb:2/);
  t.deepEqual(await problems(root, 'dkr-bb:2'), []);
  const info = JSON.parse(await ok(['--root', root, 'inspect', 'dkr-bb:2']));
  t.deepEqual(info.config.rootfs.diff_ids, want);
  const dockerId = (await d.docker(['inspect', '--format', '{{.Id}}', 'dkr-bb:2'])).stdout.trim();
  t.is(info.imageId, dockerId, "the config bytes are kept, so the image ID is docker's");
  const rootfs = join(dir, 'rootfs');
  await ok(['--root', root, 'unpack', 'dkr-bb:2', rootfs]);
  t.is(await readFile(join(rootfs, 'etc/layer2'), 'utf8'), 'layer2\n');
  await t.throwsAsync(access(join(rootfs, 'etc/group')), undefined, 'the whiteout of the second layer is applied');
});

async function tarOf(dir: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('tar', ['-C', dir, '-cf', '-', '.'], { encoding: 'buffer', maxBuffer: 256 << 20 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
  });
}

rootTest(
  'a docker save archive whose second image repeats a layer as a symlinked layer.tar loads, twice',
  async (t) => {
    const d = await withDocker();
    const root = await newStoreRoot(t);
    const tree = await busyboxTree(t);
    // the same layer under two image configs: docker save writes it once, and a symlink to it for the second image
    const layer = await tarOf(tree);
    for (const n of ['a', 'b'])
      await d.docker(['import', '-c', `CMD ["/bin/echo", "${n}"]`, '-', `dkr-two:${n}`], { input: layer });
    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    const archive = join(dir, 'two.tar');
    await d.docker(['save', '-o', archive, 'dkr-two:a', 'dkr-two:b']);
    const listing = await new Promise<string>((resolve, reject) =>
      execFile('tar', ['-tvf', archive], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    t.regex(listing, /layer\.tar -> \.\.\/[a-f0-9]{64}\/layer\.tar/, 'docker wrote the shared base layer as a symlink');
    for (const round of [1, 2]) {
      const out = await ok(['--root', root, 'load', '-i', archive]);
      t.is(out, 'Loaded image: dkr-two:a\nLoaded image: dkr-two:b\n', `round ${round}`);
    }
    for (const n of ['dkr-two:a', 'dkr-two:b']) {
      t.deepEqual(await problems(root, n), []);
      const r = await runCommand('skopeo', ['inspect', `oci:${root}:${n}`]);
      t.is(r.code, 0, r.stderr);
    }
  },
);
