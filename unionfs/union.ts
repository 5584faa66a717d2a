// The directories of one container's overlay, made, and the plan that mounts them (mountOverlay): shared by
// openRootfs's overlay driver (rootfs.ts) and a build session's steps (rootfs-drivers.ts).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Host } from '../sys/host.js';
import { LowerView } from './lower-view.js';
import type { OverlayPlan } from './overlay.js';
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
