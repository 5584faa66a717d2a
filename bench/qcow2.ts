// bench/qcow2.ts: our QCOW2 writer against `qemu-img convert -O qcow2` (plain and -c) on a 2 GiB sparse raw image
// holding ~600 MB of data (a third random, two thirds real files from /usr, which compress like a root filesystem).
// Prints median times (BENCH_REPS runs each, default 3) and sizes as ratios (ours / qemu-img); asserts nothing.
// Run: npx tsx bench/qcow2.ts
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeQcow2 } from '../convert/qcow2.js';
import { run } from '../sys/exec.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const DISK = 2 * GiB;
const REGION = 8 * MiB;
const RANDOM_BYTES = 200 * MiB;
const FILE_BYTES = 400 * MiB;
/** runs per tool and variant (alternating); the median is printed */
const REPS = Number(process.env.BENCH_REPS ?? 3);

/** usrFiles yields the contents of regular files under /usr (deterministic order) until `limit` bytes. */
async function* usrFiles(limit: number): AsyncGenerator<Buffer> {
  let total = 0;
  const stack = ['/usr/lib', '/usr/bin', '/usr/share'];
  while (stack.length > 0 && total < limit) {
    const dir = stack.shift()!;
    let entries;
    try {
      entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    } catch {
      continue;
    }
    for (const e of entries) {
      if (total >= limit) return;
      const p = join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) {
        try {
          const data = await readFile(p);
          const take = Math.min(data.length, limit - total);
          total += take;
          yield data.subarray(0, take);
        } catch {
          // unreadable: skip
        }
      }
    }
  }
}

/** makeRaw writes 8 MiB data regions spread over a sparse 2 GiB file, with holes between them. */
async function makeRaw(path: string): Promise<number> {
  await writeFile(path, '');
  await truncate(path, DISK);
  const fh = await open(path, 'r+');
  const regions = (RANDOM_BYTES + FILE_BYTES) / REGION;
  const stride = Math.floor(DISK / regions / MiB) * MiB;
  let region = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (buf: Buffer): Promise<void> => {
    await fh.write(buf, 0, buf.length, region * stride);
    region++;
  };
  try {
    for (let i = 0; i < RANDOM_BYTES / REGION; i++) await flush(randomBytes(REGION));
    for await (const data of usrFiles(FILE_BYTES)) {
      pending.push(data);
      pendingBytes += data.length;
      while (pendingBytes >= REGION) {
        const all = Buffer.concat(pending);
        await flush(all.subarray(0, REGION));
        pending = [all.subarray(REGION)];
        pendingBytes = all.length - REGION;
      }
    }
    if (pendingBytes > 0) await flush(Buffer.concat(pending));
  } finally {
    await fh.close();
  }
  return (await stat(path)).blocks * 512;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-bench-qcow2-'));
  try {
    const raw = join(dir, 'disk.raw');
    const data = await makeRaw(raw);
    console.log(`raw image: ${DISK / GiB} GiB virtual, ${(data / MiB).toFixed(0)} MiB of data on disk`);
    await run(['qemu-img', 'compare', '-f', 'raw', raw, raw]); // warm the page cache for both sides
    const rows: string[][] = [
      ['variant', 'ours s', 'qemu-img s', 'time ratio', 'ours MiB', 'qemu-img MiB', 'size ratio'],
    ];
    for (const compress of [false, true]) {
      const ours = join(dir, `ours${compress ? '-c' : ''}.qcow2`);
      const theirs = join(dir, `qemu${compress ? '-c' : ''}.qcow2`);
      const tOurs: number[] = [];
      const tTheirs: number[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        // sync first so that neither run pays for the other's dirty pages being written back
        await run(['sync']);
        tOurs.push(await timed(() => writeQcow2({ input: raw, output: ours, compress })));
        await run(['sync']);
        await rm(theirs, { force: true });
        tTheirs.push(
          await timed(() =>
            run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', ...(compress ? ['-c'] : []), raw, theirs]),
          ),
        );
      }
      const sOurs = (await stat(ours)).size;
      const sTheirs = (await stat(theirs)).size;
      await run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'qcow2', ours, theirs]);
      rows.push([
        compress ? 'compressed (-c)' : 'plain',
        median(tOurs).toFixed(2),
        median(tTheirs).toFixed(2),
        (median(tOurs) / median(tTheirs)).toFixed(2),
        (sOurs / MiB).toFixed(1),
        (sTheirs / MiB).toFixed(1),
        (sOurs / sTheirs).toFixed(3),
      ]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i]!)).join('  '));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
