// Kernel, initramfs and init for the VM. A kernel already in the image is used as it is; otherwise the
// distribution's own packages are installed in a namespaced chroot (runtime/run.ts) of the image, and what that
// changed is kept as a layer in the store, so that the next export of the same base does not install again.
//
// The cache key. The install depends on the package manager's view of the image, not on the app's files: the key
// hashes the distribution, the package list and the install script, and the files that decide what the package
// manager does and what it rewrites (os-release, the dpkg/apk databases, apt/apk sources and configuration,
// passwd/group/shadow, inittab, mkinitfs.conf). A COPY of the app on top of the same base changes none of them, so
// the kernel layer is reused; an `apt-get install` in the app changes the dpkg status and the install runs again
// (the kernel layer's dpkg status would otherwise hide the app's packages). On top of the key, the record lists
// every path the layer adds or rewrites with the hash it had before the install (absent for added paths): a hit
// is only used when the image being exported still has exactly those, so the layer never clobbers an app file.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { PassThrough } from 'node:stream';
import lockfile from 'proper-lockfile';
import type { Change } from '../../layers/model/changeset.js';
import { commitLayer } from '../../layers/store/commit.js';
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import { pruneLayerRecords } from '../../layers/store/gc.js';
import type { Store } from '../../layers/store/store.js';
import { tarFromChanges } from '../../layers/tar/create.js';
import type { Descriptor, Digest } from '../../layers/model/types.js';
import { runContainer } from '../../runtime/run.js';
import { secureJoin } from '../../sys/secure-path.js';
import { capabilitySet, DEFAULT_PATH, type RunSpec } from '../../runtime/spec.js';
import { prepareRootfs, type RootfsLayer } from '../../unionfs/image-rootfs.js';
import type { Distro } from '../distro.js';
import { stageLayers } from '../staging.js';

/** KernelFiles names the kernel and initramfs inside the rootfs (absolute rootfs paths, versioned names kept). */
export interface KernelFiles {
  kernel: string;
  initrd?: string;
  /** the kernel release (`uname -r`), or the flavor name when only that is known (Alpine: `virt`) */
  version: string;
}

export type KernelMode = 'auto' | 'image' | 'install' | { path: string; initrd?: string };

/** parseKernelFlag reads --kernel (auto, image, install, or a host path) and --initrd. */
export function parseKernelFlag(kernel: string | undefined, initrd: string | undefined): KernelMode {
  const k = kernel ?? 'auto';
  if (k === 'auto' || k === 'image' || k === 'install') {
    if (initrd !== undefined) throw new InvalidInputError('--initrd goes with --kernel PATH', 'pass the kernel file too: --kernel /path/to/vmlinuz --initrd /path/to/initrd');
    return k;
  }
  return initrd === undefined ? { path: k } : { path: k, initrd };
}

/** compareVersions orders kernel versions the way people read them: numeric runs as numbers (6.1.0-10 < 6.1.0-9 is false). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/(\d+)/).filter(Boolean);
  const pb = b.split(/(\d+)/).filter(Boolean);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny && Number(x) !== Number(y)) return Number(x) - Number(y);
    if (!(nx && ny) && x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * findKernel looks for the newest kernel in /boot (`vmlinuz-VERSION`, Alpine's `vmlinuz-FLAVOR`) that has a
 * matching initramfs (`initrd.img-V`, `initramfs-V`, `initramfs-V.img`, `initrd-V`). A kernel without any initramfs
 * is returned without one only when there is no better candidate. Undefined when /boot has no kernel.
 */
export function findKernel(rootfs: string): KernelFiles | undefined {
  const boot = secureJoin(rootfs, '/boot');
  let names: string[];
  try {
    names = readdirSync(boot);
  } catch {
    return undefined;
  }
  const regular = (n: string): boolean => {
    try {
      return lstatSync(join(boot, n)).isFile();
    } catch {
      return false;
    }
  };
  const candidates = names
    .filter((n) => /^vmlinuz-./.test(n) && !/\.(old|bak|dpkg-\w+)$/.test(n) && regular(n))
    .map((n) => n.slice('vmlinuz-'.length))
    .sort((a, b) => compareVersions(b, a));
  let withoutInitrd: KernelFiles | undefined;
  for (const v of candidates) {
    const initrd = [`initrd.img-${v}`, `initramfs-${v}`, `initramfs-${v}.img`, `initrd-${v}`].find(regular);
    const version = alpineRelease(rootfs, v) ?? v;
    if (initrd) return { kernel: `/boot/vmlinuz-${v}`, initrd: `/boot/${initrd}`, version };
    withoutInitrd ??= { kernel: `/boot/vmlinuz-${v}`, version };
  }
  return withoutInitrd;
}

/** alpineRelease maps an Alpine flavor (`virt`) to the module directory's release (`6.6.58-0-virt`). */
function alpineRelease(rootfs: string, flavor: string): string | undefined {
  if (/\d/.test(flavor)) return undefined;
  try {
    const dirs = readdirSync(secureJoin(rootfs, '/lib/modules')).filter((d) => d.endsWith(`-${flavor}`));
    return dirs.sort(compareVersions).pop();
  } catch {
    return undefined;
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

/** ALPINE_INITFS_FEATURES: what the Alpine initramfs needs to find an ext4 root on a virtio or SCSI disk. */
export const ALPINE_INITFS_FEATURES = 'base ext4 virtio scsi';

/**
 * installPlan chooses the packages for a distribution and what the image already has: Debian
 * linux-image-cloud-amd64 (linux-image-amd64 when the archive has no cloud flavor), Ubuntu linux-image-virtual,
 * plus initramfs-tools; systemd-sysv and udev when there is no init; ifupdown + isc-dhcp-client for DHCP when
 * there is no ifup. Alpine: linux-virt, mkinitfs with the features base ext4 virtio scsi, openrc and busybox's
 * OpenRC scripts, ifupdown-ng.
 */
export function installPlan(distro: Distro, rootfs: string, opts: { network: 'dhcp' | 'none' }): InstallPlan {
  const has = (p: string): boolean => existsSync(secureJoin(rootfs, p));
  if (distro.family === 'alpine') {
    const v = distro.versionId.split('.').map(Number);
    const modern = (v[0] ?? 3) > 3 || ((v[0] ?? 3) === 3 && (v[1] ?? 99) >= 17);
    const packages = ['linux-virt', 'mkinitfs', 'openrc', ...(modern ? ['busybox-openrc', 'busybox-mdev-openrc'] : ['busybox-initscripts'])];
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
  if (!has('/lib/systemd/systemd-udevd') && !has('/usr/lib/systemd/systemd-udevd') && !has('/sbin/udevd')) packages.push('udev');
  if (opts.network === 'dhcp' && !has('/sbin/ifup') && !has('/usr/sbin/ifup')) packages.push('ifupdown', 'isc-dhcp-client');
  const fallback = distro.id === 'ubuntu' ? undefined : 'linux-image-amd64';
  const apt = ['apt-get', '-o', 'Acquire::Retries=3', '-o', 'Dpkg::Options::=--force-confold'];
  const commands = [
    [...apt, 'update'],
    [...apt, 'install', '-y', '--no-install-recommends', ...packages],
    ['apt-get', 'clean'],
    ['rm', '-rf', '/var/lib/apt/lists/*'],
  ];
  const script = [
    'set -eu',
    'export DEBIAN_FRONTEND=noninteractive',
    `${apt.join(' ')} update`,
    `pkgs='${packages.join(' ')}'`,
    ...(fallback ? [`apt-cache show ${kernel} >/dev/null 2>&1 || pkgs=$(echo "$pkgs" | sed 's/${kernel}/${fallback}/')`] : []),
    `${apt.join(' ')} install -y --no-install-recommends $pkgs`,
    'apt-get clean',
    'rm -rf /var/lib/apt/lists/*',
  ].join('\n');
  return { packages, script, commands };
}

/** KEY_FILES: what the package manager reads or rewrites; the cache key hashes them (globs: one level of `*`). */
export const KEY_FILES = [
  'etc/os-release',
  'usr/lib/os-release',
  'var/lib/dpkg/status',
  'etc/apt/sources.list',
  'etc/apt/sources.list.d/*',
  'etc/apt/preferences.d/*',
  'etc/apt/apt.conf.d/*',
  'etc/passwd',
  'etc/group',
  'etc/shadow',
  'etc/gshadow',
  'etc/inittab',
  'lib/apk/db/installed',
  'etc/apk/repositories',
  'etc/apk/world',
  'etc/mkinitfs/mkinitfs.conf',
  'etc/initramfs-tools/initramfs.conf',
];

const KERNEL_CACHE_VERSION = 'tsbuild-export-kernel-v1';

/** kernelCacheKey hashes the distribution, the plan and the KEY_FILES of the rootfs: `sha256:<hex>`. */
export function kernelCacheKey(rootfs: string, distro: Distro, plan: InstallPlan): Digest {
  const h = createHash('sha256').update(KERNEL_CACHE_VERSION).update('\0');
  h.update(JSON.stringify({ distro: distro.id, version: distro.versionId, packages: plan.packages, script: plan.script })).update('\0');
  for (const pattern of KEY_FILES) {
    for (const rel of expand(rootfs, pattern)) h.update(rel).update('\0').update(pathHash(rootfs, rel) ?? '-').update('\0');
  }
  return `sha256:${h.digest('hex')}`;
}

function expand(rootfs: string, pattern: string): string[] {
  if (!pattern.endsWith('/*')) return [pattern];
  const dir = pattern.slice(0, -2);
  try {
    return readdirSync(join(rootfs, dir))
      .sort()
      .map((n) => `${dir}/${n}`);
  } catch {
    return [];
  }
}

/** pathHash identifies what is at a rootfs path (not following its last component): content hash, link target, or undefined when absent. */
export function pathHash(rootfs: string, rel: string): string | undefined {
  const host = join(rootfs, rel);
  let st;
  try {
    st = lstatSync(host);
  } catch {
    return undefined;
  }
  if (st.isSymbolicLink()) return `link:${readlinkSync(host)}`;
  if (st.isDirectory()) return 'dir';
  if (!st.isFile()) return `special:${st.mode & 0o170000}:${st.rdev}`;
  return `file:${createHash('sha256').update(readFileSync(host)).digest('hex')}`;
}

/** KernelRecord is a cached install: the layer and what the rootfs must look like for it to apply. */
export interface KernelRecord {
  version: 1;
  key: Digest;
  layer: { descriptor: Descriptor; diffId: Digest };
  kernel: KernelFiles;
  /** rootfs path → pathHash before the install ('' = absent); every non-directory path the layer adds or rewrites */
  depends: Record<string, string>;
  created: string;
  packages: string[];
}

/** kernelCacheDir is where records live: `<store>/cache/export-kernel/<hex>.json`. */
export function kernelCacheDir(store: Store): string {
  return join(store.root, 'cache', 'export-kernel');
}

/** pruneKernelCache removes the kernel records whose layer blob `tsbuild prune` removed. */
export function pruneKernelCache(store: Store): Promise<{ removed: string[]; bytes: number }> {
  return pruneLayerRecords(store, kernelCacheDir(store));
}

async function readRecord(store: Store, key: Digest): Promise<KernelRecord | undefined> {
  try {
    const rec = JSON.parse(await readFile(join(kernelCacheDir(store), `${key.slice(7)}.json`), 'utf8')) as KernelRecord;
    if (rec.version !== 1 || rec.key !== key || !rec.layer?.descriptor) return undefined;
    if (!(await store.hasBlob(rec.layer.descriptor.digest, rec.layer.descriptor.size))) return undefined;
    return rec;
  } catch {
    return undefined;
  }
}

async function writeRecord(store: Store, rec: KernelRecord): Promise<void> {
  const dir = kernelCacheDir(store);
  await mkdir(dir, { recursive: true });
  const final = join(dir, `${rec.key.slice(7)}.json`);
  const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, `${JSON.stringify(rec)}\n`, { flag: 'wx' });
    await rename(tmp, final);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** recordMismatch returns the first path where the rootfs differs from what the record was made against. */
export function recordMismatch(rootfs: string, rec: KernelRecord): string | undefined {
  for (const [rel, before] of Object.entries(rec.depends)) {
    if ((pathHash(rootfs, rel) ?? '') !== before) return rel;
  }
  return undefined;
}

/** Paths an install leaves that do not belong in the kernel layer: runtime mount points, caches, logs, temp files. */
const EXCLUDE = [/^(dev|proc|sys|run|tmp|var\/tmp)(\/|$)/, /^var\/cache\/(apt|apk|debconf\/.*-old)(\/|$)/, /^var\/lib\/apt\/lists(\/|$)/, /^var\/log\//, /^etc\/(resolv\.conf|hosts|hostname)$/, /^root\/\.\w*history$/];

/** layerChanges drops what EXCLUDE names from an install's change set. */
export function layerChanges(changes: Change[]): Change[] {
  return changes.filter((c) => !EXCLUDE.some((re) => re.test(c.path)));
}

export type KernelEvent = { type: 'log'; line: string } | { type: 'step'; message: string };

export interface ProvideKernelOptions {
  store: Store;
  /** the staging tree (the flattened image), changed in place */
  rootfs: string;
  /** the image's layers (the install runs in a fresh rootfs of them) */
  layers: RootfsLayer[];
  /** undefined when the distribution is not supported (then only --kernel PATH or image work) */
  distro?: Distro;
  mode: KernelMode;
  network: 'dhcp' | 'none';
  onEvent?: (e: KernelEvent) => void;
  signal?: AbortSignal;
  /** plan only: report what would be installed, change nothing */
  dryRun?: boolean;
}

export interface KernelResult {
  files?: KernelFiles;
  /** where it came from: the image, a host file, the store's cache, a fresh install; 'planned' in a dry run */
  source: 'image' | 'path' | 'cache' | 'installed' | 'planned';
  plan?: InstallPlan;
  key?: Digest;
  /** the cached layer that holds the install (source cache or installed) */
  layer?: { descriptor: Descriptor; diffId: Digest };
}

/** NeedsRootError: a kernel must be installed, and that needs namespaces (root). */
export class KernelNeedsRootError extends TsbuildError {
  constructor() {
    super('E_NEEDS_ROOT', 'the image has no kernel, and installing one (in a namespaced chroot) needs root', {
      hint: 'export once as root (the kernel layer is then cached in the store), use an image that has a kernel in /boot, or pass --kernel PATH',
    });
  }
}

/**
 * provideKernel makes sure the rootfs has a kernel and returns where it is. auto: the image's own, else the cached
 * or a fresh install; image: the image's own or an error; install: cached or fresh install even when the image
 * has one; a path: the host file copied to /boot (with --initrd, the initramfs too).
 */
export async function provideKernel(opts: ProvideKernelOptions): Promise<KernelResult> {
  const { rootfs, mode } = opts;
  if (typeof mode === 'object') return { files: await copyHostKernel(rootfs, mode, opts.dryRun === true), source: 'path' };
  const own = findKernel(rootfs);
  if (own && mode !== 'install') {
    if (!own.initrd) opts.onEvent?.({ type: 'step', message: `warning: ${own.kernel} has no initramfs next to it; booting without one` });
    return { files: own, source: 'image' };
  }
  if (mode === 'image') {
    throw new InvalidInputError('--kernel image: the image has no kernel in /boot (vmlinuz-*)', 'use --kernel auto to install one, or --kernel PATH');
  }
  if (!opts.distro) throw new InvalidInputError('cannot install a kernel for an unsupported distribution', 'pass --kernel PATH');
  const plan = installPlan(opts.distro, rootfs, { network: opts.network });
  const key = kernelCacheKey(rootfs, opts.distro, plan);
  if (opts.dryRun) return { source: 'planned', plan, key };

  const hit = await lookup(opts.store, rootfs, key, opts.onEvent);
  if (hit) {
    await applyCached(opts.store, rootfs, opts.layers, hit);
    return { files: hit.kernel, source: 'cache', plan, key, layer: hit.layer };
  }
  if (process.getuid?.() !== 0) throw new KernelNeedsRootError();
  // one install per key at a time: a concurrent export of the same base waits and then reuses it
  const dir = kernelCacheDir(opts.store);
  await mkdir(dir, { recursive: true });
  // proper-lockfile keys its locks by this first argument: one per cache key
  const release = await lockfile.lock(join(dir, key.slice(7)), {
    lockfilePath: join(dir, `${key.slice(7)}.lock`),
    realpath: false,
    stale: 60_000,
    update: 10_000,
    retries: { retries: 1200, minTimeout: 500, maxTimeout: 1000 },
  });
  try {
    const again = await lookup(opts.store, rootfs, key, opts.onEvent);
    const rec = again ?? (await install(opts, plan, key));
    await applyCached(opts.store, rootfs, opts.layers, rec);
    return { files: rec.kernel, source: again ? 'cache' : 'installed', plan, key, layer: rec.layer };
  } finally {
    await release().catch(() => {});
  }
}

async function lookup(store: Store, rootfs: string, key: Digest, onEvent?: (e: KernelEvent) => void): Promise<KernelRecord | undefined> {
  const rec = await readRecord(store, key);
  if (!rec) return undefined;
  const diff = recordMismatch(rootfs, rec);
  if (diff !== undefined) {
    onEvent?.({ type: 'step', message: `cached kernel layer not reused: the image has its own /${diff}` });
    return undefined;
  }
  return rec;
}

async function applyCached(store: Store, rootfs: string, below: RootfsLayer[], rec: KernelRecord): Promise<void> {
  try {
    await stageLayers({ store, layers: [rec.layer], below, dir: rootfs });
  } catch (err) {
    throw wrap(`applying the kernel layer ${rec.layer.descriptor.digest}`, err);
  }
}

/** install runs the plan in a private copy of the image and commits what it changed as the kernel layer. */
async function install(opts: ProvideKernelOptions, plan: InstallPlan, key: Digest): Promise<KernelRecord> {
  const { store } = opts;
  opts.onEvent?.({ type: 'step', message: `installing ${plan.packages.join(' ')} in the image (namespaced chroot)` });
  const lease = await store.beginWrite();
  const work = await prepareRootfs({ store, layers: opts.layers, driver: 'vfs' });
  try {
    const files = await hostFiles(work.dir);
    const spec: RunSpec = {
      rootfs: work.path,
      args: ['/bin/sh', '-c', plan.script],
      env: [`PATH=${DEFAULT_PATH}`, 'HOME=/root', 'LANG=C.UTF-8', 'DEBIAN_FRONTEND=noninteractive'],
      cwd: '/',
      user: { uid: 0, gid: 0, additionalGids: [] },
      hostname: 'tsbuild-export',
      network: 'host',
      tty: false,
      init: false,
      mounts: [],
      limits: {},
      noNewPrivileges: true,
      capabilities: capabilitySet([], []),
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
    const r = await runContainer(spec, { stdout: out, stderr: out, ...(opts.signal ? { signal: opts.signal } : {}) }, { forwardSignals: false });
    opts.signal?.throwIfAborted();
    if (r.exitCode !== 0) {
      throw new TsbuildError('E_KERNEL_INSTALL', `installing the kernel failed (exit ${r.exitCode}): ${tail.filter(Boolean).slice(-5).join(' | ')}`, {
        hint: 'the distribution archive must be reachable; --kernel PATH boots a kernel from the host instead',
      });
    }
    const kernel = findKernel(work.path);
    if (!kernel?.initrd) throw new TsbuildError('E_KERNEL_INSTALL', `the install left no kernel with an initramfs in /boot (packages: ${plan.packages.join(' ')})`);
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
    await writeRecord(store, rec);
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

/** copyHostKernel copies --kernel PATH (and --initrd PATH) into /boot, keeping their file names. */
async function copyHostKernel(rootfs: string, mode: { path: string; initrd?: string }, dryRun: boolean): Promise<KernelFiles> {
  const check = (p: string, flag: string): void => {
    let ok = false;
    try {
      ok = lstatSync(p).isFile() || existsSync(p);
    } catch {
      ok = false;
    }
    if (!ok) throw new InvalidInputError(`${flag} ${p}: no such file`);
  };
  check(mode.path, '--kernel');
  if (mode.initrd) check(mode.initrd, '--initrd');
  const name = (p: string, prefix: string): string => {
    const b = basename(p);
    return b.startsWith(prefix) ? b : `${prefix}${b}`;
  };
  const kernel = posix.join('/boot', name(mode.path, 'vmlinuz-'));
  const initrd = mode.initrd ? posix.join('/boot', name(mode.initrd, 'initrd.img-')) : undefined;
  if (!dryRun) {
    await mkdir(secureJoin(rootfs, '/boot'), { recursive: true });
    await rm(secureJoin(rootfs, kernel), { force: true });
    await copyFile(mode.path, secureJoin(rootfs, kernel));
    await chmod(secureJoin(rootfs, kernel), 0o644);
    if (initrd && mode.initrd) {
      await rm(secureJoin(rootfs, initrd), { force: true });
      await copyFile(mode.initrd, secureJoin(rootfs, initrd));
      await chmod(secureJoin(rootfs, initrd), 0o644);
    }
  }
  return { kernel, ...(initrd ? { initrd } : {}), version: kernel.slice('/boot/vmlinuz-'.length) };
}
