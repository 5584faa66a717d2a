// `tsbuild prune` as a library call, in docker's shape: by default everything the store holds that nothing needs any
// more; with `all`, also untagged images and the caches (build cache and export-kernel records, RUN cache mounts,
// context digest memos), limited by `until`.
//
// In order: container and tmp work directories of dead processes, their mounts detached first (unionfs/stale.ts;
// `tsbuild mount` views stay until umount); with `all`, untagged index entries and cache records last used before
// `until` (all of them without it); blobs that no image reaches and no remaining record names (layers/store/gc.ts),
// snapshots whose ChainID is no prefix of any image's layers, temp directories of killed extractions, and cache
// records whose layer blob is gone; with `all`, the cache mounts last used before `until` unless a build runs. Returns what it removed and what it kept that `all` would remove (`kept`);
// never prints.
//
// A snapshot in use is never removed. Users say what they use: openRootfs writes the ChainIDs of a container's
// layers into the container directory (SNAPSHOTS_NOTE) before it makes any snapshot, and a live container's
// (its process is alive, or a `tsbuild mount` view) are spared, as is every snapshot named in a lowerdir of a
// mount we can see. A live container directory without the note (a build step's work directory) may use any
// snapshot, so then no snapshot is removed. With a live writer (an import, pull or build naming its image), snapshots
// changed since it began are spared, as pruneBlobs spares blobs.
import type { Dirent } from 'node:fs';
import { lstat, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIds } from '../layers/model/digest.js';
import { pruneBlobs } from '../layers/store/gc.js';
import { reachableBlobs, walkManifests } from '../layers/store/image.js';
import { pruneRecords, RECORD_KINDS, type RecordKind, recordBlobs, Records } from '../layers/store/records.js';
import { pruneCompressedMemos } from '../layers/store/compress-layers.js';
import { contextDigestsDir, type Store } from '../layers/store/store.js';
import { defaultHost, type Host } from '../sys/host.js';
import { isAlive } from '../sys/pid.js';
import { privateDirPath } from '../layers/store/private-dirs.js';
import {
  ContainerdNameAnnotation,
  type Descriptor,
  type Digest,
  type ImageConfig,
  RefNameAnnotation,
} from '../layers/model/types.js';
import { containersRoot, SNAPSHOTS_NOTE } from './rootfs.js';
import { cleanStale, STALE_KINDS, staleDirs } from './stale.js';
import { cleanStaleSnapshots, listSnapshots, removeSnapshot, snapshotDir, snapshotsRoot } from './snapshot.js';
import { removeTree } from '../sys/remove-tree.js';

export interface PruneStoreOptions {
  host?: Host;
  /** also remove untagged images and the caches (build cache and export-kernel records), as `prune --all` */
  all?: boolean;
  /** with `all`: remove only what was made or last used before this time (ms since the epoch) */
  until?: number;
}

/** KeptKind names what the default prune keeps and `all` removes. */
export type KeptKind = 'untagged images' | 'build cache' | 'export kernel cache' | 'cache mounts';

/** Kept is one kind of thing that `all` would remove and this prune kept. */
export interface Kept {
  what: KeptKind;
  /** images or records */
  count: number;
  /** bytes of the blobs that only these keep (what removing them would free, snapshots aside) */
  bytes: number;
  /** 'all': a default prune keeps them; 'until': they are newer than `until` */
  why: 'all' | 'until';
}

export interface PruneStoreResult {
  /** untagged images removed (`all`), by manifest digest */
  images: Digest[];
  /** blobs removed (what pruneBlobs removed) */
  blobs: Digest[];
  /** snapshots removed, by ChainID */
  snapshots: Digest[];
  /** container directories of dead processes removed (names under <store>/containers) */
  containers: string[];
  /** work directories of dead builds and exports removed (names under <store>/tmp: build-…, export-…) */
  tmpDirs: string[];
  /** mounts of dead processes detached before their directories were removed */
  unmounted: string[];
  /** build-cache records removed (`all`, or their blob was gone), by key */
  cacheRecords: string[];
  /** export-kernel cache records removed, by key */
  kernelRecords: string[];
  /** `RUN --mount=type=cache` directories removed (`all`), by directory name under <store>/cache-mounts */
  cacheMounts: string[];
  /** bytes freed, by kind (directories counted like du: allocated blocks, each hard-linked inode once; `containers`
   * counts the tmp directories of dead processes too) */
  bytes: { blobs: number; snapshots: number; containers: number; cacheRecords: number; cacheMounts: number };
  /** all of `bytes` */
  bytesFreed: number;
  /** why something that looked removable was kept, or could not be removed (one line each) */
  notes: string[];
  /** what `all` would remove (or did not, being newer than `until`) and this prune kept */
  kept: Kept[];
}

/** pruneStore removes what no image needs: see the top of this file. */
export async function pruneStore(store: Store, opts: PruneStoreOptions = {}): Promise<PruneStoreResult> {
  const host = opts.host ?? defaultHost();
  const before = opts.all ? opts.until : undefined;
  const notes: string[] = [];
  const containerBytes = await staleSizes(store.root);
  // what dead processes left: their mounts detached, then their directories removed (unionfs/stale.ts)
  const stale = await cleanStale(store.root, STALE_KINDS, { host });
  for (const k of stale.kept) notes.push(`kept ${k}`);
  const containers = stale.removed.filter((rel) => rel.startsWith('containers/')).map((rel) => rel.slice(11));
  const tmpDirs = stale.removed.filter((rel) => rel.startsWith('tmp/')).map((rel) => rel.slice(4));
  const images = opts.all ? await removeUntagged(store, before) : [];
  const unused = { removed: { build: [] as Digest[], 'export-kernel': [] as Digest[] }, bytes: 0 };
  if (opts.all) {
    unused.bytes += await removeContextMemos(store.root, before);
    for (const kind of Object.keys(RECORD_KINDS) as RecordKind[]) {
      const r = await new Records(store, kind).removeUnused(before);
      unused.removed[kind] = r.removed;
      unused.bytes += r.bytes;
    }
  }
  const blobs = await pruneBlobs(store, {
    keep: async () => Object.values(await recordBlobs(store)).flatMap((set) => [...set]),
  });
  await pruneCompressedMemos(store); // the compressed copies push made are unreferenced blobs: they went above
  const snaps = await store.withLock(() => pruneSnapshots(store, host, notes));
  const mounts = opts.all ? await pruneCacheMounts(store.root, before, notes) : { removed: [], bytes: 0 };
  const { build: cache, 'export-kernel': kernel } = await pruneRecords(store);
  const bytes = {
    blobs: blobs.bytesFreed,
    snapshots: snaps.bytes,
    containers: stale.removed.reduce((n, rel) => n + (containerBytes.get(rel) ?? 0), 0),
    cacheRecords: cache.bytes + kernel.bytes + unused.bytes,
    cacheMounts: mounts.bytes,
  };
  return {
    images,
    blobs: blobs.removed,
    snapshots: snaps.removed,
    containers,
    tmpDirs,
    unmounted: stale.detached,
    cacheRecords: [...unused.removed.build, ...cache.removed].sort(),
    kernelRecords: [...unused.removed['export-kernel'], ...kernel.removed].sort(),
    cacheMounts: mounts.removed,
    bytes,
    bytesFreed: bytes.blobs + bytes.snapshots + bytes.containers + bytes.cacheRecords + bytes.cacheMounts,
    notes,
    kept: await keptByDefault(store, opts.all ? 'until' : 'all'),
  };
}

/** removeContextMemos removes the builds' context digest memos last written before `before` (all without it). */
async function removeContextMemos(root: string, before: number | undefined): Promise<number> {
  const dir = contextDigestsDir(root);
  let bytes = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (!st?.isFile() || (before !== undefined && st.mtimeMs >= before)) continue;
    await rm(join(dir, name), { force: true });
    bytes += st.blocks * 512;
  }
  return bytes;
}

const isUntagged = (d: Descriptor): boolean =>
  !d.annotations?.[RefNameAnnotation] && !d.annotations?.[ContainerdNameAnnotation];

/** removeUntagged drops the index entries without a name that entered the store before `before` (all: undefined). */
async function removeUntagged(store: Store, before: number | undefined): Promise<Digest[]> {
  return store.updateIndex(async (index) => {
    const removed: Digest[] = [];
    const keep: Descriptor[] = [];
    for (const d of index.manifests) {
      if (isUntagged(d) && (before === undefined || (await blobTime(store, d.digest)) < before)) removed.push(d.digest);
      else keep.push(d);
    }
    index.manifests = keep;
    return removed;
  });
}

/** blobTime is when a blob entered the store (its mtime), or 0 when it is missing. */
async function blobTime(store: Store, d: Digest): Promise<number> {
  return (await stat(store.blobPath(d)).catch(() => undefined))?.mtimeMs ?? 0;
}

/**
 * keptByDefault lists what a prune with `all` would still remove: untagged images and each kind of record, with the
 * bytes of the blobs only they keep (a blob an image reaches costs nothing more).
 */
async function keptByDefault(store: Store, why: Kept['why']): Promise<Kept[]> {
  const manifests = (await store.readIndex()).manifests;
  const untagged = manifests.filter(isUntagged);
  const counted = await reachableBlobs(
    store,
    manifests.filter((d) => !isUntagged(d)),
  );
  const sizeOf = async (blobs: Iterable<Digest>): Promise<number> => {
    let n = 0;
    for (const d of blobs) {
      if (counted.has(d)) continue;
      counted.add(d);
      n += (await stat(store.blobPath(d)).catch(() => undefined))?.size ?? 0;
    }
    return n;
  };
  const kept: Kept[] = [];
  if (untagged.length)
    kept.push({
      what: 'untagged images',
      count: untagged.length,
      bytes: await sizeOf(await reachableBlobs(store, untagged)),
      why,
    });
  const named = await recordBlobs(store);
  for (const [kind, what] of [
    ['export-kernel', 'export kernel cache'],
    ['build', 'build cache'],
  ] as const) {
    const count = (await new Records(store, kind).list()).length;
    if (count) kept.push({ what, count, bytes: await sizeOf(named[kind]), why });
  }
  const mounts = await cacheMountNames(store.root);
  if (mounts.length) {
    let bytes = 0;
    for (const name of mounts) bytes += await diskUsage(join(privateDirPath(store.root, 'cache-mounts'), name));
    kept.push({ what: 'cache mounts', count: mounts.length, bytes, why });
  }
  return kept;
}

/** imageChainIds returns the ChainID of every layer prefix of every image the index reaches (all platforms). */
export async function imageChainIds(store: Store): Promise<Set<Digest>> {
  const chains = new Set<Digest>();
  await walkManifests(store, async (m) => {
    if (!m?.config?.digest || !(await store.hasBlob(m.config.digest))) return;
    const config = await store.readJson<ImageConfig>(m.config.digest);
    const diffIds = config?.rootfs?.diff_ids ?? [];
    for (const c of chainIds(diffIds)) chains.add(c);
  });
  return chains;
}

interface SnapshotUse {
  /** ChainIDs that live containers and visible mounts use */
  chains: Set<Digest>;
  /** why every snapshot must stay, when a live user does not say what it uses */
  all?: string;
}

/** snapshotsInUse collects what live containers note and what the mount table shows as lowerdirs. */
async function snapshotsInUse(storeRoot: string, host: Host): Promise<SnapshotUse> {
  const use: SnapshotUse = { chains: new Set() };
  const base = containersRoot(storeRoot);
  for (const name of await readdir(base).catch(() => [] as string[])) {
    const pid = /^(\d+)-[a-f0-9]+$/.exec(name)?.[1];
    const live = name.startsWith('mount-') || (pid !== undefined && isAlive(Number(pid)));
    if (!live) continue;
    let chains: unknown;
    try {
      chains = (JSON.parse(await readFile(join(base, name, SNAPSHOTS_NOTE), 'utf8')) as { chainIds?: unknown })
        .chainIds;
    } catch {
      chains = undefined;
    }
    if (!Array.isArray(chains)) {
      use.all ??= `snapshots kept: ${join(base, name)} is in use and does not say which snapshots it uses (a build?)`;
      continue;
    }
    for (const c of chains) if (typeof c === 'string') use.chains.add(c as Digest);
  }
  // lowerdirs of mounts in our namespace (a dead run's overlay left mounted, a build step's root, a view)
  const root = snapshotsRoot(storeRoot);
  const mountinfo = host.mountinfo();
  for (const m of mountinfo.matchAll(/lowerdir=([^,\s]+)/g)) {
    for (const dir of (m[1] as string).split(':')) {
      const hex = dir.startsWith(`${root}/`) ? dir.slice(root.length + 1) : undefined;
      if (hex && /^[a-f0-9]{64}$/.test(hex)) use.chains.add(`sha256:${hex}`);
    }
  }
  return use;
}

async function pruneSnapshots(
  store: Store,
  host: Host,
  notes: string[],
): Promise<{ removed: Digest[]; bytes: number }> {
  const removed: Digest[] = [];
  let bytes = 0;
  for (const name of await staleTempSnapshots(store.root))
    bytes += await diskUsage(join(snapshotsRoot(store.root), name));
  await cleanStaleSnapshots(store.root);
  const all = await listSnapshots(store.root);
  if (all.length === 0) return { removed, bytes };
  const keep = await imageChainIds(store);
  const use = await snapshotsInUse(store.root, host);
  if (use.all !== undefined) {
    if (all.some((c) => !keep.has(c))) notes.push(use.all);
    return { removed, bytes };
  }
  const since = await store.oldestLiveWriter();
  for (const chain of all) {
    if (keep.has(chain) || use.chains.has(chain)) continue;
    const dir = snapshotDir(store.root, chain);
    if (since !== undefined) {
      const st = await stat(dir).catch(() => undefined);
      if (!st || Math.max(st.mtimeMs, st.ctimeMs) >= since) continue;
    }
    const size = await diskUsage(dir);
    if (await removeSnapshot(store.root, chain)) {
      removed.push(chain);
      bytes += size;
    }
  }
  return { removed, bytes };
}

/** cacheMountNames lists the cache mount directories of a store (not the temp directories that make them). */
async function cacheMountNames(storeRoot: string): Promise<string[]> {
  const names = await readdir(privateDirPath(storeRoot, 'cache-mounts')).catch(() => [] as string[]);
  return names.filter((n) => /^[a-f0-9]{32}$/.test(n)).sort();
}

/**
 * pruneCacheMounts removes the `RUN --mount=type=cache` directories (docker's `builder prune --all` does), those last
 * used before `before` when given (a RUN step touches its cache directories). While a build of this store runs,
 * every cache mount stays: any of them may be mounted in its step.
 */
async function pruneCacheMounts(
  storeRoot: string,
  before: number | undefined,
  notes: string[],
): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  const names = await cacheMountNames(storeRoot);
  if (names.length === 0) return { removed, bytes };
  for (const name of await readdir(containersRoot(storeRoot)).catch(() => [] as string[])) {
    const pid = /^(\d+)-[a-f0-9]+$/.exec(name)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid && isAlive(Number(pid))) {
      notes.push(`cache mounts kept: a build is running in this store (process ${pid})`);
      return { removed, bytes };
    }
  }
  const base = privateDirPath(storeRoot, 'cache-mounts');
  for (const name of names) {
    const dir = join(base, name);
    const st = await stat(dir).catch(() => undefined);
    if (!st || (before !== undefined && st.mtimeMs >= before)) continue;
    const size = await diskUsage(dir);
    await removeTree(dir);
    removed.push(name);
    bytes += size;
  }
  return { removed, bytes };
}

/** staleTempSnapshots names the temp directories cleanStaleSnapshots is about to remove (to count their bytes). */
async function staleTempSnapshots(storeRoot: string): Promise<string[]> {
  const names = await readdir(snapshotsRoot(storeRoot)).catch(() => [] as string[]);
  return names.filter((n) => {
    if (!n.startsWith('.tmp-')) return false;
    const pid = Number(/-(\d+)-[0-9a-f]+$/.exec(n)?.[1]);
    return !(Number.isInteger(pid) && pid > 0 && isAlive(pid));
  });
}

/** staleSizes measures what cleanStale may remove (directories of dead processes), by path relative to the root. */
async function staleSizes(storeRoot: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const rel of await staleDirs(storeRoot, STALE_KINDS)) sizes.set(rel, await diskUsage(join(storeRoot, rel)));
  return sizes;
}

/**
 * diskUsage sums the allocated blocks (st_blocks × 512) under `path`, as du does: each inode once however many
 * hard links it has, and without crossing into other file systems (a mount below it).
 */
export async function diskUsage(path: string): Promise<number> {
  const top = await lstat(path).catch(() => undefined);
  if (!top) return 0;
  const seen = new Set<string>();
  let total = 0;
  const count = (st: { dev: number; ino: number; nlink: number; blocks: number }): void => {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    total += st.blocks * 512;
  };
  count(top);
  if (!top.isDirectory()) return total;
  const stack = [path];
  while (stack.length) {
    const dir = stack.pop() as string;
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      const st = await lstat(p).catch(() => undefined);
      if (!st || st.dev !== top.dev) continue;
      count(st);
      if (st.isDirectory()) stack.push(p);
    }
  }
  return total;
}
