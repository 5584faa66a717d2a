// runImage: `tsbuild run` as a library call. A writable layer over the image (unionfs/rootfs.ts), then runContainer;
// mounts go through the Host.
//
// No mount outlives the run: the overlay is mounted (private) on the host only until the container's mount
// namespace exists, then detached from the host; the container keeps its own copy, which the kernel drops when
// the container's last process exits. So even a `kill -9` of tsbuild leaves nothing in the host's mount table.
// With `remove` the overlay is volatile (Linux ≥ 5.10): the kernel never syncs a writable layer that is thrown away.
import { readFile, readlink } from 'node:fs/promises';
import { imageLayers } from '../layers/model/layer.js';
import type { Image } from '../layers/store/image.js';
import type { Store } from '../layers/store/store.js';
import { defaultHost, type Host } from '../sys/host.js';
import { MNT_DETACH, MS } from '../sys/libc.js';
import { volatileKnown } from '../unionfs/overlay.js';
import { openRootfs, type StorageDriver } from '../unionfs/rootfs.js';
import { type RunIO, type RunResult, runContainer } from './run.js';
import { type ProcessSpecOptions, processSpec } from './spec.js';

/** RunImageOptions are processSpec's `docker run` options (minus config and rootfs, which come from the image). */
export interface RunImageOptions extends Omit<ProcessSpecOptions, 'config' | 'rootfs' | 'mounts' | 'extraFiles'> {
  store: Store;
  image: Image;
  host?: Host;
  /** discard the writable layer when the run ends (`--rm`); otherwise it stays under <store>/containers */
  remove?: boolean;
  driver?: StorageDriver | 'auto';
  io?: RunIO;
  onWarn?: (code: string, message: string) => void;
}

export interface RunImageResult extends RunResult {
  /** where the writable layer was kept (without `remove`) */
  containerDir?: string;
}

/** runImage runs the image's command (or `cmd`) in a fresh container and returns its exit status. */
export async function runImage(opts: RunImageOptions): Promise<RunImageResult> {
  const { image } = opts;
  const host = opts.host ?? defaultHost();
  const rootfs = await openRootfs({
    store: opts.store,
    host,
    layers: imageLayers(image),
    driver: opts.driver ?? 'auto',
    volatile: opts.remove === true && volatileKnown(),
    ...(opts.onWarn ? { onWarn: opts.onWarn } : {}),
  });
  let keep = false;
  try {
    const { store: _s, image: _i, host: _h, remove: _r, driver: _d, io: _io, onWarn: _w, ...runOpts } = opts;
    const spec = processSpec({ ...runOpts, config: image.config.config ?? {}, rootfs: rootfs.path });
    const onStarted =
      rootfs.driver === 'overlay' ? (pid: number) => detachOnceEntered(host, rootfs.path, pid) : undefined;
    const result: RunImageResult = await runContainer(spec, opts.io ?? {}, {
      host,
      ...(onStarted ? { onStarted } : {}),
    });
    if (!opts.remove) {
      keep = true;
      result.containerDir = rootfs.dir;
    }
    return result;
  } finally {
    if (!keep) await rootfs.release();
  }
}

/**
 * detachOnceEntered waits until the executor has its own mount namespace (it then holds a copy of the overlay
 * mount, private so that nothing propagates), then lazily unmounts the overlay from the host's namespace.
 * The Node executor's `unshare` enters the namespaces itself; the native helper stays in ours and forks PID 1 into
 * them, so a child of `pid` in another mount namespace counts too.
 */
async function detachOnceEntered(host: Host, target: string, pid: number): Promise<void> {
  host.mount(null, target, null, MS.PRIVATE, null);
  const ours = await readlink('/proc/self/ns/mnt');
  for (let i = 0; i < 2000; i++) {
    const theirs = await readlink(`/proc/${pid}/ns/mnt`).catch(() => undefined);
    if (theirs === undefined) {
      // the executor is already gone (a short command on a loaded machine): nothing needs the host's mount any more,
      // and a kept container (no --rm) must not leave it behind
      host.umount(target, MNT_DETACH);
      return;
    }
    if (theirs !== ours || (await childMountNamespaces(pid)).some((ns) => ns !== ours)) {
      host.umount(target, MNT_DETACH);
      return;
    }
    // the helper is in its namespaces a few milliseconds after it starts: look again at once for the first rounds
    // (a round is three reads of /proc), then every millisecond
    await new Promise((r) => (i < 100 ? setImmediate(r) : setTimeout(r, 1)));
  }
  throw new Error(`container executor ${pid} did not enter its mount namespace`);
}

/** childMountNamespaces returns the mount namespaces of the direct children of `pid` (those still there). */
async function childMountNamespaces(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const out: string[] = [];
  for (const child of text.split(/\s+/).filter(Boolean)) {
    const ns = await readlink(`/proc/${child}/ns/mnt`).catch(() => undefined);
    if (ns !== undefined) out.push(ns);
  }
  return out;
}
