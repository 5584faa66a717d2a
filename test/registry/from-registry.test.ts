// A Dockerfile whose FROM names an image the store does not have pulls it from the registry: the bootstrapped
// Debian base is pushed to a registry on loopback, and a build in an empty store starts FROM it.
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRoot, makeTempDir, removeDir } from '../helpers/index.js';
import { debianStore } from '../helpers/images.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { manifestOf, newCtx } from './util.js';

const rtest = isRoot && haveRegistry ? test.serial : test.serial.skip;

rtest('FROM 127.0.0.1:PORT/debian:bookworm pulls the base from the registry, then builds and runs on it', async (t) => {
  const reg = await startRegistry(t);
  const base = `${reg.host}/debian:bookworm`;
  const src = await debianStore();
  const pusher = await newCtx(t);
  const push = await pusher.run(['--root', src, 'push', 'debian:bookworm', base]);
  t.is(push.code, 0, push.stderr);

  const ctx = await newCtx(t);
  const dir = await makeTempDir('tsbuild-from-registry-');
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'ctx'));
  await writeFile(
    join(dir, 'ctx', 'Dockerfile'),
    `FROM ${base}\nRUN . /etc/os-release && echo "built on $ID $VERSION_CODENAME" > /built\nCMD ["cat", "/built"]\n`,
  );
  const build = await ctx.run(['build', '-t', 'on-pulled:1', '--progress', 'plain', join(dir, 'ctx')]);
  t.is(build.code, 0, build.stderr);
  t.regex(
    build.stderr,
    new RegExp(`\\[internal\\] pull ${base.replace(/[.]/g, '\\.')}`),
    'the progress log says the base was pulled',
  );

  // The base is now in the new store, with the layer digests that were pushed.
  const pushed = await manifestOf(src, 'debian:bookworm');
  const pulled = await manifestOf(ctx.root, base);
  t.deepEqual(
    pulled.layers.map((l) => l.digest),
    pushed.layers.map((l) => l.digest),
  );
  const built = await manifestOf(ctx.root, 'on-pulled:1');
  t.deepEqual(
    built.layers.slice(0, pushed.layers.length).map((l) => l.digest),
    pushed.layers.map((l) => l.digest),
  );

  const run = await ctx.run(['run', '--rm', 'on-pulled:1']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'built on debian bookworm\n');

  // A second build finds the base in the store: no registry needed.
  await reg.stop();
  const again = await ctx.run(['build', '-t', 'on-pulled:2', '--progress', 'plain', join(dir, 'ctx')]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stderr, /CACHED/);
});

rtest('FROM a name that is neither in the store nor in the registry fails naming the image', async (t) => {
  const reg = await startRegistry(t);
  const ctx = await newCtx(t);
  const dir = await makeTempDir('tsbuild-from-registry-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), `FROM ${reg.host}/nothing/here:1\nRUN true\n`);
  const build = await ctx.run(['build', '-t', 'never:1', dir]);
  t.is(build.code, 1);
  t.regex(build.stderr, new RegExp(`${reg.host.replace(/[.]/g, '\\.')}/nothing/here:1`));
  t.regex(build.stderr, /Dockerfile:1/);
  t.is((await ctx.ok(['images', '-q'])).trim(), '');
});
