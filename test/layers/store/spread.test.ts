// The store's directories where trees are made and removed all the time (snapshots/, containers/, tmp/) carry the
// "top of a directory hierarchy" attribute (`chattr +T`) where the filesystem has it (ext2/3/4), so that ext4 puts
// each new tree in a block group of its own instead of beside the one just removed (sys/libc.ts
// spreadSubdirectories). lsattr (e2fsprogs) reads the attribute back, independently of our ioctl.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TMPFS_MAGIC } from '../../../convert/work-dir.js';
import { Store } from '../../../layers/store/store.js';
import { spreadSubdirectories } from '../../../sys/libc.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

const EXT_MAGIC = 0xef53; // ext2, ext3 and ext4

/** lsattrFlags is the attribute letters lsattr prints for a directory ('' where it cannot tell). */
function lsattrFlags(dir: string): string {
  try {
    return execFileSync('lsattr', ['-d', dir], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split(' ')[0] as string;
  } catch {
    return '';
  }
}

test('snapshots, containers and tmp spread their subdirectories on ext4; cache-mounts does not', async (t) => {
  const dir = await makeTempDir('tsbuild-spread-');
  t.teardown(() => removeDir(dir));
  if (statfsSync(dir).type !== EXT_MAGIC) return t.pass(`${dir} is not on ext4 here: nothing to see`);
  const store = await Store.open(join(dir, 'store'));
  for (const name of ['snapshots', 'containers', 'tmp'] as const) {
    const p = await store.privateDir(name);
    t.true(lsattrFlags(p).includes('T'), `${name}: ${lsattrFlags(p)}`);
  }
  t.false(lsattrFlags(await store.privateDir('cache-mounts')).includes('T'));
});

test('spreadSubdirectories sets the attribute once and says so; elsewhere it says no and throws nothing', async (t) => {
  const dir = await makeTempDir('tsbuild-spread-');
  t.teardown(() => removeDir(dir));
  const sub = join(dir, 'd');
  await mkdir(sub);
  const ext = statfsSync(dir).type === EXT_MAGIC;
  t.is(spreadSubdirectories(sub), ext);
  t.is(spreadSubdirectories(sub), ext, 'already set');
  if (ext) t.true(lsattrFlags(sub).includes('T'));
  await symlink(sub, join(dir, 'link'));
  t.false(spreadSubdirectories(join(dir, 'link')), 'a symbolic link is not followed');
  t.false(spreadSubdirectories(join(dir, 'missing')));
  if (existsSync('/dev/shm') && statfsSync('/dev/shm').type === TMPFS_MAGIC) {
    const shm = await mkdtemp('/dev/shm/tsbuild-spread-');
    t.teardown(() => removeDir(shm));
    t.false(spreadSubdirectories(shm), 'tmpfs has no such attribute');
  }
});
