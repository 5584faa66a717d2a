// Where an export makes its raw disk (convert/work-dir.ts): in a private directory in memory when the disk fits, in
// the work directory otherwise or when asked; and what killed exports left in memory is removed by the next one.
import test from 'ava';
import { statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  cleanStaleMemoryDirs,
  makeRawDisk,
  MEMORY_ROOT,
  SCRATCH_ENV,
  scratchMode,
  TMPFS_MAGIC,
} from '../../convert/work-dir.js';
import { availableMemory } from '../../sys/cgroups.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const MiB = 1 << 20;
// the tests below make disks of up to 64 MiB in /dev/shm (sparse: they hold nothing) and ask for twice that free
const shmIsTmpfs = ((): boolean => {
  try {
    const st = statfsSync(MEMORY_ROOT);
    return st.type === TMPFS_MAGIC && st.bavail * st.bsize >= 256 * MiB;
  } catch {
    return false;
  }
})();
const memTest = shmIsTmpfs ? test : test.skip;
if (!shmIsTmpfs)
  console.log(`work-dir: ${MEMORY_ROOT} is no tmpfs with 256 MiB free here; the tests using it are skipped`);

/** dirs gives a test a work directory on disk and a memory root (a private directory in /dev/shm). */
async function dirs(t: { teardown(f: () => unknown): void }): Promise<{ work: string; mem: string }> {
  const work = await makeTempDir('tsbuild-work-');
  t.teardown(() => removeDir(work));
  if (!shmIsTmpfs) return { work, mem: '' };
  const mem = await mkdtemp(join(MEMORY_ROOT, 'tsbuild-test-'));
  t.teardown(() => removeDir(mem));
  return { work, mem };
}

const auto = { env: {} };

memTest('a disk that fits is made sparse in a private directory in memory, named by the pid', async (t) => {
  const { work, mem } = await dirs(t);
  const r = await makeRawDisk(work, 64 * MiB, { ...auto, memoryRoot: mem, free: 129 * MiB });
  t.regex(r.memoryDir ?? '', new RegExp(`^${mem}/tsbuild-export-${process.pid}-[0-9a-f]{12}$`));
  t.is(r.raw, join(r.memoryDir as string, 'disk.raw'));
  t.is((await stat(r.memoryDir as string)).mode & 0o777, 0o700);
  const st = await stat(r.raw);
  t.is(st.size, 64 * MiB);
  t.is(st.blocks, 0, 'nothing written yet');
  t.deepEqual(await readdir(work), []);
});

memTest('a disk bigger than half the free memory is made in the work directory', async (t) => {
  const { work, mem } = await dirs(t);
  const r = await makeRawDisk(work, 64 * MiB, { ...auto, memoryRoot: mem, free: 127 * MiB });
  t.deepEqual(r, { raw: join(work, 'disk.raw') });
  t.is((await stat(r.raw)).size, 64 * MiB);
  t.deepEqual(await readdir(mem), []);
});

memTest('a memory root that is not a tmpfs is not used, unless memory is asked for', async (t) => {
  const { work } = await dirs(t);
  const notTmpfs = await makeTempDir('tsbuild-not-shm-');
  t.teardown(() => removeDir(notTmpfs));
  if (statfsSync(notTmpfs).type === TMPFS_MAGIC) return t.pass('the temp directory is a tmpfs here: nothing to test');
  t.deepEqual(await makeRawDisk(work, MiB, { ...auto, memoryRoot: notTmpfs, free: 1 << 40 }), {
    raw: join(work, 'disk.raw'),
  });
  await t.throwsAsync(makeRawDisk(work, MiB, { env: { [SCRATCH_ENV]: 'memory' }, memoryRoot: notTmpfs }), {
    message: `${SCRATCH_ENV}=memory: ${notTmpfs} is not a tmpfs`,
  });
});

memTest('TSBUILD_EXPORT_SCRATCH=disk keeps the disk in the work directory, =memory ignores the size', async (t) => {
  const { work, mem } = await dirs(t);
  const d = await makeRawDisk(work, MiB, { env: { [SCRATCH_ENV]: 'disk' }, memoryRoot: mem, free: 1 << 40 });
  t.deepEqual(d, { raw: join(work, 'disk.raw') });
  const m = await makeRawDisk(work, 1 << 40, { env: { [SCRATCH_ENV]: 'memory' }, memoryRoot: mem, free: MiB });
  t.true(m.raw.startsWith(`${mem}/`));
  t.is((await stat(m.raw)).size, 1 << 40, 'a sparse file holds no memory');
});

memTest('onDisk (the retry after a full memory) makes the disk in the work directory', async (t) => {
  const { work, mem } = await dirs(t);
  t.deepEqual(await makeRawDisk(work, MiB, { ...auto, memoryRoot: mem, free: 1 << 40, onDisk: true }), {
    raw: join(work, 'disk.raw'),
  });
});

test('TSBUILD_EXPORT_SCRATCH takes auto, memory or disk; anything else is refused', (t) => {
  t.is(scratchMode({}), 'auto');
  t.is(scratchMode({ [SCRATCH_ENV]: '' }), 'auto');
  t.is(scratchMode({ [SCRATCH_ENV]: 'memory' }), 'memory');
  t.is(scratchMode({ [SCRATCH_ENV]: 'disk' }), 'disk');
  t.throws(() => scratchMode({ [SCRATCH_ENV]: 'ram' }), {
    message: 'TSBUILD_EXPORT_SCRATCH must be auto, memory or disk (got "ram")',
  });
});

test('the free memory is a positive byte count no larger than the machine memory', async (t) => {
  const free = await availableMemory();
  t.true(free > 0);
  t.true(free <= (await import('node:os')).totalmem());
});

memTest('memory directories of dead exports are removed; live ones, links and other names are kept', async (t) => {
  const { mem } = await dirs(t);
  const dead = 'tsbuild-export-999999999-abcdef';
  await mkdir(join(mem, dead));
  await writeFile(join(mem, dead, 'disk.raw'), 'x');
  const uid = process.getuid?.() ?? 0;
  t.deepEqual(await cleanStaleMemoryDirs(uid + 1, mem), [], "another user's are not ours to remove");
  const live = `tsbuild-export-${process.pid}-abcdef`;
  await mkdir(join(mem, live));
  const target = await mkdtemp(join(MEMORY_ROOT, 'tsbuild-test-target-'));
  t.teardown(() => removeDir(target));
  await writeFile(join(target, 'keep'), 'x');
  await symlink(target, join(mem, 'tsbuild-export-999999998-abcdef'));
  await writeFile(join(mem, 'tsbuild-export-999999997-abcdef'), 'a file');
  await mkdir(join(mem, 'tsbuild-export-999999996-notHex'));
  t.deepEqual(await cleanStaleMemoryDirs(uid, mem), [dead]);
  t.deepEqual(
    (await readdir(mem)).sort(),
    [
      'tsbuild-export-999999996-notHex',
      'tsbuild-export-999999997-abcdef',
      'tsbuild-export-999999998-abcdef',
      live,
    ].sort(),
  );
  t.deepEqual(await readdir(target), ['keep']);
});
