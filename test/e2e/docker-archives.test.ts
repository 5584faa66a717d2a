// Interop with docker (Debian's docker.io, started by the test): `tsbuild save` loads and runs in docker;
// `docker save` loads into tsbuild with the same layer diffIDs. And archives from every peer (issue 12): a busybox
// image saved by tsbuild, copied or pushed through skopeo (docker-archive, oci-archive), podman (save as
// docker-archive, oci-archive, oci-dir, docker-dir) and buildah (push to docker-archive, oci-archive), loads back
// into tsbuild as a sound image with the same layer diffIDs and the same files.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { which } from '../../sys/exec.js';
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
      // in the order of docker's manifest.json, which docker does not keep stable
      t.deepEqual(
        out.trim().split('\n').sort(),
        ['Loaded image: dkr-two:a', 'Loaded image: dkr-two:b'],
        `round ${round}`,
      );
    }
    for (const n of ['dkr-two:a', 'dkr-two:b']) {
      t.deepEqual(await problems(root, n), []);
      const r = await runCommand('skopeo', ['inspect', `oci:${root}:${n}`]);
      t.is(r.code, 0, r.stderr);
    }
  },
);

// ---- archives written by skopeo, podman and buildah ----

const skopeo = which('skopeo');
const podman = which('podman');
const buildah = which('buildah');

interface Saved {
  root: string;
  archive: string;
  diffIds: string[];
  dir: string;
}

/** savedBusybox imports a busybox tree as `bb:1` and saves it with `tsbuild save`: what the peers start from. */
async function savedBusybox(t: ExecutionContext): Promise<Saved> {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const dir = await makeTempDir('tsbuild-peers-');
  t.teardown(() => removeDir(dir));
  await ok(['--root', root, 'import', tree, 'bb:1', '-c', 'CMD ["/bin/sh"]']);
  const archive = join(dir, 'bb.tar');
  await ok(['--root', root, 'save', 'bb:1', '-o', archive]);
  const info = JSON.parse(await ok(['--root', root, 'inspect', 'bb:1'])) as {
    config: { rootfs: { diff_ids: string[] } };
  };
  return { root, archive, diffIds: info.config.rootfs.diff_ids, dir };
}

/** host runs a peer tool, failing the test with its stderr. */
async function host(file: string, args: string[]): Promise<string> {
  const r = await runCommand(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** loadsBack loads a peer's archive into a fresh store and checks the image against the one tsbuild saved. */
async function loadsBack(t: ExecutionContext, saved: Saved, archive: string, what: string): Promise<void> {
  const root = await newStoreRoot(t);
  const out = await ok(['--root', root, 'load', '-i', archive]);
  const name = /^Loaded image: (\S+)$/m.exec(out)?.[1];
  t.truthy(name, `${what}: ${out}`);
  if (!name) return;
  t.deepEqual(await problems(root, name), [], what);
  const info = JSON.parse(await ok(['--root', root, 'inspect', name])) as {
    config: { rootfs: { diff_ids: string[] } };
  };
  t.deepEqual(info.config.rootfs.diff_ids, saved.diffIds, `${what}: the same layers`);
  const rootfs = join(saved.dir, `rootfs-${what.replace(/\W+/g, '-')}`);
  await ok(['--root', root, 'unpack', name, rootfs]);
  await t.notThrowsAsync(access(join(rootfs, 'bin', 'busybox')), `${what}: the files are there`);
}

(skopeo ? test : test.skip)(
  `archives skopeo writes (docker-archive with its top-level layer blob and symlinked layer.tar, oci-archive) load${skopeo ? '' : ' (skipped: skopeo is not installed)'}`,
  async (t) => {
    const saved = await savedBusybox(t);
    const src = `oci-archive:${saved.archive}:bb:1`;
    const docker = join(saved.dir, 'skopeo-docker.tar');
    await host('skopeo', ['--insecure-policy', 'copy', '-q', src, `docker-archive:${docker}:peer/bb:skopeo`]);
    const listing = await host('tar', ['-tvf', docker]);
    t.regex(listing, /layer\.tar -> \.\.\/[a-f0-9]{64}\.tar/, 'skopeo wrote layer.tar as a symlink to the blob');
    await loadsBack(t, saved, docker, 'skopeo docker-archive');
    const oci = join(saved.dir, 'skopeo-oci.tar');
    await host('skopeo', ['--insecure-policy', 'copy', '-q', src, `oci-archive:${oci}:peer/bb:skopeo`]);
    await loadsBack(t, saved, oci, 'skopeo oci-archive');
  },
);

(podman && skopeo ? rootTest : test.skip)(
  `archives podman saves (docker-archive, oci-archive, oci-dir, docker-dir) load${podman && skopeo ? '' : ' (skipped: podman or skopeo is not installed)'}`,
  async (t) => {
    const saved = await savedBusybox(t);
    const storage = join(saved.dir, 'podman');
    const p = (args: string[]): Promise<string> =>
      host('podman', [
        '--root',
        join(storage, 'root'),
        '--runroot',
        join(storage, 'run'),
        '--storage-driver',
        'vfs',
        '--cgroup-manager',
        'cgroupfs',
        '--events-backend',
        'none',
        ...args,
      ]);
    await p(['load', '-q', '-i', saved.archive]);
    for (const format of ['docker-archive', 'oci-archive']) {
      const out = join(saved.dir, `podman-${format}.tar`);
      await p(['save', '-q', '--format', format, '-o', out, 'bb:1']);
      await loadsBack(t, saved, out, `podman save --format ${format}`);
    }
    // the two directory formats: an OCI layout tarred as it is, and docker's dir turned into an archive by skopeo
    const ociDir = join(saved.dir, 'podman-oci-dir');
    await p(['save', '-q', '--format', 'oci-dir', '-o', ociDir, 'bb:1']);
    const ociDirTar = join(saved.dir, 'podman-oci-dir.tar');
    await host('tar', ['-C', ociDir, '-cf', ociDirTar, '.']);
    await loadsBack(t, saved, ociDirTar, 'podman save --format oci-dir');
    const dockerDir = join(saved.dir, 'podman-docker-dir');
    await p(['save', '-q', '--format', 'docker-dir', '-o', dockerDir, 'bb:1']);
    const dockerDirTar = join(saved.dir, 'podman-docker-dir.tar');
    await host('skopeo', [
      '--insecure-policy',
      'copy',
      '-q',
      `dir:${dockerDir}`,
      `docker-archive:${dockerDirTar}:peer/bb:dir`,
    ]);
    await loadsBack(t, saved, dockerDirTar, 'podman save --format docker-dir');
  },
);

(buildah ? rootTest : test.skip)(
  `archives buildah pushes (docker-archive, oci-archive) load${buildah ? '' : ' (skipped: buildah is not installed)'}`,
  async (t) => {
    const saved = await savedBusybox(t);
    const storage = join(saved.dir, 'buildah');
    const b = (args: string[]): Promise<string> =>
      host('buildah', [
        '--root',
        join(storage, 'root'),
        '--runroot',
        join(storage, 'run'),
        '--storage-driver',
        'vfs',
        ...args,
      ]);
    await b(['pull', '-q', `oci-archive:${saved.archive}`]);
    for (const transport of ['docker-archive', 'oci-archive']) {
      const out = join(saved.dir, `buildah-${transport}.tar`);
      await b(['push', '-q', 'bb:1', `${transport}:${out}:peer/bb:buildah`]);
      await loadsBack(t, saved, out, `buildah push ${transport}`);
    }
  },
);
