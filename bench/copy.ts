// COPY write cost (issue: a COPY of a big context): tsbuild's copyInto against `cp -a` into the same kind of overlay
// mount, in the same run, on the same context.
// Run by hand, as root (it mounts overlays):
//   npx tsx bench/copy.ts [--runs N] [--baseline DIR]
//
// The context is bench/build.ts's app case: 20 directories × 100 source-like files of 20 KiB, and config.txt
// (2,000 files, 40 MB). The overlay's lower is a real root filesystem, read-only (the biggest snapshot of the test
// cache's Debian store, else a copy of /usr/lib/x86_64-linux-gnu) under a layer holding an empty /app (WORKDIR), with
// a fresh upper and work directory on the same disk (/var/tmp) for every timed run (all removed at the end: about
// 40 MB per run and row).
// Rows, timed in alternating order each round (a `sync` before each), medians:
//   copyInto   the COPY step's write: selectSources + hashSelection first (untimed: the step's cache key), then
//              copyInto(root, from, sel, { dest: '/app/' }) timed, as builder/steps/copy.ts calls them
//   baseline   the same from another checkout's builder/steps (--baseline DIR, e.g. a `git archive` of main with
//              node_modules linked in)
//   cp -a      `cp -a ctx/. <mnt>/app/`
// After the first round, the trees each row wrote are compared (paths, types, modes, owners, sizes, mtimes, file
// data): a row that differs from cp -a's is reported. Prints a table and the ratios; asserts nothing.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { writeAppContext } from './app-context.js';

const repo = join(import.meta.dirname, '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const RUNS = Number(opt('--runs', '7'));
const BASELINE = opt('--baseline', '');
const DEBIAN_STORE = process.env.BENCH_DEBIAN_STORE ?? '/var/tmp/tsbuild-test-cache/debian-store';
const OPTIONS = 'index=off,redirect_dir=off,metacopy=off'; // unionfs/overlay.ts OVERLAY_OPTIONS

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const loadStart = load();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sh = (cmd: string, argv: string[]): string => {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.status}: ${r.stderr.toString().slice(-2000)}`);
  return r.stdout.toString();
};

/** lowerRootfs: the biggest snapshot of the Debian store (read only), else a copy of part of /usr/lib. */
function lowerRootfs(work: string): string {
  const snaps = join(DEBIAN_STORE, 'snapshots');
  if (existsSync(snaps)) {
    let best: { dir: string; size: number } | undefined;
    for (const name of readdirSync(snaps)) {
      const dir = join(snaps, name);
      if (!lstatSync(dir).isDirectory()) continue;
      const size = Number(sh('du', ['-s', '--block-size=1', dir]).split('\t')[0]);
      if (!best || size > best.size) best = { dir, size };
    }
    if (best) return best.dir;
  }
  const dir = join(work, 'rootfs');
  mkdirSync(join(dir, 'usr', 'lib'), { recursive: true });
  sh('cp', ['-a', '/usr/lib/x86_64-linux-gnu', join(dir, 'usr', 'lib')]);
  return dir;
}

interface Row {
  name: string;
  run(mnt: string): Promise<void>;
}

type CopyWrite = typeof import('../builder/steps/copy-write.js');
type CopySelect = typeof import('../builder/steps/copy-select.js');

async function tsbuildRow(name: string, checkout: string, ctx: string, tmpDir: string): Promise<Row> {
  const url = (p: string): string => pathToFileURL(join(checkout, p)).href;
  const write = (await import(url('builder/steps/copy-write.ts'))) as CopyWrite;
  const select = (await import(url('builder/steps/copy-select.ts'))) as CopySelect;
  const { makeFilter } = (await import(url('builder/context.ts'))) as typeof import('../builder/context.js');
  const { defaultHost } = (await import(url('sys/host.ts'))) as typeof import('../sys/host.js');
  return {
    name,
    async run(mnt) {
      const from = { root: ctx, label: 'the build context', resetOwner: true, filter: makeFilter(ctx, []) };
      const sel = select.selectSources(from, ['.'], { exclude: [], parents: false });
      await select.hashSelection(sel, true);
      sh('sync', []);
      const t0 = performance.now();
      await write.copyInto(mnt, from, sel, { dest: '/app/', unpack: false, tmpDir, host: defaultHost() });
      times.get(name)!.push((performance.now() - t0) / 1000);
    },
  };
}

const times = new Map<string, number[]>();

/** treeListing: one line per entry below dir (type, mode, owner, size, mtime, data digest), sorted. */
function treeListing(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string, rel: string): void => {
    for (const name of readdirSync(abs)) {
      const p = join(abs, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(p);
      let line = `${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.nlink} ${Math.floor(st.mtimeMs)}`;
      if (st.isFile()) line += ` ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
      out.push(line);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(dir, '');
  return out.sort();
}

const work = mkdtempSync('/var/tmp/tsbuild-bench-copy-');
const mounted: string[] = [];
try {
  const ctx = join(work, 'ctx');
  writeAppContext(ctx);
  const rootfs = lowerRootfs(work);
  const appLayer = join(work, 'workdir-layer');
  mkdirSync(join(appLayer, 'app'), { recursive: true, mode: 0o755 });
  const tmpDir = join(work, 'tmp');
  mkdirSync(tmpDir);

  const rows: Row[] = [await tsbuildRow('copyInto', repo, ctx, tmpDir)];
  if (BASELINE) rows.push(await tsbuildRow('baseline', resolve(BASELINE), ctx, tmpDir));
  rows.push({
    name: 'cp -a',
    async run(mnt) {
      sh('sync', []);
      const t0 = performance.now();
      sh('cp', ['-a', `${ctx}/.`, join(mnt, 'app/')]);
      times.get('cp -a')!.push((performance.now() - t0) / 1000);
    },
  });
  for (const r of rows) times.set(r.name, []);

  let seq = 0;
  const fresh = (): string => {
    const dir = join(work, `r${++seq}`);
    for (const d of ['upper', 'work', 'mnt']) mkdirSync(join(dir, d), { recursive: true });
    const data = `lowerdir=${appLayer}:${rootfs},upperdir=${dir}/upper,workdir=${dir}/work,${OPTIONS}`;
    sh('mount', ['-t', 'overlay', 'overlay', '-o', data, join(dir, 'mnt')]);
    mounted.push(join(dir, 'mnt'));
    return dir;
  };
  const done = (dir: string): void => {
    sh('umount', [join(dir, 'mnt')]);
    mounted.splice(mounted.indexOf(join(dir, 'mnt')), 1);
    // the upper is removed at the end only: ext4's online discard of freed blocks (mounted `discard`) makes the next
    // run's writes wait, after a delete, for seconds at times
  };

  // one untimed warm-up round, then the timed rounds (row order rotated each round)
  const listings = new Map<string, string[]>();
  for (let round = 0; round <= RUNS; round++) {
    for (let k = 0; k < rows.length; k++) {
      const row = rows[(k + round) % rows.length]!;
      const dir = fresh();
      try {
        await row.run(join(dir, 'mnt'));
        if (round === 0) listings.set(row.name, treeListing(join(dir, 'mnt', 'app')));
      } finally {
        done(dir);
      }
    }
    if (round === 0) for (const r of rows) times.get(r.name)!.length = 0;
  }

  const cp = median(times.get('cp -a')!);
  console.log(`\nCOPY of 2,000 files / 40 MB into an overlay (lower: ${rootfs}), ${RUNS} runs, medians\n`);
  console.log('| row | median | min | max | / cp -a |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const xs = times.get(r.name)!;
    const m = median(xs);
    console.log(
      `| ${r.name} | ${m.toFixed(3)} s | ${Math.min(...xs).toFixed(3)} s | ${Math.max(...xs).toFixed(3)} s | ${(m / cp).toFixed(2)}× |`,
    );
  }
  const want = listings.get('cp -a')!.join('\n');
  for (const r of rows) {
    if (r.name === 'cp -a') continue;
    const got = listings.get(r.name)!.join('\n');
    console.log(`${r.name}: the tree ${got === want ? 'is the same as' : 'DIFFERS from'} cp -a's`);
    if (got !== want) {
      const mine = listings.get(r.name)!;
      const theirs = new Set(listings.get('cp -a')!);
      for (const line of mine.filter((l) => !theirs.has(l)).slice(0, 3)) console.log(`  ${r.name}: ${line}`);
      const ours = new Set(mine);
      for (const line of listings
        .get('cp -a')!
        .filter((l) => !ours.has(l))
        .slice(0, 3))
        console.log(`  cp -a: ${line}`);
    }
  }
} finally {
  for (const m of mounted) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
console.log(`\nnode ${process.version}; load average at the start ${loadStart}, at the end ${load()}`);
