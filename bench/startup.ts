// Startup time: `tsbuild --version` and `tsbuild images` against a bare `node -e 0`, measured in one run.
// Run by hand: npx tsx bench/startup.ts [runs]. Prints medians and the difference; asserts nothing.
// The CLI runs as users run it: from dist/bundle/cli.js when `npm run build` made it after dist/ (else from the
// modules of dist/: the first line says which), with this user's code cache (the warm-up rounds write it). For
// comparison `images` also runs without that cache (the bundle with the build's cache only) and from a copy of
// bin/ and dist/ without the bundle (the modules of dist/, as before the bundle).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const runs = Number(process.argv[2] ?? 30);
const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'bin', 'tsbuild.js');
const work = mkdtempSync(join(tmpdir(), 'tsbuild-bench-'));
const store = join(work, 'store');

/** cliForm tells what bin/tsbuild.js loads: the bundle, or the modules of dist/ (no bundle, or tsc ran after it). */
function cliForm(root: string): string {
  try {
    const bundle = statSync(join(root, 'dist', 'bundle', 'cli.js')).mtimeMs;
    if (bundle >= statSync(join(root, 'dist', 'cli', 'main.js')).mtimeMs) return 'the bundle dist/bundle/cli.js';
    return 'the modules of dist/ (the bundle is older than dist/: npm run build)';
  } catch {
    return 'the modules of dist/ (no bundle: npm run build)';
  }
}

/** modulesOnly copies bin/ and dist/ without dist/bundle/ into `dir`: its bin/tsbuild.js loads the modules of dist/. */
function modulesOnly(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync(join(repo, 'bin', 'tsbuild.js'), join(dir, 'bin', 'tsbuild.js'));
  cpSync(join(repo, 'package.json'), join(dir, 'package.json'));
  cpSync(join(repo, 'dist'), join(dir, 'dist'), {
    recursive: true,
    filter: (src) => !src.startsWith(join(repo, 'dist', 'bundle')),
  });
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  symlinkSync(join(repo, 'sys'), join(dir, 'sys'));
  return join(dir, 'bin', 'tsbuild.js');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface Case {
  name: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  times: number[];
}

/** measure runs the cases round-robin (a busy machine slows them all alike), 3 warm-up rounds first. */
function measure(cases: Case[]): void {
  for (let round = -3; round < runs; round++) {
    for (const c of cases) {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(c.argv[0] as string, c.argv.slice(1), {
        stdio: 'ignore',
        env: { ...process.env, ...c.env },
      });
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r.status !== 0) throw new Error(`${c.argv.join(' ')} exited ${r.status}`);
      if (round >= 0) c.times.push(dt);
    }
  }
}

try {
  mkdirSync(store);
  const old = modulesOnly(join(work, 'modules-only'));
  const cases: Case[] = [
    { name: 'node -e 0', argv: [process.execPath, '-e', '0'], times: [] },
    { name: 'tsbuild --version', argv: [process.execPath, bin, '--version'], times: [] },
    { name: 'tsbuild images (empty store)', argv: [process.execPath, bin, '--root', store, 'images'], times: [] },
    {
      name: '  same, no code cache of the user',
      argv: [process.execPath, bin, '--root', store, 'images'],
      env: { XDG_CACHE_HOME: '/dev/null/no-cache' }, // cannot be created: read nothing, write nothing
      times: [],
    },
    { name: '  same, modules of dist/', argv: [process.execPath, old, '--root', store, 'images'], times: [] },
  ];
  console.log(
    `median of ${runs} runs; the CLI from ${cliForm(repo)}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  measure(cases);
  const node = median(cases[0]?.times ?? []);
  for (const c of cases) {
    const t = median(c.times);
    console.log(`${c.name.padEnd(36)} ${t.toFixed(3)} s   +${(t - node).toFixed(3)} s over node -e 0`);
  }
  const version = median(cases[1]?.times ?? []);
  console.log(
    `target: tsbuild --version at most 0.050 s above node -e 0: ${version - node <= 0.05 ? 'met' : 'NOT met'}`,
  );
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
