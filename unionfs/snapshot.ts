// Per-layer snapshots: each layer extracted once (overlay whiteouts) into `<store>/snapshots/<hex of ChainID>`,
// ready to be an overlay lowerdir. Keyed by ChainID, not DiffID, because a layer's whiteouts only mean something
// on top of the layers below it.
//
// Writes follow the store's rule: extract into a temp directory next to the final one, then rename. A snapshot
// directory therefore exists only complete. Temp names carry the writer's pid, so cleanStaleSnapshots removes only
// those of dead processes (a caveat: processes in other pid namespaces sharing a store look dead). Content is not
// fsynced: after a power cut a snapshot may need removing (removeSnapshot) and extracting again.
//
// snapshotLayers is the one way the rest of tsbuild asks for snapshots of image layers: it opens each layer from the
// store and applies it with overlay whiteouts through the Host (snapshotApply). ensureSnapshots takes any opener and
// apply (tests pass GNU tar).
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { mkdir, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { chainId, hexOf, isDigest } from '../layers/model/digest.js';
import { wrap } from '../sys/errors.js';
import type { Layer } from '../layers/model/layer.js';
import type { Digest } from '../layers/model/types.js';
import { layerSource } from '../layers/store/layer-read.js';
import { privateDir, privateDirPath } from '../layers/store/private-dirs.js';
import type { Store } from '../layers/store/store.js';
import { applyLayer } from '../layers/tar/apply.js';
import { defaultHost, type Host } from '../sys/host.js';
import { isAlive } from '../sys/pid.js';
import { LowerView } from './lower-view.js';
import { removeTree } from '../sys/remove-tree.js';

/**
 * ApplyLayer extracts one layer tar into a directory; it consumes the stream. `lowers` are the snapshot
 * directories of the layers below, top first. The real one is snapshotApply; tests pass GNU tar.
 */
export type ApplyLayer = (tar: Readable, dir: string, lowers: readonly string[]) => Promise<void>;

/**
 * snapshotApply applies a layer as a snapshot: OCI whiteouts become overlay whiteouts (char 0/0, opaque xattr). An
 * entry below a symlink of a lower layer goes where applying onto the lower layers (unpack) puts it: through the
 * symlink, inside the root (layers/tar/apply-state.ts throughLower), so run, build and export see what unpack does.
 */
export function snapshotApply(host: Host = defaultHost()): ApplyLayer {
  return async (tar, dir, lowers = []) => {
    const view = lowers.length ? new LowerView(lowers) : undefined;
    const lower = (rel: string): string | undefined => {
      const e = view?.lookup(rel);
      return e?.st.isSymbolicLink() ? readlinkSync(e.path) : undefined;
    };
    await applyLayer(tar, { root: dir, whiteouts: 'overlay', host, ...(view ? { lower } : {}) });
  };
}

/** SnapshotLayer is a layer to extract: its DiffID and an opener for its uncompressed tar (fresh stream per call). */
export interface SnapshotLayer {
  diffId: Digest;
  open(): Promise<Readable>;
}

const TMP_PREFIX = '.tmp-';

/** snapshotsRoot is the directory that holds every snapshot of a store. */
export function snapshotsRoot(storeRoot: string): string {
  return privateDirPath(storeRoot, 'snapshots');
}

/** snapshotDir is where the snapshot of a ChainID lives: `<storeRoot>/snapshots/<hex>`. */
export function snapshotDir(storeRoot: string, chain: Digest): string {
  return join(snapshotsRoot(storeRoot), hexOf(chain));
}

/**
 * ensureSnapshots makes sure every prefix of `layers` (bottom first) has its snapshot and returns their
 * directories, bottom first (reverse it for lowerdirs). A layer whose snapshot exists is not opened. Otherwise its
 * tar is applied into a temp directory beside the snapshots and renamed into place; when another caller renamed
 * first, this copy is discarded. On failure the temp directory is removed and the error names the layer; snapshots
 * finished before stay. A killed process leaves only a temp directory (see cleanStaleSnapshots).
 */
export async function ensureSnapshots(opts: {
  storeRoot: string;
  layers: readonly SnapshotLayer[];
  apply?: ApplyLayer;
}): Promise<string[]> {
  const apply = opts.apply ?? snapshotApply();
  const root = await privateDir(opts.storeRoot, 'snapshots');
  const dirs: string[] = [];
  const diffIds: Digest[] = [];
  for (const layer of opts.layers) {
    diffIds.push(layer.diffId);
    const chain = chainId(diffIds);
    const dir = snapshotDir(opts.storeRoot, chain);
    dirs.push(dir);
    if (await exists(dir)) continue;
    try {
      await extractOnce(root, dir, chain, layer, (tar, into) => apply(tar, into, dirs.slice(0, -1).reverse()));
    } catch (e) {
      throw wrap(`extracting layer ${layer.diffId} (snapshot ${hexOf(chain).slice(0, 12)})`, e);
    }
  }
  return dirs;
}

/** snapshotLayers is ensureSnapshots for image layers of `store` (base first): their snapshot directories, bottom first. */
export function snapshotLayers(store: Store, layers: readonly Layer[], host: Host = defaultHost()): Promise<string[]> {
  return ensureSnapshots({
    storeRoot: store.root,
    layers: layers.map((l) => layerSource(store, l)),
    apply: snapshotApply(host),
  });
}

async function extractOnce(
  root: string,
  dir: string,
  chain: Digest,
  layer: SnapshotLayer,
  apply: (tar: Readable, dir: string) => Promise<void>,
): Promise<void> {
  const tmp = join(root, tempName(hexOf(chain).slice(0, 16)));
  await mkdir(tmp, { mode: 0o755 });
  let tar: Readable | undefined;
  try {
    tar = await layer.open();
    await apply(tar, tmp);
    await putInPlace(tmp, dir);
  } catch (e) {
    tar?.destroy();
    await removeTree(tmp);
    throw e;
  }
}

/** putInPlace renames a finished temp directory to its snapshot's name; when another caller was first, drops it. */
async function putInPlace(tmp: string, dir: string): Promise<void> {
  try {
    await rename(tmp, dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Another caller finished first (rename over a non-empty directory fails): theirs is as good as ours.
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await exists(dir))) throw e;
    await removeTree(tmp);
  }
}

/** BaseSnapshotFromTar: see baseSnapshotFromTar. */
export interface BaseSnapshotFromTar {
  /** applies the layer tar (which it consumes) into a temp directory beside the snapshots; call it once */
  extract(tar: Readable): Promise<void>;
  /** names the extracted tree the snapshot of the bottom layer `diffId` (its ChainID is its DiffID); false when `extract` did not finish */
  keep(diffId: Digest): Promise<boolean>;
  /** removes the temp directory if it was not kept (idempotent) */
  discard(): Promise<void>;
}

/**
 * baseSnapshotFromTar extracts the snapshot of an image's bottom layer from its tar while the tar streams by, before
 * its DiffID is known: `import` tees the layer it commits into `extract`, so the image enters the store unpacked
 * without reading, decompressing and hashing the stored blob again (what unpackImages would do next). The tree is
 * the one snapshotLayers makes from the same tar (snapshotApply, no layers below). Undefined where snapshots are not
 * used (as unpackImages: no mounts). Temp names carry the pid, as every snapshot write's (cleanStaleSnapshots).
 */
export function baseSnapshotFromTar(storeRoot: string, host: Host = defaultHost()): BaseSnapshotFromTar | undefined {
  if (!host.caps().mount) return undefined;
  let tmp: string | undefined;
  let extracted = false;
  return {
    async extract(tar) {
      const root = await privateDir(storeRoot, 'snapshots').catch((e: unknown) => {
        tar.destroy();
        throw e;
      });
      tmp = join(root, tempName('layer'));
      await mkdir(tmp, { mode: 0o755 });
      await snapshotApply(host)(tar, tmp, []);
      extracted = true;
    },
    async keep(diffId) {
      if (!extracted || tmp === undefined) return false;
      const from = tmp;
      tmp = undefined;
      try {
        await putInPlace(from, snapshotDir(storeRoot, chainId([diffId])));
      } catch (e) {
        await removeTree(from);
        throw wrap(`extracting layer ${diffId}`, e);
      }
      return true;
    },
    async discard() {
      const from = tmp;
      tmp = undefined;
      if (from !== undefined) await removeTree(from);
    },
  };
}

/** listSnapshots returns the ChainIDs of the store's complete snapshots, sorted. */
export async function listSnapshots(storeRoot: string): Promise<Digest[]> {
  const names = await readdir(snapshotsRoot(storeRoot)).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  return names
    .map((n) => `sha256:${n}`)
    .filter(isDigest)
    .sort();
}

/**
 * removeSnapshot deletes a snapshot (idempotent; returns whether it existed). It is renamed to a temp name first,
 * so an interrupted removal never leaves a partial snapshot under the real name. The caller makes sure no mount
 * uses it.
 */
export async function removeSnapshot(storeRoot: string, chain: Digest): Promise<boolean> {
  const dir = snapshotDir(storeRoot, chain);
  const tmp = join(snapshotsRoot(storeRoot), tempName(`rm-${hexOf(chain).slice(0, 16)}`));
  try {
    await rename(dir, tmp);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw wrap(`removing snapshot ${chain}`, e);
  }
  await removeTree(tmp);
  return true;
}

/**
 * cleanStaleSnapshots removes the temp directories that killed extractions and removals left behind: those whose
 * writer process is gone. It returns their names. Temp directories of live processes are kept.
 */
export async function cleanStaleSnapshots(storeRoot: string): Promise<string[]> {
  const root = snapshotsRoot(storeRoot);
  const names = await readdir(root).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const pid = Number(/-(\d+)-[0-9a-f]+$/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) continue;
    await removeTree(join(root, name));
    removed.push(name);
  }
  return removed.sort();
}

/** tempName is `.tmp-<what>-<pid>-<random>`: cleanStaleSnapshots reads the pid back. */
function tempName(what: string): string {
  return `${TMP_PREFIX}${what}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * unpackImages extracts the snapshots of images that just entered the store (load, import, pull, bootstrap), as
 * docker, buildah and BuildKit unpack at pull time, so that the first build or run on them does not wait for it.
 * Only where snapshots are used (overlay: host.caps().mount); elsewhere it does nothing. Returns how many layers
 * now have their snapshot (made now or before).
 */
export async function unpackImages(
  store: Store,
  images: ReadonlyArray<{ layers: readonly Layer[] }>,
  host: Host = defaultHost(),
): Promise<number> {
  if (!host.caps().mount) return 0;
  let layers = 0;
  for (const img of images) {
    await snapshotLayers(store, img.layers, host);
    layers += img.layers.length;
  }
  return layers;
}
