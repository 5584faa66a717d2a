// The store commands end to end, through the built CLI: import, images, inspect, history, tag, rm, prune,
// unpack, save, load; schema validity of what is written; determinism; corruption; crashes; concurrency.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import type { Descriptor, Index, Manifest } from '../../layers/model/types.js';
import { verifyImage } from '../../layers/store/verify.js';
import { hostileLayers } from '../../fixtures/hostile-layers.js';
import { makeTempDir, removeDir, repoRoot, tsbuild } from '../helpers/index.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { haveImageSchemas, validateOci } from '../helpers/oci-schema.js';

async function ok(args: string[], opts: Parameters<typeof tsbuild>[1] = {}): Promise<string> {
  const r = await tsbuild(args, opts);
  if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** problems is what verifyImage finds wrong with the stored images (every test that writes an image asserts []). */
async function problems(root: string, ...names: string[]): Promise<string[]> {
  const store = await Store.open(root);
  const out: string[] = [];
  for (const n of names) out.push(...(await verifyImage(store, await getImage(store, n))).map((p) => `${n}: ${p}`));
  return out;
}

test('import of a directory makes an image that images, inspect and history show', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const digest = (
    await ok(['--root', root, 'import', tree, 'bb:1', '-c', 'CMD ["/bin/sh"]', '-m', 'from a dir'])
  ).trim();
  t.regex(digest, /^sha256:[a-f0-9]{64}$/);

  const list = JSON.parse(await ok(['--root', root, 'images', '--format', 'json'])) as Array<{
    repository: string;
    tag: string;
    digest: string;
  }>;
  t.deepEqual(
    list.map((r) => [r.repository, r.tag, r.digest]),
    [['bb', '1', digest]],
  );
  const table = await ok(['--root', root, 'images']);
  t.regex(table, /^NAME\s+TAG\s+DIGEST\s+CREATED\s+SIZE\n/);
  t.regex(table, new RegExp(`^bb\\s+1\\s+${digest.slice(7, 19)}\\s`, 'm'));

  const info = JSON.parse(await ok(['--root', root, 'inspect', 'bb:1'])) as {
    digest: string;
    config: { config: { Cmd: string[] }; history: Array<{ comment?: string }> };
  };
  t.is(info.digest, digest);
  t.deepEqual(info.config.config.Cmd, ['/bin/sh']);
  t.is(info.config.history[0]?.comment, 'from a dir');

  const hist = await ok(['--root', root, 'history', 'bb:1']);
  t.regex(hist, /tsbuild import/);

  t.deepEqual(await problems(root, 'bb:1'), []);
});

if (haveImageSchemas) {
  test('everything the store holds validates against the OCI image-spec schemas', async (t) => {
    const root = await newStoreRoot(t);
    const tree = await busyboxTree(t);
    await ok([
      '--root',
      root,
      'import',
      tree,
      'bb:schema',
      '--compression',
      'zstd',
      '-c',
      'ENV A=1',
      '-c',
      'EXPOSE 80/udp',
    ]);
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as Index;
    t.deepEqual(validateOci('index', index), []);
    t.deepEqual(validateOci('layout', JSON.parse(await readFile(join(root, 'oci-layout'), 'utf8'))), []);
    const store = await Store.open(root);
    const manifest = await store.readJson<Manifest>((index.manifests[0] as Descriptor).digest);
    t.deepEqual(validateOci('manifest', manifest), []);
    t.deepEqual(validateOci('config', await store.readJson(manifest.config.digest)), []);
    t.is(manifest.layers[0]?.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    t.deepEqual(await problems(root, 'bb:schema'), []);
  });
} else {
  test.skip('OCI schema validation: corpus ../shared/corpora not found', () => {});
}

test('the same directory committed twice gives the same layer digest, and with SOURCE_DATE_EPOCH the same image digest', async (t) => {
  const tree = await busyboxTree(t);
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  const a = await newStoreRoot(t);
  const b = await newStoreRoot(t);
  const d1 = (await ok(['--root', a, 'import', tree, 'x:1'], { env })).trim();
  await new Promise((r) => setTimeout(r, 1100));
  const d2 = (await ok(['--root', b, 'import', tree, 'x:1'], { env })).trim();
  t.is(d1, d2);
  const d3 = (await ok(['--root', a, 'import', tree, 'x:2'])).trim();
  await new Promise((r) => setTimeout(r, 1100));
  const d4 = (await ok(['--root', a, 'import', tree, 'x:3'])).trim();
  const layerOf = async (n: string) =>
    JSON.parse(await ok(['--root', a, 'inspect', n])).manifest.layers[0].digest as string;
  t.is(await layerOf('x:2'), await layerOf('x:3'), 'the layer does not depend on the time of the commit');
  t.not(d3, d4, 'without SOURCE_DATE_EPOCH the created time differs');
  t.not(await layerOf('x:1'), await layerOf('x:2'), 'SOURCE_DATE_EPOCH clamps the mtimes of files newer than it');
  t.deepEqual(await problems(a, 'x:1', 'x:2', 'x:3'), []);
  t.deepEqual(await problems(b, 'x:1'), []);
});

test('tag, rm and prune: a removed image frees its blobs and prune reports the bytes', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  await ok(['--root', root, 'import', tree, 'one:1']);
  t.deepEqual(await problems(root, 'one:1'), []);
  await ok(['--root', root, 'tag', 'one:1', 'localhost:5000/two:2']);
  const names = JSON.parse(await ok(['--root', root, 'images', '--format', 'json'])).map(
    (r: { name: string }) => r.name,
  );
  t.deepEqual(names.sort(), ['localhost:5000/two:2', 'one:1']);
  t.is((await ok(['--root', root, 'rm', 'one:1'])).trim(), 'Untagged: one:1');
  t.regex(await ok(['--root', root, 'prune']), /Total reclaimed space: 0B \(0 bytes\)/);
  const before = (await readdir(join(root, 'blobs/sha256'))).length;
  t.is(before, 3);
  await ok(['--root', root, 'rm', 'localhost:5000/two:2']);
  const pruned = await ok(['--root', root, 'prune']);
  const freed = Number(/\((\d+) bytes\)/.exec(pruned)?.[1]);
  t.true(freed > 500_000, pruned);
  t.deepEqual(await readdir(join(root, 'blobs/sha256')), []);
  const missing = await tsbuild(['--root', root, 'inspect', 'one:1']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^error: image "one:1" not found\nhint: /);
});

test('unpack writes the flattened rootfs and refuses a non-empty directory', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  await ok(['--root', root, 'import', tree, 'bb:1']);
  t.deepEqual(await problems(root, 'bb:1'), []);
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  await ok(['--root', root, 'unpack', 'bb:1', join(out, 'rootfs')]);
  t.deepEqual((await readdir(join(out, 'rootfs'))).sort(), (await readdir(tree)).sort());
  t.is(await readFile(join(out, 'rootfs/etc/passwd'), 'utf8'), await readFile(join(tree, 'etc/passwd'), 'utf8'));
  const again = await tsbuild(['--root', root, 'unpack', 'bb:1', join(out, 'rootfs')]);
  t.is(again.code, 1);
  t.regex(again.stderr, /is not empty/);
});

test('import reads gzip, zstd, xz and bzip2 tarballs and stdin', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const sh = (cmd: string) =>
    new Promise<void>((resolve, reject) => {
      const c = spawn('bash', ['-c', cmd], { stdio: 'ignore' });
      c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd}: ${code}`))));
    });
  await sh(
    `tar -C ${tree} -cf ${dir}/r.tar . && gzip -k ${dir}/r.tar && zstd -q ${dir}/r.tar && xz -k ${dir}/r.tar && bzip2 -k ${dir}/r.tar`,
  );
  const diffIds = new Set<string>();
  for (const f of ['r.tar', 'r.tar.gz', 'r.tar.zst', 'r.tar.xz', 'r.tar.bz2']) {
    await ok(['--root', root, 'import', join(dir, f), `t:${f.replace(/\./g, '-')}`]);
    diffIds.add(
      JSON.parse(await ok(['--root', root, 'inspect', `t:${f.replace(/\./g, '-')}`])).config.rootfs.diff_ids[0],
    );
  }
  await ok(['--root', root, 'import', '-', 't:stdin'], { input: await readFile(join(dir, 'r.tar.gz')) });
  diffIds.add(JSON.parse(await ok(['--root', root, 'inspect', 't:stdin'])).config.rootfs.diff_ids[0]);
  t.is(diffIds.size, 1, 'every encoding of the same tar gives the same diffID');
  t.deepEqual(
    await problems(
      root,
      ...['r.tar', 'r.tar.gz', 'r.tar.zst', 'r.tar.xz', 'r.tar.bz2'].map((f) => `t:${f.replace(/\./g, '-')}`),
      't:stdin',
    ),
    [],
  );
});

test('import of a file that is not a tar fails with one clear line and leaves the store as it was', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'junk.tar'), 'this is not a tar archive at all, just words'.repeat(40));
  const r = await tsbuild(['--root', root, 'import', join(dir, 'junk.tar'), 'junk:1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: importing .*junk\.tar: .*not a valid tar archive/);
  t.deepEqual(await readdir(join(root, 'blobs/sha256')), []);
});

for (const [name, make] of Object.entries(hostileLayers)) {
  test(`import refuses the hostile tarball ${name} and stores nothing`, async (t) => {
    const root = await newStoreRoot(t);
    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    const tarPath = join(dir, 'hostile.tar');
    await writeFile(tarPath, make(join(dir, 'host-target')));
    const r = await tsbuild(['--root', root, 'import', tarPath, 'evil:1']);
    if (r.code === 0) {
      // A tarball that is only hostile when applied over something (a planted symlink) may be stored,
      // but unpacking it must then fail and leave the host alone.
      t.deepEqual(await problems(root, 'evil:1'), []);
      const out = join(dir, 'out');
      const u = await tsbuild(['--root', root, 'unpack', 'evil:1', out]);
      t.is(u.code, 1, u.stderr);
      t.regex(u.stderr, /^error: .*refusing layer entry/m);
      return;
    }
    t.is(r.code, 1);
    t.regex(r.stderr, /^error: importing .*: refusing layer entry /);
    t.deepEqual(await readdir(join(root, 'blobs/sha256')), []);
  });
}

test('a hand-corrupted blob makes inspect and unpack fail naming the blob', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  await ok(['--root', root, 'import', tree, 'bb:1']);
  t.deepEqual(await problems(root, 'bb:1'), []);
  const info = JSON.parse(await ok(['--root', root, 'inspect', 'bb:1']));
  const layer: string = info.manifest.layers[0].digest;
  const config: string = info.manifest.config.digest;

  const layerPath = join(root, 'blobs/sha256', layer.slice(7));
  const bytes = await readFile(layerPath);
  const mid = bytes.length >> 1;
  bytes[mid] = (bytes[mid] ?? 0) ^ 0xff;
  await writeFile(layerPath, bytes);
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const u = await tsbuild(['--root', root, 'unpack', 'bb:1', join(out, 'r')]);
  t.is(u.code, 1);
  t.true(u.stderr.includes(layer), u.stderr);

  await writeFile(join(root, 'blobs/sha256', config.slice(7)), '{"tampered":true}');
  const i = await tsbuild(['--root', root, 'inspect', 'bb:1']);
  t.is(i.code, 1);
  t.true(i.stderr.includes(config), i.stderr);
  t.regex(i.stderr, /is corrupt/);
});

test('kill -9 during an import leaves a store that images and prune handle', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  await ok(['--root', root, 'import', tree, 'kept:1']);
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  // a big incompressible tarball keeps the import busy long enough to be killed mid-write
  await writeFile(
    join(dir, 'big.bin'),
    Buffer.alloc(64 << 20).map(() => (Math.random() * 256) | 0),
  );
  const child = spawn(process.execPath, [join(repoRoot, 'bin/tsbuild.js'), '--root', root, 'import', dir, 'killed:1'], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 200; i++) {
    const tmp = (await readdir(join(root, 'blobs/sha256'))).filter((n) => n.startsWith('.tmp-'));
    if (tmp.length) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  const list = JSON.parse(await ok(['--root', root, 'images', '--format', 'json'])).map(
    (r: { name: string }) => r.name,
  );
  t.deepEqual(list, ['kept:1']);
  // the dead writer's lease and temp file do not block prune, and prune removes them
  await ok(['--root', root, 'prune']);
  t.deepEqual(
    (await readdir(join(root, 'blobs/sha256'))).filter((n) => n.startsWith('.tmp-')),
    [],
  );
  t.deepEqual(await problems(root, 'kept:1'), []);
});

test('two imports at the same time both land', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const other = await busyboxTree(t);
  await writeFile(join(other, 'etc/marker'), 'second');
  const [a, b] = await Promise.all([
    ok(['--root', root, 'import', tree, 'a:1']),
    ok(['--root', root, 'import', other, 'b:1']),
  ]);
  t.not(a.trim(), b.trim());
  const names = JSON.parse(await ok(['--root', root, 'images', '--format', 'json'])).map(
    (r: { name: string }) => r.name,
  );
  t.deepEqual(names.sort(), ['a:1', 'b:1']);
  t.deepEqual(await problems(root, 'a:1', 'b:1'), []);
});

test('save writes an archive that load reads back into another store with the same digests', async (t) => {
  const src = await newStoreRoot(t);
  const dst = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const digest = (await ok(['--root', src, 'import', tree, 'bb:1'])).trim();
  await ok(['--root', src, 'tag', 'bb:1', 'bb:alias']);
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const archive = join(dir, 'bb.tar');
  await ok(['--root', src, 'save', 'bb:1', 'bb:alias', '-o', archive]);
  t.true((await stat(archive)).size > 500_000);
  t.deepEqual((await readdir(dir)).sort(), ['bb.tar'], 'no temp file is left beside the archive');
  const loaded = await ok(['--root', dst, 'load', '-i', archive]);
  t.regex(loaded, /Loaded image: docker.io\/library\/bb:1|Loaded image: bb:1/);
  const info = JSON.parse(await ok(['--root', dst, 'inspect', 'bb:alias']));
  t.is(info.digest, digest);
  t.deepEqual(await problems(src, 'bb:1'), []);
  t.deepEqual(await problems(dst, 'bb:1', 'bb:alias'), []);
  const hash = createHash('sha256')
    .update(await readFile(archive))
    .digest('hex');
  await ok(['--root', src, 'save', 'bb:1', 'bb:alias', '-o', archive]);
  t.is(
    createHash('sha256')
      .update(await readFile(archive))
      .digest('hex'),
    hash,
    'saving twice gives the same bytes',
  );
  await utimes(archive, new Date(), new Date());
});

test('unknown commands, bad flags and missing images exit 1 with one error line', async (t) => {
  const root = await newStoreRoot(t);
  const r1 = await tsbuild(['--root', root, 'inspect', 'Not-A-Name']);
  t.is(r1.code, 1);
  t.regex(r1.stderr, /^error: /);
  t.is(r1.stderr.trim().split('\n')[0]?.startsWith('error: '), true);
  const r2 = await tsbuild(['--root', root, 'import', '/nonexistent/x.tar', 'x:1']);
  t.is(r2.code, 1);
  t.regex(r2.stderr, /^error: reading \/nonexistent\/x\.tar: ENOENT/);
  const r3 = await tsbuild(['--root', root, 'images', '--format', 'yaml']);
  t.is(r3.code, 1);
  t.regex(r3.stderr, /--format must be table or json/);
  const r4 = await tsbuild(['--root', root, 'import', '/etc', 'x:1', '--compression', 'lz4']);
  t.is(r4.code, 1);
  t.regex(r4.stderr, /--compression must be gzip, zstd or none/);
});

test('--version answers without loading any command', async (t) => {
  const r = await tsbuild(['--version']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^tsbuild, \d+\.\d+\.\d+/);
});

test('a reader that closes the pipe early ends the command quietly with 141, as SIGPIPE would', async (t) => {
  const root = await newStoreRoot(t);
  await ok(['--root', root, 'import', await busyboxTree(t), 'bb:1']);
  t.deepEqual(await problems(root, 'bb:1'), []);
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tsbuild.js'), '--root', root, 'history', 'bb:1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.destroy(); // the pipe's reader is gone before anything is written
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.is(code, 141);
  t.notRegex(stderr, /EPIPE|Unhandled/);
});
