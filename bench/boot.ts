// bench/boot.ts: how fast the default `tsbuild export` of the bundled example (fixtures/example: a static C program
// on debian:bookworm) boots, against the classic shell-pipeline disk of the same image, in one run: QEMU start →
// the program's line on the serial console, under TCG, best of N boots per disk (alternating), and the qcow2 sizes.
//
// The shell-pipeline disk is made the way docker-to-linux and d2vm make theirs, from the same image: a Dockerfile
// `FROM app:0.1` that apt-installs the same kernel package (linux-image-cloud-amd64, with initramfs-tools, systemd-sysv
// and ifupdown + isc-dhcp-client, Debian's defaults), `tsbuild unpack`, then by hand: fstab by UUID, hostname, DHCP on
// eth0 (ifupdown), a root password, a getty on ttyS0, and a systemd unit that runs the program after
// network-online.target (as tsbuild's unit does) with its output on the console; then truncate → sfdisk → mkfs.ext4
// on a loop device → mount → tar -x → extlinux → qemu-img convert (bench/export.ts shellDisk).
//
// The tsbuild disk is `exportImage` from this checkout (not dist/: the export time is not what is measured here).
// Each boot's console is kept, with the time each line arrived and QEMU's CPU seconds then, and a few milestones are
// printed per disk (kernel start, initramfs done, systemd start, network online, the program's line) as
// `wall s/CPU s`: on a loaded host the CPU seconds say where the guest's time goes, the wall times do not.
//
// Run as root: npx tsx bench/boot.ts
//   BENCH_ROOT    store to use (default /var/tmp/tsbuild-bench-boot; debian:bookworm is loaded from the test cache
//                 /var/tmp/tsbuild-test-cache/debian-store when there, else bootstrapped)
//   BENCH_BOOTS   boots per disk, best shown (default 2)
//   BENCH_LOGS    directory to keep the timed consoles in (default: none kept)
//   BENCH_EXPORT  extra export options for the tsbuild disks, space separated (e.g. `--bootloader extlinux`)
//   BENCH_VARIANTS more tsbuild disks in the rotation, comma separated: plain (uncompressed qcow2), deflate, extlinux,
//                 grub, quiet (`quiet` on the kernel command line), ifupdown (the app + ifupdown and isc-dhcp-client:
//                 the export keeps them, the default before systemd-networkd), resolved (the app + systemd-resolved)
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootDisk } from '../convert/boot.js';
import { exportImage, type ExportOptions } from '../convert/recipe.js';
import { Store } from '../layers/store/store.js';
import { shellDisk } from './export.js';

const ROOT = process.env.BENCH_ROOT ?? '/var/tmp/tsbuild-bench-boot';
const BOOTS = Number(process.env.BENCH_BOOTS ?? 2);
const LOGS = process.env.BENCH_LOGS;
const EXTRA = (process.env.BENCH_EXPORT ?? '').split(/\s+/).filter(Boolean);
const VARIANTS = (process.env.BENCH_VARIANTS ?? '').split(',').filter(Boolean);
/** BENCH_VARIANTS: more tsbuild disks booted in the same rotation, each with one export option changed */
const VARIANT_OPTIONS: Record<string, Partial<ExportOptions>> = {
  plain: { compress: 'none' },
  deflate: { compress: 'deflate' },
  extlinux: { bootloader: 'extlinux' },
  grub: { bootloader: 'grub' },
  quiet: { cmdline: 'quiet' },
  ifupdown: { image: 'app-ifupdown:0.1' },
  resolved: { image: 'app-resolved:0.1' },
  nice: { image: 'app-nice:0.1' },
  lean: { image: 'app-lean:0.1' },
};
/**
 * Variants that export another image, built FROM app:0.1 in prepare(): `ifupdown` has ifupdown + isc-dhcp-client,
 * so the export keeps them (the default before systemd-networkd); `resolved` has systemd-resolved (and so systemd,
 * which the kernel install then does not add), which the export's networkd setup hands DNS to.
 */
const VARIANT_IMAGES: Record<string, { tag: string; packages?: string; files?: Record<string, string> }> = {
  ifupdown: { tag: 'app-ifupdown:0.1', packages: 'ifupdown isc-dhcp-client' },
  resolved: { tag: 'app-resolved:0.1', packages: 'systemd-sysv systemd-resolved' },
  // experiments: files laid over app:0.1 (a value starting with `->` is a symlink to the rest)
  nice: {
    tag: 'app-nice:0.1',
    files: {
      'etc/systemd/system/systemd-networkd.service.d/nice.conf': '[Service]\nNice=-10\n',
      'etc/systemd/system/systemd-networkd-wait-online.service.d/nice.conf': '[Service]\nNice=-10\n',
    },
  },
  lean: {
    tag: 'app-lean:0.1',
    files: Object.fromEntries(
      [
        'modprobe@efi_pstore.service',
        'modprobe@fuse.service',
        'modprobe@configfs.service',
        'sys-kernel-debug.mount',
        'sys-kernel-tracing.mount',
        'sys-fs-fuse-connections.mount',
        'sys-kernel-config.mount',
      ].map((u) => [`etc/systemd/system/${u}`, '->/dev/null']),
    ),
  },
};
const TEST_CACHE = '/var/tmp/tsbuild-test-cache/debian-store';
const REPO = join(import.meta.dirname, '..');
const CLI = join(REPO, 'bin', 'tsbuild.js');
const LINE = 'hello from tsbuild example';

const sh = (cmd: string, args: string[], opts: { input?: string | Buffer; cwd?: string } = {}): string =>
  execFileSync(cmd, args, {
    input: opts.input,
    cwd: opts.cwd,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'inherit'],
    maxBuffer: 1 << 28,
  }).toString();
const tsb = (args: string[], opts: { input?: string | Buffer; cwd?: string } = {}): string =>
  sh(process.execPath, [CLI, '--root', ROOT, ...args], opts);
const has = (name: string): boolean => {
  try {
    tsb(['inspect', name]);
    return true;
  } catch {
    return false;
  }
};

const CLASSIC_DOCKERFILE = `FROM app:0.1
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      linux-image-cloud-amd64 initramfs-tools systemd-sysv udev ifupdown isc-dhcp-client \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
`;

const CLASSIC_UNIT = `[Unit]
Description=app
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/bin/hello
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`;

/** prepare puts debian:bookworm, app:0.1 (fixtures/example) and app-classic:0.1 (plus the kernel, by apt) in ROOT. */
async function prepare(): Promise<void> {
  await mkdir(ROOT, { recursive: true });
  if (!has('debian:bookworm')) {
    const tar = join(ROOT, 'debian.tar');
    if (existsSync(join(TEST_CACHE, 'index.json'))) {
      console.error(`loading debian:bookworm from ${TEST_CACHE}…`);
      sh(process.execPath, [CLI, '--root', TEST_CACHE, 'save', 'debian:bookworm', '-o', tar]);
      tsb(['load', '-i', tar]);
      await rm(tar, { force: true });
    } else {
      console.error('bootstrapping debian:bookworm…');
      tsb(['bootstrap', 'debian:bookworm', '--variant', 'minbase']);
    }
  }
  console.error('building fixtures/example as app:0.1 (cached after the first run)…');
  tsb(['build', '--progress', 'quiet', '-f', 'Dockerfile', '-t', 'app:0.1', '.'], {
    cwd: join(REPO, 'fixtures/example'),
  });
  const ctx = await mkdtemp(join(tmpdir(), 'bench-boot-classic-'));
  try {
    await writeFile(join(ctx, 'Dockerfile'), CLASSIC_DOCKERFILE);
    console.error('building app-classic:0.1: app:0.1 + the kernel by apt, as d2vm does (cached after the first run)…');
    tsb(['build', '--progress', 'quiet', '-t', 'app-classic:0.1', '.'], { cwd: ctx });
    for (const v of VARIANTS) {
      const image = VARIANT_IMAGES[v];
      if (!image) continue;
      await rm(join(ctx, 'root'), { recursive: true, force: true });
      for (const [path, text] of Object.entries(image.files ?? {})) {
        await mkdir(join(ctx, 'root', path, '..'), { recursive: true });
        await rm(join(ctx, 'root', path), { force: true });
        if (text.startsWith('->')) await symlink(text.slice(2), join(ctx, 'root', path));
        else await writeFile(join(ctx, 'root', path), text);
      }
      await writeFile(join(ctx, 'Dockerfile'), variantDockerfile(image.packages, image.files !== undefined));
      console.error(`building ${image.tag}: app:0.1 + ${image.packages ?? Object.keys(image.files ?? {}).join(' ')}…`);
      tsb(['build', '--progress', 'quiet', '-t', image.tag, '.'], { cwd: ctx });
    }
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

const variantDockerfile = (packages: string | undefined, files: boolean): string =>
  [
    'FROM app:0.1',
    ...(packages
      ? [
          'RUN apt-get update \\',
          ` && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages} \\`,
          ' && apt-get clean && rm -rf /var/lib/apt/lists/*',
        ]
      : []),
    ...(files ? ['COPY root/ /'] : []),
    '',
  ].join('\n');

/** classicDisk: `tsbuild unpack app-classic:0.1`, the machine files written by hand, then bench/export.ts shellDisk. */
async function classicDisk(work: string, diskSize: number): Promise<string> {
  const tree = join(work, 'classic-rootfs');
  await rm(tree, { recursive: true, force: true });
  tsb(['unpack', 'app-classic:0.1', tree]);
  const uuid = randomUUID();
  const put = async (path: string, text: string, mode = 0o644): Promise<void> => {
    await mkdir(join(tree, path, '..'), { recursive: true });
    await rm(join(tree, path), { force: true });
    await writeFile(join(tree, path), text);
    await chmod(join(tree, path), mode);
  };
  const link = async (target: string, path: string): Promise<void> => {
    await mkdir(join(tree, path, '..'), { recursive: true });
    await rm(join(tree, path), { force: true });
    await symlink(target, join(tree, path));
  };
  await put('etc/fstab', `UUID=${uuid} / ext4 errors=remount-ro 0 1\n`);
  await put('etc/hostname', 'app\n');
  await put('etc/hosts', '127.0.0.1 localhost\n127.0.1.1 app\n');
  await put('etc/network/interfaces', 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n');
  await put('etc/systemd/system/app.service', CLASSIC_UNIT);
  await link('/etc/systemd/system/app.service', 'etc/systemd/system/multi-user.target.wants/app.service');
  await link(
    '/lib/systemd/system/serial-getty@.service',
    'etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service',
  );
  sh('chroot', [tree, 'chpasswd'], { input: 'root:root\n' });
  await rm(join(tree, '.dockerenv'), { force: true });
  const tar = join(work, 'classic.tar');
  sh('tar', ['-cf', tar, '--numeric-owner', '--xattrs', '-C', tree, '.']);
  await rm(tree, { recursive: true, force: true });
  const out = await shellDisk({ tar, work, diskSize, uuid });
  await rm(tar, { force: true });
  return out;
}

/** Milestones: the first console line matching each, in boot order. */
const MILESTONES: Array<[string, RegExp]> = [
  ['kernel', /Linux version /],
  ['initramfs done', /Run \/sbin\/init|EXT4-fs \(vda1\): mounted/],
  ['systemd', /systemd\[1\]: |Welcome to /],
  ['network', /Reached target .*Network is Online|bound to \d/],
  ['app line', new RegExp(LINE)],
  ['login', /login: ?$/m],
];

interface Boot {
  seconds: number;
  /** CPU seconds QEMU used (user + system): the guest's work, much less dependent on the host's load than `seconds` */
  cpu: number;
  /** each console line: arrival (s since QEMU start), text, QEMU's CPU seconds then */
  lines: Array<[number, string, number]>;
}

/** qemuCpu: user + system seconds of the QEMU that boots `disk` (found in /proc by its -drive argument), or undefined. */
function qemuCpu(disk: string, pid?: number): { pid: number; cpu: number } | undefined {
  const pids = pid === undefined ? readdirSync('/proc').filter((n) => /^\d+$/.test(n)) : [String(pid)];
  for (const p of pids) {
    try {
      if (pid === undefined) {
        const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
        if (!cmd.startsWith('qemu-system') || !cmd.includes(`file=${disk},`)) continue;
      }
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return { pid: Number(p), cpu: (Number(fields[11]) + Number(fields[12])) / 100 }; // utime, stime (USER_HZ)
    } catch {
      continue;
    }
  }
  return undefined;
}

async function bootOnce(disk: string): Promise<Boot> {
  const lines: Array<[number, string, number]> = [];
  let qemu: { pid: number; cpu: number } | undefined;
  const t0 = Date.now();
  let partial = '';
  const r = await bootDisk({
    disk,
    expect: new RegExp(LINE),
    kvm: 'off',
    timeoutMs: 600_000,
    onOutput: (text) => {
      qemu = qemuCpu(disk, qemu?.pid) ?? qemu;
      const now = (Date.now() - t0) / 1000;
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) lines.push([now, p.replace(/\r$/, ''), qemu?.cpu ?? NaN]);
    },
  });
  if (partial) lines.push([(Date.now() - t0) / 1000, partial, qemu?.cpu ?? NaN]);
  if (r.outcome !== 'matched') throw new Error(`${disk}: ${r.outcome} after ${r.seconds.toFixed(1)} s`);
  return { seconds: r.seconds, cpu: qemu?.cpu ?? NaN, lines };
}

function milestones(b: Boot): string {
  return MILESTONES.map(([name, re]) => {
    const hit = b.lines.find(([, l]) => re.test(l));
    return `${name} ${hit ? `${hit[0].toFixed(1)} s/${hit[2].toFixed(1)} cpu` : '—'}`;
  }).join(', ');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('run as root: builds, the kernel install and the shell pipeline need it');
  const load0 = (await import('node:os')).loadavg()[0] as number;
  const t0 = Date.now();
  await prepare();
  const work = await mkdtemp(join(tmpdir(), 'bench-boot-'));
  try {
    const ours = join(work, 'tsbuild.qcow2');
    const store = await Store.open(ROOT);
    const exportOpts: Record<string, string> = {};
    for (let i = 0; i < EXTRA.length; i += 2)
      exportOpts[(EXTRA[i] as string).replace(/^--/, '')] = EXTRA[i + 1] as string;
    console.error(`exporting app:0.1 (tsbuild export ${EXTRA.join(' ')})…`);
    await exportImage({ store, image: 'app:0.1', output: ours, ...exportOpts });
    const diskSize = Number(JSON.parse(sh('qemu-img', ['info', '--output', 'json', ours]))['virtual-size']);
    console.error('making the shell-pipeline disk…');
    const theirs = await classicDisk(work, diskSize);
    const disks: Array<[string, string]> = [['tsbuild', ours]];
    for (const v of VARIANTS) {
      const opts = VARIANT_OPTIONS[v];
      if (!opts) throw new Error(`BENCH_VARIANTS: unknown variant ${v} (${Object.keys(VARIANT_OPTIONS).join(', ')})`);
      const file = join(work, `tsbuild-${v}.qcow2`);
      console.error(`exporting app:0.1 (variant ${v})…`);
      await exportImage({ store, image: 'app:0.1', output: file, ...exportOpts, ...opts });
      disks.push([`tsbuild-${v}`, file]);
    }
    disks.push(['shell', theirs]);
    const runs: Record<string, Boot[]> = Object.fromEntries(disks.map(([n]) => [n, []]));
    for (let i = 0; i < BOOTS; i++) {
      for (const [name, disk] of disks) {
        const b = await bootOnce(disk);
        runs[name]!.push(b);
        console.error(
          `boot ${i + 1} ${name}: ${b.seconds.toFixed(1)} s, QEMU CPU ${b.cpu.toFixed(1)} s (${milestones(b)})`,
        );
        if (LOGS) {
          await mkdir(LOGS, { recursive: true });
          await writeFile(
            join(LOGS, `${name}-${i + 1}.log`),
            b.lines.map(([s, l, c]) => `[${s.toFixed(2).padStart(7)} ${c.toFixed(1).padStart(5)}] ${l}`).join('\n') +
              '\n',
          );
        }
      }
    }
    const best = (bs: Boot[]): Boot => bs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const a = best(runs.tsbuild!);
    const b = best(runs.shell!);
    const sa = (await stat(ours)).size;
    const sb = (await stat(theirs)).size;
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
    console.log(
      `image app:0.1 (fixtures/example), disk ${mb(diskSize)} virtual, best of ${BOOTS} TCG boot(s) per disk`,
    );
    console.log(
      `boot to the app's line   tsbuild ${a.seconds.toFixed(1)} s   shell ${b.seconds.toFixed(1)} s   ratio ${(a.seconds / b.seconds).toFixed(2)}×`,
    );
    for (const v of VARIANTS) {
      const c = best(runs[`tsbuild-${v}`]!);
      const size = (await stat(join(work, `tsbuild-${v}.qcow2`))).size;
      console.log(
        `  variant ${v}: boot ${c.seconds.toFixed(1)} s (ratio ${(c.seconds / b.seconds).toFixed(2)}×), qcow2 ${(size / 1e6).toFixed(1)} MB; ${milestones(c)}`,
      );
    }
    const cpuA = Math.min(...runs.tsbuild!.map((r) => r.cpu));
    const cpuB = Math.min(...runs.shell!.map((r) => r.cpu));
    console.log(
      `QEMU CPU seconds (least)  tsbuild ${cpuA.toFixed(1)} s   shell ${cpuB.toFixed(1)} s   ratio ${(cpuA / cpuB).toFixed(2)}×`,
    );
    console.log(`  tsbuild: ${milestones(a)}`);
    console.log(`  shell:   ${milestones(b)}`);
    console.log(`qcow2 size   tsbuild ${mb(sa)}   shell ${mb(sb)}   ratio ${(sa / sb).toFixed(2)}×`);
    const load1 = (await import('node:os')).loadavg()[0] as number;
    console.log(
      `load average ${load0.toFixed(2)} → ${load1.toFixed(2)}; wall time ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
