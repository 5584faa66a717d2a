// bench/export.ts: `tsbuild export IMG -o disk.qcow2` against the classic shell pipeline that docker-to-linux and d2vm
// use (export the rootfs → truncate → sfdisk → mkfs.ext4 → loop mount → copy → extlinux → qemu-img convert), on the
// same Debian app image with its kernel. The shell pipeline's rootfs export is `tsbuild export --format tar` (the
// prepared rootfs: the same files, fstab and service as ours), so both disks hold the same tree and boot the same.
// tsbuild's side is the default export (qcow2 with zstd-compressed clusters, the kernel and initrd left plain).
// Prints, in one run: wall time (warm store, and cold: the image's snapshots removed; each warm run too), the CPU
// seconds of both pipelines' processes, output size and the time from QEMU start to the app's marker (TCG) as ratios
// (tsbuild / shell), where tsbuild's time goes (the export's step timings, warm and cold, run in this process from
// source), and the load average before and after; asserts nothing. Targets: time ≤ 0.8×, size ≤ 0.8×, boot ≤ 1.0×.
//
// Run as root (the shell pipeline mounts): npx tsx bench/export.ts
//   BENCH_ROOT   store to use (default /var/tmp/tsbuild-bench-export; debian:bookworm is bootstrapped when missing)
//   BENCH_REPS   export runs per pipeline, median printed (default 2)
//   BENCH_BOOT=0 skip the boots
//   BENCH_STEPS=0 skip the step timings (two more exports, in this process)
import { imageLayers } from '../layers/model/layer.js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bootDisk } from '../convert/boot.js';
import { exportImage } from '../convert/recipe.js';
import { commitLayer } from '../layers/store/commit.js';
import { chainIds } from '../layers/model/digest.js';
import { getImage, tagImage, writeImage } from '../layers/store/image.js';
import { Store } from '../layers/store/store.js';
import { tarFromDirectory } from '../layers/tar/create.js';
import { removeSnapshot } from '../unionfs/snapshot.js';

const ROOT = process.env.BENCH_ROOT ?? '/var/tmp/tsbuild-bench-export';
const REPS = Number(process.env.BENCH_REPS ?? 2);
const BOOT = process.env.BENCH_BOOT !== '0';
const STEPS = process.env.BENCH_STEPS !== '0';
const IMAGE = 'bench-app-kernel:1';
const MARKER = 'BENCH-APP-MARKER';
const CLI = join(import.meta.dirname, '..', 'bin', 'tsbuild.js');

const sh = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, {
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 1 << 26,
  }).toString();
const tsb = (...args: string[]): string => sh(process.execPath, [CLI, '--root', ROOT, ...args]);

/** childCpu: CPU seconds (user + system) of this process's waited-for children (/proc/self/stat cutime + cstime). */
function childCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) / 100; // fields 16 and 17, in clock ticks (USER_HZ = 100)
}

/** timed returns fn's value, its wall seconds, and the CPU seconds of the processes it ran (not the kernel's). */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number, number]> {
  const t0 = process.hrtime.bigint();
  const c0 = childCpu();
  const v = await fn();
  return [v, Number(process.hrtime.bigint() - t0) / 1e9, childCpu() - c0];
}

const load = (): string => loadavg()[0]!.toFixed(2);

/** stepTimings runs one export in this process (from source) and returns its step timings, largest first. */
async function stepTimings(work: string): Promise<string> {
  const store = await Store.open(ROOT);
  const output = join(work, 'steps.qcow2');
  const t0 = process.hrtime.bigint();
  const r = await exportImage({ store, image: IMAGE, output });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  await rm(output, { force: true });
  const steps = Object.entries(r.timings)
    .filter(([, s]) => (s ?? 0) >= 0.05)
    .sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))
    .map(([k, s]) => `${k} ${(s ?? 0).toFixed(2)}`);
  return `${wall.toFixed(1)} s: ${steps.join(', ')}`;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** prepare makes IMAGE: debian:bookworm + an app printing MARKER + the kernel layer (installed once, cached). */
async function prepare(): Promise<void> {
  await mkdir(ROOT, { recursive: true });
  try {
    tsb('inspect', IMAGE);
    return;
  } catch {
    // make it
  }
  try {
    tsb('inspect', 'debian:bookworm');
  } catch {
    console.error('bootstrapping debian:bookworm…');
    tsb('bootstrap', 'debian:bookworm');
  }
  const store = await Store.open(ROOT);
  const base = await getImage(store, 'debian:bookworm');
  const dir = await mkdtemp(join(tmpdir(), 'bench-app-'));
  try {
    await mkdir(join(dir, 'usr/local/bin'), { recursive: true });
    await writeFile(join(dir, 'usr/local/bin/app'), `#!/bin/sh\necho "${MARKER} $(uname -r)"\n`);
    await chmod(join(dir, 'usr/local/bin/app'), 0o755);
    const layer = await commitLayer(store, tarFromDirectory(dir));
    const layers = imageLayers(base);
    const { rootfs: _r, ...config } = base.config;
    const { descriptor: app } = await writeImage(store, {
      config: { ...config, config: { ...config.config, Cmd: ['/usr/local/bin/app'] } },
      layers: [...layers, layer],
    });
    await tagImage(store, app, 'bench-app:1');
    console.error('installing the kernel into bench-app:1 (once)…');
    const out = await mkdtemp(join(tmpdir(), 'bench-k-'));
    const r = await exportImage({ store, image: 'bench-app:1', output: join(out, 'rootfs.tar') });
    await rm(out, { recursive: true, force: true });
    if (!r.kernel.layer) throw new Error('no kernel layer');
    const { descriptor: withKernel } = await writeImage(store, {
      config: { ...config, config: { ...config.config, Cmd: ['/usr/local/bin/app'] } },
      layers: [...layers, layer, r.kernel.layer],
    });
    await tagImage(store, withKernel, IMAGE);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** dropSnapshots removes the image's layer snapshots, so that the next export extracts every layer (a cold store). */
async function dropSnapshots(): Promise<void> {
  const store = await Store.open(ROOT);
  const img = await getImage(store, IMAGE);
  const ids = img.config.rootfs.diff_ids;
  for (const chain of chainIds(ids)) await removeSnapshot(ROOT, chain);
}

async function tsbuildPipeline(work: string): Promise<string> {
  const out = join(work, 'tsbuild.qcow2');
  await rm(out, { force: true });
  tsb('export', IMAGE, '-o', out);
  return out;
}

/** shellPipeline: the classic root + loop + mount recipe, with extlinux, as docker-to-linux and d2vm do it. */
async function shellPipeline(work: string, diskSize: number): Promise<string> {
  const tar = join(work, 'rootfs.tar');
  await rm(tar, { force: true });
  tsb('export', IMAGE, '--format', 'tar', '-o', tar);
  const fstab = sh('tar', ['-xOf', tar, 'etc/fstab']);
  const uuid = /^UUID=(\S+)/m.exec(fstab)?.[1] as string;
  const out = await shellDisk({ tar, work, diskSize, uuid });
  await rm(tar, { force: true });
  return out;
}

/**
 * shellDisk turns a rootfs tar (with /boot/vmlinuz-* and its initrd) into `<work>/shell.qcow2` the classic way:
 * truncate → sfdisk → mkfs.ext4 on a loop device → mount → tar -x → extlinux → MBR boot code → qemu-img convert.
 * bench/boot.ts uses it too. Root only.
 */
export async function shellDisk(opts: {
  tar: string;
  work: string;
  diskSize: number;
  uuid: string;
  cmdline?: string;
}): Promise<string> {
  const { tar, work, diskSize, uuid } = opts;
  const raw = join(work, 'shell.raw');
  const mnt = join(work, 'mnt');
  const out = join(work, 'shell.qcow2');
  for (const f of [raw, out]) await rm(f, { force: true });
  await mkdir(mnt, { recursive: true });
  const kernel = sh('tar', ['-tf', tar])
    .split('\n')
    .map((l) => l.replace(/^\.\//, ''))
    .filter((l) => /^boot\/vmlinuz-/.test(l))
    .sort()
    .pop() as string;
  const version = kernel.slice('boot/vmlinuz-'.length);
  const cmdline = opts.cmdline ?? 'ro rootfstype=ext4 net.ifnames=0 console=tty0 console=ttyS0,115200n8';
  sh('truncate', ['-s', String(diskSize), raw]);
  sh('sfdisk', ['-q', raw], 'label: dos\nstart=2048, type=83, bootable\n');
  const loop = sh('losetup', [
    '--find',
    '--show',
    '--offset',
    String(1 << 20),
    '--sizelimit',
    String(diskSize - (1 << 20)),
    raw,
  ]).trim();
  try {
    sh('mkfs.ext4', ['-q', '-U', uuid, '-O', '^64bit,^metadata_csum_seed,^orphan_file', loop]);
    sh('mount', [loop, mnt]);
    try {
      sh('tar', ['-xpf', tar, '--numeric-owner', '--xattrs', '-C', mnt]);
      await mkdir(join(mnt, 'boot/syslinux'), { recursive: true });
      await writeFile(
        join(mnt, 'boot/syslinux/extlinux.conf'),
        `DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX /boot/vmlinuz-${version}\n  INITRD /boot/initrd.img-${version}\n  APPEND root=UUID=${uuid} ${cmdline}\n`,
      );
      sh('extlinux', ['--install', join(mnt, 'boot/syslinux')]);
    } finally {
      sh('umount', [mnt]);
    }
  } finally {
    sh('losetup', ['-d', loop]);
  }
  sh('dd', ['if=/usr/lib/syslinux/mbr/mbr.bin', `of=${raw}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none']);
  sh('qemu-img', ['convert', '-O', 'qcow2', raw, out]);
  await rm(raw, { force: true });
  return out;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the shell pipeline mounts a loop device');
  await prepare();
  const started = Date.now();
  console.log(`load average at the start: ${load()}`);
  const work = await mkdtemp(join(tmpdir(), 'bench-export-'));
  try {
    // cold: the image's layer snapshots are gone (first export of an image on this store)
    await dropSnapshots();
    const [, cold, coldCpu] = await timed(() => tsbuildPipeline(work));
    const ours: number[] = [];
    const theirs: number[] = [];
    const oursCpu: number[] = [];
    const theirsCpu: number[] = [];
    let oursFile = '';
    let theirsFile = '';
    const diskSize = Number(
      JSON.parse(sh('qemu-img', ['info', '--output', 'json', join(work, 'tsbuild.qcow2')]))['virtual-size'],
    );
    for (let i = 0; i < REPS; i++) {
      const [a, ta, ca] = await timed(() => tsbuildPipeline(work));
      const [b, tb, cb] = await timed(() => shellPipeline(work, diskSize));
      ours.push(ta);
      theirs.push(tb);
      oursCpu.push(ca);
      theirsCpu.push(cb);
      oursFile = a;
      theirsFile = b;
    }
    const sizeOurs = (await stat(oursFile)).size;
    const sizeTheirs = (await stat(theirsFile)).size;
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
    console.log(`image ${IMAGE}: disk ${mb(diskSize)} virtual, ${REPS} run(s) per pipeline (median)`);
    console.log(
      `export time   tsbuild ${median(ours).toFixed(1)} s (cold store ${cold.toFixed(1)} s)   shell ${median(theirs).toFixed(1)} s   ratio ${(median(ours) / median(theirs)).toFixed(2)}× (cold ${(cold / median(theirs)).toFixed(2)}×)`,
    );
    console.log(
      `export CPU    tsbuild ${median(oursCpu).toFixed(1)} s (cold store ${coldCpu.toFixed(1)} s)   shell ${median(theirsCpu).toFixed(1)} s   ratio ${(median(oursCpu) / median(theirsCpu)).toFixed(2)}× (cold ${(coldCpu / median(theirsCpu)).toFixed(2)}×)`,
    );
    const runs = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
    console.log(`export runs   tsbuild ${runs(ours)}   shell ${runs(theirs)} (s, in order)`);
    console.log(
      `output size   tsbuild ${mb(sizeOurs)}   shell ${mb(sizeTheirs)}   ratio ${(sizeOurs / sizeTheirs).toFixed(2)}×`,
    );
    if (STEPS) {
      console.log(`tsbuild steps, warm store   ${await stepTimings(work)}`);
      await dropSnapshots();
      console.log(`tsbuild steps, cold store   ${await stepTimings(work)}`);
    }
    if (BOOT) {
      const expect = new RegExp(MARKER);
      const a = await bootDisk({ disk: oursFile, expect, kvm: 'off', timeoutMs: 600_000 });
      const b = await bootDisk({ disk: theirsFile, expect, kvm: 'off', timeoutMs: 600_000 });
      if (a.outcome !== 'matched' || b.outcome !== 'matched')
        console.log(`boot: tsbuild ${a.outcome}, shell ${b.outcome}`);
      console.log(
        `boot to marker (TCG)   tsbuild ${a.seconds.toFixed(1)} s   shell ${b.seconds.toFixed(1)} s   ratio ${(a.seconds / b.seconds).toFixed(2)}×`,
      );
    }
    console.log(`load average at the end: ${load()}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// run only when started as a script (bench/boot.ts imports shellDisk)
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
