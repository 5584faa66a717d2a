// The build cache shared through registries and directories (issue 13): BuildKit's cache format with tsbuild's
// keys (format.ts), `--cache-from`/`--cache-to` values (spec.ts), and the two places a cache lives (local.ts,
// registry.ts). builder/cache.ts decides what a build looks up and exports; this folder only moves data.
import type { RemoteOptions } from '../registry/connect.js';
import type { Store } from '../store/store.js';
import type { CacheEntry } from './format.js';
import { exportLocalCache, openLocalCache } from './local.js';
import { exportRegistryCache, openRegistryCache } from './registry.js';
import type { CacheSpec } from './spec.js';
import type { CacheSource, ExportResult } from './source.js';

export {
  CACHE_CONFIG_MEDIA_TYPE,
  CREATED_AT_ANNOTATION,
  UNCOMPRESSED_ANNOTATION,
  type CacheEntry,
  type CacheConfigV0,
} from './format.js';
export { parseCacheSpec, type CacheSpec, type CacheMode } from './spec.js';
export type { CacheSource, ExportResult } from './source.js';

/** openCache reads a cache (manifest and config, no layer blob). Throws when it is missing or unreadable. */
export function openCache(store: Store, spec: CacheSpec, opts: RemoteOptions = {}): Promise<CacheSource> {
  return spec.type === 'local' ? openLocalCache(store, spec.dir, spec.tag) : openRegistryCache(store, spec.ref, opts);
}

/** exportCache writes `entries` (their layer blobs must be in the store) where `spec` says. */
export function exportCache(
  store: Store,
  spec: CacheSpec,
  entries: readonly CacheEntry[],
  opts: RemoteOptions = {},
): Promise<ExportResult> {
  return spec.type === 'local'
    ? exportLocalCache(store, spec.dir, spec.tag, entries)
    : exportRegistryCache(store, spec.ref, entries, opts);
}

/** describeSpec names a cache the way the user wrote it, for messages. */
export function describeSpec(spec: CacheSpec): string {
  return spec.type === 'local' ? `type=local,${spec.dir}` : spec.ref;
}
