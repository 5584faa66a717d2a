// The two root filesystem drivers of builder/rootfs.ts (see there): overlay mounts over per-layer snapshots, and the
// userspace vfs fallback. Loaded on first use.
import { chmodSync, closeSync, lchownSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Change } from '../layers/model/changeset.js';
import { commitLayer } from '../layers/store/commit.js';
import { chainId } from '../layers/model/digest.js';
import { TsbuildError } from '../sys/errors.js';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { applyLayer } from '../layers/tar/apply.js';
import { tarFromChanges } from '../layers/tar/create.js';
import { getXattrs, setXattr } from '../sys/libc.js';
import { diffManifest } from '../unionfs/diff-manifest.js';
import { diffUpperdir } from '../unionfs/diff-upper.js';
import { LowerView } from '../unionfs/lower-view.js';
import { recordManifest } from '../unionfs/manifest.js';
import { mergeLayers } from '../unionfs/merge.js';
import { mountOverlay, type MountedOverlay } from '../unionfs/overlay.js';
import { ensureSnapshots, snapshotDir } from '../unionfs/snapshot.js';
import { isOverlayXattr } from '../layers/tar/whiteout.js';
import type { LayerRef } from './cache.js';
import type { CommitOptions, Rootfs, StepRoot, Stub, StorageDriver, View } from './rootfs.js';

type Backend = Omit<Rootfs, 'driver'> & { name: StorageDriver };

/** makeBackend picks the driver for a build's work directory ('auto': overlay when a test mount works). */
export async function makeBackend(store: Store, work: string, driver: StorageDriver | 'auto'): Promise<Rootfs & { name: StorageDriver }> {
  let chosen: StorageDriver = driver === 'auto' ? (process.getuid?.() === 0 ? 'overlay' : 'vfs') : driver;
  if (chosen === 'overlay' && driver === 'auto' && !(await overlayWorks(work))) chosen = 'vfs';
  const b: Backend = chosen === 'overlay' ? new OverlayRootfs(store, work) : new VfsRootfs(store, work);
  return Object.assign(b, { driver: async () => chosen });
}

async function overlayWorks(work: string): Promise<boolean> {
  const dir = join(work, 'probe');
  try {
    for (const d of ['lower', 'upper', 'work', 'root']) await mkdir(join(dir, d), { recursive: true });
    const m = await mountOverlay({ lowerdirs: [join(dir, 'lower')], upperdir: join(dir, 'upper'), workdir: join(dir, 'work'), target: join(dir, 'root') });
    await m.unmount();
    return true;
  } catch {
    return false;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const applyOverlay = async (tar: Readable, root: string): Promise<void> => {
  await applyLayer(tar, { root, whiteouts: 'overlay' });
};
const applyPlain = async (tar: Readable, root: string): Promise<void> => {
  await applyLayer(tar, { root, whiteouts: 'delete' });
};

let counter = 0;

class OverlayRootfs implements Backend {
  readonly name = 'overlay' as const;
  private readonly live = new Set<() => Promise<void>>();
  constructor(
    private readonly store: Store,
    private readonly work: string,
  ) {}

  private async snapshots(layers: readonly LayerRef[]): Promise<string[]> {
    return ensureSnapshots({
      storeRoot: this.store.root,
      layers: layers.map((l) => ({ diffId: l.diffId, open: async () => openLayer(this.store, l.descriptor) })),
      apply: applyOverlay,
    });
  }

  private async mount(layers: readonly LayerRef[], stubs: readonly Stub[]): Promise<{ dir: string; lowers: string[]; upper: string; mounted: MountedOverlay }> {
    const snaps = await this.snapshots(layers);
    const dir = join(this.work, `s${++counter}`);
    const upper = join(dir, 'upper');
    const wd = join(dir, 'work');
    const target = join(dir, 'root');
    for (const d of [upper, wd, target]) await mkdir(d, { recursive: true });
    const lowers = [...snaps].reverse();
    const realLowers = lowers.length ? lowers : [join(dir, 'empty')];
    if (!lowers.length) await mkdir(realLowers[0]!);
    const stubDir = join(dir, 'stubs');
    const needed = planStubs(new LowerView(lowers), stubs.map((st) => ({ path: st.path.replace(/^\/+/, ''), dir: st.dir })));
    const mountLowers = [...realLowers];
    if (needed.length) {
      makeStubs(stubDir, new LowerView(lowers), needed);
      mountLowers.unshift(stubDir);
    }
    let mounted: MountedOverlay;
    try {
      mounted = await mountOverlay({ lowerdirs: mountLowers, upperdir: upper, workdir: wd, target });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return { dir, lowers: realLowers, upper, mounted };
  }

  async openStep(layers: readonly LayerRef[], stubs: readonly Stub[] = []): Promise<StepRoot> {
    const m = await this.mount(layers, stubs);
    const target = join(m.dir, 'root');
    const { end: discard, ended } = this.track(m);
    return {
      dir: target,
      discard,
      commit: async (opts) => {
        if (ended()) throw new TsbuildError('E_INTERNAL_STEP', 'step root already ended');
        try {
          await m.mounted.unmount();
          const changes = await diffUpperdir({ upperdir: m.upper, lowerdirs: m.lowers });
          if (changes.length === 0) return null;
          const layer = await commitChanges(this.store, m.upper, changes, opts);
          // The upperdir is the new layer in overlay form: keep it as the snapshot of the new chain.
          const chain = chainId([...layers.map((l) => l.diffId), layer.diffId]);
          const snap = snapshotDir(this.store.root, chain);
          if (!(await exists(snap))) {
            await mkdir(join(snap, '..'), { recursive: true });
            await rename(m.upper, snap).catch(async (err: NodeJS.ErrnoException) => {
              if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
            });
          }
          return layer;
        } finally {
          await discard();
        }
      },
    };
  }

  async view(layers: readonly LayerRef[]): Promise<View> {
    const m = await this.mount(layers, []);
    return { dir: join(m.dir, 'root'), release: this.track(m).end };
  }

  /** track makes the one-shot teardown of a mount (unmount, remove its directory) and keeps it until it runs. */
  private track(m: { dir: string; mounted: MountedOverlay }): { end(): Promise<void>; ended(): boolean } {
    let done = false;
    const end = async (): Promise<void> => {
      if (done) return;
      done = true;
      this.live.delete(end);
      await m.mounted.unmount();
      await rm(m.dir, { recursive: true, force: true });
    };
    this.live.add(end);
    return { end, ended: () => done };
  }

  async close(): Promise<void> {
    for (const end of [...this.live]) await end().catch(() => {});
  }
}

class VfsRootfs implements Backend {
  readonly name = 'vfs' as const;
  /** merged directories by ChainID key, kept for the next step of the same chain */
  private readonly kept = new Map<string, string>();
  private readonly views = new Map<string, Promise<string>>();
  constructor(
    private readonly store: Store,
    private readonly work: string,
  ) {}

  private key(layers: readonly LayerRef[]): string {
    return layers.length ? chainId(layers.map((l) => l.diffId)) : 'empty';
  }

  private async merge(layers: readonly LayerRef[]): Promise<string> {
    const dir = join(this.work, `v${++counter}`);
    await mergeLayers({
      target: dir,
      layers: layers.map((l) => ({ name: l.descriptor.digest, open: async () => openLayer(this.store, l.descriptor) })),
      apply: applyPlain,
    });
    return dir;
  }

  async openStep(layers: readonly LayerRef[], stubs: readonly Stub[] = []): Promise<StepRoot> {
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
      await rm(root, { recursive: true, force: true });
    };
    return {
      dir: root,
      discard,
      commit: async (opts) => {
        ended = true;
        try {
          const changes = (await diffManifest({ root, before })).filter((c) => !made.has(c.path));
          const layer = changes.length ? await commitChanges(this.store, root, changes, opts) : null;
          removeStubs(root, made);
          const next = layer ? this.key([...layers, layer]) : k;
          const old = this.kept.get(next);
          if (old && old !== root) await rm(old, { recursive: true, force: true });
          this.kept.set(next, root);
          return layer;
        } catch (err) {
          await rm(root, { recursive: true, force: true });
          throw err;
        }
      },
    };
  }

  async view(layers: readonly LayerRef[]): Promise<View> {
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

async function commitChanges(store: Store, root: string, changes: Change[], opts: CommitOptions): Promise<LayerRef> {
  const tar = tarFromChanges(root, changes, opts.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: opts.sourceDateEpoch });
  const c = await commitLayer(store, tar, { compression: opts.compression });
  return { descriptor: c.descriptor, diffId: c.diffId };
}

/**
 * planStubs lists the mount points (and their missing parents) that the union lacks. A mount point below a
 * symlink or a non-directory is left to the runtime (it resolves it inside the rootfs).
 */
export function planStubs(view: LowerView, stubs: readonly Stub[]): Stub[] {
  const out = new Map<string, boolean>();
  for (const s of stubs) {
    const parts = s.path.split('/').filter(Boolean);
    const planned: Array<[string, boolean]> = [];
    let ok = true;
    for (let i = 0; i < parts.length; i++) {
      const p = parts.slice(0, i + 1).join('/');
      const last = i === parts.length - 1;
      const known = out.get(p);
      if (known !== undefined) {
        if (!known && !last) ok = false;
        if (last) planned.length = 0;
        if (!ok || last) break;
        continue;
      }
      const e = planned.length ? undefined : view.lookup(p);
      if (e) {
        if (last) break; // the mount point exists
        if (!e.st.isDirectory()) {
          ok = false;
          break;
        }
        continue;
      }
      planned.push([p, last ? s.dir : true]);
    }
    if (ok) for (const [p, d] of planned) out.set(p, d);
  }
  return [...out].map(([path, dir]) => ({ path, dir }));
}

/**
 * makeStubs fills the stub lowerdir: the missing mount points, and copies of the existing directories above them
 * with the same mode, owner, xattrs and times (the topmost layer of a merged directory gives its attributes, so
 * the image's directories must look unchanged).
 */
function makeStubs(dir: string, view: LowerView, stubs: readonly Stub[]): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const planned = new Set(stubs.map((s) => s.path));
  const copied: Array<{ abs: string; atime: number; mtime: number }> = [];
  const ensureParent = (rel: string): void => {
    const parts = rel.split('/');
    parts.pop();
    let cur = '';
    for (const part of parts) {
      cur = cur ? `${cur}/${part}` : part;
      const abs = join(dir, cur);
      if (lstatSync(abs, { throwIfNoEntry: false })) continue;
      mkdirSync(abs, 0o755);
      if (planned.has(cur)) continue;
      const lower = view.lookup(cur);
      if (!lower) continue;
      chmodSync(abs, Number(lower.st.mode) & 0o7777);
      lchownSync(abs, Number(lower.st.uid), Number(lower.st.gid));
      for (const [k, v] of Object.entries(getXattrs(lower.path))) {
        if (isOverlayXattr(k)) continue;
        try {
          setXattr(abs, k, v);
        } catch {
          // the filesystem refused it
        }
      }
      copied.push({ abs, atime: Number(lower.st.atimeNs) / 1e9, mtime: Number(lower.st.mtimeNs) / 1e9 });
    }
  };
  for (const s of [...stubs].sort((a, b) => a.path.length - b.path.length)) {
    ensureParent(s.path);
    const p = join(dir, s.path);
    if (lstatSync(p, { throwIfNoEntry: false })) continue;
    if (s.dir) mkdirSync(p, 0o755);
    else closeSync(openSync(p, 'w', 0o644));
  }
  for (const c of copied.reverse()) lutimesSync(c.abs, c.atime, c.mtime);
}

/** makeStubsIn creates missing mount points directly in a vfs root; returns the relative paths it made. */
function makeStubsIn(root: string, stubs: readonly Stub[]): Set<string> {
  const made = new Set<string>();
  for (const s of stubs) {
    const parts = s.path.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      const abs = join(root, cur);
      const st = lstatSync(abs, { throwIfNoEntry: false });
      const last = i === parts.length - 1;
      if (st) {
        if (!st.isDirectory() && !last) break;
        continue;
      }
      if (last && !s.dir) closeSync(openSync(abs, 'w', 0o644));
      else mkdirSync(abs, 0o755);
      made.add(cur);
    }
  }
  return made;
}

function removeStubs(root: string, made: Set<string>): void {
  for (const p of [...made].sort((a, b) => b.length - a.length)) {
    const abs = join(root, p);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st) continue;
    try {
      if (st.isDirectory()) {
        if (readdirSync(abs).length === 0) rmdirSync(abs);
      } else if (st.isFile() && st.size === 0) unlinkSync(abs);
    } catch {
      // left in place: the next step's manifest sees it as it is
    }
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

