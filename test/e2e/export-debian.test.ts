// `tsbuild export` + `tsbuild boot` on an app image built from a Dockerfile FROM debian:bookworm
// (fixtures/export/debian.Dockerfile), in the three boot setups: BIOS + MBR + GRUB, BIOS + MBR + extlinux, UEFI +
// GPT (OVMF). Each disk is checked (partition table, filesystem, fstab UUID) and booted under QEMU until the app's
// line (its marker, Env, WorkingDir and User) shows on the serial console.
//
// The store is shared by the export tests (test/convert/export-fixtures.ts), so that the kernel is installed (from
// the Debian archive) once per machine and then comes from the store's kernel-layer cache.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRoot, makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';
import {
  APP_EXPECT,
  appContext,
  buildImage,
  buildOutput,
  DEBIAN_APP,
  exportStore,
  imageProblems,
} from '../convert/export-fixtures.js';

const BOOT_TIMEOUT = '420';
/** Whether this host resolves the name the guest looks up (QEMU's DNS at 10.0.2.3 forwards to the host's resolver). */
const hostResolves = await lookup('deb.debian.org').then(
  () => true,
  () => false,
);

let store: string;
test.before(async () => {
  if (isRoot) store = await exportStore();
});

/** diskChecks converts the disk to raw and checks the table, the filesystem, and that fstab names its UUID. */
function diskChecks(
  t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp) => void },
  disk: string,
  work: string,
  table: 'mbr' | 'gpt',
): void {
  const raw = join(work, 'check.raw');
  if (!disk.endsWith('.raw')) execFileSync('qemu-img', ['convert', '-O', 'raw', disk, raw]);
  const file = disk.endsWith('.raw') ? disk : raw;
  if (table === 'mbr') execFileSync('sfdisk', ['--verify', file], { stdio: 'ignore' });
  else t.regex(execFileSync('sgdisk', ['-v', file]).toString(), /No problems found/);
  const parts = JSON.parse(execFileSync('sfdisk', ['--json', file]).toString()) as {
    partitiontable: { partitions: Array<{ start: number; type: string }> };
  };
  const root = parts.partitiontable.partitions.at(-1)?.start as number;
  const offset = root * 512;
  const uuid = /^UUID=(\S+)$/m.exec(
    execFileSync('blkid', ['-p', '-O', String(offset), '-o', 'export', file]).toString(),
  )?.[1];
  const fstab = execFileSync('debugfs', ['-R', 'cat /etc/fstab', `${file}?offset=${offset}`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
  t.is(/^UUID=(\S+)\s+\/\s/m.exec(fstab)?.[1], uuid, 'fstab mounts the root filesystem by its UUID');
  execFileSync('e2fsck', ['-fn', `${file}?offset=${offset}`], { stdio: 'ignore' });
  if (file === raw) execFileSync('rm', ['-f', raw]);
}

const variant = test.macro({
  async exec(t, file: string, flags: string[], table: 'mbr' | 'gpt', bootFlags: string[]) {
    const work = await makeTempDir('tsbuild-export-e2e-');
    t.teardown(() => removeDir(work));
    const out = join(work, file);
    const r = await tsbuild(['--root', store, 'export', 'app:0.1', '-o', out, ...flags]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`^${out} \\d+(\\.\\d+)?[kMG]?B\\n$`), 'stdout: the output path and its size');
    t.regex(r.stderr, /kernel: \/boot\/vmlinuz-\S+ \+ \/boot\/initrd\.img-\S+ \((cached install|installed)\)/);
    if (out.endsWith('.qcow2')) execFileSync('qemu-img', ['check', out], { stdio: 'ignore' });
    diskChecks(t, out, work, table);
    const b = await tsbuild(['boot', out, '--expect', APP_EXPECT, '--timeout', BOOT_TIMEOUT, ...bootFlags]);
    t.is(b.code, 0, `${b.stderr}\n${b.stdout.slice(-3000)}`);
    t.true(b.stdout.includes(APP_EXPECT));
    t.log(b.stderr.trim().split('\n').at(-1));
  },
  title: (given) => given ?? '',
});

rootTest(
  'BIOS + MBR + GRUB: the exported qcow2 boots and runs the app as a service',
  variant,
  'app.qcow2',
  ['--bootloader', 'grub'], // explicit: as root, the default (auto) is extlinux for BIOS
  'mbr',
  [],
);
rootTest(
  'BIOS + MBR + extlinux: the exported raw disk boots',
  variant,
  'app.raw',
  ['--bootloader', 'extlinux'],
  'mbr',
  [],
);
rootTest('UEFI + GPT: the exported qcow2 boots with OVMF', variant, 'app-efi.qcow2', ['--boot', 'uefi'], 'gpt', [
  '--uefi',
]);

rootTest('a new app layer on the same base reuses the cached kernel layer', async (t) => {
  // the second version of the app: the same Dockerfile on an edited context (the app prints another marker)
  const name = `app:reuse-${process.pid}`;
  const ctx = await appContext('SECOND-VERSION');
  const work = await makeTempDir('tsbuild-export-e2e-');
  t.teardown(async () => {
    await tsbuild(['--root', store, 'rm', name]);
    await removeDir(ctx);
    await removeDir(work);
  });
  const b = await buildImage(store, { dockerfile: DEBIAN_APP, context: ctx, tag: name });
  t.is(b.code, 0, buildOutput(b));
  t.deepEqual(await imageProblems(store, name), []);
  t.regex(b.stderr, /^#(\d+) \[\d+\/\d+\] RUN useradd [^\n]*\n#\1 CACHED$/m, 'the user layer is the one app:0.1 has');
  const out = join(work, 'rootfs.tar');
  const r = await tsbuild(['--root', store, 'export', name, '-o', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /\(cached install\)/);
  t.notRegex(r.stderr, /installing linux-image/);
  const listing = execFileSync('tar', ['-tf', out]).toString();
  t.regex(listing, /^boot\/vmlinuz-\S+-cloud-amd64$/m);
  t.regex(execFileSync('tar', ['-xOf', out, 'usr/local/bin/app']).toString(), /SECOND-VERSION/);
  t.true(existsSync(out));
});

/**
 * NETCHECK: an app that reports the network as the app sees it once network-online.target is reached (its unit is
 * ordered after it): eth0's addresses, the resolv.conf servers, a DNS lookup, and whether ifupdown is there at all.
 */
const NETCHECK = `#!/bin/sh
addr=$(hostname -I 2>/dev/null | tr -s ' ' ',')
ns=$(sed -n 's/^nameserver[[:space:]]*//p' /etc/resolv.conf | tr '\\n' ',')
if getent ahosts deb.debian.org >/dev/null 2>&1; then lookup=ok; else lookup=failed; fi
echo "TSBUILD-NETCHECK addr=$addr ns=$ns lookup=$lookup ifup=$(command -v ifup || echo none)"
`;
rootTest(
  "the default export (systemd-networkd) has DHCP, the DHCP server's DNS before the app starts, and a serial login",
  async (t) => {
    const name = `app:netcheck-${process.pid}`;
    const ctx = await makeTempDir('tsbuild-netcheck-');
    const work = await makeTempDir('tsbuild-export-e2e-');
    t.teardown(async () => {
      await tsbuild(['--root', store, 'rm', name]);
      await removeDir(ctx);
      await removeDir(work);
    });
    await writeFile(join(ctx, 'netcheck'), NETCHECK);
    await chmod(join(ctx, 'netcheck'), 0o755);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM app:0.1\nCOPY netcheck /usr/local/bin/netcheck\nCMD ["netcheck"]\n');
    const b = await buildImage(store, { dockerfile: join(ctx, 'Dockerfile'), context: ctx, tag: name });
    t.is(b.code, 0, buildOutput(b));
    const out = join(work, 'net.qcow2');
    const r = await tsbuild(['--root', store, 'export', name, '-o', out]);
    t.is(r.code, 0, r.stderr);
    // both the app's line and the serial getty's login prompt, in either order
    const expect = String.raw`^(?=[\s\S]*TSBUILD-NETCHECK [^\n]*\n)(?=[\s\S]*\blogin: ?$)`;
    const boot = await tsbuild(['boot', out, '--expect', expect, '--timeout', BOOT_TIMEOUT]);
    t.is(boot.code, 0, `${boot.stderr}\n${boot.stdout.slice(-3000)}`);
    const line = /TSBUILD-NETCHECK (.*)/.exec(boot.stdout)?.[1] ?? '';
    t.log(line);
    t.regex(line, /\baddr=(\S*,)?10\.0\.2\.15,/, "eth0 has QEMU's DHCP address");
    t.regex(line, /\bns=10\.0\.2\.3,(\s|$)/, "resolv.conf names the DHCP server's DNS, not the export's default");
    t.regex(line, /\bifup=none\b/, 'no ifupdown: systemd-networkd configured eth0');
    if (hostResolves) t.regex(line, /\blookup=ok\b/, 'a name resolves through it');
    t.regex(boot.stdout, /\blogin: ?$/m, 'a login prompt on the serial console');
  },
);
