// The two drivers behind unionfs/rootfs.ts (the contract is there), loaded when a root is first needed, so a fully
// cached build never loads them.
//
// overlay: the layers' snapshots (snapshot.ts) are the lowerdirs, top first, of an overlay mount with a fresh
// upperdir; stubs are one more read-only lowerdir on top; the upperdir diff (diffUpperdir) is what changed, and on
// commit the upperdir becomes the new layer's snapshot. vfs: the layers are flattened (flatten.ts, 'apply') into a
// plain directory, a manifest is recorded, diffManifest is what changed; stubs are made in place and removed.
import { mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chainId } from '../layers/model/digest.js';
import type { Layer } from '../layers/model/layer.js';
import type { Change } from '../layers/model/changeset.js';
import type { Store } from '../layers/store/store.js';
import { InternalError, TsbuildError } from '../sys/errors.js';
import type { Host } from '../sys/host.js';
import { LayerWriter } from './commit-thread.js';
import { diffManifest } from './diff-manifest.js';
import { diffUpperdir } from './diff-upper.js';
import { flatten } from './flatten.js';
import { recordManifest } from './manifest.js';
import { mountOverlay, type MountedOverlay, volatileKnown } from './overlay.js';
import type { PendingLayer, Rootfs, StepRoot, View } from './rootfs.js';
import { snapshotDir } from './snapshot.js';
import { makeStubsIn, removeStubs, type Stub } from './stubs.js';
import { mountUnion, type Union } from './union.js';
import { removeTree } from '../sys/remove-tree.js';

/** vfsRootfs is openRootfs's userspace driver: the container directory holds rootfs/, the flattened layers. */
export async function vfsRootfs(o: {
  store: Store;
  host: Host;
  layers: readonly Layer[];
  stubs: readonly Stub[];
  dir: string;
  writable: boolean;
}): Promise<Rootfs> {
  const rootfs = join(o.dir, 'rootfs');
  await mkdir(rootfs);
  await flatten({ store: o.store, host: o.host, layers: o.layers, dir: rootfs, method: 'apply' });
  const made = makeStubsIn(rootfs, o.stubs);
  const before = o.writable ? await recordManifest(rootfs) : undefined;
  let released = false;
  return {
    path: rootfs,
    driver: 'vfs',
    dir: o.dir,
    changes: async () => {
      if (!before) throw new InternalError('changes() of a rootfs opened with writable: false');
      return (await diffManifest({ root: rootfs, before })).filter((c) => !made.has(c.path));
    },
    release: async () => {
      if (released) return;
      released = true;
      await removeTree(o.dir);
    },
  };
}

/**
 * overlayRefused is the overlay probe: can `host` mount an overlay in `work` (an empty union, mounted and unmounted)?
 * It returns the refusal (undefined when the mount worked).
 */
export async function overlayRefused(host: Host, work: string): Promise<Error | undefined> {
  const dir = join(work, 'probe');
  try {
    for (const d of ['lower', 'upper', 'work', 'root']) await mkdir(join(dir, d), { recursive: true });
    // volatile, as the steps are: a plain overlay's unmount syncs the whole upper filesystem, which after a `load` or
    // a `pull` means writing back everything they unpacked (0.2 s measured) before the first step starts
    const m = await mountOverlay(
      {
        lowerdirs: [join(dir, 'lower')],
        upperdir: join(dir, 'upper'),
        workdir: join(dir, 'work'),
        target: join(dir, 'root'),
        volatile: volatileKnown(),
      },
      host,
    );
    await m.unmount();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  } finally {
    await removeTree(dir);
  }
}

/** StepDriver is what a RootfsSession does once its driver is chosen. */
export interface StepDriver {
  openStep(layers: readonly Layer[], stubs?: readonly Stub[], pending?: readonly PendingLayer[]): Promise<StepRoot>;
  settle(below: readonly Layer[], pending: PendingLayer): Promise<Layer>;
  view(layers: readonly Layer[]): Promise<View>;
  close(): Promise<void>;
}

let counter = 0;

/**
 * OverlaySteps: each step or view is an overlay mount in `<work>/s<n>/root`; commit keeps the upperdir as a snapshot.
 * commitLater moves the upperdir to `<work>/p<n>` and writes the layer in the background: the next steps mount that
 * directory on top of the snapshots, and settle() moves it into the snapshots once the layer is stored.
 */
export class OverlaySteps implements StepDriver {
  private readonly live = new Set<() => Promise<void>>();
  /** layers being written in the background: close() waits for them before the work directory goes */
  private readonly writing = new Set<Promise<unknown>>();
  /** writes the layers on a thread of their own (commit-thread.ts) */
  private readonly writer = new LayerWriter();
  constructor(
    private readonly store: Store,
    private readonly host: Host,
    private readonly work: string,
  ) {}

  private async mount(
    layers: readonly Layer[],
    stubs: readonly Stub[],
    pending: readonly PendingLayer[] = [],
  ): Promise<Union & { dir: string }> {
    const dir = join(this.work, `s${++counter}`);
    try {
      // volatile: unmounting does not sync the whole upper filesystem. What a step keeps is its layer blob, written
      // and fsynced by the commit; its upperdir becomes a snapshot, which the store never fsyncs (snapshot.ts)
      const u = await mountUnion({
        store: this.store,
        host: this.host,
        layers,
        pending: pending.map((p) => p.dir),
        stubs,
        dir,
        target: 'root',
        volatile: volatileKnown(),
      });
      return { ...u, dir };
    } catch (err) {
      await removeTree(dir);
      throw err;
    }
  }

  async openStep(
    layers: readonly Layer[],
    stubs: readonly Stub[] = [],
    pending: readonly PendingLayer[] = [],
  ): Promise<StepRoot> {
    const m = await this.mount(layers, stubs, pending);
    this.writer.prepare(); // its layer will be written: the writer thread loads meanwhile
    const { end: discard, ended } = this.track(m);
    const root: StepRoot = {
      dir: m.target,
      discard,
      commitLater: async (opts) => {
        if (ended()) throw new TsbuildError('E_INTERNAL_STEP', 'step root already ended');
        let changes: Change[];
        const dir = join(this.work, `p${++counter}`);
        try {
          await m.mounted.unmount();
          changes = await diffUpperdir({ upperdir: m.upper, lowerdirs: m.lowers });
          if (changes.length === 0 && !opts.keepEmpty) return null;
          await rename(m.upper, dir);
        } finally {
          // before the layer write starts: it keeps the main thread busy between its chunks
          await discard();
        }
        const layer = this.writer.write(this.store, dir, changes, opts);
        const done = layer.catch(() => {}); // settle() reports the failure
        this.writing.add(done);
        void done.then(() => this.writing.delete(done));
        return { dir, layer };
      },
      commit: async (opts) => {
        // the layer's chain is `layers` and the new one: over pending layers only commitLater knows the chain
        if (pending.length) throw new InternalError('commit of a step opened over pending layers');
        const later = await root.commitLater!(opts);
        return later && (await this.settle(layers, later));
      },
    };
    return root;
  }

  /** settle: the tree of a pending layer is the new layer in overlay form, kept as the snapshot of its chain. */
  async settle(below: readonly Layer[], pending: PendingLayer): Promise<Layer> {
    const layer = await pending.layer;
    // another build may have made that snapshot meanwhile: then this copy goes with the work directory
    const snap = snapshotDir(this.store.root, chainId([...below.map((l) => l.diffId), layer.diffId]));
    if (!(await exists(snap))) {
      await this.store.privateDir('snapshots');
      await rename(pending.dir, snap).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
    }
    return layer;
  }

  async view(layers: readonly Layer[]): Promise<View> {
    const m = await this.mount(layers, []);
    return { dir: m.target, release: this.track(m).end };
  }

  /** track makes the one-shot teardown of a mount (unmount, remove its directory) and keeps it until it runs. */
  private track(m: { dir: string; mounted: MountedOverlay }): { end(): Promise<void>; ended(): boolean } {
    let done = false;
    const end = async (): Promise<void> => {
      if (done) return;
      done = true;
      this.live.delete(end);
      await m.mounted.unmount();
      await removeTree(m.dir);
    };
    this.live.add(end);
    return { end, ended: () => done };
  }

  async close(): Promise<void> {
    for (const end of [...this.live]) await end().catch(() => {});
    // a layer still being written reads its directory, which goes with the work directory after this
    await Promise.all([...this.writing]);
    await this.writer.close();
  }
}

/** VfsSteps: each step works in a flattened directory `<work>/v<n>`, kept for the next step of the same chain. */
export class VfsSteps implements StepDriver {
  /** merged directories by ChainID key, kept for the next step of the same chain */
  private readonly kept = new Map<string, string>();
  private readonly views = new Map<string, Promise<string>>();
  constructor(
    private readonly store: Store,
    private readonly host: Host,
    private readonly work: string,
  ) {}

  private key(layers: readonly Layer[]): string {
    return layers.length ? chainId(layers.map((l) => l.diffId)) : 'empty';
  }

  private async merge(layers: readonly Layer[]): Promise<string> {
    const dir = join(this.work, `v${++counter}`);
    await flatten({ store: this.store, host: this.host, layers, dir, method: 'apply' });
    return dir;
  }

  async openStep(
    layers: readonly Layer[],
    stubs: readonly Stub[] = [],
    pending: readonly PendingLayer[] = [],
  ): Promise<StepRoot> {
    // vfs commits every step at once (its StepRoot has no commitLater): nothing can be pending here
    if (pending.length) throw new InternalError('vfs step over pending layers');
    const k = this.key(layers);
    let dir = this.kept.get(k);
    if (dir) this.kept.delete(k);
    else dir = await this.merge(layers);
    const root = dir;
    const made = makeStubsIn(root, stubs);
    const before = await recordManifest(root);
    let ended = false;
    const discard = async (): Promise<void> => {
      if (ended) return;
      ended = true;
      await removeTree(root);
    };
    return {
      dir: root,
      discard,
      commit: async (opts) => {
        ended = true;
        try {
          const changes = (await diffManifest({ root, before })).filter((c) => !made.has(c.path));
          const layer =
            changes.length || opts.keepEmpty
              ? await (await import('./commit.js')).commitChanges(this.store, root, changes, opts)
              : null;
          removeStubs(root, made);
          const next = layer ? this.key([...layers, layer]) : k;
          const old = this.kept.get(next);
          if (old && old !== root) await removeTree(old);
          this.kept.set(next, root);
          return layer;
        } catch (err) {
          await removeTree(root);
          throw err;
        }
      },
    };
  }

  settle(): Promise<Layer> {
    return Promise.reject(new InternalError('vfs has no pending layers'));
  }

  async view(layers: readonly Layer[]): Promise<View> {
    const k = this.key(layers);
    let p = this.views.get(k);
    if (!p) {
      p = this.merge(layers);
      this.views.set(k, p);
    }
    return { dir: await p, release: async () => {} };
  }

  async close(): Promise<void> {
    // the work directory (and every merged tree in it) goes with it
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
