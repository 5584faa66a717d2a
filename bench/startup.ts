// Startup time: `tsbuild --version` and `tsbuild images` against a bare `node -e 0`, measured in one run.
// Run by hand: npx tsx bench/startup.ts [runs]. Prints medians and the difference; asserts nothing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const runs = Number(process.argv[2] ?? 30);
const bin = join(import.meta.dirname, '..', 'bin', 'tsbuild.js');
const store = mkdtempSync(join(tmpdir(), 'tsbuild-bench-'));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function time(argv: string[]): number {
  const samples: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`);
    if (i >= 3) samples.push(dt); // the first runs warm the page cache
  }
  return median(samples);
}

try {
  const node = time([process.execPath, '-e', '0']);
  const version = time([process.execPath, bin, '--version']);
  const images = time([process.execPath, bin, '--root', store, 'images']);
  const row = (name: string, t: number) =>
    console.log(`${name.padEnd(28)} ${t.toFixed(3)} s   +${(t - node).toFixed(3)} s over node -e 0`);
  console.log(`median of ${runs} runs`);
  row('node -e 0', node);
  row('tsbuild --version', version);
  row('tsbuild images (empty store)', images);
  console.log(
    `target: tsbuild --version at most 0.050 s above node -e 0: ${version - node <= 0.05 ? 'met' : 'NOT met'}`,
  );
} finally {
  rmSync(store, { recursive: true, force: true });
}
