// The kernel cache: an install is kept as a layer in the store, found again by a key, and reused only where it
// cannot clobber the app.
//
// The key. The install depends on the package manager's view of the image, not on the app's files: the key
// hashes the distribution, the package list and the install script, and the files that decide what the package
// manager does and what it rewrites (os-release, the dpkg/apk databases, apt/apk sources and configuration,
// passwd/group/shadow, inittab, mkinitfs.conf). A COPY of the app on top of the same base changes none of them, so
// the kernel layer is reused; an `apt-get install` in the app changes the dpkg status and the install runs again
// (the kernel layer's dpkg status would otherwise hide the app's packages). On top of the key, the record lists
// every path the layer adds or rewrites with the hash it had before the install (absent for added paths): a hit
// is only used when the image being exported still has exactly those, so the layer never clobbers an app file.
//
// Records are the store's 'export-kernel' records (layers/store/records.ts): `<store>/cache/export-kernel/<hex>.json`;
// `tsbuild prune` drops those whose layer blob is gone (pruneRecords).
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import type { Layer } from '../../layers/model/layer.js';
import type { Digest } from '../../layers/model/types.js';
import { Records } from '../../layers/store/records.js';
import type { Store } from '../../layers/store/store.js';
import type { Distro } from '../distro.js';
import type { KernelFiles } from './find.js';
import type { InstallPlan } from './install.js';

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
  h.update(
    JSON.stringify({ distro: distro.id, version: distro.versionId, packages: plan.packages, script: plan.script }),
  ).update('\0');
  for (const pattern of KEY_FILES) {
    for (const rel of expand(rootfs, pattern))
      h.update(rel)
        .update('\0')
        .update(pathHash(rootfs, rel) ?? '-')
        .update('\0');
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
  layer: Layer;
  kernel: KernelFiles;
  /** rootfs path → pathHash before the install ('' = absent); every non-directory path the layer adds or rewrites */
  depends: Record<string, string>;
  created: string;
  packages: string[];
}

/** kernelRecords are the store's kernel records (`<store>/cache/export-kernel/<hex>.json`). */
export function kernelRecords(store: Store): Records<KernelRecord> {
  return new Records<KernelRecord>(store, 'export-kernel');
}

/** recordMismatch returns the first path where the rootfs differs from what the record was made against. */
export function recordMismatch(rootfs: string, rec: KernelRecord): string | undefined {
  for (const [rel, before] of Object.entries(rec.depends)) {
    if ((pathHash(rootfs, rel) ?? '') !== before) return rel;
  }
  return undefined;
}

/**
 * lookupKernel returns the record of `key` when there is one, its layer blob is in the store, and the rootfs still
 * has every path the layer depends on as it was; a record refused for a path says so through `onStep`.
 */
export async function lookupKernel(
  store: Store,
  rootfs: string,
  key: Digest,
  onStep?: (message: string) => void,
): Promise<KernelRecord | undefined> {
  const rec = await kernelRecords(store).get(key, (r) => r.version === 1 && r.key === key && !!r.layer?.descriptor);
  if (!rec) return undefined;
  const diff = recordMismatch(rootfs, rec);
  if (diff !== undefined) {
    onStep?.(`cached kernel layer not reused: the image has its own /${diff}`);
    return undefined;
  }
  return rec;
}

/** lockKey takes the lock of one cache key (one install per key at a time: a concurrent export waits, then reuses). */
export async function lockKey(store: Store, key: Digest): Promise<() => Promise<void>> {
  const dir = kernelRecords(store).dir;
  await mkdir(dir, { recursive: true });
  // proper-lockfile keys its locks by this first argument: one per cache key
  return lockfile.lock(join(dir, key.slice(7)), {
    lockfilePath: join(dir, `${key.slice(7)}.lock`),
    realpath: false,
    stale: 60_000,
    update: 10_000,
    retries: { retries: 1200, minTimeout: 500, maxTimeout: 1000 },
  });
}
