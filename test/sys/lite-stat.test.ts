// sys/lite-stat.ts: liteLstat gives the numbers Node's lstat gives (a memo keyed by them must keep matching), for
// every file type, without Node's Stats objects.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { liteLstat, type FileStat } from '../../sys/lite-stat.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const FIELDS = ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'rdev', 'size', 'atimeMs', 'mtimeMs', 'ctimeMs'] as const;
const KINDS = [
  'isFile',
  'isDirectory',
  'isSymbolicLink',
  'isCharacterDevice',
  'isBlockDevice',
  'isFIFO',
  'isSocket',
] as const;

function view(st: FileStat): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) out[f] = st[f];
  for (const k of KINDS) out[k] = st[k]();
  return out;
}

test('liteLstat gives what Node’s lstat gives for files, directories, links, devices and fifos', async (t) => {
  const dir = await makeTempDir('tsbuild-lite-stat-');
  t.teardown(() => removeDir(dir));
  const file = join(dir, 'file');
  writeFileSync(file, 'x'.repeat(12345));
  utimesSync(file, 1_700_000_000.123456, 1_600_000_000.987654); // sub-millisecond times
  mkdirSync(join(dir, 'sub'));
  symlinkSync('file', join(dir, 'link'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  const paths = [file, join(dir, 'sub'), join(dir, 'link'), join(dir, 'fifo'), '/dev/null', '/', '/proc/self/fd/0'];
  for (const p of paths) t.deepEqual(view(liteLstat(p)), view(lstatSync(p)), p);
});

test('liteLstat of a missing path: undefined when asked, else Node’s error', (t) => {
  t.is(liteLstat('/nonexistent/tsbuild-lite-stat', { throwIfNoEntry: false }), undefined);
  const err = t.throws(() => liteLstat('/nonexistent/tsbuild-lite-stat'));
  t.is((err as { code?: string }).code, 'ENOENT');
  t.is((err as { syscall?: string }).syscall, 'lstat');
});
