// The legacy half of `load`: a `docker save` archive (manifest.json, <id>.json configs, <id>/layer.tar) → the images
// to name. Layers were committed while the archive was read (their diffIDs computed from the bytes); a layer that
// docker wrote as a symlink (or hard link) to an earlier image's layer.tar is followed. The config bytes are kept as
// they are (the image ID stays docker's); the manifest is tsbuild's own, so its descriptor is the one it wrote.
import { InvalidInputError } from '../../sys/errors.js';
import { parseDigest } from '../model/digest.js';
import { nameDescriptor } from '../store/image.js';
import { oneLine, type Store } from '../store/store.js';
import { type Manifest, MediaType } from '../model/types.js';
import type { CommittedLayer } from '../store/commit.js';
import { bad, isObject, type PlannedImage, stringList } from './archive-check.js';
import { type Collected, entryName, parseJson } from './archive-collect.js';

/** resolve follows symlinks and hard links from an entry name (at most 16 hops). */
function resolve(got: Collected, name: string): string {
  let at = entryName(name);
  for (let hops = 0; hops < 16 && got.links.has(at); hops++) at = got.links.get(at) as string;
  return at;
}

function layerOf(got: Collected, path: string, where: string): CommittedLayer {
  const l = got.legacyLayers.get(resolve(got, path));
  if (!l) throw bad(where, `layer ${path} is not in the archive`);
  return l;
}

function configOf(got: Collected, path: string, where: string): { bytes: Buffer; diffIds: string[] } {
  const name = resolve(got, path);
  const bytes = got.json.get(name);
  if (!bytes) throw bad(where, `config ${path} is not in the archive`);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw bad(`${where} config ${path}`, `not valid JSON: ${oneLine((err as Error).message)}`);
  }
  const rootfs = isObject(doc) ? doc.rootfs : undefined;
  if (!isObject(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids))
    throw bad(`${where} config ${path}`, 'rootfs must be {"type":"layers","diff_ids":[…]}');
  const diffIds = rootfs.diff_ids.map((d, i) => {
    if (typeof d !== 'string') throw bad(`${where} config ${path}`, `diff_ids[${i}] must be a string`);
    return parseDigest(d, `${where} config ${path} diff_ids[${i}]`);
  });
  return { bytes, diffIds };
}

/** planDocker checks manifest.json, stores a config and an OCI manifest per image, and returns them with names. */
export async function planDocker(store: Store, got: Collected, label: string): Promise<PlannedImage[]> {
  const entries = parseJson(got, 'manifest.json', label);
  if (!Array.isArray(entries)) throw bad(`${label}: manifest.json`, 'must be a list');
  if (entries.length === 0) throw bad(`${label}: manifest.json`, 'lists no images');
  const out: PlannedImage[] = [];
  for (const [i, e] of entries.entries()) {
    const where = `${label}: manifest.json [${i}]`;
    if (!isObject(e)) throw bad(where, 'must be an object');
    if (typeof e.Config !== 'string') throw bad(where, 'Config must be a string');
    if (!Array.isArray(e.Layers) || e.Layers.some((p) => typeof p !== 'string'))
      throw bad(where, 'Layers must be a list of strings');
    const names = stringList(e.RepoTags, `${where} RepoTags`);
    const config = configOf(got, e.Config, where);
    const layers = (e.Layers as string[]).map((p) => layerOf(got, p, where));
    if (config.diffIds.length !== layers.length || layers.some((l, j) => l.diffId !== config.diffIds[j]))
      throw bad(where, `the layers do not match the rootfs.diff_ids of ${e.Config}`);
    // keep the config bytes as they are, so the image ID stays the one docker showed
    const configDesc = await store.putBlobBytes(config.bytes, MediaType.OciConfig);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: layers.map((l) => l.descriptor),
    };
    const descriptor = await store.putJson(manifest, MediaType.OciManifest);
    for (const n of names) {
      try {
        nameDescriptor(descriptor, n);
      } catch (err) {
        throw new InvalidInputError(`${where}: RepoTag ${JSON.stringify(n)}: ${(err as Error).message}`);
      }
    }
    out.push({ names, descriptor });
  }
  return out;
}
