// Diff cost: overlay upperdir diff vs the userspace manifest diff, on a 50k-file rootfs with 10 changed paths.
// Run by hand, as root (overlay mounts): npx tsx bench/diff.ts [files=50000] [runs=7]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, unlink, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { diffManifest } from '../unionfs/diff-manifest.js';
import { diffUpperdir } from '../unionfs/diff-upper.js';
import { recordManifest } from '../unionfs/manifest.js';
import { mountOverlay } from '../unionfs/overlay.js';

const FILES = Number(process.argv[2] ?? 50_000);
const RUNS = Number(process.argv[3] ?? 7);
const PER_DIR = 100;

/** makeRootfs writes FILES small files in directories of PER_DIR (usr/share/pkgNNN/fileNNN). */
function makeRootfs(root: string): void {
  for (let i = 0; i < FILES; i++) {
    const dir = join(root, 'usr', 'share', `pkg${Math.floor(i / PER_DIR)}`);
    if (i % PER_DIR === 0) mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `file${i % PER_DIR}`), `content of file ${i}\n`.repeat(1 + (i % 7)));
  }
}

/** change10 makes the same ten changes in any copy of the rootfs: 4 rewrites, 3 adds, 2 deletes, 1 chmod. */
async function change10(root: string): Promise<void> {
  const f = (i: number) => join(root, 'usr', 'share', `pkg${Math.floor(i / PER_DIR)}`, `file${i % PER_DIR}`);
  for (const i of [1, 1001, 20_002, FILES - 1]) await appendFile(f(i), 'changed\n');
  for (const i of [0, 1, 2]) await writeFile(join(root, 'usr', 'share', `pkg${i * 7}`, `new${i}`), 'new\n');
  for (const i of [5000, 30_000]) await unlink(f(i));
  await chmod(f(40_000 % FILES), 0o600);
}

async function time<T>(runs: number, fn: () => Promise<T>): Promise<{ ms: number[]; result: T }> {
  const ms: number[] = [];
  let result: T | undefined;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    result = await fn();
    ms.push(performance.now() - t0);
  }
  return { ms, result: result as T };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (xs: number[]) =>
  `median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)}, n=${xs.length})`;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/diff.ts mounts overlays: run it as root');
  const base = await mkdtemp(join(tmpdir(), 'tsbuild-bench-diff-'));
  let unmount: (() => Promise<void>) | undefined;
  try {
    const lower = join(base, 'lower');
    let t0 = performance.now();
    makeRootfs(lower);
    console.log(
      `rootfs: ${FILES} files in ${Math.ceil(FILES / PER_DIR)} dirs, written in ${(performance.now() - t0).toFixed(0)} ms`,
    );

    // overlay path
    const upperdir = join(base, 'upper');
    const m = await mountOverlay({
      lowerdirs: [lower],
      upperdir,
      workdir: join(base, 'work'),
      target: join(base, 'merged'),
    });
    unmount = m.unmount;
    await change10(m.target);
    await m.unmount();
    unmount = undefined;
    const overlay = await time(RUNS, () => diffUpperdir({ upperdir, lowerdirs: [lower] }));

    // userspace path
    const copy = join(base, 'copy');
    execFileSync('cp', ['-a', lower, copy]);
    await new Promise((r) => setTimeout(r, 200)); // the copy is not "racy" any more: no content hashing
    t0 = performance.now();
    const before = await recordManifest(copy);
    const recordMs = performance.now() - t0;
    const hashed = Object.values(before.entries).filter((e) => e.hash !== undefined).length;
    await change10(copy);
    const manifest = await time(Math.min(RUNS, 3), () => diffManifest({ root: copy, before }));

    console.log(
      `changes: ${overlay.result.length} entries (${overlay.result.map((c) => `${c.kind[0]}:${c.path}`).join(' ')})`,
    );
    console.log(`diffUpperdir:   ${fmt(overlay.ms)}`);
    console.log(
      `recordManifest: ${recordMs.toFixed(1)} ms (${Object.keys(before.entries).length} entries, ${hashed} hashed)`,
    );
    console.log(`diffManifest:   ${fmt(manifest.ms)}`);
    console.log(
      `manifest record+diff / overlay diff: ${((recordMs + median(manifest.ms)) / median(overlay.ms)).toFixed(0)}x`,
    );
    console.log(`both paths agree: ${isDeepStrictEqual(overlay.result, manifest.result) ? 'yes' : 'NO'}`);
    console.log(`overlay diff under 100 ms: ${median(overlay.ms) < 100 ? 'yes' : 'NO'}`);
  } finally {
    await unmount?.();
    await rm(base, { recursive: true, force: true });
  }
}

await main();
