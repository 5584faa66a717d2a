// Installing a kernel: the distribution's own packages (apt on Debian/Ubuntu, apk on Alpine) are installed the way a
// RUN step of a build runs: in a fresh writable rootfs of the image's layers (unionfs openRootfs, vfs) with
// runContainer (runtime/run.ts), as root in new namespaces. What the install changed, minus runtime and cache
// paths, is committed as a layer and recorded under the cache key (cache.ts). It needs root: the Host must say so.
import { copyFileSync, existsSync, lstatSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Change } from '../../layers/model/changeset.js';
import type { Layer } from '../../layers/model/layer.js';
import type { Digest } from '../../layers/model/types.js';
import { commitLayer } from '../../layers/store/commit.js';
import type { Store } from '../../layers/store/store.js';
import { tarFromChanges } from '../../layers/tar/create.js';
import { runContainer } from '../../runtime/run.js';
import { capabilitySet, DEFAULT_PATH, type RunSpec } from '../../runtime/spec.js';
import { seccompFor } from '../../runtime/seccomp.js';
import { TsbuildError } from '../../sys/errors.js';
import type { Host } from '../../sys/host.js';
import { secureJoin } from '../../sys/secure-path.js';
import { openRootfs } from '../../unionfs/rootfs.js';
import type { Distro } from '../distro.js';
import { kernelRecords, pathHash, type KernelRecord } from './cache.js';
import { findKernel } from './find.js';

export type KernelEvent = { type: 'log'; line: string } | { type: 'step'; message: string };

/** KernelNeedsRootError: a kernel must be installed, and that needs namespaces (root). */
export class KernelNeedsRootError extends TsbuildError {
  constructor() {
    super('E_NEEDS_ROOT', 'the image has no kernel, and installing one (in a namespaced chroot) needs root', {
      hint: 'export once as root (the kernel layer is then cached in the store), use an image that has a kernel in /boot, or pass --kernel PATH',
    });
  }
}

/** InstallPlan is what installing a kernel runs inside the image: the packages and the script, plus argv for display. */
export interface InstallPlan {
  packages: string[];
  /** a POSIX sh script run as root in the chroot */
  script: string;
  /** the commands of the script, one argv each (what a dry run shows) */
  commands: string[][];
}

/**
 * INITRAMFS_DISK_MODULES: what a Debian/Ubuntu initramfs holds (initramfs-tools MODULES=list plus a hook) to find
 * the root disk on the machines a disk image meets: virtio (QEMU/KVM, most clouds), SCSI disks, SATA and IDE
 * (VirtualBox, QEMU -hda), NVMe (EC2, GCE), Xen, Hyper-V, VMware (pvscsi, LSI), plus virtio_net (below). ext4 is
 * built into the kernels we install. Instead of MODULES=most (every storage, USB, input and filesystem module: a
 * 15 MB initrd instead of 6 MB), the initramfs carries these and their dependencies; modules the kernel lacks are
 * skipped, and udev loads only what the hardware matches.
 */
export const INITRAMFS_DISK_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'ahci',
  'ata_piix',
  'ata_generic',
  'nvme',
  'xen_blkfront',
  'hv_storvsc',
  'vmw_pvscsi',
  'mptspi',
  // and the virtio NIC: eth0 then exists when systemd starts, so networking need not wait for udev's coldplug
  'virtio_net',
];

/**
 * INITRAMFS_SETUP: the shell lines that configure initramfs-tools (before the kernel package builds the initramfs).
 * FSTYPE=ext4 tells its fsck hook the root's type, which it otherwise reads from /etc/fstab (not written yet when the
 * kernel is installed): the initramfs then checks the root before mounting it, as on an installed Debian, and
 * systemd-fsck-root is skipped (/run/initramfs/fsck-root) instead of running on the boot's critical path.
 */
export const INITRAMFS_SETUP = [
  'mkdir -p /etc/initramfs-tools/conf.d /etc/initramfs-tools/hooks',
  "printf '%s\\n' MODULES=list FSTYPE=ext4 > /etc/initramfs-tools/conf.d/tsbuild.conf",
  "printf '%s\\n' '#!/bin/sh' '# Written by tsbuild export: the disk drivers of the initramfs (MODULES=list)' \\",
  "  '[ \"$1\" = prereqs ] && exit 0' '. /usr/share/initramfs-tools/hook-functions' \\",
  `  'manual_add_modules ${INITRAMFS_DISK_MODULES.join(' ')}' > /etc/initramfs-tools/hooks/tsbuild-disks`,
  'chmod 755 /etc/initramfs-tools/hooks/tsbuild-disks',
].join('\n');

/** ALPINE_INITFS_FEATURES: what the Alpine initramfs needs to find an ext4 root on a virtio or SCSI disk. */
export const ALPINE_INITFS_FEATURES = 'base ext4 virtio scsi';

/**
 * installPlan chooses the packages for a distribution and what the image already has: Debian
 * linux-image-cloud-amd64 (linux-image-amd64 when the archive has no cloud flavor), Ubuntu linux-image-virtual,
 * plus initramfs-tools; systemd-sysv and udev when there is no init; for DHCP nothing more on a systemd image
 * (systemd-networkd comes with systemd; system-files.ts configures it), ifupdown + isc-dhcp-client on another init
 * without ifup. Alpine: linux-virt, mkinitfs with the features base ext4 virtio scsi, openrc and busybox's OpenRC
 * scripts, ifupdown-ng.
 */
export function installPlan(distro: Distro, rootfs: string, opts: { network: 'dhcp' | 'none' }): InstallPlan {
  const has = (p: string): boolean => existsSync(secureJoin(rootfs, p));
  if (distro.family === 'alpine') {
    const v = distro.versionId.split('.').map(Number);
    const modern = (v[0] ?? 3) > 3 || ((v[0] ?? 3) === 3 && (v[1] ?? 99) >= 17);
    const packages = [
      'linux-virt',
      'mkinitfs',
      'openrc',
      ...(modern ? ['busybox-openrc', 'busybox-mdev-openrc'] : ['busybox-initscripts']),
    ];
    if (opts.network === 'dhcp') packages.push('ifupdown-ng');
    const conf = `features="${ALPINE_INITFS_FEATURES}"`;
    const commands = [
      ['sh', '-c', `mkdir -p /etc/mkinitfs && echo '${conf}' > /etc/mkinitfs/mkinitfs.conf`],
      ['apk', 'add', '--no-cache', ...packages],
      ['sh', '-c', 'mkinitfs $(ls /lib/modules | tail -n 1)'],
    ];
    const script = [
      'set -eu',
      'mkdir -p /etc/mkinitfs',
      `echo '${conf}' > /etc/mkinitfs/mkinitfs.conf`,
      `apk add --no-cache ${packages.join(' ')}`,
      'mkinitfs "$(ls /lib/modules | tail -n 1)"',
    ].join('\n');
    return { packages, script, commands };
  }
  const kernel = distro.id === 'ubuntu' ? 'linux-image-virtual' : 'linux-image-cloud-amd64';
  const packages = [kernel, 'initramfs-tools'];
  const hasInit = has('/sbin/init') || has('/lib/systemd/systemd') || has('/usr/lib/systemd/systemd');
  if (!hasInit) packages.push('systemd-sysv');
  if (!has('/lib/systemd/systemd-udevd') && !has('/usr/lib/systemd/systemd-udevd') && !has('/sbin/udevd'))
    packages.push('udev');
  // DHCP: a systemd image gets systemd-networkd (in the systemd package: nothing to install; system-files.ts
  // configures it), anything else ifupdown + isc-dhcp-client; an image that has ifup keeps it
  const systemd = !hasInit || has('/lib/systemd/systemd') || has('/usr/lib/systemd/systemd');
  if (opts.network === 'dhcp' && !systemd && !has('/sbin/ifup') && !has('/usr/sbin/ifup'))
    packages.push('ifupdown', 'isc-dhcp-client');
  const fallback = distro.id === 'ubuntu' ? undefined : 'linux-image-amd64';
  const apt = ['apt-get', '-o', 'Acquire::Retries=3', '-o', 'Dpkg::Options::=--force-confold'];
  const commands = [
    ['sh', '-c', INITRAMFS_SETUP],
    [...apt, 'update'],
    [...apt, 'install', '-y', '--no-install-recommends', ...packages],
    ['apt-get', 'clean'],
    ['rm', '-rf', '/var/lib/apt/lists/*'],
  ];
  const script = [
    'set -eu',
    'export DEBIAN_FRONTEND=noninteractive',
    INITRAMFS_SETUP,
    `${apt.join(' ')} update`,
    `pkgs='${packages.join(' ')}'`,
    ...(fallback
      ? [`apt-cache show ${kernel} >/dev/null 2>&1 || pkgs=$(echo "$pkgs" | sed 's/${kernel}/${fallback}/')`]
      : []),
    `${apt.join(' ')} install -y --no-install-recommends $pkgs`,
    'apt-get clean',
    'rm -rf /var/lib/apt/lists/*',
  ].join('\n');
  return { packages, script, commands };
}

/** Paths an install leaves that do not belong in the kernel layer: runtime mount points, caches, logs, temp files. */
const EXCLUDE = [
  /^(dev|proc|sys|run|tmp|var\/tmp)(\/|$)/,
  /^var\/cache\/(apt|apk|debconf\/.*-old)(\/|$)/,
  /^var\/lib\/apt\/lists(\/|$)/,
  /^var\/log\//,
  /^etc\/(resolv\.conf|hosts|hostname)$/,
  /^root\/\.\w*history$/,
];

/** layerChanges drops what EXCLUDE names from an install's change set. */
export function layerChanges(changes: Change[]): Change[] {
  return changes.filter((c) => !EXCLUDE.some((re) => re.test(c.path)));
}

export interface InstallKernelOptions {
  store: Store;
  host: Host;
  /** the staging tree: what the record's `depends` hashes are taken from (it is not changed here) */
  rootfs: string;
  /** the image's layers: the install runs in a fresh rootfs of them */
  layers: readonly Layer[];
  plan: InstallPlan;
  key: Digest;
  onEvent?: (e: KernelEvent) => void;
  signal?: AbortSignal;
}

/**
 * installKernel runs the plan in a private copy of the image, commits what it changed as the kernel layer and
 * writes its record. The caller holds the key's lock and has checked that the host is root.
 */
export async function installKernel(opts: InstallKernelOptions): Promise<KernelRecord> {
  const { store, host, plan, key } = opts;
  opts.onEvent?.({ type: 'step', message: `installing ${plan.packages.join(' ')} in the image (namespaced chroot)` });
  const lease = await store.beginWrite();
  const work = await openRootfs({ store, host, layers: opts.layers, driver: 'vfs' });
  try {
    const files = await hostFiles(work.dir);
    const spec: RunSpec = {
      rootfs: work.path,
      args: ['/bin/sh', '-c', plan.script],
      env: [`PATH=${DEFAULT_PATH}`, 'HOME=/root', 'LANG=C.UTF-8', 'DEBIAN_FRONTEND=noninteractive'],
      cwd: '/',
      user: { uid: 0, gid: 0, additionalGids: [] },
      hostname: 'tsbuild-export',
      network: 'default', // its own network namespace, as a RUN step: apt reaches the archive, nothing else
      tty: false,
      init: false,
      mounts: [],
      limits: {},
      noNewPrivileges: true,
      capabilities: capabilitySet([], []),
      seccomp: seccompFor('default', capabilitySet([], [])) ?? 'unconfined',
      extraFiles: files,
    };
    const tail: string[] = [];
    const out = new PassThrough();
    let partial = '';
    out.on('data', (b: Buffer) => {
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 30) tail.shift();
        opts.onEvent?.({ type: 'log', line });
      }
    });
    const r = await runContainer(
      spec,
      { stdout: out, stderr: out, ...(opts.signal ? { signal: opts.signal } : {}) },
      { forwardSignals: false, host },
    );
    opts.signal?.throwIfAborted();
    if (r.exitCode !== 0) {
      throw new TsbuildError(
        'E_KERNEL_INSTALL',
        `installing the kernel failed (exit ${r.exitCode}): ${tail.filter(Boolean).slice(-5).join(' | ')}`,
        {
          hint: 'the distribution archive must be reachable; --kernel PATH boots a kernel from the host instead',
        },
      );
    }
    const kernel = findKernel(work.path);
    if (!kernel?.initrd)
      throw new TsbuildError(
        'E_KERNEL_INSTALL',
        `the install left no kernel with an initramfs in /boot (packages: ${plan.packages.join(' ')})`,
      );
    const changes = layerChanges(await work.changes());
    const depends: Record<string, string> = {};
    for (const c of changes) {
      if (c.kind === 'delete') continue;
      const now = lstatSync(join(work.path, c.path), { throwIfNoEntry: false });
      if (!now || now.isDirectory()) continue;
      depends[c.path] = pathHash(opts.rootfs, c.path) ?? '';
    }
    const layer = await commitLayer(store, tarFromChanges(work.path, changes), { compression: 'gzip' });
    const rec: KernelRecord = {
      version: 1,
      key,
      layer: { descriptor: layer.descriptor, diffId: layer.diffId },
      kernel,
      depends,
      created: new Date().toISOString(),
      packages: plan.packages,
    };
    await kernelRecords(store).put(key, rec);
    return rec;
  } finally {
    await work.release();
    await lease.end();
  }
}

/** hostFiles makes the /etc/resolv.conf and /etc/hosts the install sees (bind-mounted, so they never reach the layer). */
async function hostFiles(dir: string): Promise<Record<string, string>> {
  const resolv = join(dir, 'resolv.conf');
  const hosts = join(dir, 'hosts');
  try {
    copyFileSync('/etc/resolv.conf', resolv);
  } catch {
    await writeFile(resolv, 'nameserver 8.8.8.8\n');
  }
  await writeFile(hosts, '127.0.0.1\tlocalhost tsbuild-export\n::1\tlocalhost\n');
  return { '/etc/resolv.conf': resolv, '/etc/hosts': hosts };
}
