// sys/remove-tree.ts: every tree tsbuild removes (snapshots, step upper directories, export staging trees,
// leftovers) goes through rm(1), which walks it in constant memory and never crosses into another filesystem.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from '../../sys/remove-tree.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';

test('removeTree removes a tree with files, links and read-only directories, and a missing path is no error', async (t) => {
  const dir = await makeTempDir('tsbuild-rmtree-');
  t.teardown(() => removeDir(dir));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'a', 'b'), { recursive: true });
  await writeFile(join(tree, 'a', 'b', 'f'), 'x');
  await symlink('/etc/passwd', join(tree, 'a', 'link'));
  execFileSync('chmod', ['0555', join(tree, 'a', 'b')]); // rm -rf copes with what Node's rm would too
  await removeTree(tree);
  t.false(existsSync(tree));
  t.true(existsSync('/etc/passwd'), 'a symlink is removed, never followed');
  await removeTree(join(dir, 'missing'));
  await mkdir(join(dir, 'empty'));
  await removeTree(join(dir, 'empty'));
  t.false(existsSync(join(dir, 'empty')));
});

rootTest('removeTree refuses to empty a filesystem mounted below the tree, and says which', async (t) => {
  const dir = await makeTempDir('tsbuild-rmtree-');
  const mnt = join(dir, 'tree', 'mnt');
  await mkdir(mnt, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
  t.teardown(async () => {
    execFileSync('umount', ['-l', mnt]);
    await removeDir(dir);
  });
  await writeFile(join(mnt, 'precious'), 'keep me');
  await writeFile(join(dir, 'tree', 'other'), 'x');
  const err = await t.throwsAsync(removeTree(join(dir, 'tree')));
  t.regex(err.message, /different device|skipping/);
  t.true(existsSync(join(mnt, 'precious')), 'the mounted filesystem keeps its files');
});

test('removeTree removes a small tree, including a directory nobody may read, and never follows its links', async (t) => {
  const dir = await makeTempDir('tsbuild-rmtree-');
  t.teardown(() => removeDir(dir));
  const tree = join(dir, 'tree');
  const outside = join(dir, 'outside');
  await mkdir(join(outside, 'keep'), { recursive: true });
  await mkdir(join(tree, 'work', 'work'), { recursive: true });
  await mkdir(join(tree, 'stubs'));
  await writeFile(join(tree, 'stubs', 'hosts'), '');
  await symlink(outside, join(tree, 'stubs', 'link'));
  execFileSync('chmod', ['0000', join(tree, 'work', 'work')]); // as overlayfs leaves its work directory
  await removeTree(tree);
  t.false(existsSync(tree));
  t.true(existsSync(join(outside, 'keep')));
});

rootTest('removeTree never removes what a filesystem mounted below a small tree holds', async (t) => {
  const dir = await makeTempDir('tsbuild-rmtree-');
  const mnt = join(dir, 'tree', 'a', 'mnt');
  await mkdir(mnt, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
  t.teardown(async () => {
    execFileSync('umount', ['-l', mnt]);
    await removeDir(dir);
  });
  await mkdir(join(mnt, 'inner'));
  await writeFile(join(mnt, 'file'), 'keep me');
  await t.throwsAsync(removeTree(join(dir, 'tree')));
  t.true(existsSync(join(mnt, 'inner')), 'the mounted filesystem keeps its directory');
  t.true(existsSync(join(mnt, 'file')), 'and its file');
});
