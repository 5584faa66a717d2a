// BuildKit's cache format (cache/remotecache/v1 in moby/buildkit), written and read with tsbuild's own keys.
//
// The cache is an OCI image manifest whose config has media type `application/vnd.buildkit.cacheconfig.v0`; the
// config is JSON `{layers: [{blob, parent, annotations}], records: [{digest, layers: [{layer, createdAt}]}]}` and
// the manifest's layers are the cache blobs, each annotated with `containerd.io/uncompressed` (its diffID) and
// `buildkit/createdat`. The older form, an index whose `manifests` list the blobs and the config, is read too.
//
// A record's `digest` is a tsbuild cache key (builder/cache.ts) and names the one layer the step made (a record
// with no `layers` made none). Every layer stands alone (`parent: -1`): the key already chains over the steps
// before, so a hit never needs the chain. BuildKit's keys are different, so hits are shared between tsbuild
// runners only; buildx reads the manifest without choking and finds no matching record.
import { InvalidInputError } from '../../sys/errors.js';
import type { Layer } from '../model/layer.js';
import { type Descriptor, type Digest, isIndexMediaType, type Manifest, MediaType } from '../model/types.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
export const UNCOMPRESSED_ANNOTATION = 'containerd.io/uncompressed';
export const CREATED_AT_ANNOTATION = 'buildkit/createdat';

/**
 * Cache mounts (`--cache-to …,mounts=true`): the contents of a `RUN --mount=type=cache` directory travel as an extra
 * layer of the cache manifest that no record names, recognised by MOUNT_ID_ANNOTATION (the mount's cache id) and
 * carrying the directory's own mode and owner in MOUNT_ROOT_ANNOTATION (`<octal mode>:<uid>:<gid>`).
 */
export const MOUNT_ID_ANNOTATION = 'dev.tsbuild.cache-mount.id';
export const MOUNT_ROOT_ANNOTATION = 'dev.tsbuild.cache-mount.root';

/** CacheMountLayer is one cache mount's contents as a layer. */
export interface CacheMountLayer {
  id: string;
  layer: Layer;
  /** the mount directory's own permission bits and owner */
  mode: number;
  uid: number;
  gid: number;
  created: string;
}

/** mountDescriptor is the manifest's descriptor of a cache mount layer. */
export function mountDescriptor(m: CacheMountLayer): Descriptor {
  const d = m.layer.descriptor;
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    annotations: {
      [UNCOMPRESSED_ANNOTATION]: m.layer.diffId,
      [CREATED_AT_ANNOTATION]: m.created,
      [MOUNT_ID_ANNOTATION]: m.id,
      [MOUNT_ROOT_ANNOTATION]: `${m.mode.toString(8).padStart(4, '0')}:${m.uid}:${m.gid}`,
    },
  };
}

/** mountLayers reads the cache mount layers a cache document lists (malformed ones are left out). */
export function mountLayers(doc: CacheDocument): CacheMountLayer[] {
  const out: CacheMountLayer[] = [];
  for (const d of doc.layers) {
    const id = d.annotations?.[MOUNT_ID_ANNOTATION];
    const diffId = d.annotations?.[UNCOMPRESSED_ANNOTATION];
    const root = /^([0-7]{1,4}):(\d{1,10}):(\d{1,10})$/.exec(d.annotations?.[MOUNT_ROOT_ANNOTATION] ?? '');
    if (!id || id.length > 4096 || !diffId || !DIGEST.test(diffId) || !root || !d.mediaType) continue;
    out.push({
      id,
      layer: { descriptor: { mediaType: d.mediaType, digest: d.digest, size: d.size }, diffId: diffId as Digest },
      mode: Number.parseInt(root[1]!, 8),
      uid: Number(root[2]),
      gid: Number(root[3]),
      created: d.annotations?.[CREATED_AT_ANNOTATION] ?? EPOCH_ZERO,
    });
  }
  return out;
}

/** CacheEntry is what one step made, as a cache carries it. */
export interface CacheEntry {
  /** the tsbuild cache key of the step */
  key: Digest;
  /** the layer it made, or null when it changed nothing */
  layer: Layer | null;
  /** RFC 3339: when the layer was made */
  created: string;
}

/** CacheConfigV0 is the config blob's JSON (BuildKit's CacheConfig, v0). */
export interface CacheConfigV0 {
  layers?: Array<{
    blob: Digest;
    parent?: number;
    annotations?: { mediaType?: string; diffID?: Digest; size?: number; createdAt?: string };
  }>;
  records?: Array<{ digest: Digest; layers?: Array<{ layer: number; createdAt?: string }> }>;
}

/** EPOCH_ZERO is the `created` of an entry that made no layer (nothing reads it). */
const EPOCH_ZERO = '1970-01-01T00:00:00Z';
const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** limits of what an import reads (a hostile cache must not make tsbuild allocate without bound) */
const MAX_LAYERS = 10_000;
const MAX_RECORDS = 100_000;

/**
 * encodeCache turns entries into the config JSON and the manifest's layer descriptors: one per distinct blob, in
 * the order the entries (build order, each key once) first name them, so the same build gives the same bytes.
 */
export function encodeCache(entries: readonly CacheEntry[]): { config: CacheConfigV0; layers: Descriptor[] } {
  const index = new Map<Digest, number>();
  const config: Required<CacheConfigV0> = { layers: [], records: [] };
  const layers: Descriptor[] = [];
  const seen = new Set<Digest>();
  for (const e of entries) {
    if (seen.has(e.key)) continue;
    seen.add(e.key);
    if (!e.layer) {
      config.records.push({ digest: e.key });
      continue;
    }
    const d = e.layer.descriptor;
    let i = index.get(d.digest);
    if (i === undefined) {
      i = config.layers.length;
      index.set(d.digest, i);
      config.layers.push({
        blob: d.digest,
        parent: -1,
        annotations: { mediaType: d.mediaType, diffID: e.layer.diffId, size: d.size, createdAt: e.created },
      });
      layers.push({
        mediaType: d.mediaType,
        digest: d.digest,
        size: d.size,
        annotations: { [UNCOMPRESSED_ANNOTATION]: e.layer.diffId, [CREATED_AT_ANNOTATION]: e.created },
      });
    }
    config.records.push({ digest: e.key, layers: [{ layer: i, createdAt: e.created }] });
  }
  return { config, layers };
}

/** cacheManifest is the OCI image manifest of a cache: the config descriptor and the annotated layers. */
export function cacheManifest(config: Descriptor, layers: Descriptor[]): Manifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: config.digest, size: config.size },
    layers,
  };
}

/** CacheDocument is what a cache manifest (or the older index) points at: the config and the blobs. */
export interface CacheDocument {
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * parseCacheDocument reads a cache manifest or the older index form. `where` names it in errors. Throws
 * InvalidInputError when the document is not a cache (e.g. an image: its config is not a cache config).
 */
export function parseCacheDocument(bytes: Buffer, mediaType: string | undefined, where: string): CacheDocument {
  let doc: { mediaType?: unknown; config?: Descriptor; layers?: unknown; manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch (err) {
    throw new InvalidInputError(`${where}: not valid JSON (${(err as Error).message})`);
  }
  if (!doc || typeof doc !== 'object') throw new InvalidInputError(`${where}: not a JSON object`);
  const type = typeof doc.mediaType === 'string' ? doc.mediaType : mediaType;
  const list = (v: unknown, what: string): Descriptor[] => {
    if (!Array.isArray(v)) throw new InvalidInputError(`${where}: ${what} is not a list`);
    if (v.length > MAX_LAYERS) throw new InvalidInputError(`${where}: more than ${MAX_LAYERS} ${what}`);
    return v.map((d: unknown) => checkDescriptor(d, where));
  };
  if (isIndexMediaType(type) || ('manifests' in doc && !('config' in doc))) {
    const all = list(doc.manifests, 'manifests');
    const config = all.find((d) => d.mediaType === CACHE_CONFIG_MEDIA_TYPE);
    if (!config) throw new InvalidInputError(`${where}: the index lists no ${CACHE_CONFIG_MEDIA_TYPE} config`);
    return { config, layers: all.filter((d) => d !== config) };
  }
  const config = checkDescriptor(doc.config, where);
  if (config.mediaType !== CACHE_CONFIG_MEDIA_TYPE)
    throw new InvalidInputError(
      `${where}: not a build cache (its config is ${JSON.stringify(String(config.mediaType).slice(0, 80))})`,
    );
  return { config, layers: list(doc.layers, 'layers') };
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  const x = d as Partial<Descriptor> | null;
  if (!x || typeof x !== 'object' || typeof x.digest !== 'string' || !DIGEST.test(x.digest))
    throw new InvalidInputError(`${where}: a descriptor has an invalid or unsupported digest`);
  if (typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0)
    throw new InvalidInputError(`${where}: descriptor ${x.digest} has an invalid size`);
  return { ...(x as Descriptor), mediaType: String(x.mediaType ?? '') };
}

/**
 * decodeCache reads a config (parsed JSON) with the document's layer descriptors into entries by key. A record
 * whose layer lacks a diffID or a blob descriptor is skipped (a miss), never trusted half-way.
 */
export function decodeCache(config: unknown, doc: CacheDocument, where: string): Map<Digest, CacheEntry> {
  const c = config as CacheConfigV0 | null;
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new InvalidInputError(`${where}: not a JSON object`);
  const layers = Array.isArray(c.layers) ? c.layers : [];
  const records = Array.isArray(c.records) ? c.records : [];
  if (layers.length > MAX_LAYERS || records.length > MAX_RECORDS)
    throw new InvalidInputError(`${where}: too many layers or records`);
  const blobs = new Map(doc.layers.map((d) => [d.digest, d]));
  const out = new Map<Digest, CacheEntry>();
  const layerAt = (i: number): Layer | undefined => {
    const l = layers[i];
    if (!l || typeof l.blob !== 'string') return undefined;
    const desc = blobs.get(l.blob);
    const diffId = l.annotations?.diffID ?? desc?.annotations?.[UNCOMPRESSED_ANNOTATION];
    if (!desc || typeof diffId !== 'string' || !DIGEST.test(diffId)) return undefined;
    const mediaType = desc.mediaType || l.annotations?.mediaType;
    if (!mediaType) return undefined;
    return { descriptor: { mediaType, digest: desc.digest, size: desc.size }, diffId: diffId as Digest };
  };
  for (const r of records) {
    if (!r || typeof r.digest !== 'string' || !DIGEST.test(r.digest)) continue;
    const results = Array.isArray(r.layers) ? r.layers : [];
    if (!results.length) {
      out.set(r.digest, { key: r.digest, layer: null, created: EPOCH_ZERO });
      continue;
    }
    const first = results[0]!;
    const layer = typeof first.layer === 'number' ? layerAt(first.layer) : undefined;
    if (!layer) continue;
    const created =
      typeof first.createdAt === 'string' ? first.createdAt : (layers[first.layer]?.annotations?.createdAt ?? '');
    if (!created) continue;
    out.set(r.digest, { key: r.digest, layer, created });
  }
  return out;
}
