// The tar walk's shortcuts keep Node's meaning: paths made by concatenation are join()'s, and reads into an output
// chunk through its address never leave the chunk.
import test from 'ava';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathPrefix } from '../../../layers/tar/create-plan.js';
import { ReadTarget } from '../../../sys/libc.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

test('pathPrefix(root) + rel is join(root, rel) for a clean relative rel', (t) => {
  const roots = [
    '/',
    '/usr',
    '/usr/',
    '//usr//share/',
    '/usr/./lib',
    '/usr/lib/..',
    '.',
    './',
    '',
    'a',
    'a/',
    './a/b/',
    '../x',
    '..',
  ];
  for (const root of roots)
    for (const rel of ['f', 'd/f', 'é/日本', '.wh.x', '..x/y'])
      t.is(pathPrefix(root) + rel, join(root, rel), `${root} ${rel}`);
});

test('ReadTarget reads into the part of its buffer it is told, and refuses a read that would leave it', async (t) => {
  const d = await makeTempDir('tsbuild-tar-target-');
  t.teardown(() => removeDir(d));
  writeFileSync(join(d, 'f'), 'hello world');
  const buf = Buffer.alloc(32, 0x2e);
  const target = new ReadTarget(buf.subarray(8, 24));
  const fd = openSync(join(d, 'f'), 'r');
  try {
    t.is(target.pread(fd, 2, 5, 6), 5);
    t.is(buf.toString('latin1'), '..........world.................');
    t.is(target.pread(fd, 10, 6, 0), 6);
    t.is(buf.toString('latin1'), '..........world...hello ........');
    t.throws(() => target.pread(fd, 11, 6, 0), { instanceOf: RangeError });
    t.throws(() => target.pread(fd, -1, 1, 0), { instanceOf: RangeError });
    t.is(buf.toString('latin1'), '..........world...hello ........');
    t.is(target.pread(fd, 0, 4, 100), 0); // past the end of the file
  } finally {
    closeSync(fd);
  }
});
