// The inline cache (`--cache-to type=inline`, docker's classic `--cache-from IMAGE`): the cache records ride in the
// image config under `moby.buildkit.cache.v0`, as BuildKit's inline exporter writes them.
//
// The value is a JSON array of records, base64-encoded (Go's encoding of []byte), the same records as the cache
// config of format.ts, whose `layer` indexes name the image's own layers (the manifest's `layers`, in order): there
// is no `layers` list of its own. An importer rebuilds one from the image: layer i is blob i of the manifest, its
// diffID is `rootfs.diff_ids[i]`, its creation time the history entry of that layer. Only steps whose layer is in the
// image can be recorded, which is why BuildKit keeps inline caches to mode=min; a record that made no layer is kept.
import { InvalidInputError } from '../../sys/errors.js';
import type { Layer } from '../model/layer.js';
import type { Digest, HistoryEntry, Manifest } from '../model/types.js';
import {
  type CacheConfigV0,
  type CacheDocument,
  type CacheEntry,
  decodeCache,
  UNCOMPRESSED_ANNOTATION,
} from './format.js';

export const INLINE_CACHE_KEY = 'moby.buildkit.cache.v0';

type InlineRecord = NonNullable<CacheConfigV0['records']>[number];

/**
 * encodeInlineCache gives the value of `moby.buildkit.cache.v0` for an image made of `layers`: a record per entry
 * (in order, each key once) whose layer is in the image, or undefined when no entry is.
 */
export function encodeInlineCache(entries: readonly CacheEntry[], layers: readonly Layer[]): string | undefined {
  const at = new Map<Digest, number>();
  layers.forEach((l, i) => {
    if (!at.has(l.descriptor.digest)) at.set(l.descriptor.digest, i);
  });
  const records: InlineRecord[] = [];
  const seen = new Set<Digest>();
  for (const e of entries) {
    if (seen.has(e.key)) continue;
    seen.add(e.key);
    if (!e.layer) {
      records.push({ digest: e.key });
      continue;
    }
    const i = at.get(e.layer.descriptor.digest);
    // a layer the image does not hold (--squash made it another) cannot be named by an inline record
    if (i === undefined || layers[i]!.diffId !== e.layer.diffId) continue;
    records.push({ digest: e.key, layers: [{ layer: i, createdAt: e.created }] });
  }
  if (!records.some((r) => r.layers)) return undefined;
  return Buffer.from(JSON.stringify(records)).toString('base64');
}

/** hasInlineCache says whether an image config carries an inline cache. */
export function hasInlineCache(config: unknown): boolean {
  return (
    !!config && typeof config === 'object' && typeof (config as Record<string, unknown>)[INLINE_CACHE_KEY] === 'string'
  );
}

/**
 * decodeInlineCache reads the inline cache of an image (its manifest and parsed config) into entries by key.
 * Throws InvalidInputError when the image carries none or it is malformed.
 */
export function decodeInlineCache(
  manifest: Manifest,
  config: unknown,
  where: string,
): { entries: Map<Digest, CacheEntry>; doc: CacheDocument } {
  const c = config as { rootfs?: { diff_ids?: unknown }; history?: HistoryEntry[] } & Record<string, unknown>;
  if (!c || typeof c !== 'object' || Array.isArray(c))
    throw new InvalidInputError(`${where}: the config is not a JSON object`);
  const value = c[INLINE_CACHE_KEY];
  if (typeof value !== 'string')
    throw new InvalidInputError(
      `${where}: the image carries no inline cache (${INLINE_CACHE_KEY}); build it with --cache-to type=inline`,
    );
  const diffIds = Array.isArray(c.rootfs?.diff_ids) ? (c.rootfs.diff_ids as unknown[]) : [];
  if (diffIds.length !== manifest.layers.length)
    throw new InvalidInputError(
      `${where}: the config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers`,
    );
  let records: unknown;
  try {
    records = JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
  } catch (err) {
    throw new InvalidInputError(`${where}: ${INLINE_CACHE_KEY} is not base64 JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(records)) throw new InvalidInputError(`${where}: ${INLINE_CACHE_KEY} is not a list of records`);
  // the creation time of layer i: the history entry of the i-th entry that made a layer
  const created = (Array.isArray(c.history) ? c.history : []).filter((h) => h && !h.empty_layer).map((h) => h.created);
  const doc: CacheDocument = {
    config: manifest.config,
    layers: manifest.layers.map((l, i) => ({
      ...l,
      annotations: { ...l.annotations, [UNCOMPRESSED_ANNOTATION]: String(diffIds[i]) },
    })),
  };
  const cacheConfig: CacheConfigV0 = {
    layers: manifest.layers.map((l, i) => ({
      blob: l.digest,
      parent: i - 1,
      ...(typeof created[i] === 'string' ? { annotations: { createdAt: created[i] } } : {}),
    })),
    records: records as InlineRecord[],
  };
  return { entries: decodeCache(cacheConfig, doc, where), doc };
}
