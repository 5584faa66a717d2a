// Root filesystems made from layers: the one place that does it. openRootfs gives one writable rootfs (`tsbuild
// run`, `tsbuild mount`, the export's kernel install); a RootfsSession is one build's work directory, where each
// step gets a root and leaves a layer. Both live under `<store>/containers/` (`<pid>-<hex>`, or `mount-<hex>` for
// a `tsbuild mount` view that outlives the process), and cleanStaleContainers removes those of dead processes.
//
// overlay (host.caps().mount): every layer is extracted once into a snapshot (<store>/snapshots/<ChainID>, overlay
// whiteouts); a root is an overlay of the snapshots with a fresh upperdir, and the upperdir diff (diffUpperdir) is
// what changed; a step's upperdir becomes the new layer's snapshot on commit (it is exactly that layer in overlay
// form), so the next step needs no extraction. Mount points the runtime needs (/proc, /etc/hosts,
// /run/secrets/x…) that the image lacks (stubs) are an extra read-only lowerdir: they never appear in the upperdir.
// vfs (no mounts, or mounting refused): the layers are flattened into one plain directory, a manifest of it is
// recorded, and diffManifest gives what changed; stubs are created before the manifest and removed after the diff.
// In a session, a step's directory carries on to the next step of the same chain. The drivers are in
// rootfs-drivers.ts, loaded on first use, except openRootfs's overlay driver, which is here so that `tsbuild run`
// loads neither them nor, when the snapshots exist, the tar and decompression code.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Change } from '../layers/model/changeset.js';
import { chainIds } from '../layers/model/digest.js';
import type { Layer } from '../layers/model/layer.js';
import type { Compression } from '../layers/model/types.js';
import { privateDirPath } from '../layers/store/private-dirs.js';
import { oneLine, type Store } from '../layers/store/store.js';
import { NotFoundError, TsbuildError } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { MNT_DETACH } from '../sys/libc.js';
import { warn } from '../sys/warnings.js';
import type { StepDriver } from './rootfs-drivers.js';
import { cleanStale, STALE_KINDS } from './stale.js';
import type { Stub } from './stubs.js';
import { mountUnion } from './union.js';
import { removeTree } from '../sys/remove-tree.js';

export type { Stub } from './stubs.js';
export type StorageDriver = 'overlay' | 'vfs';

export interface CommitOptions {
  compression: Compression;
  sourceDateEpoch?: number;
  /** commit an empty layer when nothing changed (BuildKit's RUN) instead of returning null */
  keepEmpty?: boolean;
}

export interface OpenRootfsOptions {
  store: Store;
  host?: Host;
  /** the image's layers, base first */
  layers: readonly Layer[];
  /** 'overlay' needs mounts; 'auto' (default) uses overlay when host.caps().mount and falls back to vfs when mounting fails */
  driver?: StorageDriver | 'auto';
  /** default true; false: the caller only reads (vfs records no manifest, changes() is refused) and must not write */
  writable?: boolean;
  /** mount points to provide when the layers lack them (left out of changes()) */
  stubs?: readonly Stub[];
  /** outlives this process (tsbuild mount): never cleaned as stale, removed by an explicit release/umount */
  persistent?: boolean;
  /**
   * overlay: mount with `volatile` (no sync of the upper filesystem, even when the overlay goes), for a writable
   * layer that is discarded after one run (`run --rm`); a kernel that refuses it (EINVAL, before 5.10) gets a plain
   * overlay
   */
  volatile?: boolean;
  onWarn?: (code: string, message: string) => void;
}

export interface Rootfs {
  /** the merged tree: `/` of the image */
  path: string;
  driver: StorageDriver;
  /** the container's own directory (overlay: upper/work/merged; vfs: rootfs + manifest) */
  dir: string;
  /** changes made in `path` since it was opened, as layers/ commits them */
  changes(): Promise<Change[]>;
  /** unmounts (overlay) and removes the container directory; idempotent */
  release(): Promise<void>;
}

/**
 * PendingLayer is a step's result whose layer is still being written (overlay: commitLater). Its changes are
 * complete in `dir`, in overlay form, so the next steps can mount it as their top lowerdir at once; settle() waits
 * for the layer and moves `dir` into the store's snapshots.
 */
export interface PendingLayer {
  /** the step's upperdir, moved aside: a lowerdir until settled */
  dir: string;
  /** the layer, once its tar is hashed and stored */
  layer: Promise<Layer>;
}

/** StepRoot is a writable root filesystem for one build step. */
export interface StepRoot {
  /** the merged tree: `/` of the image */
  dir: string;
  /** commit ends the step: the layer it made, or null when it changed nothing. The root is gone afterwards. */
  commit(opts: CommitOptions): Promise<Layer | null>;
  /**
   * commitLater ends the step as commit does, but returns once the changes are known (null for none): the layer is
   * written in the background while the next steps run on top of it. Only the overlay driver has it.
   */
  commitLater?(opts: CommitOptions): Promise<PendingLayer | null>;
  /** discard ends the step without a layer (idempotent). */
  discard(): Promise<void>;
}

/** View is a read-only look at an image's filesystem (COPY --from, RUN --mount from=); the caller must not write. */
export interface View {
  dir: string;
  release(): Promise<void>;
}

/** containersRoot is where root filesystems and build work directories live. */
export function containersRoot(storeRoot: string): string {
  return privateDirPath(storeRoot, 'containers');
}

/**
 * SNAPSHOTS_NOTE names the file in a container directory that lists the ChainIDs of the snapshots the container
 * may use (every prefix of its layers; vfs uses none but lists them too), so that prune spares them while it lives.
 * It is written before any snapshot is made; a live container directory without it (a build's work directory)
 * counts as using any snapshot.
 */
export const SNAPSHOTS_NOTE = 'snapshots.json';

/**
 * openRootfs makes a writable rootfs of the layers. With overlay, every layer is extracted once into a shared
 * snapshot (keyed by ChainID) and the container gets only an upperdir; with vfs, the layers are flattened into a
 * private directory. A mount refused with EPERM, EINVAL or ENODEV under 'auto' falls back to vfs with a
 * W_NO_OVERLAY warning. The caller must call release() (a killed process leaves a directory that
 * cleanStaleContainers removes; overlay mounts of a killed process vanish with its mount namespace when the
 * caller runs in a private one).
 */
export async function openRootfs(opts: OpenRootfsOptions): Promise<Rootfs> {
  const host = opts.host ?? defaultHost();
  const driver = opts.driver ?? 'auto';
  const id = randomBytes(6).toString('hex');
  // what killed processes left (their mounts detached first); never a reason not to open a root
  await cleanStale(opts.store.root, STALE_KINDS, { host }).catch(() => undefined);
  const dir = join(await opts.store.privateDir('containers'), opts.persistent ? `mount-${id}` : `${process.pid}-${id}`);
  await mkdir(dir, { mode: 0o700 });
  const o = {
    store: opts.store,
    host,
    layers: opts.layers,
    stubs: opts.stubs ?? [],
    dir,
    writable: opts.writable ?? true,
  };
  try {
    await noteSnapshots(dir, opts.layers);
    const vfs = async (): Promise<Rootfs> => (await import('./rootfs-drivers.js')).vfsRootfs(o);
    if (driver === 'vfs' || (driver === 'auto' && !host.caps().mount)) return await vfs();
    try {
      return await overlayRootfs({ ...o, volatile: opts.volatile === true });
    } catch (err) {
      const code = errnoOf(err);
      if (driver === 'auto' && (code === 'EPERM' || code === 'EINVAL' || code === 'ENODEV')) {
        opts.onWarn?.('W_NO_OVERLAY', `overlay mount failed (${code}); using the userspace fallback`);
        await removeTree(dir);
        await mkdir(dir, { mode: 0o700 });
        await noteSnapshots(dir, opts.layers);
        return await vfs();
      }
      throw err;
    }
  } catch (err) {
    await removeTree(dir);
    throw err;
  }
}

/**
 * overlayRootfs is openRootfs's overlay driver: the container directory holds upper/, work/ and merged/. It is here,
 * not with the drivers, so that `tsbuild run` loads neither them nor, when the snapshots exist, snapshot.ts with the
 * tar and decompression code.
 */
async function overlayRootfs(o: {
  store: Store;
  host: Host;
  layers: readonly Layer[];
  stubs: readonly Stub[];
  dir: string;
  volatile: boolean;
}): Promise<Rootfs> {
  const u = await mountUnion({ ...o, target: 'merged' });
  const { mounted } = u;
  let released = false;
  return {
    path: u.target,
    driver: 'overlay',
    dir: o.dir,
    changes: async () => (await import('./diff-upper.js')).diffUpperdir({ upperdir: u.upper, lowerdirs: u.lowers }),
    release: async () => {
      if (released) return;
      released = true;
      await mounted.unmount();
      await removeTree(o.dir); // a few entries (the upperdir nearly empty) go without rm(1)
    },
  };
}

/** errnoOf is the system error code of a failure (mountOverlay wraps it in E_OVERLAY_MOUNT, keeping it as cause). */
function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && !code.startsWith('E_')) return code;
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return typeof cause === 'string' ? cause : undefined;
}

async function noteSnapshots(dir: string, layers: readonly Layer[]): Promise<void> {
  const chains = chainIds(layers.map((l) => l.diffId));
  await writeFile(join(dir, SNAPSHOTS_NOTE), `${JSON.stringify({ chainIds: chains })}\n`);
}

/**
 * RootfsSession is one build's work directory (`<store>/containers/<pid>-<hex>`, made when the session is created,
 * after removing those of dead processes). The driver is chosen when a step first needs a root: 'auto' picks overlay
 * when host.caps().mount and falls back to vfs when a probe mount is refused.
 */
export class RootfsSession {
  private readonly store: Store;
  private readonly host: Host;
  private readonly wanted: StorageDriver | 'auto';
  private readonly work: string;
  private readonly ready: Promise<void>;
  private backend: Promise<{ name: StorageDriver; steps: StepDriver }> | undefined;

  constructor(opts: { store: Store; host?: Host; driver?: StorageDriver | 'auto' }) {
    this.store = opts.store;
    this.host = opts.host ?? defaultHost();
    this.wanted = opts.driver ?? 'auto';
    this.work = join(containersRoot(this.store.root), `${process.pid}-${randomBytes(6).toString('hex')}`);
    const { store, host, work } = this;
    this.ready = (async () => {
      await cleanStaleContainers(store.root, { host, detach: true });
      await store.privateDir('containers');
      await mkdir(work, { mode: 0o700 });
    })();
    this.ready.catch(() => {}); // reported by the first use
  }

  private get(): Promise<{ name: StorageDriver; steps: StepDriver }> {
    this.backend ??= (async () => {
      await this.ready;
      const d = await import('./rootfs-drivers.js');
      let name: StorageDriver = this.wanted === 'auto' ? (this.host.caps().mount ? 'overlay' : 'vfs') : this.wanted;
      if (name === 'overlay' && this.wanted === 'auto') {
        const refused = await d.overlayRefused(this.host, this.work);
        if (refused) {
          // vfs copies every layer for every step: many times slower, so the user hears why
          name = 'vfs';
          warn('E_OVERLAY_REFUSED', `overlay mount refused (${oneLine(refused.message)}); using the slower vfs driver`);
        }
      }
      const steps =
        name === 'overlay'
          ? new d.OverlaySteps(this.store, this.host, this.work)
          : new d.VfsSteps(this.store, this.host, this.work);
      return { name, steps };
    })();
    return this.backend;
  }

  /** driver tells which driver the build uses (probing the kernel on first call in 'auto') */
  async driver(): Promise<StorageDriver> {
    return (await this.get()).name;
  }

  /**
   * openStep makes a writable root over `layers` (base first) and then `pending` (oldest first: layers of this
   * stage still being written) with the mount points `stubs`.
   */
  async openStep(
    layers: readonly Layer[],
    stubs?: readonly Stub[],
    pending?: readonly PendingLayer[],
  ): Promise<StepRoot> {
    return (await this.get()).steps.openStep(layers, stubs, pending);
  }

  /**
   * settle waits for a pending layer made on top of `below` (its resolved layers, base first) and moves its tree
   * into the store's snapshots; it returns the layer. Pending layers are settled oldest first, each once, when no
   * step has them mounted any more. Throws what writing the layer threw.
   */
  async settle(below: readonly Layer[], pending: PendingLayer): Promise<Layer> {
    return (await this.get()).steps.settle(below, pending);
  }

  /** view shows `layers` read-only (the caller must not write). */
  async view(layers: readonly Layer[]): Promise<View> {
    return (await this.get()).steps.view(layers);
  }

  /** close removes the work directory (after every step and view has ended). */
  async close(): Promise<void> {
    await this.ready.catch(() => {});
    if (this.backend) await (await this.backend).steps.close().catch(() => {});
    await removeTree(this.work);
  }
}

/**
 * cleanStaleContainers removes the directories under `<store>/containers` whose process is gone (build work
 * directories and rootfs directories alike; `mount-*` views live until umount) and returns their names. A directory
 * with something still mounted below it is never removed through the mount (that would write whiteouts into it):
 * the mounts are detached lazily first (unionfs/stale.ts) and a directory whose mounts stay is skipped; with
 * `detach: false` nothing is unmounted and an E_BUSY error says what to unmount.
 */
export async function cleanStaleContainers(
  storeRoot: string,
  opts: { host?: Host; detach?: boolean } = {},
): Promise<string[]> {
  const r = await cleanStale(storeRoot, ['containers'], opts);
  if (opts.detach === false && r.kept.length)
    throw new TsbuildError('E_BUSY', `stale container ${r.kept[0]}`, { hint: 'unmount it first' });
  return r.removed.map((rel) => rel.slice('containers/'.length));
}

/** markContainer writes a small note into a container directory (what it is for), for `tsbuild mount` listings. */
export async function markContainer(dir: string, note: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, 'container.json'), `${JSON.stringify(note)}\n`);
}

/**
 * unmountView removes a view made by openRootfs({ persistent: true }) (`tsbuild mount`), given the path it
 * printed: unmounts it (overlay) and deletes its container directory. Throws NotFoundError for other paths.
 */
export async function unmountView(storeRoot: string, path: string, host: Host = defaultHost()): Promise<void> {
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
        host.umount(merged);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'EBUSY') host.umount(merged, MNT_DETACH);
        else if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
      }
      if (host.mountinfo().includes(` ${dir}/`)) throw new TsbuildError('E_BUSY', `${merged} is still mounted`);
    }
    await removeTree(dir);
    return;
  }
  throw new NotFoundError(`a tsbuild mount at ${path}`, 'list the views with: ls <store>/containers/mount-*/');
}
