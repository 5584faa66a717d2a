// Where the kernel and the initrd lie on the disk: the byte ranges of their data blocks (debugfs `blocks`), read
// without mounting. The qcow2 writer keeps those clusters uncompressed: a BIOS bootloader reads both files at every
// boot in small requests, and each request of a compressed cluster costs QEMU a decompression of the whole cluster
// (measured under TCG: GRUB took about 1 s longer to reach the kernel with zstd clusters than with plain ones).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../sys/exec.js';
import { BLOCK } from './ext4.js';

/**
 * fileRanges returns the disk byte ranges [start, end), sorted and merged, of the data blocks of `paths` in the ext4
 * filesystem at byte `offset` of `image`. Paths debugfs does not find (or cannot quote) contribute nothing.
 */
export async function fileRanges(opts: {
  image: string;
  offset: number;
  paths: string[];
  workDir: string;
  signal?: AbortSignal;
}): Promise<Array<[number, number]>> {
  const paths = opts.paths.filter((p) => !/["\n]/.test(p));
  if (paths.length === 0) return [];
  const script = join(opts.workDir, 'extents.debugfs');
  await writeFile(script, paths.map((p) => `blocks "${p}"\n`).join(''));
  const r = await run(
    ['debugfs', '-f', script, `${opts.image}?offset=${opts.offset}`],
    opts.signal ? { signal: opts.signal } : {},
  );
  const blocks = r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('debugfs'))
    .flatMap((l) => l.trim().split(/\s+/))
    .filter((w) => /^\d+$/.test(w))
    .map(Number)
    .sort((a, b) => a - b);
  const ranges: Array<[number, number]> = [];
  for (const b of blocks) {
    const start = opts.offset + b * BLOCK;
    const last = ranges.at(-1);
    if (last && last[1] >= start) last[1] = Math.max(last[1], start + BLOCK);
    else ranges.push([start, start + BLOCK]);
  }
  return ranges;
}
