// Benchmark: how long `true` takes in a container: `tsbuild run --rm IMG true` (the CLI, a fresh process) against
// `runc run` of the same bundle, `docker run --rm --network none IMG true` (a private dockerd started here, with the
// same busybox image `docker load`ed) and a bare `node -e 0`; plus tsbuild's runtime called in-process.
// Issue target: `tsbuild run --rm IMG true` at most 0.5× `docker run`, and at most 0.06 s above `node -e 0`.
// Run by hand as root: npx tsx bench/run.ts [runs=30] [--no-docker]
//   (uses dist/ when `npm run build` has made it, else the sources; the CLI case needs dist/)
// The CLI runs from dist/bundle/cli.js with the user's code cache (the warm-up rounds write it), and for comparison
// from a copy of bin/ and dist/ without the bundle (the modules of dist/, as before it). (No case without the code
// cache here: $XDG_CACHE_HOME also holds the C helper, so moving it would time the Node executor.)
// Prints medians and ratios; asserts nothing.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox.js';
import { saveImages } from '../layers/sources/archive-save.js';
import { getImage } from '../layers/store/image.js';
import { importImage } from '../layers/sources/import.js';
import { Store } from '../layers/store/store.js';
import { type Dockerd, DOCKER_CLI, startDockerd } from '../test/helpers/dockerd.js';

type RunModule = typeof import('../runtime/run.js');
type SpecModule = typeof import('../runtime/spec.js');
type BundleModule = typeof import('../runtime/bundle.js');

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(repo, 'dist');
const cli = join(repo, 'bin', 'tsbuild.js');
const fromDist = existsSync(join(dist, 'runtime/run.js')) && existsSync(join(dist, 'sys/nsexec.js'));
/** cliForm tells what bin/tsbuild.js loads: the bundle, or the modules of dist/ (no bundle, or tsc ran after it). */
function cliForm(): string {
  try {
    const bundle = statSync(join(dist, 'bundle', 'cli.js')).mtimeMs;
    if (bundle >= statSync(join(dist, 'cli', 'main.js')).mtimeMs) return 'the bundle dist/bundle/cli.js';
    return 'the modules of dist/ (the bundle is older than dist/: npm run build)';
  } catch {
    return 'the modules of dist/ (no bundle: npm run build)';
  }
}
const load = async <T>(rel: string): Promise<T> =>
  (await import(pathToFileURL(join(fromDist ? dist : repo, `${rel}${fromDist ? '.js' : '.ts'}`)).href)) as T;
const { runContainer } = await load<RunModule>('runtime/run');
const { processSpec } = await load<SpecModule>('runtime/spec');
const { runtimeConfig } = await load<BundleModule>('runtime/bundle');

const args = process.argv.slice(2);
const WITH_DOCKER = !args.includes('--no-docker');
const runs = Number(args.find((a) => !a.startsWith('--')) ?? 30);
const DOCKER = DOCKER_CLI;
const IMAGE = 'busybox:bench';

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
    console.log(
      `${c.name.padEnd(50)} median ${median(c.times).toFixed(1).padStart(7)} ms   min ${Math.min(...c.times)
        .toFixed(1)
        .padStart(7)} ms`,
    );
  }
}

/** modulesOnly copies bin/ and dist/ without dist/bundle/ into `dir`: its bin/tsbuild.js loads the modules of dist/. */
function modulesOnly(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync(join(repo, 'bin', 'tsbuild.js'), join(dir, 'bin', 'tsbuild.js'));
  cpSync(join(repo, 'package.json'), join(dir, 'package.json'));
  cpSync(dist, join(dir, 'dist'), { recursive: true, filter: (src) => !src.startsWith(join(dist, 'bundle')) });
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  symlinkSync(join(repo, 'sys'), join(dir, 'sys'));
  return join(dir, 'bin', 'tsbuild.js');
}

function sh(argv: string[], env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(argv[0] as string, argv.slice(1), {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr?.toString() ?? r.error?.message}`);
}

const bundle = mkdtempSync(join(tmpdir(), 'tsbuild-bench-'));
chmodSync(bundle, 0o755);
const work = mkdtempSync(join(tmpdir(), 'tsbuild-bench-run-'));
let dockerd: Dockerd | undefined;
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

  // the same busybox tree as an image in a tsbuild store (for `tsbuild run`) and as an archive (for `docker load`)
  const storeRoot = join(work, 'store');
  const store = await Store.open(storeRoot);
  await importImage(store, {
    source: rootfs,
    name: IMAGE,
    sourceDateEpoch: 1_700_000_000,
    config: { Cmd: ['/bin/sh'] },
  });
  const old = modulesOnly(join(work, 'modules-only'));
  const archive = join(work, 'busybox.tar');
  await saveImages(store, { images: [{ image: await getImage(store, IMAGE), names: [IMAGE] }], output: archive });

  console.log(
    `runtime code from ${fromDist ? 'dist/ (compiled)' : 'sources through tsx (run `npm run build` first for the real numbers)'}; the CLI from ${cliForm()} (the warm-up rounds write its code cache); ${runs} rounds`,
  );
  console.log(
    `node ${process.version}; load average at the start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const cases: Case[] = [
    { name: 'node -e 0', fn: () => sh([process.execPath, '-e', '0']), times: [] },
    {
      name: 'tsbuild run --rm IMG true (CLI)',
      fn: () => sh([process.execPath, cli, '--root', storeRoot, 'run', '--rm', IMAGE, 'true']),
      times: [],
    },
    {
      name: '  same, modules of dist/ (no bundle)',
      fn: () => sh([process.execPath, old, '--root', storeRoot, 'run', '--rm', IMAGE, 'true']),
      times: [],
    },
    { name: 'runContainer(true), C helper (in-process)', fn: () => check('native'), times: [] },
    { name: 'runContainer(true), Node executor (in-process)', fn: () => check('node'), times: [] },
    {
      name: 'runc run (same rootfs, same config)',
      fn: () => sh(['runc', 'run', '--bundle', bundle, `tsbuild-bench-${process.pid}`]),
      times: [],
    },
  ];
  if (fresh)
    cases.push({
      name: 'fresh node: import runtime + run true',
      fn: () => sh([process.execPath, '-e', fresh]),
      times: [],
    });
  if (WITH_DOCKER) {
    dockerd = await startDockerd();
    const host = dockerd.host;
    sh([DOCKER, '-H', host, 'load', '-q', '-i', archive]);
    console.log(
      `dockerd: ${spawnSync(DOCKER, ['-H', host, 'version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).stdout.trim()} (private, started by the bench)`,
    );
    cases.push({
      name: 'docker run --rm --network none IMG true',
      fn: () => sh([DOCKER, '-H', host, 'run', '--rm', '--network', 'none', IMAGE, 'true']),
      times: [],
    });
  }
  console.log('');
  await measure(cases);
  const m = (name: string): number | undefined => {
    const c = cases.find((x) => x.name.startsWith(name));
    return c ? median(c.times) : undefined;
  };
  const node = m('node -e 0') as number;
  const run = m('tsbuild run') as number;
  const modules = m('  same, modules of dist/') as number;
  const native = m('runContainer(true), C') as number;
  const nodeEx = m('runContainer(true), Node') as number;
  const runc = m('runc run') as number;
  const freshMs = m('fresh node');
  const docker = m('docker run');

  console.log('\nratios of medians');
  console.log(`  tsbuild run / runc run   ${(run / runc).toFixed(2)}`);
  if (docker !== undefined) console.log(`  tsbuild run / docker run ${(run / docker).toFixed(2)}`);
  console.log(`  C helper / runc          ${(native / runc).toFixed(2)}`);
  console.log(`  Node executor / runc     ${(nodeEx / runc).toFixed(2)}`);
  console.log(`  Node executor / C helper ${(nodeEx / native).toFixed(2)}`);
  console.log(`  C helper / node -e 0     ${(native / node).toFixed(2)}`);
  if (freshMs !== undefined) console.log(`  fresh node + run - node -e 0 = ${(freshMs - node).toFixed(1)} ms`);
  console.log(`  tsbuild run - node -e 0 = ${(run - node).toFixed(1)} ms`);
  console.log(`    from the modules of dist/ (no bundle): ${(modules - node).toFixed(1)} ms`);
  console.log('targets (issue): tsbuild run ≤ 0.5× docker run; tsbuild run ≤ node -e 0 + 60 ms');
  console.log(
    `  vs docker: ${docker === undefined ? 'not measured (--no-docker)' : run <= docker / 2 ? 'met' : 'NOT met'}; over node -e 0: ${run - node <= 60 ? 'met' : 'NOT met'}`,
  );
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
} finally {
  await dockerd?.stop();
  rmSync(bundle, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
