// Cache mounts shared through a build cache (`--cache-to …,mounts=true`, issue 13): what BuildKit cannot do
// (moby/buildkit#1474) and what lets CI runners share package caches.
//
// Export: the build's `RUN --mount=type=cache` directories (by cache id, <store>/cache-mounts/ as
// builder/steps/run-mounts.ts keys them) become layers: a deterministic tar of the directory's contents (owners,
// modes, symlinks, xattrs kept; mtimes clamped to SOURCE_DATE_EPOCH), compressed like the build's layers, stored as
// blobs, and listed in the cache manifest with the annotations of layers/cache/format.ts. An empty or missing
// directory is not exported.
//
// Import, before the first step: for each cache mount id the Dockerfile uses and a --cache-from carries (the first
// source that has it wins), when the local directory is missing or empty, the layer blob is fetched and applied into
// a fresh directory beside it with the layer apply code (its path confinement: a hostile entry cannot write outside
// the directory), given the exported directory's mode and owner, and renamed into place. A non-empty local
// directory is never touched; a failure is a warning and the build goes on without that mount's contents.
//
// Which ids: the cache mounts of the RUN instructions of the stages built, read without expanding variables; a
// mount whose id (or target, the default id) uses a variable is left out.
import { chmod, lstat, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CacheMountLayer, CacheSource } from '../layers/cache/index.js';
import { commitLayer } from '../layers/store/commit.js';
import { openLayer } from '../layers/store/layer-read.js';
import { ensurePrivateDir } from '../layers/store/private-dirs.js';
import type { Store } from '../layers/store/store.js';
import type { Compression } from '../layers/model/types.js';
import { applyLayer } from '../layers/tar/apply.js';
import { tarFromDirectory } from '../layers/tar/create.js';
import type { Host } from '../sys/host.js';
import type { BuildPlan } from './plan.js';
import { cacheMountDir, parseMount } from './steps/run-mounts.js';

/**
 * cacheMountIds lists the cache mount ids the RUN instructions of the built stages use (literal ones only);
 * `skipped` gets the --mount text of each cache mount left out because its id or target uses a variable.
 */
export function cacheMountIds(plan: BuildPlan, skipped: (mount: string) => void = () => {}): string[] {
  const ids = new Set<string>();
  const literal = (s: string): string => {
    if (s.includes('$')) throw new Error('a variable');
    return s;
  };
  for (const i of plan.needed)
    for (const { ins } of plan.stages[i]!.steps) {
      if (ins.kind !== 'run') continue;
      for (const text of ins.mounts) {
        try {
          const m = parseMount(text, literal, '/');
          if (m.type === 'cache') ids.add(m.id);
        } catch (err) {
          // a mount with a variable (said), or one the RUN step itself will refuse (it says so then)
          if ((err as Error).message === 'a variable' && /type=cache/i.test(text)) skipped(text);
        }
      }
    }
  return [...ids].sort();
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st) return true;
  if (!st.isDirectory()) return false;
  return (await readdir(dir)).length === 0;
}

/** exportCacheMounts stores each non-empty cache mount directory of `ids` as a layer blob. */
export async function exportCacheMounts(
  store: Store,
  ids: readonly string[],
  o: { compression: Compression; sourceDateEpoch?: number; created: string; warn: (message: string) => void },
): Promise<CacheMountLayer[]> {
  const out: CacheMountLayer[] = [];
  for (const id of ids) {
    const dir = cacheMountDir(store.root, id);
    if (await isEmptyOrMissing(dir)) continue;
    try {
      const st = await lstat(dir);
      const tar = tarFromDirectory(dir, o.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: o.sourceDateEpoch });
      const c = await commitLayer(store, tar, { compression: o.compression, what: `the cache mount ${id}` });
      out.push({
        id,
        layer: { descriptor: c.descriptor, diffId: c.diffId },
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        created: o.created,
      });
    } catch (err) {
      o.warn(`cache mount ${id}: not exported (${(err as Error).message})`);
    }
  }
  return out;
}

/**
 * importCacheMounts fills the missing or empty cache mount directories of `ids` from the first source that carries
 * each. Returns the ids imported.
 */
export async function importCacheMounts(
  store: Store,
  sources: readonly CacheSource[],
  ids: readonly string[],
  o: { host: Host; warn: (message: string) => void; signal?: AbortSignal },
): Promise<string[]> {
  const done: string[] = [];
  for (const id of ids) {
    let found: { source: CacheSource; mount: CacheMountLayer } | undefined;
    for (const source of sources) {
      const mount = source.mounts.find((m) => m.id === id);
      if (mount) {
        found = { source, mount };
        break;
      }
    }
    if (!found) continue;
    const dir = cacheMountDir(store.root, id);
    if (!(await isEmptyOrMissing(dir))) continue;
    const { source, mount } = found;
    await ensurePrivateDir(dirname(dir));
    const tmp = await mkdtemp(`${dir}.tmp-`);
    try {
      await source.fetch(mount.layer.descriptor, o.signal);
      await applyLayer(openLayer(store, mount.layer.descriptor), { root: tmp, host: o.host });
      await chmod(tmp, mount.mode);
      o.host.lchown(tmp, mount.uid, mount.gid);
      // a directory that filled meanwhile (another build) wins; an empty one is replaced
      if (!(await isEmptyOrMissing(dir))) continue;
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
      done.push(id);
    } catch (err) {
      o.warn(`--cache-from ${source.name}: cache mount ${id} not imported (${(err as Error).message})`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return done;
}
