// Dockerfile build cost: tsbuild against `buildah bud`, `docker build` with the legacy builder and BuildKit (the one
// embedded in Debian's dockerd 20.10, driven by Debian's own CLI /usr/bin/docker with DOCKER_BUILDKIT=1), in the
// same run, on the same base and context.
// Run by hand, as root, after `npm run build`:
//   npx tsx bench/build.ts [--case busybox|app|all] [--runs N] [--steps N] [--buildah-driver overlay|vfs] [--no-docker]
//                          [--tools buildah,buildkit,docker]   (tools measured round-robin; tsbuild always)
//
// Cases:
//   busybox  a busybox base and a context of 200 small files (WORKDIR, COPY, RUN, COPY, RUN); scenarios cold, no-op,
//            one-file and per-RUN (time of 1+N `RUN echo i` steps − time of 1, over N, cache off)
//   app      a realistic app (issue 15): debian:bookworm (the test cache's store, else bootstrapped), a RUN writing
//            3,000 small files and deleting the docs, WORKDIR, a COPY of a 2,000-file / 40 MB context, a RUN
//            `chmod -R` over it; scenarios cold, no-op, one-file
// Scenarios: cold = a fresh cache holding only the base, already imported (tsbuild: a new store where the base was
// `load`ed; buildah: fresh storage with the base pulled; docker: the base loaded, no build cache); no-op = the same
// build again; one-file = one context file changed, so its COPY and the steps after it run again.
// RUN steps have no network in every peer (`--network none`; buildah's chroot isolation has only the host's network,
// so the app case runs buildah with its default OCI isolation). tsbuild is timed with its default (each RUN in its
// own network namespace behind slirp4netns) and, as an extra row, with `--network none`.
// Prints a table and tsbuild/peer ratios with the targets the issues set; never asserts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox.js';
import { writeAppContext } from './app-context.js';

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
const CASE = opt('--case', 'all');
/** --tools tsbuild,buildkit: only the tools whose names start with these (the tsbuild rows always run) */
const ONLY = args.includes('--tools')
  ? ['tsbuild', ...opt('--tools', '').toLowerCase().split(',').filter(Boolean)]
  : undefined;
if (!['busybox', 'app', 'all'].includes(CASE)) throw new Error(`--case: busybox, app or all, not ${CASE}`);
const DEBIAN_STORE = process.env.BENCH_DEBIAN_STORE ?? '/var/tmp/tsbuild-test-cache/debian-store';

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const loadStart = load();
const benchStart = performance.now();
const work = mkdtempSync(join(tmpdir(), 'tsbuild-bench-build-'));
const sh = (cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): string => {
  const r = spawnSync(cmd, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.status}: ${r.stderr.toString().slice(-2000)}`);
  return r.stdout.toString();
};
const time = (fn: () => void): number => {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const tsbuildCli = join(repo, 'bin', 'tsbuild.js');
if (!existsSync(join(repo, 'dist', 'cli', 'commands', 'build.js'))) throw new Error('run `npm run build` first');
const tsb = (argv: string[], env: NodeJS.ProcessEnv = {}): string => sh(process.execPath, [tsbuildCli, ...argv], env);

// ─── cases ──────────────────────────────────────────────────────────────────────────────────────────────────────

interface Case {
  name: string;
  ctx: string;
  /** the main Dockerfile (outside the context) */
  dockerfile: string;
  /** an image archive (docker-archive + OCI layout, as `tsbuild save` writes) holding the base */
  archive: string;
  /** the file a one-file rebuild changes */
  changed: string;
  /** Dockerfiles for the per-RUN scenario, when the case has it */
  perRun?: { one: string; many: string };
}

function busyboxCase(): Case {
  const dir = join(work, 'busybox');
  const ctx = join(dir, 'ctx');
  mkdirSync(join(ctx, 'src'), { recursive: true });
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(ctx, 'src', `d${d}`));
    for (let f = 0; f < 20; f++) writeFileSync(join(ctx, 'src', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(200));
  }
  writeFileSync(join(ctx, 'config.txt'), 'v1\n');
  const dockerfile = join(dir, 'Dockerfile');
  writeFileSync(
    dockerfile,
    `FROM busybox:test
WORKDIR /app
COPY src/ /app/src/
RUN find /app/src -type f | wc -l > /app/count && cat /app/src/*/* | md5sum > /app/sum
COPY config.txt /app/
RUN echo configured > /app/done
CMD ["cat", "/app/done"]
`,
  );
  const runsDf = (n: number): string => {
    const f = join(dir, `Runs${n}.Dockerfile`);
    writeFileSync(f, `FROM busybox:test\n${Array.from({ length: n }, (_, i) => `RUN echo ${i} > /r${i}\n`).join('')}`);
    return f;
  };
  return {
    name: 'busybox',
    ctx,
    dockerfile,
    archive: join(dir, 'base.tar'),
    changed: join(ctx, 'config.txt'),
    perRun: { one: runsDf(1), many: runsDf(1 + STEPS) },
  };
}

async function busyboxArchive(c: Case): Promise<void> {
  const tree = join(work, 'busybox', 'tree');
  mkdirSync(tree);
  await makeBusyboxRootfs(tree);
  const store = join(work, 'busybox', 'base-store');
  tsb(['--root', store, 'import', '--change', 'CMD ["/bin/sh"]', tree, 'busybox:test'], {
    SOURCE_DATE_EPOCH: '1700000000',
  });
  tsb(['--root', store, 'save', 'busybox:test', '-o', c.archive]);
  rmSync(store, { recursive: true, force: true });
}

function appCase(): Case {
  const dir = join(work, 'app');
  const ctx = join(dir, 'ctx');
  writeAppContext(ctx);
  const dockerfile = join(dir, 'Dockerfile');
  writeFileSync(
    dockerfile,
    `FROM debian:bookworm
RUN mkdir -p /opt/data && for i in $(seq 1 3000); do echo "generated file $i" > /opt/data/f$i; done && rm -rf /usr/share/doc /usr/share/man
WORKDIR /app
COPY . /app/
RUN chmod -R g+w /app
CMD ["/bin/sh"]
`,
  );
  return { name: 'app', ctx, dockerfile, archive: join(dir, 'base.tar'), changed: join(ctx, 'config.txt') };
}

function appArchive(c: Case): void {
  let store = DEBIAN_STORE;
  if (
    !existsSync(join(store, 'index.json')) ||
    spawnSync(process.execPath, [tsbuildCli, '--root', store, 'inspect', 'debian:bookworm'], { stdio: 'ignore' })
      .status !== 0
  ) {
    store = join(work, 'app', 'debian-store');
    process.stderr.write('bootstrapping debian:bookworm (about a minute)…\n');
    tsb(['--root', store, 'bootstrap', 'debian:bookworm'], { SOURCE_DATE_EPOCH: '1700000000' });
  }
  tsb(['--root', store, 'save', 'debian:bookworm', '-o', c.archive]);
}

// ─── tools ──────────────────────────────────────────────────────────────────────────────────────────────────────

interface Tool {
  name: string;
  /**
   * a fresh cache holding only the base of the case, already imported. Nothing is deleted until the bench ends: ext4
   * makes a new file skip every inode of its group freed in the last 30 s or so (recently_deleted() in
   * find_inode_bit()), and a cold build made right after deleting the previous round's cache took 3.1–3.2 s instead
   * of 1.4–1.7 s here (2026-12-04), whichever tool's files landed in the freed groups.
   */
  reset(c: Case): void | Promise<void>;
  build(c: Case, dockerfile: string, noCache: boolean): void;
}

let tsSeq = 0;
const tsbuildTool = (network?: 'none'): Tool => {
  let root = '';
  return {
    name: network ? 'tsbuild --network none' : 'tsbuild',
    reset(c) {
      root = join(work, `ts-${++tsSeq}`);
      tsb(['--root', root, 'load', '-i', c.archive]);
    },
    build(c, df, noCache) {
      tsb([
        '--root',
        root,
        'build',
        '--progress',
        'quiet',
        ...(network ? ['--network', network] : []),
        ...(noCache ? ['--no-cache'] : []),
        '-f',
        df,
        '-t',
        'bench:1',
        c.ctx,
      ]);
    },
  };
};

let bhSeq = 0;
const buildahTool = (): Tool => {
  let root = '';
  const bh = (): string[] => [
    '--root',
    join(root, 'root'),
    '--runroot',
    join(root, 'run'),
    '--storage-driver',
    BUILDAH_DRIVER,
  ];
  return {
    name: `buildah (${BUILDAH_DRIVER})`,
    reset(c) {
      if (root) {
        spawnSync('buildah', [...bh(), 'rm', '--all'], { stdio: 'ignore' });
        spawnSync('umount', ['-R', '-l', root], { stdio: 'ignore' });
      }
      root = join(work, `bh-${++bhSeq}`);
      sh('buildah', [...bh(), 'pull', '-q', `oci-archive:${c.archive}`]);
    },
    build(c, df, noCache) {
      sh('buildah', [
        ...bh(),
        'bud',
        // chroot isolation is buildah's fastest, but it has only the host's network; the app case gets its own
        ...(c.name === 'busybox' ? ['--isolation', 'chroot'] : ['--network', 'none']),
        '--layers',
        '--pull=never',
        '-q',
        ...(noCache ? ['--no-cache'] : []),
        '-f',
        df,
        '-t',
        'bench:1',
        c.ctx,
      ]);
    },
  };
};

/** the docker CLI that matches Debian's dockerd (/usr/local/bin/docker has no buildx and may be a newer client) */
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
let dockerd: { host: string; stop(): Promise<void> } | undefined;
const dockerTool = (buildkit: boolean): Tool => ({
  name: buildkit ? 'BuildKit (dockerd 20.10)' : 'docker build (legacy)',
  // a new dockerd with an empty data root (a prune would delete the last round's files: see Tool.reset)
  async reset(c) {
    await dockerd?.stop();
    dockerd = await startDockerd();
    sh(DOCKER, ['-H', dockerd.host, 'load', '-q', '-i', c.archive]);
  },
  build(c, df, noCache) {
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
        df,
        '-t',
        'bench:1',
        c.ctx,
      ],
      { DOCKER_BUILDKIT: buildkit ? '1' : '0' },
    );
  },
});

let dockerdSeq = 0;
async function startDockerd(): Promise<{ host: string; stop(): Promise<void> }> {
  const dir = join(work, `dockerd-${++dockerdSeq}`);
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
  perRun?: number;
}

interface Samples {
  cold: number[];
  noop: number[];
  oneFile: number[];
  perRun: number[];
}

/** round measures one round of a tool: a fresh cache with the base (then `sync`), cold, no-op, one-file, per-RUN. */
async function round(tool: Tool, c: Case, r: number, into: Samples): Promise<void> {
  await tool.reset(c);
  spawnSync('sync'); // what the reset wrote does not go to disk during the timed builds
  writeFileSync(c.changed, 'v1\n');
  into.cold.push(time(() => tool.build(c, c.dockerfile, false)));
  into.noop.push(time(() => tool.build(c, c.dockerfile, false)));
  writeFileSync(c.changed, `v${r + 2}\n`);
  into.oneFile.push(time(() => tool.build(c, c.dockerfile, false)));
  if (c.perRun) {
    const one = time(() => tool.build(c, c.perRun!.one, true));
    const many = time(() => tool.build(c, c.perRun!.many, true));
    into.perRun.push((many - one) / STEPS);
  }
}

/**
 * measure times every tool round-robin (round 1 of each tool, then round 2, …), so that a machine whose speed
 * drifts during the bench affects every tool alike; each figure is the median of the rounds.
 */
async function measure(tools: Tool[], c: Case): Promise<Map<string, Result>> {
  const samples = new Map<string, Samples>(tools.map((t) => [t.name, { cold: [], noop: [], oneFile: [], perRun: [] }]));
  for (let r = 0; r < RUNS; r++) {
    for (const t of tools) {
      process.stderr.write(`case ${c.name}: round ${r + 1}/${RUNS}: ${t.name}…\n`);
      await round(t, c, r, samples.get(t.name)!);
    }
  }
  const out = new Map<string, Result>();
  const list = (xs: number[]): string => xs.map((v) => v.toFixed(2)).join(' ');
  for (const [name, x] of samples)
    console.log(`rounds ${name}: cold ${list(x.cold)} | no-op ${list(x.noop)} | one-file ${list(x.oneFile)}`);
  for (const [name, x] of samples) {
    out.set(name, {
      cold: median(x.cold),
      noop: median(x.noop),
      oneFile: median(x.oneFile),
      ...(x.perRun.length ? { perRun: median(x.perRun) } : {}),
    });
  }
  return out;
}

const fmt = (s: number | undefined): string => (s === undefined ? '—' : `${s.toFixed(2)} s`);
const ratio = (a: number, b: number): string => (a / b).toFixed(2);

function report(c: Case, results: Map<string, Result>): void {
  console.log(`\ncase ${c.name}: ${RUNS} run(s) per tool, medians`);
  console.log(
    `${'tool'.padEnd(28)}${'cold'.padStart(10)}${'no-op'.padStart(10)}${'one-file'.padStart(10)}${c.perRun ? 'per-RUN'.padStart(10) : ''}`,
  );
  for (const [name, r] of results)
    console.log(
      `${name.padEnd(28)}${fmt(r.cold).padStart(10)}${fmt(r.noop).padStart(10)}${fmt(r.oneFile).padStart(10)}${c.perRun ? fmt(r.perRun).padStart(10) : ''}`,
    );
  const ts = results.get('tsbuild')!;
  const peers = [...results].filter(([n]) => !n.startsWith('tsbuild'));
  for (const [name, r] of peers)
    console.log(
      `tsbuild / ${name}: cold ${ratio(ts.cold, r.cold)}, no-op ${ratio(ts.noop, r.noop)}, one-file ${ratio(ts.oneFile, r.oneFile)}${c.perRun && r.perRun ? `, per-RUN ${ratio(ts.perRun!, r.perRun)}` : ''}`,
    );
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  if (c.name === 'busybox') {
    const bh = results.get(`buildah (${BUILDAH_DRIVER})`);
    if (!bh) return; // not measured (--tools)
    console.log('targets: cold ≤ 1.0× buildah; no-op < 0.5 s and ≤ 0.5× buildah; per-RUN ≤ 0.5× buildah');
    console.log(
      `  cold ${verdict(ts.cold <= bh.cold)}; no-op ${verdict(ts.noop < 0.5 && ts.noop <= bh.noop / 2)}; per-RUN ${verdict(ts.perRun! <= bh.perRun! / 2)}`,
    );
    return;
  }
  if (!peers.length) return;
  const fastest = (k: 'cold' | 'oneFile'): [string, number] =>
    peers.map(([n, r]) => [n, r[k]] as [string, number]).sort((a, b) => a[1] - b[1])[0]!;
  const [coldPeer, cold] = fastest('cold');
  const [onePeer, one] = fastest('oneFile');
  const bk = results.get('BuildKit (dockerd 20.10)');
  console.log('targets (issue 15): cold and one-file ≤ 0.8× the faster peer; no-op ≤ 0.2 s and ≤ 0.5× BuildKit');
  console.log(
    `  cold ${ratio(ts.cold, cold)}× ${coldPeer}: ${verdict(ts.cold <= 0.8 * cold)}; one-file ${ratio(ts.oneFile, one)}× ${onePeer}: ${verdict(ts.oneFile <= 0.8 * one)}; no-op ${fmt(ts.noop)}${bk ? `, ${ratio(ts.noop, bk.noop)}× BuildKit: ${verdict(ts.noop <= 0.2 && ts.noop <= bk.noop / 2)}` : ' (BuildKit not run)'}`,
  );
}

try {
  const cases: Case[] = [];
  if (CASE !== 'app') {
    const c = busyboxCase();
    await busyboxArchive(c);
    cases.push(c);
  }
  if (CASE !== 'busybox') {
    const c = appCase();
    appArchive(c);
    cases.push(c);
  }
  for (const c of cases) {
    let tools: Tool[] = [tsbuildTool(), ...(c.name === 'app' ? [tsbuildTool('none')] : []), buildahTool()];
    if (WITH_DOCKER) tools.push(dockerTool(false), dockerTool(true));
    if (ONLY) tools = tools.filter((t) => ONLY.some((o) => t.name.toLowerCase().startsWith(o)));
    report(c, await measure(tools, c));
  }
} finally {
  await dockerd?.stop();
  spawnSync('umount', ['-R', '-l', work], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nnode ${process.version}; load average at the start ${loadStart}, at the end ${load()}; bench wall time ${((performance.now() - benchStart) / 1000).toFixed(1)} s`,
);
