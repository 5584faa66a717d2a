// Kernel, initramfs and init for the VM: provideKernel decides where they come from. A kernel already in the image
// is used as it is (find.ts); otherwise the distribution's own packages are installed in a namespaced chroot of the
// image (install.ts), and what that changed is kept as a layer in the store under a cache key (cache.ts), so that
// the next export of the same base does not install again. The cached layer is laid over the staging tree with
// unionfs flatten (hard links from the snapshots as root, extracted otherwise).
import type { Layer } from '../../layers/model/layer.js';
import type { Digest } from '../../layers/model/types.js';
import type { Store } from '../../layers/store/store.js';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { defaultHost, type Host } from '../../sys/host.js';
import { flatten } from '../../unionfs/flatten.js';
import type { Distro } from '../distro.js';
import { kernelCacheKey, lockKey, lookupKernel, type KernelRecord } from './cache.js';
import { copyHostKernel, findKernel, type KernelFiles, type KernelMode } from './find.js';
import { installKernel, installPlan, KernelNeedsRootError, type InstallPlan, type KernelEvent } from './install.js';

export { KEY_FILES, kernelCacheKey, kernelRecords, pathHash, recordMismatch, type KernelRecord } from './cache.js';
export { compareVersions, findKernel, parseKernelFlag, type KernelFiles, type KernelMode } from './find.js';
export {
  ALPINE_INITFS_FEATURES,
  INITRAMFS_DISK_MODULES,
  INITRAMFS_SETUP,
  installPlan,
  KernelNeedsRootError,
  layerChanges,
  type InstallPlan,
  type KernelEvent,
} from './install.js';

export interface ProvideKernelOptions {
  store: Store;
  /** default: defaultHost(); installing needs `caps().root` or `caps().userns` (it runs a container) */
  host?: Host;
  /** the staging tree (the flattened image), changed in place */
  rootfs: string;
  /** the image's layers (the install runs in a fresh rootfs of them) */
  layers: readonly Layer[];
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
  layer?: Layer;
}

/**
 * provideKernel makes sure the rootfs has a kernel and returns where it is. auto: the image's own, else the cached
 * or a fresh install; image: the image's own or an error; install: cached or fresh install even when the image
 * has one; a path: the host file copied to /boot (with --initrd, the initramfs too).
 */
export async function provideKernel(opts: ProvideKernelOptions): Promise<KernelResult> {
  const { rootfs, mode } = opts;
  const host = opts.host ?? defaultHost();
  if (typeof mode === 'object')
    return { files: await copyHostKernel(rootfs, mode, opts.dryRun === true), source: 'path' };
  const own = findKernel(rootfs);
  if (own && mode !== 'install') {
    if (!own.initrd)
      opts.onEvent?.({
        type: 'step',
        message: `warning: ${own.kernel} has no initramfs next to it; booting without one`,
      });
    return { files: own, source: 'image' };
  }
  if (mode === 'image') {
    throw new InvalidInputError(
      '--kernel image: the image has no kernel in /boot (vmlinuz-*)',
      'use --kernel auto to install one, or --kernel PATH',
    );
  }
  if (!opts.distro)
    throw new InvalidInputError('cannot install a kernel for an unsupported distribution', 'pass --kernel PATH');
  const plan = installPlan(opts.distro, rootfs, { network: opts.network });
  const key = kernelCacheKey(rootfs, opts.distro, plan);
  if (opts.dryRun) return { source: 'planned', plan, key };

  const onStep = (message: string): void => opts.onEvent?.({ type: 'step', message });
  const hit = await lookupKernel(opts.store, rootfs, key, onStep);
  if (hit) {
    await applyCached(opts, host, hit);
    return { files: hit.kernel, source: 'cache', plan, key, layer: hit.layer };
  }
  // a RUN step: root, or rootless in a user namespace of our own
  if (!host.caps().root && !host.caps().userns) throw new KernelNeedsRootError();
  // one install per key at a time: a concurrent export of the same base waits and then reuses it
  const release = await lockKey(opts.store, key);
  try {
    const again = await lookupKernel(opts.store, rootfs, key, onStep);
    const rec =
      again ??
      (await installKernel({
        store: opts.store,
        host,
        rootfs,
        layers: opts.layers,
        plan,
        key,
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      }));
    await applyCached(opts, host, rec);
    return { files: rec.kernel, source: again ? 'cache' : 'installed', plan, key, layer: rec.layer };
  } finally {
    await release().catch(() => {});
  }
}

/** applyCached lays the record's layer over the staging tree (the image's layers are already in it). */
async function applyCached(opts: ProvideKernelOptions, host: Host, rec: KernelRecord): Promise<void> {
  try {
    await flatten({ store: opts.store, host, layers: [rec.layer], below: opts.layers, dir: opts.rootfs });
  } catch (err) {
    throw wrap(`applying the kernel layer ${rec.layer.descriptor.digest}`, err);
  }
}
