// sys/mmap.ts: a mapping reads a file's bytes where they lie, from any offset, and refuses what it cannot map.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SysError } from '../../sys/libc.js';
import { canMap, mapFile } from '../../sys/mmap.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const linuxPc = process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64');

test('mappings are available on Linux for x86-64 and arm64, and nowhere else', (t) => {
  t.is(canMap(), linuxPc);
});

const withFile = async (t: ExecutionContext, data: Buffer, flags: string, use: (fd: number) => void): Promise<void> => {
  const dir = await makeTempDir('tsbuild-mmap-');
  t.teardown(() => removeDir(dir));
  const path = join(dir, 'data');
  writeFileSync(path, data);
  const fd = openSync(path, flags);
  try {
    use(fd);
  } finally {
    closeSync(fd);
  }
};

(linuxPc ? test : test.skip)(
  'a mapping from an offset inside a page holds the file’s bytes from there, and unmapping twice is harmless',
  async (t) => {
    const data = randomBytes(3 * 65536 + 123);
    await withFile(t, data, 'r', (fd) => {
      for (const [offset, length] of [
        [0, data.length],
        [4097, 70000],
        [65536, 1],
        [data.length - 10, 10],
      ] as const) {
        const m = mapFile(fd, offset, length);
        t.is(m.buffer.length, length);
        t.true(m.buffer.equals(data.subarray(offset, offset + length)), `${offset}+${length}`);
        m.unmap();
        m.unmap();
      }
    });
  },
);

(linuxPc ? test : test.skip)('a range that is empty, negative or not whole is refused before mmap', async (t) => {
  await withFile(t, Buffer.alloc(4096), 'r', (fd) => {
    for (const [offset, length] of [
      [0, 0],
      [-1, 10],
      [0, 1.5],
    ] as const)
      t.throws(() => mapFile(fd, offset, length), { instanceOf: RangeError });
  });
});

(linuxPc ? test : test.skip)('a file opened for writing only cannot be mapped: a SysError names mmap', async (t) => {
  await withFile(t, Buffer.alloc(4096, 1), 'w', (fd) => {
    const err = t.throws(() => mapFile(fd, 0, 1), { instanceOf: SysError });
    t.is(err?.syscall, 'mmap');
    t.is(err?.code, 'EACCES');
  });
});
