import test from 'ava';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { mergeLayers } from '../../unionfs/merge.js';
import { tempDir } from './helpers.js';
import { gnuTarApply, makeTar } from './tar-fixtures.js';

const PREFIX = 'tsbuild-unionfs-merge-';

test('mergeLayers applies the layers bottom first, opening each when its turn comes', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const base = await makeTar(dir, 'base', { 'etc/motd': 'base', 'etc/keep': 'keep' });
  const top = await makeTar(dir, 'top', { 'etc/motd': 'top', 'app/x': 'x' });
  const log: string[] = [];
  const target = join(dir, 'rootfs');
  await mergeLayers({
    target,
    layers: [base, top].map((l, i) => ({ name: `l${i}`, open: () => (log.push(`open ${i}`), l.open()) })),
    apply: async (tar, into) => {
      log.push(`apply into ${into === target ? 'target' : into}`);
      await gnuTarApply(tar, into);
    },
  });
  t.deepEqual(log, ['open 0', 'apply into target', 'open 1', 'apply into target']);
  t.is(await readFile(join(target, 'etc', 'motd'), 'utf8'), 'top');
  t.is(await readFile(join(target, 'etc', 'keep'), 'utf8'), 'keep');
  t.is(await readFile(join(target, 'app', 'x'), 'utf8'), 'x');
});

test('mergeLayers refuses a target that is not empty', async (t) => {
  const dir = await tempDir(t, PREFIX);
  await mkdir(join(dir, 'rootfs'));
  await writeFile(join(dir, 'rootfs', 'junk'), '');
  await t.throwsAsync(mergeLayers({ target: join(dir, 'rootfs'), layers: [], apply: async () => {} }), { code: 'E_INVALID' });
});

test('a failing layer stops the merge, destroys its stream and is named in the error', async (t) => {
  const dir = await tempDir(t, PREFIX);
  const stream = Readable.from([Buffer.from('not a tar')]);
  await t.throwsAsync(
    mergeLayers({
      target: join(dir, 'rootfs'),
      layers: [{ name: 'sha256:bad', open: async () => stream }],
      apply: async () => {
        throw new Error('broken tar');
      },
    }),
    { message: /applying layer 1\/1 \(sha256:bad\) into .*rootfs: broken tar/ },
  );
  t.true(stream.destroyed);
});
