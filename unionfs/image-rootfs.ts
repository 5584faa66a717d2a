// A writable rootfs for an image: kernel overlay over per-layer snapshots when mounts are allowed, else the
// userspace (aufs-style) fallback that merges the layers into one directory and diffs against a manifest.
// Used by RUN steps, `tsbuild run` and `tsbuild mount`; each gets its own directory under <store>/containers/.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { Change } from '../layers/model/changeset.js';
import { chainIds } from '../layers/model/digest.js';
import { NotFoundError, TsbuildError } from '../sys/errors.js';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { isAlive } from '../sys/pid.js';
import { applyLayer } from '../layers/tar/apply.js';
import type { Descriptor, Digest } from '../layers/model/types.js';
import { MNT_DETACH, umount } from '../sys/libc.js';
import { diffManifest } from './diff-manifest.js';
import { diffUpperdir } from './diff-upper.js';
import { recordManifest, type TreeManifest } from './manifest.js';
import { mergeLayers } from './merge.js';
import { mountOverlay } from './overlay.js';
import { ensureSnapshots } from './snapshot.js';

export type StorageDriver = 'overlay' | 'vfs';

/** RootfsLayer is one image layer: its blob descriptor and DiffID, base first. */
export interface RootfsLayer {
  descriptor: Descriptor;
  diffId: Digest;
}

export interface PreparedRootfs {
  /** the merged, writable tree */
  path: string;
  driver: StorageDriver;
  /** the container's own directory (overlay: upper/work/merged; vfs: rootfs + manifest) */
  dir: string;
  /** changes made in `path` since it was prepared, as layers/ commits them */
  changes(): Promise<Change[]>;
  /** unmounts (overlay) and removes the container directory; idempotent */
  release(): Promise<void>;
}

export interface PrepareOptions {
  store: Store;
  layers: RootfsLayer[];
  /** 'overlay' needs root (CAP_SYS_ADMIN); 'auto' (default) uses overlay as root and falls back to vfs when mounting fails */
  driver?: StorageDriver | 'auto';
  onWarn?: (code: string, message: string) => void;
  /** outlives this process (tsbuild mount): never cleaned as stale, removed by an explicit release/umount */
  persistent?: boolean;
}

/** containersRoot is where writable rootfs directories live. */
export function containersRoot(storeRoot: string): string {
  return join(storeRoot, 'containers');
}

/**
 * prepareRootfs makes a writable rootfs of the layers. With overlay, every layer is extracted once into a
 * shared snapshot (keyed by ChainID) and the container gets only an upperdir; with vfs, the layers are applied
 * into a private directory. The caller must call release() (a killed process leaves a directory that
 * cleanStaleContainers removes; overlay mounts of a killed process vanish with its mount namespace when the
 * caller runs in a private one).
 */
export async function prepareRootfs(opts: PrepareOptions): Promise<PreparedRootfs> {
  const driver = opts.driver ?? 'auto';
  const id = randomBytes(6).toString('hex');
  const dir = join(containersRoot(opts.store.root), opts.persistent ? `mount-${id}` : `${process.pid}-${id}`);
  await mkdir(dir, { recursive: true });
  try {
    await noteSnapshots(dir, opts.layers);
    if (driver === 'vfs' || (driver === 'auto' && process.getuid?.() !== 0)) return await prepareVfs(opts, dir);
    try {
      return await prepareOverlay(opts, dir);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (driver === 'auto' && (code === 'EPERM' || code === 'EINVAL' || code === 'ENODEV')) {
        opts.onWarn?.('W_NO_OVERLAY', `overlay mount failed (${code}); using the userspace fallback`);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        await noteSnapshots(dir, opts.layers);
        return await prepareVfs(opts, dir);
      }
      throw err;
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

const applyOverlay = async (tar: Readable, root: string): Promise<void> => {
  await applyLayer(tar, { root, whiteouts: 'overlay' });
};
const applyPlain = async (tar: Readable, root: string): Promise<void> => {
  await applyLayer(tar, { root, whiteouts: 'delete' });
};

async function prepareOverlay(opts: PrepareOptions, dir: string): Promise<PreparedRootfs> {
  const snapshots = await ensureSnapshots({
    storeRoot: opts.store.root,
    layers: opts.layers.map((l) => ({ diffId: l.diffId, open: async () => openLayer(opts.store, l.descriptor) })),
    apply: applyOverlay,
  });
  const upperdir = join(dir, 'upper');
  const workdir = join(dir, 'work');
  const target = join(dir, 'merged');
  const empty = join(dir, 'empty');
  for (const d of [upperdir, workdir, target]) await mkdir(d);
  // an image with no layers (FROM scratch) still needs one lowerdir
  if (snapshots.length === 0) await mkdir(empty);
  const lowerdirs = snapshots.length ? [...snapshots].reverse() : [empty];
  const mounted = await mountOverlay({ lowerdirs, upperdir, workdir, target });
  let released = false;
  return {
    path: target,
    driver: 'overlay',
    dir,
    changes: () => diffUpperdir({ upperdir, lowerdirs }),
    release: async () => {
      if (released) return;
      released = true;
      await mounted.unmount();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function prepareVfs(opts: PrepareOptions, dir: string): Promise<PreparedRootfs> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(rootfs);
  await mergeLayers({
    target: rootfs,
    layers: opts.layers.map((l) => ({ name: l.descriptor.digest, open: async () => openLayer(opts.store, l.descriptor) })),
    apply: applyPlain,
  });
  const before: TreeManifest = await recordManifest(rootfs);
  let released = false;
  return {
    path: rootfs,
    driver: 'vfs',
    dir,
    changes: () => diffManifest({ root: rootfs, before }),
    release: async () => {
      if (released) return;
      released = true;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** cleanStaleContainers removes container directories whose process is gone; returns their names. */
export async function cleanStaleContainers(storeRoot: string): Promise<string[]> {
  const removed: string[] = [];
  const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const name of await readdir(containersRoot(storeRoot)).catch(() => [] as string[])) {
    // only `<pid>-<rand>` directories belong to a process; `mount-*` ones (tsbuild mount) live until umount
    const m = /^(\d+)-[a-f0-9]+$/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    const path = join(containersRoot(storeRoot), name);
    if (mounts.includes(` ${path}/`)) {
      // never rm through a live mount: that would write whiteouts into it
      throw new TsbuildError('E_BUSY', `stale container ${path} is still mounted`, { hint: `unmount it first: umount -R ${join(path, 'merged')}` });
    }
    try {
      await rm(path, { recursive: true, force: true });
      removed.push(name);
    } catch (err) {
      throw new TsbuildError('E_BUSY', `cannot remove stale container ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  return removed;
}

/**
 * SNAPSHOTS_NOTE names the file in a container directory that lists the ChainIDs of the snapshots the container
 * may use (every prefix of its layers; vfs uses none but lists them too), so that prune spares them while it lives.
 * It is written before any snapshot is made; a live container directory without it counts as using any snapshot.
 */
export const SNAPSHOTS_NOTE = 'snapshots.json';

async function noteSnapshots(dir: string, layers: RootfsLayer[]): Promise<void> {
  const chains = chainIds(layers.map((l) => l.diffId));
  await writeFile(join(dir, SNAPSHOTS_NOTE), `${JSON.stringify({ chainIds: chains })}\n`);
}

/** markContainer writes a small note into a container directory (what it is for), for `tsbuild mount` listings. */
export async function markContainer(dir: string, note: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, 'container.json'), `${JSON.stringify(note)}\n`);
}

/**
 * unmountView removes a view made by prepareRootfs({ persistent: true }) (`tsbuild mount`), given the path it
 * printed: unmounts it (overlay) and deletes its container directory. Throws NotFoundError for other paths.
 */
export async function unmountView(storeRoot: string, path: string): Promise<void> {
  const target = resolve(path);
  const base = containersRoot(storeRoot);
  for (const name of await readdir(base).catch(() => [] as string[])) {
    if (!name.startsWith('mount-')) continue;
    const dir = join(base, name);
    const merged = join(dir, 'merged');
    const plain = join(dir, 'rootfs');
    if (target !== merged && target !== plain) continue;
    if (target === merged) {
      try {
        umount(merged);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'EBUSY') umount(merged, MNT_DETACH);
        else if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
      }
      const mounts = await readFile('/proc/self/mountinfo', 'utf8');
      if (mounts.includes(` ${dir}/`)) throw new TsbuildError('E_BUSY', `${merged} is still mounted`);
    }
    await rm(dir, { recursive: true, force: true });
    return;
  }
  throw new NotFoundError(`a tsbuild mount at ${path}`, 'list the views with: ls <store>/containers/mount-*/');
}
