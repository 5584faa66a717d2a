// The export recipe end to end without QEMU and without the Debian archive: an Alpine-shaped busybox tree (its
// kernel install is only planned, or a stand-in kernel file is passed with --kernel PATH), and a tree that is no
// supported distribution.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, statfsSync } from 'node:fs';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { extract } from 'tar-stream';
import { DiskSizeError } from '../../convert/disk-layout.js';
import { UnsupportedDistroError } from '../../convert/distro.js';
import {
  cleanStaleExports,
  ExportInterruptedError,
  exportImage,
  hostnameFor,
  kernelCmdline,
  type ExportOptions,
} from '../../convert/recipe.js';
import { ALPINE_INITFS_FEATURES } from '../../convert/kernel/index.js';
import { TMPFS_MAGIC } from '../../convert/work-dir.js';
import { makeAlpineShapedRootfs } from '../../fixtures/alpine-shaped.js';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { importImage } from '../../layers/sources/import.js';
import { Store } from '../../layers/store/store.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

// the exports share one store and run one at a time: each checks that the store's tmp is empty afterwards
const bb = busyboxAvailable() ? test.serial : test.serial.skip;
const APP_CONFIG = { Cmd: ['/usr/local/bin/app'], Env: ['GREETING=hi'], WorkingDir: '/srv' };

interface Fixture {
  store: Store;
  out: string;
  kernel: string;
}

/** A store holding `alpine-app:1` (the Alpine-shaped tree + an app) and `plain:1` (busybox, no os-release). */
async function makeFixture(): Promise<Fixture & { dir: string }> {
  const dir = await makeTempDir('tsbuild-recipe-');
  const store = await Store.open(join(dir, 'store'));
  const alp = join(dir, 'alpine');
  await makeAlpineShapedRootfs(alp);
  await mkdir(join(alp, 'usr/local/bin'), { recursive: true });
  await writeFile(join(alp, 'usr/local/bin/app'), '#!/bin/sh\necho APP-RUNS\n');
  await chmod(join(alp, 'usr/local/bin/app'), 0o755);
  await importImage(store, { source: alp, name: 'alpine-app:1', config: APP_CONFIG });
  const plain = join(dir, 'plain');
  await makeBusyboxRootfs(plain);
  await importImage(store, { source: plain, name: 'plain:1', config: APP_CONFIG });
  const kernel = join(dir, 'vmlinuz-fake');
  await writeFile(kernel, 'not really a kernel');
  return { store, out: join(dir, 'out'), kernel, dir };
}

let shared: Promise<Fixture & { dir: string }> | undefined;
test.after.always(async () => {
  if (shared) await removeDir((await shared).dir);
});

/** fixture returns the shared store and a fresh output directory for this test. */
async function fixture(t: { teardown(f: () => unknown): void }): Promise<Fixture> {
  shared ??= makeFixture();
  const f = await shared;
  const out = await makeTempDir('tsbuild-recipe-out-');
  t.teardown(() => removeDir(out));
  return { ...f, out };
}

/** storeTmp lists the work directories in the store's tmp and this process's memory directories (work-dir.ts). */
async function storeTmp(store: Store): Promise<string[]> {
  const mem = (await readdir('/dev/shm').catch(() => [] as string[])).filter((n) =>
    n.startsWith(`tsbuild-export-${process.pid}-`),
  );
  const tmp = await readdir(join(store.root, 'tmp')).catch(() => [] as string[]);
  return [...tmp.filter((n) => n.startsWith('export-')), ...mem];
}

async function tarFiles(file: string): Promise<Map<string, { type: string; linkname?: string; body: string }>> {
  const out = new Map<string, { type: string; linkname?: string; body: string }>();
  const ex = extract();
  ex.on('entry', (h, s, next) => {
    const chunks: Buffer[] = [];
    s.on('data', (b: unknown) => {
      chunks.push(b as Buffer);
    });
    s.on('end', () => {
      out.set(h.name.replace(/^\.\//, '').replace(/\/$/, ''), {
        type: h.type ?? 'file',
        ...(h.linkname ? { linkname: h.linkname } : {}),
        body: Buffer.concat(chunks).toString(),
      });
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', () => resolve());
    ex.on('error', reject);
    createReadStream(file).pipe(ex);
  });
  return out;
}

test('hostnames come from the image repository name', (t) => {
  t.is(hostnameFor('registry.example.com:5000/team/my_app:1.0'), 'my-app');
  t.is(hostnameFor('app@sha256:abc'), 'app');
  t.is(hostnameFor('___'), 'tsbuild');
});

test('the kernel command line finds root by UUID, names eth0 and ends with the serial console', (t) => {
  t.is(
    kernelCmdline('U', { id: 'debian', family: 'debian', versionId: '12', prettyName: '' }),
    'root=UUID=U ro rootfstype=ext4 net.ifnames=0 console=tty0 console=ttyS0,115200n8',
  );
  t.regex(
    kernelCmdline('U', { id: 'alpine', family: 'alpine', versionId: '3.20', prettyName: '' }, 'quiet'),
    /^root=UUID=U rootfstype=ext4 modules=ext4,virtio_blk\S* .*console=ttyS0,115200n8 quiet$/,
  );
});

bb('a dry run on Alpine plans the apk commands for the kernel and writes nothing', async (t) => {
  const f = await fixture(t);
  const output = join(f.out, 'alpine.qcow2');
  const r = await exportImage({ store: f.store, image: 'alpine-app:1', output, dryRun: true });
  t.is(r.kernel.source, 'planned');
  t.is(r.distro?.id, 'alpine');
  t.deepEqual(r.dryRun?.commands, [
    ['sh', '-c', `mkdir -p /etc/mkinitfs && echo 'features="${ALPINE_INITFS_FEATURES}"' > /etc/mkinitfs/mkinitfs.conf`],
    [
      'apk',
      'add',
      '--no-cache',
      'linux-virt',
      'mkinitfs',
      'openrc',
      'busybox-openrc',
      'busybox-mdev-openrc',
      'ifupdown-ng',
    ],
    ['sh', '-c', 'mkinitfs $(ls /lib/modules | tail -n 1)'],
  ]);
  t.deepEqual(r.dryRun?.steps, [
    'check',
    'flatten',
    'distro',
    'kernel',
    'system-files',
    'service',
    'bootloader-config',
    'layout',
    'filesystem',
    'bootloader',
    'partition-table',
    'output',
  ]);
  t.false(existsSync(output));
  t.deepEqual(await storeTmp(f.store), []);
});

bb(
  'an Alpine image exported as a tar has the Alpine machine configuration and the app as an OpenRC service',
  async (t) => {
    const f = await fixture(t);
    const output = join(f.out, 'rootfs.tar');
    const steps: string[] = [];
    const r = await exportImage({
      store: f.store,
      image: 'alpine-app:1',
      output,
      kernel: { path: f.kernel },
      onEvent: (e) => e.type === 'step' && steps.push(e.step),
    });
    t.is(r.format, 'tar');
    t.is(r.init, 'openrc');
    t.false(steps.includes('filesystem'));
    const files = await tarFiles(output);
    t.true(files.get('etc/inittab')?.body.split('\n').includes('ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100'));
    t.regex(files.get('etc/init.d/tsbuild-app')?.body ?? '', /^command=\/usr\/local\/bin\/app$/m);
    t.regex(files.get('etc/init.d/tsbuild-app')?.body ?? '', /^export GREETING=hi$/m);
    t.like(files.get('etc/runlevels/default/tsbuild-app'), { type: 'symlink', linkname: '/etc/init.d/tsbuild-app' });
    t.like(files.get('etc/runlevels/boot/networking'), { type: 'symlink', linkname: '/etc/init.d/networking' });
    t.regex(files.get('etc/network/interfaces')?.body ?? '', /iface eth0 inet dhcp/);
    t.regex(files.get('etc/fstab')?.body ?? '', new RegExp(`^UUID=${r.rootUuid}\\t/\\text4`, 'm'));
    t.is(files.get('etc/hostname')?.body, 'alpine-app\n');
    t.is(files.get('boot/vmlinuz-fake')?.body, 'not really a kernel');
  },
);

bb('an unsupported distribution without --kernel is a clear error, and nothing is left behind', async (t) => {
  const f = await fixture(t);
  const output = join(f.out, 'plain.qcow2');
  const err = await t.throwsAsync(exportImage({ store: f.store, image: 'plain:1', output }), {
    instanceOf: UnsupportedDistroError,
  });
  t.regex(err?.message ?? '', /supports debian, ubuntu, alpine/);
  t.regex(err?.hint ?? '', /--kernel PATH/);
  t.false(existsSync(output));
  t.deepEqual(await storeTmp(f.store), []);
});

bb('an unsupported distribution boots with --kernel PATH and generic settings', async (t) => {
  const f = await fixture(t);
  const warnings: string[] = [];
  const r = await exportImage({
    store: f.store,
    image: 'plain:1',
    output: join(f.out, 'plain.tar'),
    kernel: { path: f.kernel },
    onEvent: (e) => e.type === 'warn' && warnings.push(e.code),
  });
  t.is(r.distro, undefined);
  t.true(warnings.includes('W_UNSUPPORTED_DISTRO'));
  t.is(r.kernel.files?.kernel, '/boot/vmlinuz-fake');
});

bb('a --size too small is an error that names the size needed', async (t) => {
  const f = await fixture(t);
  const output = join(f.out, 'small.raw');
  const err = await t.throwsAsync(
    exportImage({ store: f.store, image: 'alpine-app:1', output, kernel: { path: f.kernel }, size: '2M' }),
    { instanceOf: DiskSizeError },
  );
  t.regex(err?.message ?? '', /--size 2M is too small: the disk needs at least \d+M/);
  t.false(existsSync(output));
  t.deepEqual(await storeTmp(f.store), []);
});

const verify = test.macro({
  async exec(t, opts: Partial<ExportOptions>, checks: { table: 'mbr' | 'gpt'; partitions: string[] }) {
    const f = await fixture(t);
    const output = join(f.out, 'disk.raw');
    const r = await exportImage({ store: f.store, image: 'alpine-app:1', output, kernel: { path: f.kernel }, ...opts });
    t.deepEqual(
      r.layout?.layout.partitions.map((p) => p.type),
      checks.partitions,
    );
    if (checks.table === 'mbr') execFileSync('sfdisk', ['--verify', output], { stdio: 'ignore' });
    else t.regex(execFileSync('sgdisk', ['-v', output]).toString(), /No problems found/);
    const root = r.layout?.root.start as number;
    const probe = execFileSync('blkid', ['-p', '-O', String(root), '-o', 'export', output]).toString();
    t.regex(probe, new RegExp(`^UUID=${r.rootUuid}$`, 'm'));
    t.regex(probe, /^TYPE=ext4$/m);
    execFileSync('e2fsck', ['-fn', `${output}?offset=${root}`], { stdio: 'ignore' });
    const fstab = execFileSync('debugfs', ['-R', 'cat /etc/fstab', `${output}?offset=${root}`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
    t.regex(fstab, new RegExp(`^UUID=${r.rootUuid}\\t/\\t`, 'm'));
  },
  title: (given) => given ?? '',
});

bb(
  'a BIOS/MBR disk passes sfdisk --verify, e2fsck, and its fstab names the filesystem UUID',
  verify,
  {},
  { table: 'mbr', partitions: ['linux'] },
);
bb(
  'a hybrid GPT disk passes sgdisk -v with BIOS boot, ESP and root partitions',
  verify,
  { boot: 'hybrid' },
  { table: 'gpt', partitions: ['bios-boot', 'esp', 'linux'] },
);

bb('a QCOW2 export makes its raw disk in memory when it fits, and leaves nothing there', async (t) => {
  const f = await fixture(t);
  const output = join(f.out, 'mem.qcow2');
  const layout: string[] = [];
  const r = await exportImage({
    store: f.store,
    image: 'alpine-app:1',
    output,
    kernel: { path: f.kernel },
    onEvent: (e) => e.type === 'step' && e.step === 'layout' && layout.push(e.message),
  });
  t.is(r.format, 'qcow2');
  // in memory where /dev/shm is a tmpfs with room (this disk is tens of MB; the rule is twice the disk, work-dir.ts)
  const shm = ((): boolean => {
    try {
      const st = statfsSync('/dev/shm');
      return st.type === TMPFS_MAGIC && st.bavail * st.bsize > 1 << 30;
    } catch {
      return false;
    }
  })();
  t.regex(layout.join('\n'), shm ? /disk \(made in memory\):/ : /disk:/);
  execFileSync('qemu-img', ['check', output], { stdio: 'ignore' });
  t.deepEqual(await storeTmp(f.store), []);
});

bb('an interrupted export leaves neither the output nor its work directory', async (t) => {
  const f = await fixture(t);
  const output = join(f.out, 'stop.qcow2');
  const ac = new AbortController();
  const p = exportImage({
    store: f.store,
    image: 'alpine-app:1',
    output,
    kernel: { path: f.kernel },
    signal: ac.signal,
    onEvent: (e) => e.type === 'step' && e.step === 'layout' && ac.abort(),
  });
  await t.throwsAsync(p, { instanceOf: ExportInterruptedError });
  t.false(existsSync(output));
  t.deepEqual(await storeTmp(f.store), []);
});

test('work directories of killed exports are cleaned by the next one', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'tmp/export-999999999-abcdef/rootfs'), { recursive: true });
  await mkdir(join(dir, `tmp/export-${process.pid}-abcdef`), { recursive: true });
  t.deepEqual(await cleanStaleExports(dir), ['export-999999999-abcdef']);
  t.deepEqual(await readdir(join(dir, 'tmp')), [`export-${process.pid}-abcdef`]);
});
