// Rootless cost (issue 11, acceptance 6): the bundled example (fixtures/example) built by tsbuild as root, by
// tsbuild as an ordinary user (rootless: a user namespace of its own), and by `buildah bud` run rootless by the
// same user, all from the same Debian base in the same run. Cold = a store (buildah: a storage) holding only the
// base; no-op = the same build again. Targets: rootless within 1.2× of root, and no slower than rootless buildah.
// Each tool's no-op is timed NOOPS times per run (default 5). tsbuild runs as users run it, through the launcher
// bin/tsbuild (rootless: util-linux `unshare` maps the ids and execs Node once); an extra row times the rootless
// no-op through `node bin/tsbuild.js`, which maps the ids from a first Node process and starts a second one.
// Run by hand, as root, after `npm run build`:  npx tsx bench/rootless.ts [--runs N] [--noops N] [--user NAME]
// It makes the user (with a subordinate id range) when missing, and removes only what it made in /tmp.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const RUNS = Number(opt('--runs', '2'));
const USER = opt('--user', 'tsbuild-bench');
const NOOPS = Number(opt('--noops', '5'));
const cli = join(repo, 'bin', 'tsbuild.js');
const launcher = join(repo, 'bin', 'tsbuild');
const example = join(repo, 'fixtures', 'example');
const debianStore = process.env.TSBUILD_TEST_CACHE
  ? join(process.env.TSBUILD_TEST_CACHE, 'debian-store')
  : '/var/tmp/tsbuild-test-cache/debian-store';

if (process.getuid?.() !== 0) throw new Error('run as root: it makes the bench user and runs root builds');
if (!existsSync(join(repo, 'dist', 'cli', 'main.js'))) throw new Error('run `npm run build` first');

const loadStart = loadavg()[0]?.toFixed(2);
const work = mkdtempSync('/tmp/tsbuild-bench-rootless-');
chmodSync(work, 0o755);

/** sh runs argv (as the bench user when `asUser`) and throws with the end of stderr on failure. */
function sh(argv: string[], opts: { asUser?: boolean; env?: Record<string, string> } = {}): void {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env };
  const full = opts.asUser
    ? [
        'runuser',
        '-u',
        USER,
        '--',
        'env',
        '-i',
        ...Object.entries({ ...env, HOME: home, USER }).map(([k, v]) => `${k}=${v}`),
        ...argv,
      ]
    : argv;
  const r = spawnSync(full[0] as string, full.slice(1), {
    cwd: work,
    env: { ...process.env, ...(opts.asUser ? {} : env) }, // as the user: `env -i` above sets its environment
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0)
    throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.error?.message ?? r.stderr.toString().slice(-2000)}`);
}
const time = (fn: () => void): number => {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

// ─── the user and the base ──────────────────────────────────────────────────────────────────────────────────────
if (spawnSync('id', ['-u', USER]).status !== 0) {
  execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', USER]);
}
if (!execFileSync('cat', ['/etc/subuid']).toString().includes(`${USER}:`)) {
  execFileSync('usermod', ['--add-subuids', '400000-465535', '--add-subgids', '400000-465535', USER]);
}
const home = execFileSync('getent', ['passwd', USER]).toString().split(':')[5] as string;
const archive = join(work, 'debian.tar');
sh([process.execPath, cli, '--root', debianStore, 'save', 'debian:bookworm', '-o', archive]);
chmodSync(archive, 0o644);

interface Tool {
  name: string;
  reset(): void;
  build(): void;
  /** the same build through another entry point, timed as an extra no-op row */
  alt?: { name: string; build(): void };
}

const tsbuildTool = (asUser: boolean): Tool => {
  const store = asUser ? join(home, 'bench-store') : join(work, 'root-store');
  return {
    name: asUser ? 'tsbuild (rootless)' : 'tsbuild (root)',
    reset() {
      // a rootless store holds files of the user's subordinate ids: remove it inside the namespace
      sh(asUser ? [process.execPath, cli, 'unshare', 'rm', '-rf', store] : ['rm', '-rf', store], { asUser });
      sh([process.execPath, cli, '--root', store, 'load', '-i', archive], { asUser });
    },
    build() {
      sh([launcher, '--root', store, 'build', '--progress', 'quiet', '-t', 'app:bench', example], { asUser });
    },
    ...(asUser
      ? {
          alt: {
            name: 'tsbuild (rootless, node bin/tsbuild.js)',
            build() {
              sh([process.execPath, cli, '--root', store, 'build', '--progress', 'quiet', '-t', 'app:bench', example], {
                asUser,
              });
            },
          },
        }
      : {}),
  };
};

const bhRoot = join(home, 'bench-buildah');
const bh = ['buildah', '--root', join(bhRoot, 'root'), '--runroot', join(bhRoot, 'run'), '--storage-driver', 'overlay'];
const buildah: Tool = {
  name: 'buildah bud (rootless)',
  reset() {
    spawnSync('runuser', ['-u', USER, '--', 'env', `HOME=${home}`, 'buildah', 'unshare', 'rm', '-rf', bhRoot], {
      stdio: 'ignore',
    });
    sh([...bh, 'pull', '-q', `docker-archive:${archive}`], { asUser: true });
  },
  build() {
    sh([...bh, 'bud', '--layers', '--pull=never', '-q', '-t', 'app:bench', example], { asUser: true });
  },
};

// ─── measure ────────────────────────────────────────────────────────────────────────────────────────────────────
const tools = [tsbuildTool(false), tsbuildTool(true), buildah];
const results = new Map<string, { cold: number[]; noop: number[] }>();
for (let run = 0; run < RUNS; run++) {
  for (const tool of tools) {
    const r = results.get(tool.name) ?? { cold: [], noop: [] };
    tool.reset();
    try {
      r.cold.push(time(() => tool.build()));
      for (let i = 0; i < NOOPS; i++) r.noop.push(time(() => tool.build()));
      if (tool.alt) {
        const a = results.get(tool.alt.name) ?? { cold: [], noop: [] };
        for (let i = 0; i < NOOPS; i++) a.noop.push(time(() => tool.alt?.build()));
        results.set(tool.alt.name, a);
      }
    } catch (e) {
      console.error(`${tool.name}: ${(e as Error).message}`);
    }
    results.set(tool.name, r);
  }
}

console.log(
  `rootless bench: fixtures/example, ${RUNS} run(s) each (${NOOPS} no-ops per run), load ${loadStart} → ${loadavg()[0]?.toFixed(2)}`,
);
console.log('| tool | cold build (s) | no-op rebuild (s) |');
console.log('|---|---:|---:|');
for (const [name, r] of results) {
  const f = (xs: number[]): string => (xs.length ? median(xs).toFixed(2) : '–');
  console.log(`| ${name} | ${f(r.cold)} | ${f(r.noop)} |`);
}
const root = results.get('tsbuild (root)');
const rl = results.get('tsbuild (rootless)');
const bhr = results.get(buildah.name);
if (root?.cold.length && rl?.cold.length) {
  console.log(
    `rootless / root: cold ${(median(rl.cold) / median(root.cold)).toFixed(2)}×, no-op ${(median(rl.noop) / median(root.noop)).toFixed(2)}× (target ≤ 1.2×)`,
  );
}
if (bhr?.cold.length && rl?.cold.length) {
  console.log(
    `rootless tsbuild / rootless buildah: cold ${(median(rl.cold) / median(bhr.cold)).toFixed(2)}×, no-op ${(median(rl.noop) / median(bhr.noop)).toFixed(2)}× (target ≤ 1.0×)`,
  );
}
sh([process.execPath, cli, 'unshare', 'rm', '-rf', join(home, 'bench-store')], { asUser: true });
spawnSync('runuser', ['-u', USER, '--', 'env', `HOME=${home}`, 'buildah', 'unshare', 'rm', '-rf', bhRoot], {
  stdio: 'ignore',
});
rmSync(work, { recursive: true, force: true });
