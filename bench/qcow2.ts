// bench/qcow2.ts: our QCOW2 writer against `qemu-img convert -O qcow2` (plain, -c, and -c with zstd, the export's
// default) on a 2 GiB sparse raw image holding ~600 MB of data (a third random, two thirds real files from /usr, which
// compress like a root filesystem). Prints median wall times and CPU seconds (BENCH_REPS runs each, default 3), the
// fastest run of each side, and sizes as ratios (ours / qemu-img), and the load average before and after; asserts
// nothing. Both sides write a new file (replacing an existing 600 MB file costs its unlink, up to seconds, which is
// not the writer's work). Our zstd clusters are level 1, qemu-img's level 3 (convert/qcow2.ts): the size ratio shows
// what that costs.
// Run: npx tsx bench/qcow2.ts
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeQcow2, type Qcow2Compression } from '../convert/qcow2.js';
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

/** childCpu: CPU seconds (user + system) of this process's waited-for children (/proc/self/stat cutime + cstime). */
function childCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) / 100; // fields 16 and 17, in clock ticks (USER_HZ = 100)
}

/** timed runs `fn` and returns its wall seconds and CPU seconds (this process's threads, or its children's). */
async function timed(fn: () => Promise<unknown>, children: boolean): Promise<{ wall: number; cpu: number }> {
  const t0 = process.hrtime.bigint();
  const u0 = process.cpuUsage();
  const c0 = childCpu();
  await fn();
  const u = process.cpuUsage(u0);
  return {
    wall: Number(process.hrtime.bigint() - t0) / 1e9,
    cpu: children ? childCpu() - c0 : (u.user + u.system) / 1e6,
  };
}

const load = (): string => loadavg()[0]!.toFixed(2);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-bench-qcow2-'));
  try {
    const started = Date.now();
    console.log(`load average at the start: ${load()}`);
    const raw = join(dir, 'disk.raw');
    const data = await makeRaw(raw);
    console.log(`raw image: ${DISK / GiB} GiB virtual, ${(data / MiB).toFixed(0)} MiB of data on disk`);
    await run(['qemu-img', 'compare', '-f', 'raw', raw, raw]); // warm the page cache for both sides
    const rows: string[][] = [
      [
        'variant',
        'ours s',
        'qemu-img s',
        'time ratio',
        'best ours / qemu-img',
        'ours CPU s',
        'qemu-img CPU s',
        'CPU ratio',
        'ours MiB',
        'qemu-img MiB',
        'size ratio',
      ],
    ];
    const variants: [string, false | Qcow2Compression, string[]][] = [
      ['plain', false, []],
      ['deflate (-c)', 'deflate', ['-c']],
      ['zstd (-c, compression_type=zstd)', 'zstd', ['-c', '-o', 'compression_type=zstd']],
    ];
    for (const [name, compress, flags] of variants) {
      const ours = join(dir, 'ours.qcow2');
      const theirs = join(dir, 'qemu.qcow2');
      const tOurs: { wall: number; cpu: number }[] = [];
      const tTheirs: { wall: number; cpu: number }[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        // each side writes a new file, and sync first so that neither run pays for the other's dirty pages
        await rm(ours, { force: true });
        await run(['sync']);
        tOurs.push(await timed(() => writeQcow2({ input: raw, output: ours, compress }), false));
        await rm(theirs, { force: true });
        await run(['sync']);
        tTheirs.push(
          await timed(() => run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', ...flags, raw, theirs]), true),
        );
      }
      const sOurs = (await stat(ours)).size;
      const sTheirs = (await stat(theirs)).size;
      await run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'qcow2', ours, theirs]);
      const [wo, wt] = [median(tOurs.map((t) => t.wall)), median(tTheirs.map((t) => t.wall))];
      const [co, ct] = [median(tOurs.map((t) => t.cpu)), median(tTheirs.map((t) => t.cpu))];
      // the fastest run of each side: this machine's noise only ever adds time (see bench/README.md)
      const [bo, bt] = [Math.min(...tOurs.map((t) => t.wall)), Math.min(...tTheirs.map((t) => t.wall))];
      rows.push([
        name,
        wo.toFixed(2),
        wt.toFixed(2),
        (wo / wt).toFixed(2),
        `${bo.toFixed(2)} / ${bt.toFixed(2)} = ${(bo / bt).toFixed(2)}`,
        co.toFixed(2),
        ct.toFixed(2),
        (co / ct).toFixed(2),
        (sOurs / MiB).toFixed(1),
        (sTheirs / MiB).toFixed(1),
        (sOurs / sTheirs).toFixed(3),
      ]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i]!)).join('  '));
    console.log(`load average at the end: ${load()}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
