// The directories of one container's overlay, made, and the plan that mounts them (mountOverlay): shared by
// openRootfs's overlay driver (rootfs.ts) and a build session's steps (rootfs-drivers.ts).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chainIds, hexOf } from '../layers/model/digest.js';
import type { Layer } from '../layers/model/layer.js';
import { privateDirPath } from '../layers/store/private-dirs.js';
import type { Store } from '../layers/store/store.js';
import type { Host } from '../sys/host.js';
import { LowerView } from './lower-view.js';
import { mountOverlay, type MountedOverlay, type OverlayPlan } from './overlay.js';
import { makeStubs, planStubs, type Stub } from './stubs.js';

/** PreparedUnion is an overlay ready to mount: `lowers` are the lowerdirs the diff sees (top first, stubs left out). */
export interface PreparedUnion {
  plan: OverlayPlan;
  target: string;
  upper: string;
  lowers: string[];
}

/**
 * prepareUnion makes `<dir>/upper`, `<dir>/work` and `<dir>/<target>` (and `<dir>/empty` for no layers, `<dir>/stubs`
 * for the mount points the layers lack) over the snapshot directories `snapshots` (top first). It removes nothing
 * on failure.
 */
export async function prepareUnion(o: {
  host: Host;
  snapshots: string[];
  stubs: readonly Stub[];
  dir: string;
  target: string;
}): Promise<PreparedUnion> {
  const lowers = o.snapshots;
  const upper = join(o.dir, 'upper');
  const wd = join(o.dir, 'work');
  const target = join(o.dir, o.target);
  // a few metadata calls, synchronous: no round trip through libuv's threads each
  for (const d of [upper, wd, target]) mkdirSync(d, { recursive: true });
  // an image with no layers (FROM scratch) still needs one lowerdir
  const realLowers = lowers.length ? lowers : [join(o.dir, 'empty')];
  if (!lowers.length) mkdirSync(realLowers[0]!);
  const needed = planStubs(
    new LowerView(lowers),
    o.stubs.map((st) => ({ path: st.path.replace(/^\/+/, ''), dir: st.dir })),
  );
  const mountLowers = [...realLowers];
  if (needed.length) {
    const stubDir = join(o.dir, 'stubs');
    makeStubs(o.host, stubDir, new LowerView(lowers), needed);
    mountLowers.unshift(stubDir);
  }
  return { plan: { lowerdirs: mountLowers, upperdir: upper, workdir: wd, target }, target, upper, lowers: realLowers };
}

/** Union is a mounted overlay of layers: `lowers` are the lowerdirs the diff sees (top first, stubs left out). */
export interface Union {
  target: string;
  upper: string;
  lowers: string[];
  mounted: MountedOverlay;
}

/**
 * mountUnion mounts the overlay of `layers` (base first), then the directories `pending` (oldest first: a build's
 * layers still being written), at `<dir>/<target>` (see prepareUnion). It removes nothing on failure.
 */
export async function mountUnion(o: {
  store: Store;
  host: Host;
  layers: readonly Layer[];
  pending?: readonly string[];
  stubs: readonly Stub[];
  dir: string;
  target: string;
  volatile: boolean;
}): Promise<Union> {
  const snapshots = [...[...(o.pending ?? [])].reverse(), ...(await snapshotsOf(o.store, o.layers, o.host)).reverse()];
  const u = await prepareUnion({ host: o.host, snapshots, stubs: o.stubs, dir: o.dir, target: o.target });
  const mounted = await mountOverlay({ ...u.plan, volatile: o.volatile }, o.host);
  return { target: u.target, upper: u.upper, lowers: u.lowers, mounted };
}

/**
 * snapshotsOf returns the snapshot directories of `layers`, bottom first (as snapshotLayers, whose paths these are),
 * extracting the missing ones: only then is snapshot.ts loaded, with the tar and decompression code it needs.
 */
async function snapshotsOf(store: Store, layers: readonly Layer[], host: Host): Promise<string[]> {
  const root = privateDirPath(store.root, 'snapshots');
  const dirs = chainIds(layers.map((l) => l.diffId)).map((c) => join(root, hexOf(c)));
  if (dirs.every((d) => existsSync(d))) return dirs;
  return (await import('./snapshot.js')).snapshotLayers(store, layers, host);
}
