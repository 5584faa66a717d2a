// Root filesystems for build steps, and the layer each step leaves behind (the contract; the two drivers are in
// builder/rootfs-backends.ts, loaded only when a step first needs a root, so a fully cached build never loads them).
//
// overlay (root): every layer is extracted once into a snapshot (<store>/snapshots/<ChainID>, overlay whiteouts);
// a step mounts an overlay of the snapshots with a fresh upperdir, works in the merged tree, and unmounts; the
// upperdir diff (diffUpperdir) becomes the layer, and the upperdir itself becomes the new layer's snapshot (it is
// exactly that layer in overlay form), so the next step needs no extraction. Mount points the runtime needs (/proc,
// /etc/hosts, /run/secrets/x…) that the image lacks are provided by an extra read-only lowerdir of empty stubs:
// they never appear in the upperdir, so they never reach a layer, and no parent directory's mtime moves.
//
// vfs (no mounts: not root, or mounting refused): the layers are applied into one plain directory; a step records
// a manifest of it, works in it, and diffManifest gives the layer. The directory carries on to the next step of
// the same stage. Stubs are created before the manifest and removed after the diff.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Compression } from '../layers/model/types.js';
import { wrap } from '../sys/errors.js';
import type { Store } from '../layers/store/store.js';
import type { LayerRef } from './cache.js';
import { isAlive } from '../sys/pid.js';

export type StorageDriver = 'overlay' | 'vfs';

/** Stub is a mount point a step needs: a container path and whether it is a directory. */
export interface Stub {
  path: string;
  dir: boolean;
}

export interface CommitOptions {
  compression: Compression;
  sourceDateEpoch?: number;
}

/** StepRoot is a writable root filesystem for one step. */
export interface StepRoot {
  /** the merged tree: `/` of the image */
  dir: string;
  /** commit ends the step: the layer it made, or null when it changed nothing. The root is gone afterwards. */
  commit(opts: CommitOptions): Promise<LayerRef | null>;
  /** discard ends the step without a layer (idempotent). */
  discard(): Promise<void>;
}

/** View is a read-only look at an image's filesystem (COPY --from, RUN --mount from=). */
export interface View {
  dir: string;
  release(): Promise<void>;
}

export interface Rootfs {
  /** driver tells which driver the build uses (probing the kernel on first call in 'auto') */
  driver(): Promise<StorageDriver>;
  /** openStep makes a writable root over `layers` (base first) with the mount points `stubs`. */
  openStep(layers: readonly LayerRef[], stubs?: readonly Stub[]): Promise<StepRoot>;
  /** view shows `layers` read-only (the caller must not write). */
  view(layers: readonly LayerRef[]): Promise<View>;
  /** close removes the work directory (after every step and view has ended). */
  close(): Promise<void>;
}

/** workRoot is where build work directories live (`<store>/containers/<pid>-<hex>`, as unionfs/image-rootfs). */
export function workRoot(storeRoot: string): string {
  return join(storeRoot, 'containers');
}

/**
 * openRootfs prepares the work directory of one build. The driver is chosen when a step first needs a root:
 * 'auto' picks overlay as root and falls back to vfs when a test mount is refused.
 */
export async function openRootfs(store: Store, driver: StorageDriver | 'auto' = 'auto'): Promise<Rootfs> {
  await cleanStaleBuilds(store.root);
  const work = join(workRoot(store.root), `${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(work, { recursive: true, mode: 0o700 });
  let backend: Promise<Rootfs & { name: StorageDriver }> | undefined;
  const get = (): Promise<Rootfs & { name: StorageDriver }> => {
    backend ??= import('./rootfs-backends.js').then((m) => m.makeBackend(store, work, driver));
    return backend;
  };
  return {
    driver: async () => (await get()).name,
    openStep: async (layers, stubs) => (await get()).openStep(layers, stubs),
    view: async (layers) => (await get()).view(layers),
    close: async () => {
      if (backend) await (await backend).close().catch(() => {});
      await rm(work, { recursive: true, force: true });
    },
  };
}

/**
 * cleanStaleBuilds removes the work directories of builds whose process is gone, detaching any overlay they left
 * mounted first (a killed build leaves its mounts in the host's mount namespace).
 */
export async function cleanStaleBuilds(storeRoot: string): Promise<void> {
  const root = workRoot(storeRoot);
  const names = await readdir(root).catch(() => [] as string[]);
  if (names.length === 0) return;
  let mountinfo = '';
  for (const name of names) {
    const m = /^(\d+)-[a-f0-9]+$/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    const path = join(root, name);
    mountinfo ||= await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    const points = mountinfo
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((mp) => mp.startsWith(`${path}/`))
      .sort((a, b) => b.length - a.length);
    let busy = false;
    const { MNT_DETACH, umount } = points.length ? await import('../sys/libc.js') : { MNT_DETACH: 0, umount: () => {} };
    for (const mp of points) {
      try {
        umount(mp, MNT_DETACH);
      } catch {
        busy = true;
      }
    }
    if (busy) continue;
    await rm(path, { recursive: true, force: true }).catch((err: unknown) => {
      throw wrap(`removing stale build directory ${path}`, err);
    });
  }
}

