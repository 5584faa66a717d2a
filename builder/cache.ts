// The build cache's keys: one per filesystem step (RUN, COPY, ADD, WORKDIR's mkdir) chained over the previous
// filesystem state, as BuildKit's solver keys its vertices; and the record of what a key produced.
//
// Keys: cacheKey(parent, op) = sha256 over the parent key and a canonical JSON of what determines the result:
// - RUN: argv, env (declared ARGs included, undeclared proxy args left out), user, cwd, network, security, mounts
//   (bind sources by content or by the source stage's key, cache ids, secret ids, never secret values);
// - COPY/ADD: destination, --chown/--chmod/--link/--parents/--exclude, and the content checksum of the selected
//   files (builder/steps/copy-select.ts hashSelection: path, mode, owner, size, type, link target, xattrs, data;
//   not mtime);
// - WORKDIR: path and user.
// Metadata instructions (ENV, LABEL, CMD…) change the image config only; they have no key, as in BuildKit.
//
// Records are the store's `build` records (layers/store/records.ts; builder/execute.ts reads and writes them):
// `<store>/cache/<key hex>.json`, written atomically. A record names the layer a step produced (blob descriptor +
// diffID, or none for a step that changed nothing) and when it was made; a lookup whose blob is gone from the store
// is a miss, and `tsbuild prune` removes such records (pruneRecords).
import { createHash } from 'node:crypto';
import { oneLine } from '../layers/store/store.js';
import type { Compression } from '../layers/model/types.js';
import type { Host } from '../sys/host.js';
import { cacheMountIds, exportCacheMounts, importCacheMounts } from './cache-mounts.js';
import type {
  CacheEntry,
  CacheMode,
  CacheMountLayer,
  CacheSource,
  CacheSpec,
  ExportResult,
} from '../layers/cache/index.js';
import type { RemoteOptions } from '../layers/registry/connect.js';
import type { Layer } from '../layers/model/layer.js';
import { openLayer } from '../layers/store/layer-read.js';
import { compressLayer } from '../layers/store/compress-layers.js';
import { InvalidInputError, TsbuildError } from '../sys/errors.js';
import type { Digest } from '../layers/model/types.js';
import type { Records } from '../layers/store/records.js';
import type { Store } from '../layers/store/store.js';
import type { RootfsSession } from '../unionfs/rootfs.js';
import type { BuildEvent } from './events.js';
import type { BuildPlan, StagePlan } from './plan.js';

/** CacheRecord is what a step produced. */
export interface CacheRecord {
  version: 1;
  /** the layer, or null when the step changed nothing (an empty-layer history entry) */
  layer: Layer | null;
  /** RFC 3339: when the layer was made (the history entry's `created`) */
  created: string;
  /** what made it, for people reading the cache directory */
  createdBy?: string;
}

/** canonical serializes a value as JSON with object keys sorted, so equal values give equal keys. */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
}

/** CACHE_VERSION changes every key when the way tsbuild builds a layer changes. */
const CACHE_VERSION = 'tsbuild-cache-v1';

/** cacheKey chains an operation onto a parent key: `sha256:<hex>`. */
export function cacheKey(parent: string, op: unknown): string {
  return `sha256:${createHash('sha256').update(CACHE_VERSION).update('\0').update(parent).update('\0').update(canonical(op)).digest('hex')}`;
}

/** isCacheRecord accepts the records this version writes (read them with `new Records<CacheRecord>(store, 'build')`). */
export function isCacheRecord(rec: CacheRecord): boolean {
  return rec.version === 1 && typeof rec.created === 'string';
}

// ─── Shared caches (--cache-from / --cache-to, layers/cache/) ───────────────────────────────────────────────────
//
// The executor looks a key up through a StepCache: the store's records first, then each --cache-from in order (the
// first that has the key wins). A hit from a shared cache needs only its config: the layer blob is fetched when a
// step opens a root or a view over it (SharedCache.rootfs) or when the image is written (SharedCache.ensure), and
// the local record is written once the blob is in the store. Every step's record (hit or miss) is noted with its
// stage, so that --cache-to exports the final image's steps (mode=min) or every stage's (mode=max).

/** StepCache is what the executor looks keys up in and records into (a Records<CacheRecord> is one). */
export interface StepCache {
  get(key: string, valid?: (rec: CacheRecord) => boolean): Promise<CacheRecord | undefined>;
  put(key: string, rec: CacheRecord): Promise<void>;
  /** notes the record a step of stage `stage` used or made */
  used?(stage: number, key: string, rec: CacheRecord): void;
}

/** CacheFetchError: a shared cache could not deliver a layer blob it promised (a registry gone mid-import). */
export class CacheFetchError extends TsbuildError {
  constructor(
    readonly source: CacheSource,
    what: string,
    cause: unknown,
  ) {
    super('E_CACHE_FETCH', `${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** SharedCacheOptions: the local records, the opened --cache-from sources, and progress. */
export interface SharedCacheOptions {
  store: Store;
  local: Records<CacheRecord>;
  sources: readonly CacheSource[];
  /** starts a progress step and returns its id (the executor's sequence) */
  step?: (name: string) => number;
  onEvent?: (e: BuildEvent) => void;
  warn?: (message: string) => void;
  signal?: AbortSignal;
}

/** SharedCache is the build's StepCache when --cache-from or --cache-to is given. */
export class SharedCache implements StepCache {
  /** blobs a shared cache promised and the store lacks: where to fetch each, and the keys that name it */
  private readonly pending = new Map<Digest, { source: CacheSource; keys: Array<[string, CacheRecord]> }>();
  private readonly fetching = new Map<Digest, Promise<void>>();
  /** every fetch not yet settled (a fallback waits for them, so that no download outlives the attempt) */
  private readonly inflight = new Set<Promise<void>>();
  /** per stage, the keys and records its steps used, in order */
  readonly usedBy = new Map<number, Array<{ key: Digest; rec: CacheRecord }>>();
  /** how many layer blobs were fetched from shared caches, and their bytes */
  fetched = { blobs: 0, bytes: 0 };

  private sources: readonly CacheSource[];

  constructor(private readonly o: SharedCacheOptions) {
    this.sources = o.sources;
  }

  async get(key: string, valid: (rec: CacheRecord) => boolean = isCacheRecord): Promise<CacheRecord | undefined> {
    const local = await this.o.local.get(key, valid);
    if (local) return local;
    for (const source of this.sources) {
      const e = source.entries.get(key as Digest);
      if (!e) continue;
      const rec: CacheRecord = { version: 1, layer: e.layer, created: e.created };
      if (!e.layer) await this.o.local.put(key, rec);
      else if (await this.o.store.hasBlob(e.layer.descriptor.digest, e.layer.descriptor.size))
        await this.o.local.put(key, rec);
      else {
        const p = this.pending.get(e.layer.descriptor.digest) ?? { source, keys: [] };
        p.keys.push([key, rec]);
        this.pending.set(e.layer.descriptor.digest, p);
      }
      return rec;
    }
    return undefined;
  }

  put(key: string, rec: CacheRecord): Promise<void> {
    return this.o.local.put(key, rec);
  }

  used(stage: number, key: string, rec: CacheRecord): void {
    const list = this.usedBy.get(stage) ?? [];
    list.push({ key: key as Digest, rec });
    this.usedBy.set(stage, list);
  }

  /** ensure fetches the blobs of `layers` that a shared cache promised and the store lacks. */
  async ensure(layers: readonly Layer[]): Promise<void> {
    // every fetch settles before a failure is reported: none is left writing into the store behind the caller
    const results = await Promise.allSettled(layers.map((l) => this.fetchOne(l.descriptor.digest)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private fetchOne(digest: Digest): Promise<void> {
    const p = this.pending.get(digest);
    if (!p) return Promise.resolve();
    let f = this.fetching.get(digest);
    if (!f) {
      f = (async () => {
        const layer = p.keys[0]![1].layer!;
        const id = this.o.step?.(`[internal] importing cache layer ${digest} from ${p.source.name}`);
        try {
          try {
            await p.source.fetch(layer.descriptor, this.o.signal);
          } catch (err) {
            // the cache went away (or served a broken blob): the build can still make the layer itself
            if (this.o.signal?.aborted) throw err;
            throw new CacheFetchError(p.source, `cache ${p.source.name}: fetching layer ${digest}`, err);
          }
          // The blob is checked against its digest as it arrives; the diffID is the cache's word: check it too, so
          // that a wrong cache cannot make the store hold an image whose config lies about its layers.
          const actual = await uncompressedDigest(this.o.store, layer);
          if (actual !== layer.diffId)
            throw new InvalidInputError(
              `cache ${p.source.name}: layer ${digest} uncompresses to ${actual}, not to the diffID ${layer.diffId} the cache names`,
            );
        } catch (err) {
          if (id !== undefined) this.o.onEvent?.({ type: 'error', id, message: (err as Error).message });
          throw err;
        }
        this.fetched.blobs++;
        this.fetched.bytes += layer.descriptor.size;
        for (const [key, rec] of p.keys) await this.o.local.put(key, rec);
        this.pending.delete(digest);
        if (id !== undefined) this.o.onEvent?.({ type: 'done', id });
      })();
      this.fetching.set(digest, f);
      f.catch(() => this.fetching.delete(digest));
      const settled = f.then(
        () => undefined,
        () => undefined,
      );
      this.inflight.add(settled);
      void settled.then(() => this.inflight.delete(settled));
    }
    return f;
  }

  /**
   * fallBack recovers from a cache that failed mid-import (`err` is, or was caused by, a CacheFetchError): the source
   * is dropped with what it only promised, so that the build can run again and make those layers itself (the keys
   * whose blobs did arrive are local records now and still hit). Returns the failure, or undefined when `err` is
   * another failure (the build fails with it).
   */
  async fallBack(err: unknown): Promise<CacheFetchError | undefined> {
    let e: unknown = err;
    for (let depth = 0; e && depth < 8 && !(e instanceof CacheFetchError); depth++) e = (e as Error).cause;
    if (!(e instanceof CacheFetchError)) return undefined;
    await Promise.allSettled([...this.inflight]);
    const failed = e.source;
    this.sources = this.sources.filter((x) => x !== failed);
    for (const [digest, p] of this.pending) if (p.source === failed) this.pending.delete(digest);
    this.fetching.clear();
    this.usedBy.clear();
    return e;
  }

  /**
   * withFallback runs the build's stages (`attempt`), and once more without a cache that failed mid-import
   * (fallBack), with one warning line. `signal` is the build's: a cancelled build is not retried.
   */
  async withFallback<T>(attempt: () => Promise<T>, signal: AbortSignal): Promise<T> {
    try {
      return await attempt();
    } catch (err) {
      const failed = signal.aborted ? undefined : await this.fallBack(err);
      if (!failed) throw err;
      this.o.warn?.(`--cache-from ${oneLine(failed.message)}; building without it`);
      return attempt();
    }
  }

  /** mountIds: the cache mount ids of the build (set by importMounts) */
  mountIds: string[] = [];
  /** the cache mounts left out because their id or target uses a variable (set by importMounts) */
  mountsSkipped: string[] = [];

  /** importMounts fills the build's missing or empty cache mounts from the sources that carry them. */
  async importMounts(plan: BuildPlan, host: Host): Promise<void> {
    this.mountsSkipped = [];
    this.mountIds = cacheMountIds(plan, (m) => this.mountsSkipped.push(m));
    if (!this.mountIds.length || !this.sources.some((x) => x.mounts.length)) return;
    await importCacheMounts(this.o.store, this.sources, this.mountIds, {
      host,
      warn: (m) => this.o.warn?.(m),
      ...(this.o.signal ? { signal: this.o.signal } : {}),
    });
  }

  /** rootfs wraps a session so that a step root or a view first fetches the blobs it stands on. */
  rootfs(session: RootfsSession): RootfsSession {
    const openStep = session.openStep.bind(session);
    const view = session.view.bind(session);
    session.openStep = async (layers, stubs, pending) => {
      await this.ensure(layers); // pending layers are this build's own, written here
      return openStep(layers, stubs, pending);
    };
    session.view = async (layers) => {
      await this.ensure(layers);
      return view(layers);
    };
    return session;
  }

  /**
   * entries lists what to export: the steps of `stages` (each key once, in build order). Their layer blobs are
   * fetched first when a shared cache only promised them.
   */
  async entries(stages: readonly number[]): Promise<CacheEntry[]> {
    const out = new Map<Digest, CacheEntry>();
    for (const s of stages)
      for (const { key, rec } of this.usedBy.get(s) ?? [])
        if (!out.has(key)) out.set(key, { key, layer: rec.layer, created: rec.created });
    await this.ensure([...out.values()].flatMap((e) => (e.layer ? [e.layer] : [])));
    return [...out.values()];
  }
}

/** exportStages lists the stages a cache export covers: the target and the stages it is built FROM (min), or all built (max). */
export function exportStages(plan: BuildPlan, mode: CacheMode): number[] {
  if (mode === 'max') return [...plan.needed];
  const out: number[] = [];
  for (let i: number | undefined = plan.target; i !== undefined;) {
    out.push(i);
    const base: StagePlan['base'] = plan.stages[i]!.base;
    i = base.kind === 'stage' ? base.index : undefined;
  }
  return out.reverse();
}

/** openSources opens each --cache-from in order; one that is missing or unreadable is a warning, not a failure. */
export async function openSources(
  store: Store,
  specs: readonly CacheSpec[],
  o: { warn: (message: string) => void; step: (name: string) => number; onEvent: (e: BuildEvent) => void } & {
    remote?: RemoteOptions;
  },
): Promise<CacheSource[]> {
  const { describeSpec, openCache } = await import('../layers/cache/index.js');
  const out: CacheSource[] = [];
  for (const spec of specs) {
    const id = o.step(`[internal] importing cache manifest from ${describeSpec(spec)}`);
    try {
      const source = await openCache(store, spec, o.remote);
      out.push(source);
      o.onEvent({ type: 'status', id, message: `${source.entries.size} records` });
      o.onEvent({ type: 'done', id });
    } catch (err) {
      o.onEvent({ type: 'done', id });
      o.warn(`--cache-from ${describeSpec(spec)}: ${(err as Error).message}; building without it`);
    }
  }
  return out;
}

/**
 * exportCaches writes the build's records to each --cache-to. A failure fails the build, unless the spec says
 * ignore-error=true (then it is a warning).
 */
export async function exportCaches(
  store: Store,
  cache: SharedCache,
  plan: BuildPlan,
  specs: readonly CacheSpec[],
  o: { warn: (message: string) => void; step: (name: string) => number; onEvent: (e: BuildEvent) => void } & {
    remote?: RemoteOptions;
    /** how cache mount layers are made (mounts=true): the build's compression and time */
    compression: Compression;
    created: string;
  },
): Promise<ExportResult[]> {
  const { describeSpec, exportCache } = await import('../layers/cache/index.js');
  const out: ExportResult[] = [];
  let mounts: Promise<CacheMountLayer[]> | undefined;
  for (const spec of specs) {
    if (spec.type === 'inline') continue; // written with the image config (inlineCache)
    const id = o.step(`exporting cache to ${describeSpec(spec)} (mode=${spec.mode})`);
    try {
      if (spec.mounts && cache.mountsSkipped.length && !mounts)
        o.warn(
          `--cache-to mounts=true: cache mounts whose id or target uses a variable are not exported: ${cache.mountsSkipped.join('; ')}`,
        );
      const withMounts = spec.mounts
        ? await (mounts ??= exportCacheMounts(store, cache.mountIds, {
            compression: o.compression,
            ...(plan.epoch === undefined ? {} : { sourceDateEpoch: plan.epoch }),
            created: o.created,
            warn: o.warn,
          }))
        : [];
      // a build keeps its layers uncompressed; a cache carries them compressed (as BuildKit's does), the copies
      // `push` would make, so an image built from the cache pushes with mounts from the cache repository
      const entries: CacheEntry[] = [];
      for (const e of await cache.entries(exportStages(plan, spec.mode)))
        entries.push(
          e.layer
            ? { ...e, layer: { ...e.layer, descriptor: await compressLayer(store, e.layer.descriptor, 'gzip') } }
            : e,
        );
      const r = await exportCache(store, spec, entries, o.remote, withMounts);
      out.push(r);
      const m = r.mounts ? ` (${r.mounts} cache mounts)` : '';
      o.onEvent({ type: 'status', id, message: `${r.records} records, ${r.layers} layers${m}: ${r.digest} done` });
      o.onEvent({ type: 'done', id });
    } catch (err) {
      o.onEvent({ type: 'error', id, message: (err as Error).message });
      if (!spec.ignoreError) throw err;
      o.warn(`--cache-to ${describeSpec(spec)}: ${(err as Error).message} (ignore-error=true)`);
    }
  }
  return out;
}

/**
 * inlineCache is the `moby.buildkit.cache.v0` value to put in the image config when --cache-to type=inline is
 * given: the records of the final image's steps (mode=min) whose layers are the image's `layers`. Undefined when
 * type=inline is not asked for; a warning when no step's layer is in the image (e.g. every layer squashed).
 */
export async function inlineCache(
  cache: SharedCache,
  plan: BuildPlan,
  layers: readonly Layer[],
  specs: readonly CacheSpec[],
  warn: (message: string) => void,
): Promise<{ key: string; value: string } | undefined> {
  if (!specs.some((s) => s.type === 'inline')) return undefined;
  const { encodeInlineCache, INLINE_CACHE_KEY } = await import('../layers/cache/index.js');
  const value = encodeInlineCache(await cache.entries(exportStages(plan, 'min')), layers);
  if (value === undefined) {
    warn('--cache-to type=inline: no step of the image made one of its layers; the image carries no cache');
    return undefined;
  }
  return { key: INLINE_CACHE_KEY, value };
}

/** uncompressedDigest is the sha256 of a stored layer blob's uncompressed tar (its DiffID). */
async function uncompressedDigest(store: Store, layer: Layer): Promise<Digest> {
  const hash = createHash('sha256');
  for await (const chunk of openLayer(store, layer.descriptor)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}` as Digest;
}
