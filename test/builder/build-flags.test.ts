// `tsbuild build` flags through the built CLI, on a busybox base: --label (over LABEL, BuildKit's order), -q,
// --output (local, tar, oci, docker; -o DIR and -o -), --add-host (RUN sees it in /etc/hosts, and it is part of the
// step's cache key), and a context archive on standard input (`build - < ctx.tar`, plain or gzip).
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { Store } from '../../layers/store/store.js';
import { makeTempDir, removeDir, repoRoot, rootTest, tsbuild } from '../helpers/index.js';
import { busyboxStore, verifyStored } from './build-harness.js';

async function dir(t: ExecutionContext, files: Record<string, string> = {}): Promise<string> {
  const d = await makeTempDir('tsbuild-build-flags-');
  t.teardown(() => removeDir(d));
  for (const [n, c] of Object.entries(files)) await writeFile(join(d, n), c);
  return d;
}

/** tarEntries reads a tar archive: entry name → content. */
async function tarEntries(data: Buffer): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const ex = tar.extract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      out.set(h.name.replace(/^\.\//, ''), Buffer.concat(chunks).toString());
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    Readable.from([data]).pipe(ex);
  });
  return out;
}

interface Inspected {
  config: { config: { Labels?: Record<string, string> } };
}

const DF = 'FROM busybox:test\nLABEL a=dockerfile b=kept\nCOPY msg.txt /msg.txt\nRUN cat /etc/hosts > /hosts.txt\n';

rootTest('--label sets labels on the image, over what LABEL set', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hi\n' });
  const env = { TSBUILD_ROOT: store.root };
  const r = await tsbuild(['build', '-q', '--label', 'a=cli', '--label', 'c=new=x', '--label', 'd', '-t', 'l:1', ctx], {
    env,
  });
  t.is(r.code, 0, r.stderr);
  const inspect = JSON.parse((await tsbuild(['inspect', 'l:1'], { env })).stdout) as Inspected;
  t.deepEqual(inspect.config.config.Labels, { a: 'cli', b: 'kept', c: 'new=x', d: '' });
  await verifyStored(t, store, 'l:1');
});

rootTest('-q prints only the image digest and no progress', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hi\n' });
  const r = await tsbuild(['--root', store.root, 'build', '--quiet', ctx]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^sha256:[a-f0-9]{64}\n$/);
  t.is(r.stderr, '');
});

rootTest(
  '--add-host puts NAME:IP in the /etc/hosts of RUN steps, and a different one runs the step again',
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hi\n' });
    const out = await dir(t);
    const env = { TSBUILD_ROOT: store.root };
    const base = ['build', '--progress', 'plain'];
    const r = await tsbuild(
      [...base, '--add-host', 'db:10.0.0.5', '--add-host', 'v6=[::1]', '-o', join(out, 'a'), ctx],
      {
        env,
      },
    );
    t.is(r.code, 0, r.stderr);
    const hosts = await readFile(join(out, 'a', 'hosts.txt'), 'utf8');
    t.regex(hosts, /^127\.0\.0\.1\tlocalhost buildkitsandbox\n/);
    t.true(hosts.endsWith('10.0.0.5\tdb\n::1\tv6\n'), hosts);
    const other = await tsbuild([...base, '--add-host', 'db:10.0.0.6', '-o', join(out, 'b'), ctx], { env });
    t.is(other.code, 0, other.stderr);
    t.regex(await readFile(join(out, 'b', 'hosts.txt'), 'utf8'), /10\.0\.0\.6\tdb\n$/);
    t.notRegex(other.stderr, /RUN cat \/etc\/hosts[^\n]*\n#\d+ CACHED/);
    const none = await tsbuild([...base, '-o', join(out, 'c'), ctx], { env });
    t.is(none.code, 0, none.stderr);
    t.notRegex(await readFile(join(out, 'c', 'hosts.txt'), 'utf8'), /\tdb\n/);
  },
);

rootTest(
  '-o DIR and --output type=local,dest=DIR write the root filesystem; -o - writes it as a tar on stdout',
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hello\n' });
    const out = await dir(t);
    const env = { TSBUILD_ROOT: store.root };
    const local = await tsbuild(['build', '-q', '--output', `type=local,dest=${join(out, 'l')}`, ctx], { env });
    t.is(local.code, 0, local.stderr);
    t.regex(local.stdout, /^sha256:[a-f0-9]{64}\n$/);
    t.is(await readFile(join(out, 'l', 'msg.txt'), 'utf8'), 'hello\n');
    t.truthy(await readFile(join(out, 'l', 'bin', 'busybox')));
    // into a directory with files: merged, as BuildKit's client writes it (the image's paths replace, others stay)
    await writeFile(join(out, 'l', 'mine.txt'), 'mine\n');
    await writeFile(join(out, 'l', 'msg.txt'), 'old\n');
    const again = await tsbuild(['build', '-q', '-o', join(out, 'l'), ctx], { env });
    t.is(again.code, 0, again.stderr);
    t.is(await readFile(join(out, 'l', 'msg.txt'), 'utf8'), 'hello\n');
    t.is(await readFile(join(out, 'l', 'mine.txt'), 'utf8'), 'mine\n');

    const stdout = execFileSync(
      process.execPath,
      [join(repoRoot, 'bin', 'tsbuild.js'), 'build', '-q', '-o', '-', ctx],
      {
        env: { ...process.env, ...env },
        maxBuffer: 64 << 20,
      },
    );
    const entries = await tarEntries(stdout);
    t.is(entries.get('msg.txt'), 'hello\n');
    t.true(entries.has('bin/busybox'));
  },
);

rootTest('--output type=tar,dest=FILE writes the root filesystem as a tar file', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hello\n' });
  const out = await dir(t);
  const r = await tsbuild(['--root', store.root, 'build', '-q', '-o', `type=tar,dest=${join(out, 'fs.tar')}`, ctx]);
  t.is(r.code, 0, r.stderr);
  const entries = await tarEntries(await readFile(join(out, 'fs.tar')));
  t.is(entries.get('msg.txt'), 'hello\n');
  t.regex(entries.get('hosts.txt') ?? '', /buildkitsandbox/);
});

for (const type of ['oci', 'docker'] as const) {
  rootTest(
    `--output type=${type},dest=FILE writes an archive (gzip layers) that tsbuild load reads back as the same image`,
    async (t) => {
      const store = await busyboxStore(t);
      const ctx = await dir(t, { Dockerfile: DF, 'msg.txt': 'hello\n' });
      const out = await dir(t);
      const file = join(out, `${type}.tar`);
      const r = await tsbuild([
        '--root',
        store.root,
        'build',
        '-q',
        '-t',
        'arch:1',
        '-o',
        `type=${type},dest=${file}`,
        ctx,
      ]);
      t.is(r.code, 0, r.stderr);
      const entries = await tarEntries(await readFile(file));
      t.true(entries.has('oci-layout'));
      t.true(entries.has('index.json'));
      t.deepEqual((JSON.parse(entries.get('manifest.json') ?? '[]') as Array<{ RepoTags: string[] }>)[0]?.RepoTags, [
        'arch:1',
      ]);
      const other = await Store.open(join(out, 'store'));
      const load = await tsbuild(['--root', other.root, 'load', '-i', file]);
      t.is(load.code, 0, load.stderr);
      // the same image: the same config (image ID); its manifest names the gzip copies of the stored layers
      const imageId = async (root: string): Promise<string> =>
        (JSON.parse((await tsbuild(['--root', root, 'inspect', 'arch:1'])).stdout) as { imageId: string }).imageId;
      t.is(await imageId(other.root), await imageId(store.root));
      const built = await tsbuild(['--root', store.root, 'inspect', r.stdout.trim()]);
      t.is(built.code, 0, built.stderr);
      await verifyStored(t, other, 'arch:1');
    },
  );
}

for (const compress of [false, true]) {
  rootTest(
    `build - reads a ${compress ? 'gzip-compressed ' : ''}context archive from stdin, the Dockerfile inside`,
    async (t) => {
      const store = await busyboxStore(t);
      const ctx = await dir(t, {
        Dockerfile: DF,
        'msg.txt': 'from the archive\n',
        'other.Dockerfile': 'FROM busybox:test\nCOPY msg.txt /other.txt\n',
      });
      const archive = execFileSync('tar', ['-C', ctx, compress ? '-cz' : '-c', '.']);
      const env = { TSBUILD_ROOT: store.root };
      const out = await dir(t);
      const r = await tsbuild(['build', '-q', '-o', join(out, 'a'), '-'], { env, input: archive });
      t.is(r.code, 0, r.stderr);
      t.is(await readFile(join(out, 'a', 'msg.txt'), 'utf8'), 'from the archive\n');
      const f = await tsbuild(['build', '-q', '-f', 'other.Dockerfile', '-o', join(out, 'b'), '-'], {
        env,
        input: archive,
      });
      t.is(f.code, 0, f.stderr);
      t.is(await readFile(join(out, 'b', 'other.txt'), 'utf8'), 'from the archive\n');
    },
  );
}
