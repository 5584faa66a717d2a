// `tsbuild build` through the compiled CLI: `tsbuild -f Dockerfile -t app:0.1 .` exactly, results on stdout and
// progress on stderr, the cache across processes, --iidfile/--metadata-file, a failing RUN, `-` (stdin), --secret.
import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';
import { busyboxStore, verifyStored } from '../builder/build-harness.js';
import { Store } from '../../layers/store/store.js';

async function ctxDir(t: { teardown(fn: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-cli-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [n, c] of Object.entries(files)) await writeFile(join(dir, n), c);
  return dir;
}

const DF =
  'FROM busybox:test\nARG GREETING=hello\nCOPY msg.txt /msg.txt\nRUN echo "$GREETING $(cat /msg.txt)" > /out.txt\nCMD ["cat", "/out.txt"]\n';

rootTest(
  'tsbuild -f Dockerfile -t app:0.1 . prints the digest on stdout and progress on stderr; a rebuild is CACHED',
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await ctxDir(t, { Dockerfile: DF, 'msg.txt': 'world\n' });
    const env = { TSBUILD_ROOT: store.root };
    const r = await tsbuild(['-f', 'Dockerfile', '-t', 'app:0.1', '.'], { cwd: ctx, env });
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^sha256:[a-f0-9]{64}\n$/);
    t.regex(r.stderr, /#\d+ \[2\/3\] COPY msg\.txt \/msg\.txt/);
    t.regex(r.stderr, /#\d+ DONE \d+\.\d+s/);
    const images = await tsbuild(['images', '--format', 'json'], { env });
    t.true(images.stdout.includes(r.stdout.trim()));
    const again = await tsbuild(['build', '--progress', 'plain', '-t', 'app:0.1', ctx], { env });
    t.is(again.code, 0, again.stderr);
    t.is((again.stderr.match(/CACHED/g) ?? []).length, 2);
    await verifyStored(t, store, 'app:0.1');
    const inspect = JSON.parse((await tsbuild(['inspect', 'app:0.1'], { env })).stdout) as {
      config: { config: { Cmd: string[] } };
    };
    t.deepEqual(inspect.config.config.Cmd, ['cat', '/out.txt']);
  },
);

rootTest('--iidfile and --metadata-file record the digests; --progress quiet prints nothing on stderr', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await ctxDir(t, { Dockerfile: DF, 'msg.txt': 'x\n' });
  const out = await makeTempDir('tsbuild-cli-out-');
  t.teardown(() => removeDir(out));
  const r = await tsbuild([
    '--root',
    store.root,
    'build',
    '--progress',
    'quiet',
    '--iidfile',
    join(out, 'iid'),
    '--metadata-file',
    join(out, 'meta.json'),
    '-t',
    'm:1',
    '-t',
    'm:2',
    ctx,
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  const digest = r.stdout.trim();
  t.is(await readFile(join(out, 'iid'), 'utf8'), digest);
  const meta = JSON.parse(await readFile(join(out, 'meta.json'), 'utf8')) as Record<string, unknown>;
  t.is(meta['containerimage.digest'], digest);
  t.regex(String(meta['containerimage.config.digest']), /^sha256:/);
  t.is(meta['image.name'], 'docker.io/library/m:1,docker.io/library/m:2');
  await verifyStored(t, store, 'm:1');
});

rootTest(
  "a failing RUN exits 1 (docker build's code) naming the step's status and the Dockerfile line, prints the output, and tags nothing",
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await ctxDir(t, { Dockerfile: 'FROM busybox:test\nRUN echo visible-output && exit 7\n' });
    const r = await tsbuild(['--root', store.root, '--progress', 'plain', '-t', 'bad:1', ctx]);
    t.is(r.code, 1);
    t.is(r.stdout, '');
    t.regex(r.stderr, /visible-output/);
    t.regex(r.stderr, /^error: Dockerfile:2: RUN failed: .*exit code: 7$/m);
    const images = await tsbuild(['--root', store.root, 'images', '--format', 'json']);
    // by name: a digest's hex may well contain the letters b, a, d
    const names = (JSON.parse(images.stdout) as Array<{ name: string }>).map((i) => i.name);
    t.false(
      names.some((n) => n.startsWith('bad')),
      names.join(' '),
    );
  },
);

rootTest('- reads the Dockerfile from stdin with no context; --build-arg K takes K from the environment', async (t) => {
  const store = await busyboxStore(t);
  const r = await tsbuild(
    ['--root', store.root, '--progress', 'plain', '--build-arg', 'GREETING', '-t', 'stdin:1', '-'],
    {
      input: 'FROM busybox:test\nARG GREETING\nRUN echo "$GREETING" > /g\n',
      env: { GREETING: 'from-env' },
    },
  );
  t.is(r.code, 0, r.stderr);
  await verifyStored(t, store, 'stdin:1');
  const dir = await makeTempDir('tsbuild-cli-unpack-');
  t.teardown(() => removeDir(dir));
  t.is((await tsbuild(['--root', store.root, 'unpack', 'stdin:1', join(dir, 'r')])).code, 0);
  t.is(await readFile(join(dir, 'r', 'g'), 'utf8'), 'from-env\n');
  // COPY needs a context
  const c = await tsbuild(['--root', store.root, '-'], { input: 'FROM busybox:test\nCOPY a /a\n' });
  t.is(c.code, 1);
  t.regex(c.stderr, /error: Dockerfile:2: COPY: .*no context/);
});

rootTest('--secret id=ID,src=FILE reaches RUN --mount=type=secret', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await ctxDir(t, {
    Dockerfile: 'FROM busybox:test\nRUN --mount=type=secret,id=api,required wc -c < /run/secrets/api > /len\n',
    'api.txt': '12345',
  });
  const r = await tsbuild(['--root', store.root, '--secret', `id=api,src=${join(ctx, 'api.txt')}`, '-t', 'sec:1', ctx]);
  t.is(r.code, 0, r.stderr);
  await verifyStored(t, store, 'sec:1');
  const dir = await makeTempDir('tsbuild-cli-unpack-');
  t.teardown(() => removeDir(dir));
  await tsbuild(['--root', store.root, 'unpack', 'sec:1', join(dir, 'r')]);
  t.is((await readFile(join(dir, 'r', 'len'), 'utf8')).trim(), '5');
});

test('flags are checked before anything is built', async (t) => {
  const dir = await makeTempDir('tsbuild-cli-flags-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
  const net = await tsbuild(['--root', join(dir, 's'), '--network', 'bridge', dir]);
  t.is(net.code, 1);
  t.regex(net.stderr, /--network must be default, none or host/);
  const plat = await tsbuild(['--root', join(dir, 's'), '--platform', 'linux/arm64', dir]);
  t.is(plat.code, 1);
  t.regex(plat.stderr, /only linux\/amd64/);
  const nocontext = await tsbuild(['--root', join(dir, 's'), 'build']);
  t.is(nocontext.code, 1);
  t.regex(nocontext.stderr, /build needs a context/);
});

test('FROM scratch with metadata only builds without root', async (t) => {
  const dir = await makeTempDir('tsbuild-cli-scratch-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nENV A=1\nCMD ["/app"]\n');
  const r = await tsbuild(['--root', join(dir, 's'), '--progress', 'quiet', '-t', 'meta:1', dir]);
  t.is(r.code, 0, r.stderr);
  await verifyStored(t, await Store.open(join(dir, 's')), 'meta:1');
  const inspect = JSON.parse((await tsbuild(['--root', join(dir, 's'), 'inspect', 'meta:1'])).stdout) as {
    config: { config: { Env: string[]; WorkingDir: string } };
  };
  t.deepEqual(inspect.config.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1']);
  t.is(inspect.config.config.WorkingDir, '/');
});
