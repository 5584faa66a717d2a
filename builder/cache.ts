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
import type { Layer } from '../layers/model/layer.js';

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
