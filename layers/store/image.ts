// Images in the store: naming (index.json entries), resolving a name to a manifest and config, writing new images.
import { InvalidInputError, NotFoundError, TsbuildError } from '../../sys/errors.js';
import { familiarName, fullName, parseReference, type Reference } from '../model/names.js';
import type { Store } from './store.js';
import type { Layer } from '../model/layer.js';
import {
  ContainerdNameAnnotation,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Index,
  type Manifest,
  MediaType,
  type Platform,
  RefNameAnnotation,
  isIndexMediaType,
  isManifestMediaType,
} from '../model/types.js';

/** ImageEntry is one name in index.json. */
export interface ImageEntry {
  /** familiar name, e.g. `debian:bookworm` (empty for an untagged entry) */
  name: string;
  /** canonical name, e.g. `docker.io/library/debian:bookworm` */
  fullName: string;
  descriptor: Descriptor;
}

/** Image is a resolved single-platform image: its manifest and config, and where they came from. */
export interface Image {
  name?: string;
  /** the manifest's descriptor (its digest is the image's digest) */
  descriptor: Descriptor;
  manifest: Manifest;
  config: ImageConfig;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** listImages returns every named entry of the store's index, in index order. */
export async function listImages(store: Store): Promise<ImageEntry[]> {
  const index = await store.readIndex();
  return index.manifests.map(entryOf);
}

function entryOf(d: Descriptor): ImageEntry {
  const full = d.annotations?.[ContainerdNameAnnotation];
  const ref = d.annotations?.[RefNameAnnotation];
  let name = ref ?? '';
  let canonical = full ?? '';
  if (!canonical && ref) {
    try {
      canonical = fullName(parseReference(ref));
    } catch {
      canonical = ref; // a ref.name that is not a docker-style name (other tools write bare tags like "latest")
    }
  }
  if (!name && full) {
    try {
      name = familiarName(parseReference(full));
    } catch {
      name = full;
    }
  }
  return { name, fullName: canonical, descriptor: d };
}

/** entryMatches tells whether an index entry answers to what the user typed. */
function entryMatches(e: ImageEntry, input: string, ref: Reference | undefined): boolean {
  if (e.name === input || e.fullName === input) return true;
  if (ref && e.fullName === fullName(ref)) return true;
  return false;
}

/**
 * findImage resolves what a user typed (a name, `name@digest`, a manifest digest, or an image-ID prefix of
 * at least 4 hex digits) to an index entry. Throws NotFoundError.
 */
export async function findImage(store: Store, input: string): Promise<ImageEntry> {
  const entries = await listImages(store);
  let ref: Reference | undefined;
  try {
    ref = parseReference(input);
  } catch {
    ref = undefined;
  }
  const byName = entries.filter((e) => entryMatches(e, input, ref));
  if (byName.length) return byName[byName.length - 1] as ImageEntry;
  if (ref?.digest) {
    const hit = entries.find((e) => e.descriptor.digest === ref.digest);
    if (hit) return hit;
  }
  const hex = input.replace(/^sha256:/, '');
  if (/^[a-f0-9]{4,64}$/.test(hex)) {
    const hits = new Map<string, ImageEntry>();
    for (const e of entries) {
      if (e.descriptor.digest.slice(7).startsWith(hex)) hits.set(e.descriptor.digest, e);
    }
    if (hits.size === 0) {
      // image IDs (config digests), as `docker images` shows them
      for (const e of entries) {
        const img = await loadImage(store, e.descriptor).catch(() => undefined);
        if (img && img.manifest.config.digest.slice(7).startsWith(hex)) hits.set(e.descriptor.digest, e);
      }
    }
    if (hits.size === 1) return [...hits.values()][0] as ImageEntry;
    if (hits.size > 1) throw new InvalidInputError(`${input} is ambiguous: it matches ${hits.size} images`);
  }
  throw new NotFoundError(
    `image ${JSON.stringify(input)}`,
    'list images with `tsbuild images`; build, import, bootstrap or pull it first',
  );
}

/**
 * loadImage follows a descriptor to a single-platform image: through an index (picking `platform`, default
 * linux/amd64), to a manifest, to its config. Every blob is verified; Docker schema2 types are accepted.
 */
export async function loadImage(
  store: Store,
  desc: Descriptor,
  platform: Platform = DEFAULT_PLATFORM,
  depth = 0,
): Promise<Image> {
  if (depth > 4) throw new InvalidInputError(`index ${desc.digest} nests too deeply`);
  if (isIndexMediaType(desc.mediaType)) {
    const index = await store.readJson<Index>(desc.digest);
    const child = pickPlatform(index, platform);
    if (!child) {
      throw new NotFoundError(`a ${platform.os}/${platform.architecture} manifest in index ${desc.digest}`);
    }
    return loadImage(store, child, platform, depth + 1);
  }
  if (!isManifestMediaType(desc.mediaType)) {
    throw new InvalidInputError(`${desc.digest}: unsupported manifest media type ${JSON.stringify(desc.mediaType)}`);
  }
  const manifest = await store.readJson<Manifest>(desc.digest);
  checkManifest(manifest, desc.digest);
  const config = await store.readJson<ImageConfig>(manifest.config.digest);
  checkConfig(config, manifest);
  return { descriptor: desc, manifest, config };
}

/** pickPlatform returns the first manifest of an index that matches the platform (variant ignored when absent). */
export function pickPlatform(index: Index, want: Platform): Descriptor | undefined {
  return index.manifests.find(
    (m) =>
      (!m.platform && index.manifests.length === 1) ||
      (m.platform?.os === want.os &&
        m.platform?.architecture === want.architecture &&
        (!want.variant || m.platform.variant === want.variant)),
  );
}

function checkManifest(m: Manifest, digest: Digest): void {
  if (!m || m.schemaVersion !== 2 || !m.config || !Array.isArray(m.layers)) {
    throw new InvalidInputError(`manifest ${digest} is malformed`);
  }
  const docker = m.mediaType === MediaType.DockerManifest;
  for (const l of [m.config, ...m.layers]) {
    if (typeof l.digest !== 'string' || typeof l.size !== 'number' || l.size < 0) {
      throw new InvalidInputError(`manifest ${digest} has a malformed descriptor`);
    }
    if (docker && l.mediaType.startsWith('application/vnd.oci.image.layer')) {
      throw new InvalidInputError(`manifest ${digest} mixes Docker and OCI media types`);
    }
  }
}

function checkConfig(c: ImageConfig, m: Manifest): void {
  if (!c || typeof c !== 'object' || !c.rootfs || c.rootfs.type !== 'layers' || !Array.isArray(c.rootfs.diff_ids)) {
    throw new InvalidInputError(`config ${m.config.digest} is malformed (rootfs.type must be "layers")`);
  }
  if (c.rootfs.diff_ids.length !== m.layers.length) {
    throw new InvalidInputError(
      `config ${m.config.digest} lists ${c.rootfs.diff_ids.length} diff_ids for ${m.layers.length} layers`,
    );
  }
}

/** getImage = findImage + loadImage, with the name kept. */
export async function getImage(store: Store, input: string, platform?: Platform): Promise<Image> {
  const entry = await findImage(store, input);
  const img = await loadImage(store, entry.descriptor, platform);
  if (entry.name) img.name = entry.name;
  return img;
}

/** nameDescriptor returns a copy of a manifest descriptor carrying the two name annotations. */
export function nameDescriptor(desc: Descriptor, name: string): Descriptor {
  const ref = parseReference(name);
  if (ref.digest && !ref.tag) throw new InvalidInputError(`cannot tag with a digest reference: ${name}`);
  const tagged: Reference = { registry: ref.registry, repository: ref.repository, tag: ref.tag as string };
  const { annotations, ...rest } = desc;
  const kept = Object.fromEntries(
    Object.entries(annotations ?? {}).filter(([k]) => k !== RefNameAnnotation && k !== ContainerdNameAnnotation),
  );
  return {
    ...rest,
    annotations: { ...kept, [RefNameAnnotation]: familiarName(tagged), [ContainerdNameAnnotation]: fullName(tagged) },
  };
}

/** tagImage points `name` at `desc` in index.json (replacing what the name pointed at before). */
export async function tagImage(store: Store, desc: Descriptor, name: string): Promise<Descriptor> {
  const named = nameDescriptor(desc, name);
  const full = named.annotations?.[ContainerdNameAnnotation];
  await store.updateIndex((index) => {
    const same = index.manifests.filter((d) => entryOf(d).fullName === full);
    // the name already points there, with the same descriptor: the index stays as it is (and is not rewritten)
    if (same.length === 1 && JSON.stringify(same[0]) === JSON.stringify(named)) return;
    index.manifests = index.manifests.filter((d) => entryOf(d).fullName !== full);
    index.manifests.push(named);
  });
  return named;
}

/**
 * keepUntagged records an untagged image in index.json (docker's `<none>`), unless an entry already has its digest:
 * `images` lists it, its digest and image ID find it, and prune keeps it (`prune --all` removes it).
 */
export async function keepUntagged(store: Store, desc: Descriptor): Promise<void> {
  await store.updateIndex((index) => {
    if (index.manifests.some((d) => d.digest === desc.digest)) return;
    index.manifests.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size });
  });
}

/** untagImage removes a name from index.json; throws NotFoundError when no entry has it. */
export async function untagImage(store: Store, input: string): Promise<ImageEntry> {
  const entry = await findImage(store, input);
  await store.updateIndex((index) => {
    const before = index.manifests.length;
    index.manifests = index.manifests.filter(
      (d) => !(d.digest === entry.descriptor.digest && entryOf(d).fullName === entry.fullName),
    );
    if (index.manifests.length === before) throw new TsbuildError('E_RACE', `image ${input} was removed concurrently`);
  });
  return entry;
}

/** NewImage is what writeImage needs: layers base first (blob descriptors + diffIDs), config without rootfs. */
export interface NewImage {
  config: Omit<ImageConfig, 'rootfs'>;
  layers: Layer[];
  annotations?: Record<string, string>;
}

/**
 * writeImage stores a config and an OCI manifest for the layers (which must already be stored) and returns the image
 * it made (manifest descriptor, manifest, config), so callers need not read it back.
 */
export async function writeImage(store: Store, img: NewImage): Promise<Image> {
  for (const l of img.layers) {
    if (!(await store.hasBlob(l.descriptor.digest, l.descriptor.size)))
      throw new NotFoundError(`layer blob ${l.descriptor.digest}`);
    if (l.descriptor.mediaType.startsWith('application/vnd.docker.')) {
      throw new InvalidInputError(
        `layer ${l.descriptor.digest} has a Docker media type; an OCI manifest cannot mix families`,
      );
    }
  }
  const config: ImageConfig = { ...img.config, rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffId) } };
  const configDesc = await store.putJson(config, MediaType.OciConfig);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDesc,
    layers: img.layers.map((l) => ({
      mediaType: l.descriptor.mediaType,
      digest: l.descriptor.digest,
      size: l.descriptor.size,
    })),
  };
  if (img.annotations && Object.keys(img.annotations).length) manifest.annotations = img.annotations;
  const descriptor = await store.putJson(manifest, MediaType.OciManifest);
  return { descriptor, manifest, config };
}

/**
 * walkManifests visits every index, and calls `onManifest` once for every image manifest, reached from `roots`
 * (default: the store's index), depth-first, each blob once; `onBlob` sees every index and manifest digest.
 */
export async function walkManifests(
  store: Store,
  onManifest: (m: Manifest) => Promise<void> | void,
  opts: { roots?: Descriptor[]; onBlob?: (d: Digest) => void } = {},
): Promise<void> {
  const seen = new Set<Digest>();
  const visit = async (d: Descriptor, depth: number): Promise<void> => {
    if (seen.has(d.digest) || depth > 8) return;
    seen.add(d.digest);
    opts.onBlob?.(d.digest);
    if (!(await store.hasBlob(d.digest))) return;
    if (isIndexMediaType(d.mediaType)) {
      const idx = await store.readJson<Index>(d.digest);
      for (const m of idx.manifests ?? []) await visit(m, depth + 1);
    } else if (isManifestMediaType(d.mediaType)) {
      await onManifest(await store.readJson<Manifest>(d.digest));
    }
  };
  for (const d of opts.roots ?? (await store.readIndex()).manifests) await visit(d, 0);
}

/** reachableBlobs walks every index entry and returns the set of blobs they reference (manifests, configs, layers). */
export async function reachableBlobs(store: Store, roots?: Descriptor[]): Promise<Set<Digest>> {
  const seen = new Set<Digest>();
  await walkManifests(
    store,
    (m) => {
      seen.add(m.config.digest);
      for (const l of m.layers ?? []) seen.add(l.digest);
      if (m.subject) seen.add(m.subject.digest);
    },
    { ...(roots ? { roots } : {}), onBlob: (d) => seen.add(d) },
  );
  return seen;
}
