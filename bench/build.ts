// Dockerfile build cost: tsbuild against `buildah bud` and `docker build` (the legacy builder) in the same run.
// Run by hand, as root, after `npm run build`:  npx tsx bench/build.ts [--runs N] [--steps N] [--buildah-driver overlay|vfs] [--no-docker]
//
// Scenarios, each timed per tool on the same busybox base and the same context (200 small source files):
//   cold      a fresh cache (tsbuild: a store holding only the base; buildah: fresh storage with the base pulled;
//             docker: --no-cache)
//   no-op     the same build again (everything cached)
//   one-file  one context file changed: its COPY and the steps after it run again
//   per-RUN   (time of a Dockerfile with 1+N `RUN echo i` steps − time with 1) / N, cache off
// Prints a table and tsbuild/peer ratios, with the targets the issue set; never asserts.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox.js';
import { saveImages } from '../layers/sources/archive-save.js';
import { getImage } from '../layers/store/image.js';
import { importImage } from '../layers/sources/import.js';
import { Store } from '../layers/store/store.js';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const RUNS = Number(opt('--runs', '3'));
const STEPS = Number(opt('--steps', '10'));
const BUILDAH_DRIVER = opt('--buildah-driver', 'overlay');
const WITH_DOCKER = !args.includes('--no-docker');

const loadStart = loadavg()
  .map((x) => x.toFixed(2))
  .join(' ');
const work = mkdtempSync(join(tmpdir(), 'tsbuild-bench-build-'));
const sh = (cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): void => {
  const r = spawnSync(cmd, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.status}: ${r.stderr.toString().slice(-2000)}`);
};
const time = (fn: () => void): number => {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ─── inputs ─────────────────────────────────────────────────────────────────────────────────────────────────────

const ctx = join(work, 'ctx');
mkdirSync(join(ctx, 'src'), { recursive: true });
for (let d = 0; d < 10; d++) {
  mkdirSync(join(ctx, 'src', `d${d}`));
  for (let f = 0; f < 20; f++) writeFileSync(join(ctx, 'src', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(200));
}
writeFileSync(join(ctx, 'config.txt'), 'v1\n');
const MAIN = `FROM busybox:test
WORKDIR /app
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count && cat /app/src/*/* | md5sum > /app/sum
COPY config.txt /app/
RUN echo configured > /app/done
CMD ["cat", "/app/done"]
`;
writeFileSync(join(ctx, 'Dockerfile'), MAIN);
const runsDf = (n: number): string =>
  `FROM busybox:test\n${Array.from({ length: n }, (_, i) => `RUN echo ${i} > /r${i}\n`).join('')}`;
writeFileSync(join(ctx, 'Runs1.Dockerfile'), runsDf(1));
writeFileSync(join(ctx, `Runs${1 + STEPS}.Dockerfile`), runsDf(1 + STEPS));

const tree = join(work, 'bb');
mkdirSync(tree);
await makeBusyboxRootfs(tree);
const baseStore = join(work, 'base-store');
const store = await Store.open(baseStore);
await importImage(store, {
  source: tree,
  name: 'busybox:test',
  sourceDateEpoch: 1_700_000_000,
  config: { Cmd: ['/bin/sh'] },
});
const archive = join(work, 'busybox.tar');
await saveImages(store, {
  images: [{ image: await getImage(store, 'busybox:test'), names: ['busybox:test'] }],
  output: archive,
});

// ─── tools ──────────────────────────────────────────────────────────────────────────────────────────────────────

interface Tool {
  name: string;
  /** a fresh cache holding only the base */
  reset(): void;
  build(dockerfile: string, noCache: boolean): void;
}

const tsbuildCli = join(repo, 'bin', 'tsbuild.js');
if (!existsSync(join(repo, 'dist', 'cli', 'commands', 'build.js'))) throw new Error('run `npm run build` first');
let tsRoot = '';
const tsbuild: Tool = {
  name: 'tsbuild',
  reset() {
    if (tsRoot) rmSync(tsRoot, { recursive: true, force: true });
    tsRoot = join(work, `ts-${Date.now()}`);
    sh('cp', ['-a', baseStore, tsRoot]);
  },
  build(df, noCache) {
    sh(process.execPath, [
      tsbuildCli,
      '--root',
      tsRoot,
      'build',
      '--progress',
      'quiet',
      ...(noCache ? ['--no-cache'] : []),
      '-f',
      join(ctx, df),
      '-t',
      'bench:1',
      ctx,
    ]);
  },
};

let bhRoot = '';
const bh = (): string[] => [
  '--root',
  join(bhRoot, 'root'),
  '--runroot',
  join(bhRoot, 'run'),
  '--storage-driver',
  BUILDAH_DRIVER,
];
const buildah: Tool = {
  name: `buildah (${BUILDAH_DRIVER})`,
  reset() {
    if (bhRoot) {
      spawnSync('buildah', [...bh(), 'rm', '--all'], { stdio: 'ignore' });
      spawnSync('umount', ['-R', '-l', bhRoot], { stdio: 'ignore' });
      rmSync(bhRoot, { recursive: true, force: true });
    }
    bhRoot = join(work, `bh-${Date.now()}`);
    sh('buildah', [...bh(), 'pull', '-q', `oci-archive:${archive}`]);
  },
  build(df, noCache) {
    sh('buildah', [
      ...bh(),
      'bud',
      '--isolation',
      'chroot',
      '--layers',
      '--pull=never',
      '-q',
      ...(noCache ? ['--no-cache'] : []),
      '-f',
      join(ctx, df),
      '-t',
      'bench:1',
      ctx,
    ]);
  },
};

/** the docker CLI that matches Debian's dockerd (/usr/local/bin/docker may be a newer client) */
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
let dockerd: { host: string; stop(): Promise<void> } | undefined;
const docker = (): Tool => ({
  name: 'docker build (legacy)',
  reset() {
    spawnSync(DOCKER, ['-H', dockerd!.host, 'image', 'prune', '-af'], { stdio: 'ignore' });
    sh(DOCKER, ['-H', dockerd!.host, 'load', '-q', '-i', archive]);
  },
  build(df, noCache) {
    sh(
      DOCKER,
      [
        '-H',
        dockerd!.host,
        'build',
        '-q',
        '--network',
        'none',
        ...(noCache ? ['--no-cache'] : []),
        '-f',
        join(ctx, df),
        '-t',
        'bench:1',
        ctx,
      ],
      { DOCKER_BUILDKIT: '0' },
    );
  },
});

async function startDockerd(): Promise<{ host: string; stop(): Promise<void> }> {
  const dir = join(work, 'dockerd');
  mkdirSync(dir);
  const host = `unix://${join(dir, 'docker.sock')}`;
  const child = spawn(
    'dockerd',
    [
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'pid'),
      '-H',
      host,
      '--iptables=false',
      '--ip-masq=false',
      '--bridge=none',
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 150; i++) {
    if (spawnSync(DOCKER, ['-H', host, 'version'], { stdio: 'ignore' }).status === 0) {
      return {
        host,
        // wait for dockerd to exit (a blocking sleep would keep its exit from being seen, and it was always SIGKILLed)
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            const closed = new Promise((r) => child.once('close', r));
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
            await closed;
            clearTimeout(timer);
          }
          spawnSync('umount', ['-R', '-l', dir], { stdio: 'ignore' });
        },
      };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error('dockerd did not start');
}

// ─── measure ────────────────────────────────────────────────────────────────────────────────────────────────────

interface Result {
  cold: number;
  noop: number;
  oneFile: number;
  perRun: number;
}

function measure(tool: Tool): Result {
  const cold: number[] = [];
  const noop: number[] = [];
  const oneFile: number[] = [];
  const perRun: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    tool.reset();
    writeFileSync(join(ctx, 'config.txt'), 'v1\n');
    cold.push(time(() => tool.build('Dockerfile', false)));
    noop.push(time(() => tool.build('Dockerfile', false)));
    writeFileSync(join(ctx, 'config.txt'), `v${r + 2}\n`);
    oneFile.push(time(() => tool.build('Dockerfile', false)));
    const one = time(() => tool.build('Runs1.Dockerfile', true));
    const many = time(() => tool.build(`Runs${1 + STEPS}.Dockerfile`, true));
    perRun.push((many - one) / STEPS);
  }
  return { cold: median(cold), noop: median(noop), oneFile: median(oneFile), perRun: median(perRun) };
}

const results = new Map<string, Result>();
try {
  const tools: Tool[] = [tsbuild, buildah];
  if (WITH_DOCKER) {
    dockerd = await startDockerd();
    tools.push(docker());
  }
  for (const t of tools) {
    process.stderr.write(`measuring ${t.name}…\n`);
    results.set(t.name, measure(t));
  }
} finally {
  await dockerd?.stop();
  if (bhRoot) spawnSync('umount', ['-R', '-l', bhRoot], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}

const fmt = (s: number): string => `${s.toFixed(2)} s`;
console.log(
  `build benchmark: ${RUNS} run(s) each (median), per-RUN over ${STEPS} extra steps; node ${process.version}; load average at the start ${loadStart}, at the end ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  `${'tool'.padEnd(26)}${'cold'.padStart(10)}${'no-op'.padStart(10)}${'one-file'.padStart(10)}${'per-RUN'.padStart(10)}`,
);
for (const [name, r] of results)
  console.log(
    `${name.padEnd(26)}${fmt(r.cold).padStart(10)}${fmt(r.noop).padStart(10)}${fmt(r.oneFile).padStart(10)}${fmt(r.perRun).padStart(10)}`,
  );
const ts = results.get('tsbuild')!;
for (const [name, r] of results) {
  if (name === 'tsbuild') continue;
  console.log(
    `tsbuild / ${name}: cold ${(ts.cold / r.cold).toFixed(2)}, no-op ${(ts.noop / r.noop).toFixed(2)}, one-file ${(ts.oneFile / r.oneFile).toFixed(2)}, per-RUN ${(ts.perRun / r.perRun).toFixed(2)}`,
  );
}
const bhr = results.get(buildah.name)!;
console.log('targets: cold ≤ 1.0× buildah; no-op < 0.5 s and ≤ 0.5× buildah; per-RUN ≤ 0.5× buildah');
console.log(
  `  cold ${ts.cold <= bhr.cold ? 'met' : 'MISSED'}; no-op ${ts.noop < 0.5 && ts.noop <= bhr.noop / 2 ? 'met' : 'MISSED'}; per-RUN ${ts.perRun <= bhr.perRun / 2 ? 'met' : 'MISSED'}`,
);
execFileSync('true');
