// Interop with skopeo (containers/image) through a real registry: what tsbuild pushes, skopeo copies into an OCI
// layout unchanged; what skopeo pushes from a tsbuild store (as OCI, and converted to Docker schema 2), tsbuild
// pulls and unpacks.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Index, Manifest } from '../../layers/model/types.js';
import { makeTempDir, removeDir } from '../helpers/index.js';
import { haveRegistry, haveSkopeo, startRegistry } from '../helpers/registry.js';
import { anotherStore, busyboxImage, imageProblems, manifestOf, newCtx } from './util.js';

const exec = promisify(execFile);
const itest = haveRegistry && haveSkopeo ? test : test.skip;

async function skopeo(args: string[]): Promise<void> {
  await exec('skopeo', ['--insecure-policy', ...args], { timeout: 120_000 });
}

itest('skopeo copies what tsbuild pushed into an OCI layout with the same digests', async (t) => {
  const reg = await startRegistry(t);
  const a = await newCtx(t);
  const name = `${reg.host}/interop/from-tsbuild:1`;
  const digest = await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  const out = await makeTempDir('tsbuild-skopeo-');
  t.teardown(() => removeDir(out));
  await skopeo(['copy', '--src-tls-verify=false', `docker://${name}`, `oci:${out}:x`]);
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as Index;
  t.is(index.manifests[0]?.digest as string, digest, 'skopeo kept the manifest byte for byte');
  const m = JSON.parse(await readFile(join(out, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as Manifest;
  t.deepEqual(m.layers, (await manifestOf(a.root, name)).layers);
});

const fromSkopeo = test.macro({
  async exec(t, format: 'oci' | 'v2s2') {
    const reg = await startRegistry(t);
    const a = await newCtx(t);
    await busyboxImage(t, a, `skopeo-src:${format}`);
    const dest = `${reg.host}/interop/from-skopeo:${format}`;
    await skopeo([
      'copy',
      '--dest-tls-verify=false',
      '--format',
      format,
      `oci:${a.root}:skopeo-src:${format}`,
      `docker://${dest}`,
    ]);
    const b = await anotherStore(t, a);
    const digest = (await b.ok(['pull', dest])).trim();
    t.deepEqual(await imageProblems(b.root, dest), []);
    const m = await manifestOf(b.root, dest);
    t.is(
      m.mediaType,
      format === 'oci'
        ? 'application/vnd.oci.image.manifest.v1+json'
        : 'application/vnd.docker.distribution.manifest.v2+json',
    );
    const inspected = JSON.parse(await b.ok(['inspect', dest])) as { digest: string };
    t.is(inspected.digest, digest);
    const dir = await makeTempDir('tsbuild-unpacked-');
    t.teardown(() => removeDir(dir));
    await b.ok(['unpack', dest, join(dir, 'rootfs')]);
    t.is(await readFile(join(dir, 'rootfs', 'etc', 'hostname'), 'utf8'), 'busybox\n');
    t.true((await readFile(join(dir, 'rootfs', 'bin', 'busybox'))).length > 100_000);
  },
  title: (_provided, format) =>
    `tsbuild pulls and unpacks what skopeo pushed from a tsbuild store (${format === 'oci' ? 'OCI' : 'Docker schema 2'})`,
});

itest(fromSkopeo, 'oci');
itest(fromSkopeo, 'v2s2');
