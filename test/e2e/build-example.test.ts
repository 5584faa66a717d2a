// The bundled example (fixtures/example): `tsbuild -f Dockerfile -t app:0.1 .` on a bootstrapped Debian base compiles a C
// program with gcc in a builder stage and copies it into a slim stage; the image runs and prints its marker line.
// Slow (apt-get install gcc from the Debian archive): skipped with TSBUILD_TEST_SLOW=0.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { runContainer } from '../../runtime/run.js';
import { processSpec } from '../../runtime/spec.js';
import { isRoot, makeTempDir, removeDir, repoRoot, tsbuild } from '../helpers/index.js';
import { copyImage, debianStore, newStoreRoot } from '../helpers/images.js';

const slow = isRoot && process.env.TSBUILD_TEST_SLOW !== '0';
const run = slow ? test.serial : (test.serial.skip as typeof test.serial);

run('the multi-stage example builds on Debian and its image prints the marker line', async (t) => {
  t.timeout(20 * 60_000);
  const root = await newStoreRoot(t);
  await copyImage(await debianStore(), root, 'debian:bookworm');
  const example = join(repoRoot, 'fixtures', 'example');
  const r = await tsbuild(['-f', 'Dockerfile', '-t', 'app:0.1', '.'], { cwd: example, env: { TSBUILD_ROOT: root } });
  t.is(r.code, 0, r.stderr.slice(-4000));
  t.regex(r.stdout, /^sha256:[a-f0-9]{64}\n$/);

  const store = await Store.open(root);
  const image = await getImage(store, 'app:0.1');
  t.deepEqual(await verifyImage(store, image), [], 'the image verifies');
  const base = await getImage(store, 'debian:bookworm');
  t.is(image.manifest.layers.length, base.manifest.layers.length + 1, 'the slim stage adds one layer: the program');
  t.deepEqual(image.config.config?.Cmd, ['/usr/local/bin/hello']);

  const dir = await makeTempDir('tsbuild-example-');
  t.teardown(() => removeDir(dir));
  const rootfs = join(dir, 'rootfs');
  await flatten({ store, layers: imageLayers(image), dir: rootfs, method: 'apply' });
  t.true(existsSync(join(rootfs, 'usr/local/bin/hello')));
  t.false(existsSync(join(rootfs, 'usr/bin/gcc')), 'the compiler stays in the builder stage');
  const out = new PassThrough();
  let stdout = '';
  out.on('data', (b: Buffer) => (stdout += b.toString()));
  const result = await runContainer(processSpec({ config: image.config.config ?? {}, rootfs, hostname: 'example' }), {
    stdout: out,
    stderr: 'ignore',
  });
  t.is(result.exitCode, 0);
  t.is(stdout, 'hello from tsbuild example\n');

  // a second build is all cache
  const again = await tsbuild(['-f', 'Dockerfile', '-t', 'app:0.1', '--progress', 'plain', '.'], {
    cwd: example,
    env: { TSBUILD_ROOT: root },
  });
  t.is(again.code, 0, again.stderr);
  t.is((again.stderr.match(/CACHED/g) ?? []).length, 5);
});
