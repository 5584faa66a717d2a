// The build cache shared through registries and directories (issue 13): BuildKit's cache format with tsbuild's
// keys (format.ts), `--cache-from`/`--cache-to` values (spec.ts), and the places a cache lives (local.ts,
// registry.ts, and inline.ts: in the image config). builder/cache.ts decides what a build looks up and exports; this folder only moves data.
import { InvalidInputError } from '../../sys/errors.js';
import type { RemoteOptions } from '../registry/connect.js';
import type { Store } from '../store/store.js';
import type { CacheEntry, CacheMountLayer } from './format.js';
import { exportLocalCache, openLocalCache } from './local.js';
import { exportRegistryCache, openRegistryCache } from './registry.js';
import type { CacheSpec } from './spec.js';
import type { CacheSource, ExportResult } from './source.js';

export {
  CACHE_CONFIG_MEDIA_TYPE,
  CREATED_AT_ANNOTATION,
  UNCOMPRESSED_ANNOTATION,
  MOUNT_ID_ANNOTATION,
  MOUNT_ROOT_ANNOTATION,
  type CacheEntry,
  type CacheConfigV0,
  type CacheMountLayer,
} from './format.js';
export { encodeInlineCache, hasInlineCache, INLINE_CACHE_KEY } from './inline.js';
export { parseCacheSpec, type CacheSpec, type CacheMode } from './spec.js';
export type { CacheSource, ExportResult } from './source.js';

/** openCache reads a cache (manifest and config, no layer blob). Throws when it is missing or unreadable. */
export async function openCache(store: Store, spec: CacheSpec, opts: RemoteOptions = {}): Promise<CacheSource> {
  if (spec.type === 'inline') throw new InvalidInputError('an inline cache is read from an image reference');
  return spec.type === 'local' ? openLocalCache(store, spec.dir, spec.tag) : openRegistryCache(store, spec.ref, opts);
}

/**
 * exportCache writes `entries` (their layer blobs must be in the store) where `spec` says. An inline cache is not
 * exported here: it is part of the image config (encodeInlineCache), written before the image.
 */
export async function exportCache(
  store: Store,
  spec: CacheSpec,
  entries: readonly CacheEntry[],
  opts: RemoteOptions = {},
  mounts: readonly CacheMountLayer[] = [],
): Promise<ExportResult> {
  if (spec.type === 'inline') throw new InvalidInputError('an inline cache is written with the image config');
  return spec.type === 'local'
    ? exportLocalCache(store, spec.dir, spec.tag, entries, mounts)
    : exportRegistryCache(store, spec.ref, entries, opts, mounts);
}

/** describeSpec names a cache the way the user wrote it, for messages. */
export function describeSpec(spec: CacheSpec): string {
  return spec.type === 'local' ? `type=local,${spec.dir}` : spec.type === 'inline' ? 'type=inline' : spec.ref;
}
