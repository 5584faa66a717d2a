// bench/many-entries.ts: peak memory (maxresident of `/usr/bin/time -v`) and wall time of tsbuild on a layer of
// N entries (default 1,000,000): `import` of a layer tar, `unpack` of that image (the extract path), a build
// `FROM bb:1` + `COPY big/ /big/` (the context walk, the copy, the change set and the tar writer), and `export` of
// the built image to a raw disk (flatten of every layer, then mkfs.ext4 -d). Prints one row per command; asserts
// nothing. The target (issue 14): each under 512 MiB of peak RSS for 1,000,000 entries.
//
//   npx tsx bench/many-entries.ts fixture DIR [N]   make DIR/ctx/big (N entries), DIR/ctx/Dockerfile, DIR/big.tar
//   npx tsx bench/many-entries.ts measure DIR       run the four commands on that fixture (as root: export, unpack)
//   TSBUILD_CLI   the CLI to time (default bin/tsbuild.js, which runs the compiled dist/)
//   NODE_OPTIONS  passed on (e.g. --max-old-space-size=256 to see which command needs more than that)
//
// The tree: N/1000 directories big/aXX/bYYY, each with about 1000 entries: small files of 0–199 bytes, one symlink
// and one hard link (to a file of the same directory) in every hundred. Nothing of it is committed: it is made in a
// few minutes into DIR (use /var/tmp: 1M entries take about 4 GiB of inodes and blocks), and removed by hand.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox.js';

const PER_DIR = 1000;
const CLI = process.env.TSBUILD_CLI ?? join(import.meta.dirname, '..', 'bin', 'tsbuild.js');

/** makeTree writes about `n` entries (directories included) below `root`/big. */
export function makeTree(root: string, n: number): void {
  const dirs = Math.max(1, Math.round(n / PER_DIR));
  const perDir = Math.floor(n / dirs) - 1; // the directory itself is an entry
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, 'big', `a${String(d >> 5).padStart(2, '0')}`, `b${String(d & 31).padStart(3, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < perDir; i++) {
      const name = join(dir, `file-${String(i).padStart(6, '0')}.txt`);
      if (i % 100 === 98 && i > 0) symlinkSync(`file-${String(i - 1).padStart(6, '0')}.txt`, name);
      else if (i % 100 === 99) linkSync(join(dir, `file-${String(i - 2).padStart(6, '0')}.txt`), name);
      else writeFileSync(name, `${d}/${i}\n`.repeat((d * 7 + i) % 20));
    }
  }
}

function fixture(out: string, n: number): void {
  const ctx = join(out, 'ctx');
  if (existsSync(ctx)) rmSync(ctx, { recursive: true, force: true });
  mkdirSync(ctx, { recursive: true });
  const t0 = Date.now();
  makeTree(ctx, n);
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM bb:1\nCOPY big/ /big/\n');
  execFileSync('tar', ['--sort=name', '--numeric-owner', '-C', ctx, '-cf', join(out, 'big.tar'), 'big']);
  const bb = join(out, 'bb');
  rmSync(bb, { recursive: true, force: true });
  mkdirSync(bb);
  return void makeBusyboxRootfs(bb).then(() => {
    writeFileSync(join(out, 'vmlinuz'), 'not a kernel: the disk is made, never booted\n');
    const entries = execFileSync('sh', ['-c', 'tar -tf "$1" | wc -l', 'sh', join(out, 'big.tar')])
      .toString()
      .trim();
    console.log(`${entries} entries in ${join(out, 'big.tar')} and ${ctx}/big (${(Date.now() - t0) / 1000} s)`);
  });
}

interface Row {
  what: string;
  seconds: number;
  maxRssMiB: number;
  code: number;
}

/** timed runs the CLI under /usr/bin/time -v and returns its peak RSS and wall time. */
function timed(what: string, args: string[]): Row {
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, CLI, ...args], { encoding: 'utf8' });
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(r.stderr)?.[1] ?? '0';
  const seconds = wall.split(':').reduce((acc, p) => acc * 60 + Number(p), 0);
  const code = Number(/Exit status: (\d+)/.exec(r.stderr)?.[1] ?? r.status);
  if (code !== 0) console.error(`${what} failed (${code}):\n${r.stderr.split('\n').slice(-40).join('\n')}`);
  return { what, seconds, maxRssMiB: Math.round(rss), code };
}

function measure(out: string): void {
  const store = join(out, 'store');
  const scratch = join(out, 'scratch');
  rmSync(store, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch);
  const tsb = (...args: string[]): string[] => ['--root', store, ...args];
  const load = (): string => execFileSync('cat', ['/proc/loadavg']).toString().split(' ')[0] as string;
  console.log(`load average ${load()}; CLI ${CLI}; NODE_OPTIONS=${process.env.NODE_OPTIONS ?? ''}`);
  const rows: Row[] = [];
  const only = (process.env.BENCH_ONLY ?? 'import,unpack,build,export').split(',');
  const step = (name: string, what: string, args: string[]): void => {
    if (!only.includes(name)) return;
    const row = timed(what, args);
    rows.push(row);
    console.log(
      `${row.what}: ${row.seconds.toFixed(1)} s, ${row.maxRssMiB} MiB${row.code ? ` (exit ${row.code})` : ''}`,
    );
  };
  step('import', 'import big.tar', tsb('import', join(out, 'big.tar'), 'big:1'));
  step('unpack', 'unpack big:1', tsb('unpack', 'big:1', join(scratch, 'unpacked')));
  rmSync(join(scratch, 'unpacked'), { recursive: true, force: true });
  if (only.includes('build') || only.includes('export')) {
    execFileSync(process.execPath, [CLI, ...tsb('import', join(out, 'bb'), 'bb:1')]);
  }
  step('build', 'build FROM bb:1 + COPY big/ /big/', tsb('build', '-t', 'copy:1', join(out, 'ctx')));
  step('export', 'export copy:1 (raw)', [
    ...tsb('export', 'copy:1', '-o', join(scratch, 'disk.raw'), '--format', 'raw', '--kernel', join(out, 'vmlinuz')),
  ]);
  console.log(`load average ${load()}\n`);
  console.log('| command | wall | peak RSS |\n|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(1)} s | ${r.maxRssMiB} MiB |`);
  rmSync(scratch, { recursive: true, force: true });
}

// run as a script (tests import makeTree)
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const [cmd, dir, n] = process.argv.slice(2);
  if (cmd === 'fixture' && dir) fixture(dir, Number(n ?? 1_000_000));
  else if (cmd === 'measure' && dir) measure(dir);
  else {
    console.error('usage: many-entries.ts fixture DIR [N] | measure DIR');
    process.exit(2);
  }
}
