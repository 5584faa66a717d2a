import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Distro } from '../../../convert/distro.js';
import { lookupKernel } from '../../../convert/kernel/cache.js';
import {
  compareVersions,
  findKernel,
  INITRAMFS_DISK_MODULES,
  INITRAMFS_SETUP,
  installPlan,
  kernelCacheKey,
  kernelRecords,
  layerChanges,
  parseKernelFlag,
  recordMismatch,
  ALPINE_INITFS_FEATURES,
  type KernelRecord,
} from '../../../convert/kernel/index.js';
import { commitLayer } from '../../../layers/store/commit.js';
import { Store } from '../../../layers/store/store.js';
import { tarFromDirectory } from '../../../layers/tar/create.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

const debian: Distro = { id: 'debian', family: 'debian', versionId: '12', prettyName: 'Debian 12' };
const ubuntu: Distro = { id: 'ubuntu', family: 'debian', versionId: '24.04', prettyName: 'Ubuntu 24.04' };
const alpine: Distro = { id: 'alpine', family: 'alpine', versionId: '3.20.3', prettyName: 'Alpine 3.20' };

async function tree(t: { teardown(f: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  for (const [p, content] of Object.entries(files)) {
    if (p.endsWith('/')) {
      await mkdir(join(root, p), { recursive: true });
      continue;
    }
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), content);
    await chmod(join(root, p), 0o755);
  }
  return root;
}

test('kernel versions compare by their numbers', (t) => {
  t.true(compareVersions('6.1.0-10-amd64', '6.1.0-9-amd64') > 0);
  t.true(compareVersions('5.10.0-28', '6.1.0-1') < 0);
  t.is(compareVersions('6.1.0', '6.1.0'), 0);
});

test('findKernel picks the newest kernel that has an initramfs, keeping the versioned names', async (t) => {
  const root = await tree(t, {
    'boot/vmlinuz-6.1.0-9-cloud-amd64': 'k',
    'boot/initrd.img-6.1.0-9-cloud-amd64': 'i',
    'boot/vmlinuz-6.1.0-10-cloud-amd64': 'k',
    'boot/initrd.img-6.1.0-10-cloud-amd64': 'i',
    'boot/vmlinuz-6.1.0-11-cloud-amd64.old': 'k',
  });
  t.deepEqual(findKernel(root), {
    kernel: '/boot/vmlinuz-6.1.0-10-cloud-amd64',
    initrd: '/boot/initrd.img-6.1.0-10-cloud-amd64',
    version: '6.1.0-10-cloud-amd64',
  });
});

test("findKernel reads Alpine's flavor names and finds the release from /lib/modules", async (t) => {
  const root = await tree(t, {
    'boot/vmlinuz-virt': 'k',
    'boot/initramfs-virt': 'i',
    'lib/modules/6.6.58-0-virt/': '',
  });
  t.deepEqual(findKernel(root), {
    kernel: '/boot/vmlinuz-virt',
    initrd: '/boot/initramfs-virt',
    version: '6.6.58-0-virt',
  });
});

test('findKernel finds nothing in an image without a kernel', async (t) => {
  t.is(findKernel(await tree(t, { 'etc/hostname': 'x' })), undefined);
});

test('Debian without init or udev gets systemd and udev with the cloud kernel, and no DHCP client (systemd-networkd does DHCP)', async (t) => {
  const plan = installPlan(debian, await tree(t, {}), { network: 'dhcp' });
  t.deepEqual(plan.packages, ['linux-image-cloud-amd64', 'initramfs-tools', 'systemd-sysv', 'udev']);
  t.regex(plan.script, /apt-get .* install -y --no-install-recommends \$pkgs/);
  t.regex(plan.script, /linux-image-amd64/, 'falls back to the generic kernel when the archive has no cloud flavor');
  t.deepEqual(plan.commands.at(-1), ['rm', '-rf', '/var/lib/apt/lists/*']);
});

test('Debian with systemd, udev and ifupdown only gets the kernel and initramfs-tools', async (t) => {
  const root = await tree(t, {
    'sbin/init': '',
    'lib/systemd/systemd': '',
    'lib/systemd/systemd-udevd': '',
    'sbin/ifup': '',
  });
  t.deepEqual(installPlan(debian, root, { network: 'dhcp' }).packages, ['linux-image-cloud-amd64', 'initramfs-tools']);
});

test('Debian with systemd but no ifupdown gets no DHCP client: systemd-networkd ships with systemd', async (t) => {
  const root = await tree(t, { 'sbin/init': '', 'lib/systemd/systemd': '', 'lib/systemd/systemd-udevd': '' });
  t.deepEqual(installPlan(debian, root, { network: 'dhcp' }).packages, ['linux-image-cloud-amd64', 'initramfs-tools']);
});

test('Debian with another init (sysvinit) and no ifupdown gets ifupdown + isc-dhcp-client for DHCP', async (t) => {
  const root = await tree(t, { 'sbin/init': '', 'lib/systemd/systemd-udevd': '' });
  t.deepEqual(installPlan(debian, root, { network: 'dhcp' }).packages, [
    'linux-image-cloud-amd64',
    'initramfs-tools',
    'ifupdown',
    'isc-dhcp-client',
  ]);
  t.false(installPlan(debian, root, { network: 'none' }).packages.includes('ifupdown'));
});

test('Debian and Ubuntu initramfs hold the disk drivers of common machines (MODULES=list) and fsck for the ext4 root', async (t) => {
  for (const distro of [debian, ubuntu]) {
    const plan = installPlan(distro, await tree(t, {}), { network: 'dhcp' });
    const setup = plan.script.indexOf(INITRAMFS_SETUP);
    t.true(setup > 0 && setup < plan.script.indexOf('install -y'), 'configured before the kernel package builds it');
    t.deepEqual(plan.commands[0], ['sh', '-c', INITRAMFS_SETUP]);
  }
  const root = await tree(t, {});
  execFileSync('sh', ['-ec', INITRAMFS_SETUP.replaceAll('/etc/', `${root}/etc/`)]);
  t.is(readFileSync(join(root, 'etc/initramfs-tools/conf.d/tsbuild.conf'), 'utf8'), 'MODULES=list\nFSTYPE=ext4\n');
  const hook = join(root, 'etc/initramfs-tools/hooks/tsbuild-disks');
  t.is(statSync(hook).mode & 0o777, 0o755);
  t.is(execFileSync(hook, ['prereqs']).toString(), '', 'no prerequisites');
  t.regex(readFileSync(hook, 'utf8'), new RegExp(`^manual_add_modules ${INITRAMFS_DISK_MODULES.join(' ')}$`, 'm'));
  for (const m of ['virtio_blk', 'virtio_scsi', 'ahci', 'nvme', 'xen_blkfront', 'hv_storvsc', 'vmw_pvscsi'])
    t.true(INITRAMFS_DISK_MODULES.includes(m), m);
});

test('Ubuntu gets linux-image-virtual', async (t) => {
  t.is(installPlan(ubuntu, await tree(t, {}), { network: 'none' }).packages[0], 'linux-image-virtual');
});

test('Alpine installs linux-virt with mkinitfs features for ext4 on virtio, and OpenRC', async (t) => {
  const plan = installPlan(alpine, await tree(t, {}), { network: 'dhcp' });
  t.deepEqual(plan.commands, [
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
  t.is(ALPINE_INITFS_FEATURES, 'base ext4 virtio scsi');
});

test('Alpine before 3.17 gets busybox-initscripts', async (t) => {
  t.true(
    installPlan({ ...alpine, versionId: '3.16.9' }, await tree(t, {}), { network: 'none' }).packages.includes(
      'busybox-initscripts',
    ),
  );
});

const base = {
  'etc/os-release': 'ID=debian\n',
  'var/lib/dpkg/status': 'Package: base-files\n',
  'etc/passwd': 'root:x:0:0::/root:/bin/sh\n',
  'etc/apt/sources.list.d/debian.sources': 'Types: deb\n',
};

test("the kernel cache key ignores the app's files and changes with the package database", async (t) => {
  const plain = await tree(t, base);
  const plan = installPlan(debian, plain, { network: 'dhcp' });
  const withApp = await tree(t, { ...base, 'usr/local/bin/app': '#!/bin/sh\necho v2\n', 'srv/app/data': 'x' });
  const withPackage = await tree(t, { ...base, 'var/lib/dpkg/status': 'Package: base-files\n\nPackage: curl\n' });
  const withSource = await tree(t, { ...base, 'etc/apt/sources.list.d/extra.list': 'deb http://example/ x main\n' });
  const key = kernelCacheKey(plain, debian, plan);
  t.is(kernelCacheKey(withApp, debian, plan), key);
  t.not(kernelCacheKey(withPackage, debian, plan), key);
  t.not(kernelCacheKey(withSource, debian, plan), key);
  t.not(kernelCacheKey(plain, debian, { ...plan, packages: [...plan.packages, 'vim'] }), key);
});

test('a cached kernel layer is not reused over an image file it would overwrite', async (t) => {
  const root = await tree(t, { ...base, 'etc/network/interfaces': 'mine\n' });
  const rec = { depends: { 'boot/vmlinuz-6.1': '', 'etc/network/interfaces': '' } } as unknown as KernelRecord;
  t.is(recordMismatch(root, rec), 'etc/network/interfaces');
  const clean = await tree(t, base);
  t.is(recordMismatch(clean, rec), undefined);
});

test('runtime mount points, caches and logs stay out of the kernel layer', (t) => {
  const kept = layerChanges(
    [
      'dev/null',
      'proc',
      'tmp/x',
      'var/cache/apt/pkgcache.bin',
      'var/lib/apt/lists/x',
      'var/log/apt/term.log',
      'etc/resolv.conf',
      'etc/hosts',
      'boot/vmlinuz-6.1',
      'var/lib/dpkg/status',
      'etc/passwd',
    ].map((path) => ({ path, kind: 'add' as const })),
  ).map((c) => c.path);
  t.deepEqual(kept, ['boot/vmlinuz-6.1', 'var/lib/dpkg/status', 'etc/passwd']);
});

test('--kernel takes auto, image, install or a path, and --initrd only with a path', (t) => {
  t.is(parseKernelFlag(undefined, undefined), 'auto');
  t.is(parseKernelFlag('install', undefined), 'install');
  t.deepEqual(parseKernelFlag('/tmp/vmlinuz', '/tmp/initrd'), { path: '/tmp/vmlinuz', initrd: '/tmp/initrd' });
  t.throws(() => parseKernelFlag('auto', '/tmp/initrd'), { message: /--initrd goes with --kernel PATH/ });
});

test('kernel records live in <store>/cache/export-kernel/<hex>.json and are used only for their key, blob and files', async (t) => {
  const dir = await tree(t, { 'layer/boot/vmlinuz-6.1': 'k', 'rootfs/etc/os-release': 'ID=debian\n' });
  const store = await Store.open(join(dir, 'store'));
  const l = await commitLayer(store, tarFromDirectory(join(dir, 'layer')));
  const rootfs = join(dir, 'rootfs');
  const key = kernelCacheKey(rootfs, debian, installPlan(debian, rootfs, { network: 'dhcp' }));
  const rec: KernelRecord = {
    version: 1,
    key,
    layer: { descriptor: l.descriptor, diffId: l.diffId },
    kernel: { kernel: '/boot/vmlinuz-6.1', version: '6.1' },
    depends: { 'boot/vmlinuz-6.1': '' },
    created: new Date(0).toISOString(),
    packages: ['linux-image-cloud-amd64'],
  };
  await kernelRecords(store).put(key, rec);
  const file = join(store.root, 'cache', 'export-kernel', `${key.slice(7)}.json`);
  t.deepEqual(JSON.parse(await readFile(file, 'utf8')), rec);
  t.deepEqual(await lookupKernel(store, rootfs, key), rec);
  const other = `sha256:${'0'.repeat(64)}` as const;
  await kernelRecords(store).put(other, rec);
  t.is(await lookupKernel(store, rootfs, other), undefined, 'a record filed under another key is refused');
  await mkdir(join(rootfs, 'boot'));
  await writeFile(join(rootfs, 'boot/vmlinuz-6.1'), "the app's own");
  const said: string[] = [];
  t.is(await lookupKernel(store, rootfs, key, (m) => said.push(m)), undefined);
  t.deepEqual(said, ['cached kernel layer not reused: the image has its own /boot/vmlinuz-6.1']);
  await rm(join(rootfs, 'boot'), { recursive: true });
  t.truthy(await lookupKernel(store, rootfs, key));
  await rm(store.blobPath(l.descriptor.digest));
  t.is(await lookupKernel(store, rootfs, key), undefined, 'a record whose layer blob is gone is not used');
  t.true(existsSync(file));
});
