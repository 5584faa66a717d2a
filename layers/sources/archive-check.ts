// Checking what an archive claims against what it holds. Nothing an archive says about a blob (its size, its media
// type, a platform, a name) reaches index.json unless it was checked: `describeManifest` computes a manifest's or
// index's descriptor from the stored (verified) bytes, compares the archive's claim with it, and walks every
// descriptor the document holds (config, layers, children) against the stored blobs. JSON of the wrong shape is an
// InvalidInputError naming the archive entry, never a TypeError.
import { InvalidInputError } from '../../sys/errors.js';
import { parseDigest } from '../model/digest.js';
import {
  compressionOfMediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  isIndexMediaType,
  isManifestMediaType,
  MediaType,
  type Platform,
} from '../model/types.js';
import { oneLine, type Store } from '../store/store.js';

export type Json = Record<string, unknown>;

/** PlannedImage is an image of an archive, checked and stored, with the names to give it once every image is. */
export interface PlannedImage {
  names: string[];
  descriptor: Descriptor;
}

/** isObject tells whether a parsed JSON value is an object (not null, not a list). */
export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** bad is the one error of this module: `<where>: <what>`. */
export function bad(where: string, what: string): InvalidInputError {
  return new InvalidInputError(`${where}: ${what}`);
}

/** stringList checks an optional list of strings (null and undefined give []). */
export function stringList(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bad(where, 'must be a list of strings');
  return v as string[];
}

/** annotationsOf checks an optional annotations member: an object of strings. */
export function annotationsOf(v: unknown, where: string): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v) || Object.values(v).some((s) => typeof s !== 'string'))
    throw bad(where, 'annotations must be an object of strings');
  return v as Record<string, string>;
}

/** platformOf checks an optional platform member and returns a clean copy of the fields the spec defines. */
export function platformOf(v: unknown, where: string): Platform | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || typeof v.os !== 'string' || typeof v.architecture !== 'string')
    throw bad(where, 'platform must be an object with string os and architecture');
  const p: Platform = { architecture: v.architecture, os: v.os };
  for (const k of ['variant', 'os.version'] as const) {
    if (v[k] === undefined) continue;
    if (typeof v[k] !== 'string') throw bad(where, `platform ${k} must be a string`);
    p[k] = v[k];
  }
  if (v['os.features'] !== undefined) p['os.features'] = stringList(v['os.features'], `${where} platform os.features`);
  return p;
}

/** A JSON document of the store, with the descriptor tsbuild computed for it. */
export interface Described {
  descriptor: Descriptor;
  doc: Json;
}

/** readDoc reads a stored JSON blob (verified against its digest) as an object. */
async function readDoc(store: Store, digest: Digest, where: string): Promise<{ doc: Json; size: number }> {
  if (!(await store.hasBlob(digest))) throw bad(where, `blob ${digest} is in neither the archive nor the store`);
  const buf = await store.readBlob(digest);
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw bad(where, `blob ${digest} is not valid JSON: ${oneLine((err as Error).message)}`);
  }
  if (!isObject(doc)) throw bad(where, `blob ${digest} is not a JSON object`);
  return { doc, size: buf.length };
}

/** mediaTypeOf reads a manifest's or an index's media type from the document itself (inferred when absent). */
function mediaTypeOf(doc: Json, where: string): string {
  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== 'string') throw bad(where, 'mediaType must be a string');
  const mt = declared ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (doc.schemaVersion !== 2) throw bad(where, 'schemaVersion must be 2');
  if (isIndexMediaType(mt)) {
    if (!Array.isArray(doc.manifests)) throw bad(where, `an index (${mt}) without a manifests list`);
  } else if (isManifestMediaType(mt)) {
    if (!isObject(doc.config) || !Array.isArray(doc.layers))
      throw bad(where, `a manifest (${mt}) needs a config object and a layers list`);
  } else {
    throw bad(where, `unsupported media type ${JSON.stringify(mt)} (not an image manifest or index)`);
  }
  return mt;
}

/**
 * checkClaim compares a descriptor the archive wrote with the blob it points at: the digest is the blob's name, the
 * size must be a non-negative integer equal to the blob's size, and the media type, when `expected` is given, equal.
 */
async function checkClaim(
  store: Store,
  raw: unknown,
  where: string,
  expected?: (mt: string) => string | undefined,
): Promise<Descriptor> {
  if (!isObject(raw)) throw bad(where, 'a descriptor must be an object');
  if (typeof raw.digest !== 'string') throw bad(where, 'digest must be a string');
  const digest = parseDigest(raw.digest, `${where} digest`);
  if (typeof raw.mediaType !== 'string') throw bad(where, 'mediaType must be a string');
  if (typeof raw.size !== 'number' || !Number.isSafeInteger(raw.size) || raw.size < 0)
    throw bad(where, `size ${JSON.stringify(raw.size)} is not a byte count`);
  if (!(await store.hasBlob(digest))) throw bad(where, `blob ${digest} is in neither the archive nor the store`);
  const actual = await store.blobSize(digest);
  if (raw.size !== actual) throw bad(where, `size ${raw.size} but blob ${digest} is ${actual} bytes`);
  const problem = expected?.(raw.mediaType);
  if (problem) throw bad(where, problem);
  return { mediaType: raw.mediaType, digest, size: actual };
}

/**
 * describeManifest checks the descriptor `raw` (from index.json, or a child of an index) against its blob and
 * everything below it, and returns the descriptor computed from the bytes: digest, real size, the document's own
 * media type. Claims that disagree fail with an error naming `where`.
 */
export async function describeManifest(store: Store, raw: unknown, where: string, depth = 0): Promise<Described> {
  if (depth > 4) throw bad(where, 'indexes nest too deeply');
  if (!isObject(raw)) throw bad(where, 'a descriptor must be an object');
  if (typeof raw.digest !== 'string') throw bad(where, 'digest must be a string');
  const digest = parseDigest(raw.digest, `${where} digest`);
  const { doc, size } = await readDoc(store, digest, where);
  const mediaType = mediaTypeOf(doc, `${where} (blob ${digest})`);
  if (raw.mediaType !== mediaType)
    throw bad(where, `mediaType ${JSON.stringify(raw.mediaType)} but blob ${digest} is ${mediaType}`);
  if (raw.size !== size) throw bad(where, `size ${JSON.stringify(raw.size)} but blob ${digest} is ${size} bytes`);
  const descriptor: Descriptor = { mediaType, digest, size };
  const platform = platformOf(raw.platform, where);
  if (platform) descriptor.platform = platform;
  const inside = `${where} (blob ${digest})`;
  if (isIndexMediaType(mediaType)) {
    const children = doc.manifests as unknown[];
    if (children.length === 0) throw bad(inside, 'an index with no manifests');
    for (const [i, child] of children.entries())
      await describeManifest(store, child, `${inside} manifests[${i}]`, depth + 1);
  } else {
    const config = await checkManifest(store, doc, mediaType, inside);
    if (platform && (platform.os !== config.os || platform.architecture !== config.architecture))
      throw bad(
        where,
        `platform ${platform.os}/${platform.architecture} but the config is ${config.os}/${config.architecture}`,
      );
  }
  return { descriptor, doc };
}

/** checkManifest checks a manifest's config and layer descriptors against their blobs; returns the config. */
async function checkManifest(store: Store, doc: Json, mediaType: string, where: string): Promise<ImageConfig> {
  const docker = mediaType === MediaType.DockerManifest;
  const family = (mt: string): string | undefined =>
    docker === mt.startsWith('application/vnd.docker.')
      ? undefined
      : `media type ${mt} mixes Docker and OCI types in a ${mediaType}`;
  const configDesc = await checkClaim(store, doc.config, `${where} config`, (mt) => {
    if (compressionOfMediaType(mt) || isManifestMediaType(mt) || isIndexMediaType(mt))
      return `config media type ${mt} is not a config`;
    return family(mt);
  });
  const layers = doc.layers as unknown[];
  for (const [i, l] of layers.entries()) {
    await checkClaim(store, l, `${where} layers[${i}]`, (mt) =>
      compressionOfMediaType(mt) ? family(mt) : `layer media type ${mt} is not a layer`,
    );
  }
  const { doc: config } = await readDoc(store, configDesc.digest, `${where} config`);
  const rootfs = config.rootfs;
  if (!isObject(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids))
    throw bad(`${where} config`, 'rootfs must be {"type":"layers","diff_ids":[…]}');
  rootfs.diff_ids.forEach((d, i) => {
    if (typeof d !== 'string') throw bad(`${where} config`, `diff_ids[${i}] must be a string`);
    parseDigest(d, `${where} config diff_ids[${i}]`);
  });
  if (rootfs.diff_ids.length !== layers.length)
    throw bad(where, `${layers.length} layers but the config lists ${rootfs.diff_ids.length} diff_ids`);
  if (config.history !== undefined && !Array.isArray(config.history))
    throw bad(`${where} config`, 'history must be a list');
  return config as unknown as ImageConfig;
}
