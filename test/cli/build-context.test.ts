// `tsbuild build --build-context NAME=VALUE` through the built CLI (bin/tsbuild.js): the values reach build() (a
// local directory and an image of the store, one build), and malformed values fail with one line and exit 1.
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getImage } from '../../layers/store/image.js';
import { isRoot, makeTempDir, removeDir, tsbuild } from '../helpers/index.js';
import { busyboxStore } from '../builder/build-harness.js';
import { readImageFile } from '../builder/buildkit/harness.js';

const rootTest = isRoot ? test.serial : test.serial.skip;

rootTest('--build-context gives a local directory and a store image by name to one build', async (t) => {
  const store = await busyboxStore(t);
  const dir = await makeTempDir('tsbuild-cli-ctx-');
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'app'));
  await mkdir(join(dir, 'extra'));
  await writeFile(
    join(dir, 'app', 'Dockerfile'),
    'FROM base\nCOPY --from=extra /hello /hello\nRUN cat /hello > /copy\n',
  );
  await writeFile(join(dir, 'extra', 'hello'), 'hi from extra\n');
  const r = await tsbuild(
    [
      '--root',
      store.root,
      'build',
      '--progress',
      'plain',
      '--build-context',
      'extra=../extra',
      '--build-context',
      'base=docker-image://busybox:test',
      '-t',
      'ctx-cli:latest',
      '.',
    ],
    { cwd: join(dir, 'app') },
  );
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), (await getImage(store, 'ctx-cli:latest')).descriptor.digest);
  t.is(await readImageFile(store, 'ctx-cli:latest', 'copy'), 'hi from extra\n');
  const base = await getImage(store, 'busybox:test');
  const image = await getImage(store, 'ctx-cli:latest');
  t.deepEqual(
    image.manifest.layers.slice(0, base.manifest.layers.length),
    base.manifest.layers,
    'FROM base is busybox',
  );
});

const refused = test.macro({
  async exec(t, value: string, message: string) {
    const dir = await makeTempDir('tsbuild-cli-ctx-');
    t.teardown(() => removeDir(dir));
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
    const r = await tsbuild(['--root', join(dir, 'store'), 'build', '--build-context', value, '.'], { cwd: dir });
    t.is(r.code, 1, r.stderr);
    t.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('error: ')),
      [`error: ${message}`],
      'one error line',
    );
  },
  title: (_p, value: string, message: string) => `tsbuild build --build-context ${value} fails: ${message}`,
});

test(refused, 'foo', 'invalid context value: foo, expected key=value');
test(
  refused,
  'Foo=.',
  'invalid context name Foo: invalid reference format: repository name (library/Foo) must be lowercase',
);
test(
  refused,
  'foo=https://example.com/repo.git',
  '--build-context foo=https://example.com/repo.git: remote contexts (git repositories, HTTP(S) URLs) are not supported by tsbuild',
);
test(refused, 'foo=./missing', 'failed to get build context foo: stat ./missing: no such file or directory');
