// RUN steps and what surrounds them: a failing RUN (exit status, Dockerfile line, nothing named, a clean store),
// build secrets (at /run/secrets/ID during the step, in no layer and no history), stages running in parallel,
// ADD of a URL, base images missing from the store.
import test from 'ava';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { build } from '../../builder/build.js';
import { RunFailedError } from '../../builder/steps/run.js';
import type { BuildEvent } from '../../builder/events.js';
import { getImage } from '../../layers/store/image.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { volatileKnown } from '../../unionfs/overlay.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { busyboxStore, treeOf, verifiedBuild } from './build-harness.js';

async function context(t: { teardown(fn: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-run-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(path));
}

rootTest(
  'a failing RUN stops the build with its exit status and output, names the line, and leaves the store clean',
  async (t) => {
    const store = await busyboxStore(t);
    const indexBefore = await readFile(join(store.root, 'index.json'), 'utf8');
    const ctx = await context(t, {
      Dockerfile:
        'FROM busybox:test\nRUN echo fine > /fine\nRUN echo "about to fail" && echo oops >&2 && exit 3\nRUN echo never > /never\n',
    });
    const logs: string[] = [];
    const errors: string[] = [];
    const err = await t.throwsAsync(
      build({
        store,
        context: ctx,
        tags: ['broken:1'],
        onEvent: (e: BuildEvent) => {
          if (e.type === 'log') logs.push(e.data);
          if (e.type === 'error') errors.push(e.message);
        },
      }),
      { instanceOf: RunFailedError },
    );
    const failed = err as RunFailedError;
    t.is(failed.exitCode, 3);
    t.is(failed.line, 3);
    t.regex(
      failed.message,
      /^Dockerfile:3: RUN failed: process "\/bin\/sh -c echo \\"about to fail\\" && echo oops >&2 && exit 3" did not complete successfully: exit code: 3$/,
    );
    t.regex(failed.output, /about to fail\noops\n/);
    t.true(logs.join('').includes('about to fail'));
    t.is(errors.length, 1);
    // nothing named, nothing half-written
    t.is(await readFile(join(store.root, 'index.json'), 'utf8'), indexBefore);
    t.deepEqual(
      (await readdir(join(store.root, 'blobs', 'sha256'))).filter((n) => n.startsWith('.tmp-')),
      [],
    );
    t.deepEqual(await readdir(join(store.root, 'containers')).catch(() => []), []);
    t.deepEqual(await readdir(join(store.root, 'tmp')).catch(() => []), []);
    t.deepEqual(await readdir(join(store.root, 'ingest')).catch(() => []), [], 'the write lease is released');
    t.deepEqual(mountsUnder(store.root), []);
  },
);

rootTest('a secret is at /run/secrets/ID during RUN and in no layer, history entry or config', async (t) => {
  const store = await busyboxStore(t);
  const value = `s3cr3t-${Date.now()}`;
  const sum = createHash('sha256').update(value).digest('hex');
  const ctx = await context(t, {
    Dockerfile: [
      'FROM busybox:test',
      'RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /file-sum && ls -l /run/secrets/tok > /perm',
      'RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok printf %s "$TOKEN" | sha256sum | cut -c1-64 > /env-sum && test -f /etc/tok',
      'RUN --mount=type=secret,id=absent ls /run/secrets > /listing || true',
      '',
    ].join('\n'),
  });
  const r = await verifiedBuild(t, { store, context: ctx, tags: ['sec:1'], secrets: { tok: Buffer.from(value) } });
  const image = await getImage(store, 'sec:1');
  const root = await makeTempDir('tsbuild-secret-rootfs-');
  t.teardown(() => removeDir(root));
  await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
  t.is(readFileSync(join(root, 'r', 'file-sum'), 'utf8'), `${sum}\n`);
  t.is(readFileSync(join(root, 'r', 'env-sum'), 'utf8'), `${sum}\n`);
  t.regex(readFileSync(join(root, 'r', 'perm'), 'utf8'), /^-r-------- /);
  t.is(lstatSync(join(root, 'r', 'run', 'secrets'), { throwIfNoEntry: false }), undefined);
  t.is(lstatSync(join(root, 'r', 'etc', 'tok'), { throwIfNoEntry: false }), undefined);
  // no blob of the store (layers decompressed) and no config holds the value
  for (const l of image.manifest.layers) {
    const blob = await readFile(store.blobPath(l.digest));
    const tar = l.mediaType.endsWith('+gzip') ? gunzipSync(blob) : blob; // a build's own layers are kept uncompressed
    t.false(tar.includes(value), `layer ${l.digest} holds the secret`);
  }
  t.false(JSON.stringify(r.config).includes(value));
  t.false(JSON.stringify(r.config).includes('s3cr3t'));
});

rootTest('a required secret that was not given fails the step', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile: 'FROM busybox:test\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n',
  });
  const err = await t.throwsAsync(build({ store, context: ctx }));
  t.regex(err!.message, /^Dockerfile:2: RUN: secret missing: not found/);
});

rootTest('independent stages run at the same time', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile:
      'FROM busybox:test AS a\nRUN sleep 1 && echo a > /a\n\nFROM busybox:test AS b\nRUN sleep 1 && echo b > /b\n\nFROM busybox:test\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n',
  });
  const order: string[] = [];
  const names = new Map<number, string>();
  await verifiedBuild(t, {
    store,
    context: ctx,
    onEvent: (e) => {
      if (e.type === 'step') names.set(e.id, e.name);
      if ((e.type === 'step' || e.type === 'done') && /RUN sleep/.test(names.get(e.id) ?? ''))
        order.push(`${e.type} ${names.get(e.id)!.slice(1, 2)}`);
    },
  });
  t.deepEqual(
    order.slice(0, 2).map((s) => s.split(' ')[0]),
    ['step', 'step'],
    `both RUNs start before either ends: ${order.join(', ')}`,
  );
});

rootTest('ADD of a URL downloads with mode 0600, checks --checksum, and is not extracted', async (t) => {
  const body = 'downloaded content\n';
  const server: Server = createServer((req, res) => {
    if (req.url === '/files/data.txt') {
      res.writeHead(200, { 'Last-Modified': 'Wed, 21 Oct 2015 07:28:00 GMT', 'Content-Type': 'text/plain' });
      res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/files/data.txt`;
  const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile: `FROM busybox:test\nARG URL\nADD --checksum=${sum} $URL /dl/\nADD $URL /renamed.txt\n`,
  });
  await verifiedBuild(t, { store, context: ctx, tags: ['url:1'], buildArgs: { URL: url } });
  const root = await makeTempDir('tsbuild-url-rootfs-');
  t.teardown(() => removeDir(root));
  await flatten({ store, layers: imageLayers(await getImage(store, 'url:1')), dir: join(root, 'r'), method: 'apply' });
  const st = lstatSync(join(root, 'r', 'dl', 'data.txt'));
  t.is(st.mode & 0o7777, 0o600);
  t.is(st.mtimeMs, Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'));
  t.is(readFileSync(join(root, 'r', 'renamed.txt'), 'utf8'), body);
  // a wrong checksum fails
  const bad = await context(t, {
    Dockerfile: `FROM busybox:test\nADD --checksum=sha256:${'0'.repeat(64)} ${url} /dl/\n`,
  });
  const err = await t.throwsAsync(build({ store, context: bad }));
  t.regex(err!.message, /^Dockerfile:2: ADD: .*checksum mismatch/);
});

test('FROM an image that the store lacks (and cannot pull) fails with a clear message', async (t) => {
  const dir = await makeTempDir('tsbuild-nofrom-');
  t.teardown(() => removeDir(dir));
  const { Store } = await import('../../layers/store/store.js');
  const store = await Store.open(join(dir, 'store'));
  await writeFile(join(dir, 'Dockerfile'), 'FROM no-such-image:1\nRUN true\n');
  const err = await t.throwsAsync(
    build({
      store,
      context: dir,
      pullImage: async () => {
        throw new Error('registry unreachable');
      },
    }),
  );
  t.regex(err!.message, /^Dockerfile:1: FROM: image no-such-image:1 not found in the store/);
  t.regex(err!.message, /registry unreachable/);
});

rootTest('the userspace fallback (vfs, no mounts) builds the same rootfs as the overlay driver', async (t) => {
  const files = {
    Dockerfile:
      'FROM busybox:test\nWORKDIR /w\nCOPY a.txt .\nRUN rm -r /home/user && echo x > /w/x && mkdir -p /etc/new && ln -s x /w/lnk\nRUN true\nUSER user\nRUN touch /tmp/mine\n',
    'a.txt': 'a\n',
  };
  const trees: Array<Record<string, string>> = [];
  const layers: number[] = [];
  for (const driver of ['overlay', 'vfs'] as const) {
    const store = await busyboxStore(t);
    const ctx = await context(t, files);
    await verifiedBuild(t, { store, context: ctx, tags: ['d:1'], storageDriver: driver });
    const image = await getImage(store, 'd:1');
    layers.push(image.manifest.layers.length);
    const root = await makeTempDir('tsbuild-driver-');
    t.teardown(() => removeDir(root));
    await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
    trees.push(treeOf(join(root, 'r')));
  }
  t.deepEqual(trees[1], trees[0]);
  t.deepEqual(layers[1], layers[0]);
  t.is(trees[0]!['etc/hosts'], undefined, 'mount points never reach a layer');
});

rootTest(
  'a RUN step works in a volatile overlay (no sync of the disk when it ends) and its files still reach the layer',
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await context(t, {
      Dockerfile: `FROM busybox:test\nRUN awk '$5 == "/"' /proc/self/mountinfo > /root-line && echo kept > /kept\n`,
    });
    await verifiedBuild(t, { store, context: ctx, tags: ['vol:1'] });
    const image = await getImage(store, 'vol:1');
    const root = await makeTempDir('tsbuild-volatile-');
    t.teardown(() => removeDir(root));
    await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
    const line = readFileSync(join(root, 'r', 'root-line'), 'utf8');
    t.regex(line, / - overlay overlay /);
    t.is(/volatile/.test(line), volatileKnown(), line); // shown as `volatile` or `fsync=volatile`
    t.is(readFileSync(join(root, 'r', 'kept'), 'utf8'), 'kept\n');
    t.deepEqual(mountsUnder(store.root), []);
  },
);

rootTest('--squash folds the new layers into one on top of the base', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile: 'FROM busybox:test\nRUN echo 1 > /one\nRUN echo 2 > /two && rm /etc/hostname\nCOPY a.txt /a.txt\n',
    'a.txt': 'a\n',
  });
  const r = await verifiedBuild(t, { store, context: ctx, tags: ['sq:1'], squash: true });
  const image = await getImage(store, 'sq:1');
  t.is(image.manifest.layers.length, 2);
  t.is((r.config.history ?? []).filter((h) => !h.empty_layer).length, 2);
  const root = await makeTempDir('tsbuild-squash-');
  t.teardown(() => removeDir(root));
  await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
  const tree = treeOf(join(root, 'r'));
  t.truthy(tree.one);
  t.truthy(tree.two);
  t.truthy(tree['a.txt']);
  t.is(tree['etc/hostname'], undefined);
});

rootTest('proxy build args reach RUN without an ARG and stay out of history unless declared', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile:
      'FROM busybox:test\nRUN echo "$HTTP_PROXY|$no_proxy" > /undeclared\nARG HTTP_PROXY\nRUN echo "$HTTP_PROXY" > /declared\n',
  });
  const r = await verifiedBuild(t, {
    store,
    context: ctx,
    tags: ['px:1'],
    buildArgs: { HTTP_PROXY: 'http://proxy.example:3128', no_proxy: 'localhost' },
  });
  const root = await makeTempDir('tsbuild-proxy-');
  t.teardown(() => removeDir(root));
  await flatten({ store, layers: imageLayers(await getImage(store, 'px:1')), dir: join(root, 'r'), method: 'apply' });
  t.is(readFileSync(join(root, 'r', 'undeclared'), 'utf8'), 'http://proxy.example:3128|localhost\n');
  t.is(readFileSync(join(root, 'r', 'declared'), 'utf8'), 'http://proxy.example:3128\n');
  const runs = (r.config.history ?? []).map((h) => h.created_by ?? '').filter((c) => c.startsWith('RUN'));
  t.is(runs[0], 'RUN /bin/sh -c echo "$HTTP_PROXY|$no_proxy" > /undeclared # buildkit');
  t.is(runs[1], 'RUN |1 HTTP_PROXY=http://proxy.example:3128 /bin/sh -c echo "$HTTP_PROXY" > /declared # buildkit');
  t.false((r.config.config?.Env ?? []).some((e) => e.includes('proxy')));
});

rootTest('ONBUILD triggers of a base image run right after FROM and are not passed on to the next image', async (t) => {
  const store = await busyboxStore(t);
  const parent = await context(t, {
    Dockerfile: 'FROM busybox:test\nONBUILD COPY payload.txt /payload.txt\nONBUILD RUN echo triggered >> /log\n',
  });
  const p = await verifiedBuild(t, { store, context: parent, tags: ['onb:1'] });
  t.deepEqual(p.config.config?.OnBuild, ['COPY payload.txt /payload.txt', 'RUN echo triggered >> /log']);
  const child = await context(t, { Dockerfile: 'FROM onb:1\nRUN echo child >> /log\n', 'payload.txt': 'p\n' });
  const c = await verifiedBuild(t, { store, context: child, tags: ['onb:2'] });
  t.is(c.config.config?.OnBuild, null);
  const grandchild = await context(t, { Dockerfile: 'FROM onb:2\nRUN echo grandchild >> /log\n' });
  await verifiedBuild(t, { store, context: grandchild, tags: ['onb:3'] });
  const root = await makeTempDir('tsbuild-onbuild-');
  t.teardown(() => removeDir(root));
  await flatten({ store, layers: imageLayers(await getImage(store, 'onb:3')), dir: join(root, 'r'), method: 'apply' });
  t.is(readFileSync(join(root, 'r', 'log'), 'utf8'), 'triggered\nchild\ngrandchild\n');
  t.is(readFileSync(join(root, 'r', 'payload.txt'), 'utf8'), 'p\n');
  t.true((c.config.history ?? []).some((h) => h.created_by === 'COPY payload.txt /payload.txt # buildkit'));
});

rootTest('a failing stage stops the stages running beside it, and its own error is the one reported', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile:
      'FROM busybox:test AS slow\nRUN sleep 60\n\nFROM busybox:test AS bad\nRUN sleep 1 && exit 5\n\nFROM busybox:test\nCOPY --from=slow /etc/hostname /a\nCOPY --from=bad /etc/hostname /b\n',
  });
  const errors: string[] = [];
  const started = Date.now();
  const err = await t.throwsAsync(
    build({ store, context: ctx, onEvent: (e) => e.type === 'error' && errors.push(e.message) }),
    { instanceOf: RunFailedError },
  );
  t.true(Date.now() - started < 30_000, 'the sleeping stage was stopped');
  t.is((err as RunFailedError).exitCode, 5);
  t.true(errors.includes('CANCELED'));
  t.deepEqual(mountsUnder(store.root), []);
});

rootTest('FROM takes a name pinned by digest, found in the store', async (t) => {
  const store = await busyboxStore(t);
  const base = await getImage(store, 'busybox:test');
  const ctx = await context(t, { Dockerfile: 'ARG BASE\nFROM $BASE\nRUN echo pinned > /p\n' });
  const r = await verifiedBuild(t, {
    store,
    context: ctx,
    buildArgs: { BASE: `busybox@${base.descriptor.digest}` },
    pullImage: async () => {
      throw new Error('no pulling in this test');
    },
  });
  t.is(r.config.rootfs.diff_ids[0], base.config.rootfs.diff_ids[0]);
});
