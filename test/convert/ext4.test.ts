import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileRanges } from '../../convert/boot-extents.js';
import { run } from '../../sys/exec.js';
import { autoFsBytes, BLOCK, FilesystemFullError, makeExt4, measureTree, minFsBytes } from '../../convert/ext4.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const MiB = 1 << 20;

async function tree(t: { teardown(f: () => unknown): void }): Promise<string> {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  await mkdir(join(root, 'etc'));
  await writeFile(join(root, 'etc/a'), 'x');
  await writeFile(join(root, 'etc/b'), Buffer.alloc(BLOCK + 1));
  await link(join(root, 'etc/b'), join(root, 'etc/b-link'));
  await symlink('a', join(root, 'etc/short'));
  await symlink('x'.repeat(80), join(root, 'etc/long'));
  return root;
}

test('measureTree counts blocks, one inode per path, hard links once', async (t) => {
  const u = await measureTree(await tree(t));
  // root dir + etc dir (1 block each) + a (1) + b (2) + long symlink (1)
  t.is(u.bytes, 6 * BLOCK);
  t.is(u.inodes, 1 + 1 + 4);
});

test('the smallest filesystem grows with the data, and auto adds headroom', (t) => {
  const small = minFsBytes({ bytes: 10 * MiB, inodes: 100 });
  const big = minFsBytes({ bytes: 400 * MiB, inodes: 12000 });
  t.true(big > small);
  t.true(big >= 400 * MiB);
  t.true(autoFsBytes({ bytes: 400 * MiB, inodes: 12000 }) - big >= 256 * MiB);
  t.is(big % MiB, 0);
});

test('makeExt4 writes a populated, bootloader-friendly ext4 at an offset in the image, clean for e2fsck', async (t) => {
  const root = await tree(t);
  const work = await makeTempDir();
  t.teardown(() => removeDir(work));
  const image = join(work, 'disk.img');
  execFileSync('truncate', ['-s', '40M', image]);
  await writeFile(join(work, 'mbr'), Buffer.alloc(512, 0x5a));
  execFileSync('dd', [`if=${join(work, 'mbr')}`, `of=${image}`, 'conv=notrunc', 'status=none']);
  const uuid = '3f1d6b2e-4c55-4a8e-9d2a-7b0c1e5f6a7b';
  await makeExt4({ image, offset: MiB, bytes: 32 * MiB, dir: root, uuid, usage: await measureTree(root) });
  const part = `${image}?offset=${MiB}`;
  const header = execFileSync('dumpe2fs', ['-h', part], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  t.regex(header, new RegExp(`Filesystem UUID:\\s+${uuid}`));
  t.regex(header, /Block size:\s+4096/);
  const features = /Filesystem features:\s+(.*)/.exec(header)?.[1] ?? '';
  for (const f of ['64bit', 'metadata_csum_seed', 'orphan_file']) t.false(features.split(' ').includes(f), f);
  t.true(features.includes('extent'));
  execFileSync('e2fsck', ['-fn', part], { stdio: 'ignore' });
  t.is(execFileSync('debugfs', ['-R', 'cat /etc/a', part], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), 'x');
  const { readFileSync } = await import('node:fs');
  t.true(
    readFileSync(image)
      .subarray(0, 512)
      .every((b) => b === 0x5a),
    'the bytes before the partition are untouched',
  );
});

test('a tree that does not fit is a FilesystemFullError', async (t) => {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  await writeFile(join(root, 'big'), Buffer.alloc(12 * MiB, 1));
  const work = await makeTempDir();
  t.teardown(() => removeDir(work));
  const image = join(work, 'disk.img');
  execFileSync('truncate', ['-s', '9M', image]);
  await t.throwsAsync(
    makeExt4({
      image,
      offset: MiB,
      bytes: 8 * MiB,
      dir: root,
      uuid: '3f1d6b2e-4c55-4a8e-9d2a-7b0c1e5f6a7b',
      usage: await measureTree(root),
    }),
    { instanceOf: FilesystemFullError },
  );
});

test('fileRanges finds the disk bytes of a file in an ext4 written at an offset, without mounting', async (t) => {
  const dir = await makeTempDir('tsbuild-extents-');
  t.teardown(() => removeDir(dir));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'boot'), { recursive: true });
  const data = randomBytes(300 * 1024 + 5);
  await writeFile(join(tree, 'boot/vmlinuz-x'), data);
  const image = join(dir, 'disk.raw');
  const offset = 1 << 20;
  await writeFile(image, '');
  await truncate(image, 64 << 20);
  await run(['mkfs.ext4', '-q', '-b', '4096', '-E', `offset=${offset}`, '-d', tree, image, String((63 << 20) / 4096)]);
  const ranges = await fileRanges({ image, offset, paths: ['/boot/vmlinuz-x', '/boot/missing'], workDir: dir });
  t.true(ranges.length >= 1);
  const disk = await readFile(image);
  const bytes = Buffer.concat(ranges.map(([a, b]) => disk.subarray(a, b)));
  t.is(bytes.length, Math.ceil(data.length / 4096) * 4096);
  t.true(bytes.subarray(0, data.length).equals(data), 'the ranges hold the file, in order');
});
