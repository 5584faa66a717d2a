// verifyImage: the oracle. Every blob hashes to its name and has its size, diff_ids are the digests of the
// uncompressed layers, history pairs with layers, and media types stay in one family.
import { createHash } from 'node:crypto';
import type { Image } from './image.js';
import { openLayer } from './layer-read.js';
import type { Store } from './store.js';
import { MediaType } from '../model/types.js';

/** verifyImage returns the problems it finds (an empty list for a sound image). It reads every layer once. */
export async function verifyImage(store: Store, img: Image): Promise<string[]> {
  const problems: string[] = [];
  const m = img.manifest;
  const docker = img.descriptor.mediaType === MediaType.DockerManifest;
  if (m.mediaType && m.mediaType !== img.descriptor.mediaType) {
    problems.push(`manifest mediaType ${m.mediaType} differs from its descriptor's ${img.descriptor.mediaType}`);
  }
  for (const d of [m.config, ...m.layers]) {
    if (docker !== d.mediaType.startsWith('application/vnd.docker.'))
      problems.push(`${d.digest}: media type ${d.mediaType} mixes families`);
  }
  try {
    await store.readBlob(img.descriptor.digest);
    await store.readBlob(m.config.digest);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const diffIds = img.config.rootfs.diff_ids;
  if (diffIds.length !== m.layers.length) problems.push(`${diffIds.length} diff_ids for ${m.layers.length} layers`);
  for (const [i, l] of m.layers.entries()) {
    try {
      const hash = createHash('sha256');
      for await (const chunk of openLayer(store, l)) hash.update(chunk as Buffer);
      const diffId = `sha256:${hash.digest('hex')}`;
      if (diffIds[i] !== diffId)
        problems.push(`layer ${i} (${l.digest}): diff_id ${diffIds[i]} but the uncompressed layer is ${diffId}`);
    } catch (err) {
      problems.push(`layer ${i}: ${(err as Error).message}`);
    }
  }
  const history = img.config.history;
  if (history?.length) {
    const nonEmpty = history.filter((h) => !h.empty_layer).length;
    if (nonEmpty !== m.layers.length)
      problems.push(`${nonEmpty} non-empty history entries for ${m.layers.length} layers`);
  }
  return problems;
}
