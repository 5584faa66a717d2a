// The OCI half of `load`: index.json (tsbuild save, skopeo oci-archive, docker >= 25 save) → the images to name.
// Each index.json entry is checked against its blobs (archive-check.ts); what is kept is the descriptor computed from
// the bytes, the checked platform and the names. Names come from the containerd name annotation, a ref.name that is
// a docker-style name, or docker's manifest.json (RepoTags, matched by config digest).
import { posix } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import { nameDescriptor } from '../store/image.js';
import type { Store } from '../store/store.js';
import { ContainerdNameAnnotation, isManifestMediaType, RefNameAnnotation } from '../model/types.js';
import { annotationsOf, bad, describeManifest, isObject, type PlannedImage, stringList } from './archive-check.js';
import { type Collected, parseJson } from './archive-collect.js';

/** repoTagsOf reads docker's manifest.json beside an index.json: config hex → RepoTags. */
function repoTagsOf(got: Collected, label: string): Map<string, string[]> {
  const tags = new Map<string, string[]>();
  if (!got.json.has('manifest.json')) return tags;
  const doc = parseJson(got, 'manifest.json', label);
  if (!Array.isArray(doc)) throw bad(`${label}: manifest.json`, 'must be a list');
  for (const [i, e] of doc.entries()) {
    const where = `${label}: manifest.json [${i}]`;
    if (!isObject(e)) throw bad(where, 'must be an object');
    if (typeof e.Config !== 'string') throw bad(where, 'Config must be a string');
    tags.set(posix.basename(e.Config).replace(/\.json$/, ''), stringList(e.RepoTags, `${where} RepoTags`));
  }
  return tags;
}

/** planOci checks every entry of index.json and returns the images with the names to give them. */
export async function planOci(store: Store, got: Collected, label: string): Promise<PlannedImage[]> {
  if (got.json.has('oci-layout')) {
    const layout = parseJson(got, 'oci-layout', label);
    const version = isObject(layout) ? layout.imageLayoutVersion : undefined;
    if (version !== '1.0.0')
      throw bad(`${label}: oci-layout`, `unsupported imageLayoutVersion ${JSON.stringify(version)}`);
  }
  const index = parseJson(got, 'index.json', label);
  if (!isObject(index)) throw bad(`${label}: index.json`, 'must be a JSON object');
  if (!Array.isArray(index.manifests)) throw bad(`${label}: index.json`, 'has no manifests list');
  if (index.manifests.length === 0) throw bad(`${label}: index.json`, 'lists no images');
  const repoTags = repoTagsOf(got, label);
  const out: PlannedImage[] = [];
  for (const [i, raw] of index.manifests.entries()) {
    const where = `${label}: index.json manifests[${i}]`;
    const { descriptor, doc } = await describeManifest(store, raw, where);
    const annotations = annotationsOf((raw as Record<string, unknown>).annotations, where);
    const names = new Set<string>();
    const full = annotations[ContainerdNameAnnotation];
    const ref = annotations[RefNameAnnotation];
    if (full) names.add(full);
    else if (ref && /[:/]/.test(ref)) names.add(ref);
    if (names.size === 0 && isManifestMediaType(descriptor.mediaType)) {
      const configDigest = (doc.config as { digest: string }).digest;
      for (const t of repoTags.get(configDigest.slice(7)) ?? []) names.add(t);
    }
    for (const n of names) {
      try {
        nameDescriptor(descriptor, n);
      } catch (err) {
        throw new InvalidInputError(`${where}: name ${JSON.stringify(n)}: ${(err as Error).message}`);
      }
    }
    out.push({ names: [...names], descriptor });
  }
  return out;
}
