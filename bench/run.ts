// Benchmark: how long `true` takes in a container, tsbuild's runtime against runc and a bare Node start.
// Run by hand as root: npx tsx bench/run.ts [runs]   (uses dist/ when `npm run build` has made it, else the sources)
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox.js';

type RunModule = typeof import('../runtime/run.js');
type SpecModule = typeof import('../runtime/spec.js');
type BundleModule = typeof import('../runtime/bundle.js');

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(repo, 'dist');
const fromDist = existsSync(join(dist, 'runtime/run.js')) && existsSync(join(dist, 'sys/nsexec.js'));
const load = async <T>(rel: string): Promise<T> => (await import(pathToFileURL(join(fromDist ? dist : repo, `${rel}${fromDist ? '.js' : '.ts'}`)).href)) as T;
const { runContainer } = await load<RunModule>('runtime/run');
const { processSpec } = await load<SpecModule>('runtime/spec');
const { runtimeConfig } = await load<BundleModule>('runtime/bundle');

const runs = Number(process.argv[2] ?? 30);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

interface Case {
  name: string;
  fn: () => unknown;
  times: number[];
}

/** measure runs the cases round-robin (so that a busy machine slows them all alike) after 3 warm-up rounds. */
async function measure(cases: Case[]): Promise<void> {
  for (let round = -3; round < runs; round++) {
    for (const c of cases) {
      const t0 = performance.now();
      await c.fn();
      if (round >= 0) c.times.push(performance.now() - t0);
    }
  }
  for (const c of cases) {
    console.log(`${c.name.padEnd(46)} median ${median(c.times).toFixed(1).padStart(7)} ms   min ${Math.min(...c.times).toFixed(1).padStart(7)} ms`);
  }
}

function sh(argv: string[]): void {
  const r = spawnSync(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr?.toString() ?? r.error?.message}`);
}

const bundle = mkdtempSync(join(tmpdir(), 'tsbuild-bench-'));
chmodSync(bundle, 0o755);
try {
  const rootfs = join(bundle, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  const spec = processSpec({ config: {}, rootfs, cmd: ['true'], hostname: 'bench' });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(runtimeConfig(spec)));
  const io = { stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' } as const;
  const check = async (executor: 'native' | 'node'): Promise<void> => {
    const r = await runContainer(spec, io, { executor, forwardSignals: false });
    if (r.exitCode !== 0) throw new Error(`runContainer(${executor}) exited ${r.exitCode}`);
  };
  const fresh = fromDist
    ? `import(${JSON.stringify(pathToFileURL(join(dist, 'runtime/run.js')).href)}).then(async (m) => { const r = await m.runContainer(${JSON.stringify(spec)}, { stdout: 'ignore' }, { executor: 'native' }); process.exitCode = r.exitCode; })`
    : undefined;

  console.log(`runtime code from ${fromDist ? 'dist/ (compiled)' : 'sources through tsx (run `npm run build` first for the real numbers)'}; ${runs} rounds\n`);
  const cases: Case[] = [
    { name: 'node -e 0', fn: () => sh([process.execPath, '-e', '0']), times: [] },
    { name: 'runContainer(true), C helper (in-process)', fn: () => check('native'), times: [] },
    { name: 'runContainer(true), Node executor (in-process)', fn: () => check('node'), times: [] },
    { name: 'runc run (same rootfs, same config)', fn: () => sh(['runc', 'run', '--bundle', bundle, `tsbuild-bench-${process.pid}`]), times: [] },
  ];
  if (fresh) cases.push({ name: 'fresh node: import runtime + run true', fn: () => sh([process.execPath, '-e', fresh]), times: [] });
  await measure(cases);
  const [node, native, nodeEx, runc, cli] = cases.map((c) => median(c.times)) as [number, number, number, number, number | undefined];

  console.log('\nratios of medians');
  console.log(`  C helper / runc          ${(native / runc).toFixed(2)}`);
  console.log(`  Node executor / runc     ${(nodeEx / runc).toFixed(2)}`);
  console.log(`  Node executor / C helper ${(nodeEx / native).toFixed(2)}`);
  console.log(`  C helper / node -e 0     ${(native / node).toFixed(2)}`);
  if (cli !== undefined) console.log(`  fresh node + run - node -e 0 = ${(cli - node).toFixed(1)} ms (budget for \`tsbuild run --rm IMG true\`: 60 ms)`);
} finally {
  rmSync(bundle, { recursive: true, force: true });
}
