// Reading a stored layer back as an uncompressed tar stream: openLayer for one blob, layerSource for the
// `{diffId, open}` shape that snapshotting and merging take, imageLayerSources for a whole image.
import type { Readable } from 'node:stream';
import { decompressStream } from '../compress/compress.js';
import { InvalidInputError } from '../../sys/errors.js';
import type { Store } from './store.js';
import { imageLayers, type Layer } from '../model/layer.js';
import {
  compressionOfMediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Manifest,
} from '../model/types.js';

/**
 * openLayer streams a layer blob uncompressed. The blob's digest and size are verified at EOF: a corrupt
 * blob fails the stream with an error naming it. The caller consumes or destroys the stream.
 */
export function openLayer(store: Store, desc: Descriptor): Readable {
  const compression = compressionOfMediaType(desc.mediaType);
  if (!compression) throw new InvalidInputError(`layer ${desc.digest}: unsupported media type ${desc.mediaType}`);
  const blob = store.openBlob(desc.digest, { expectedSize: desc.size });
  if (compression === 'none') return blob;
  const out = decompressStream(compression, { what: `layer ${desc.digest}`, compressedSize: desc.size });
  blob.on('error', (err) => out.destroy(err));
  out.on('close', () => blob.destroy());
  return blob.pipe(out);
}

/** LayerSource is a layer as the readers of uncompressed tars take it: its DiffID and an opener (a fresh stream per call). */
export interface LayerSource {
  diffId: Digest;
  open(): Promise<Readable>;
}

/** layerSource is the LayerSource of a stored layer: open() is openLayer of its blob. */
export function layerSource(store: Store, layer: Layer): LayerSource {
  return { diffId: layer.diffId, open: async () => openLayer(store, layer.descriptor) };
}

/** imageLayerSources are the LayerSources of an image's layers, base first (imageLayers pairs blobs and DiffIDs). */
export function imageLayerSources(
  store: Store,
  img: { manifest: Manifest; config: ImageConfig; descriptor?: Descriptor },
): LayerSource[] {
  return imageLayers(img).map((l) => layerSource(store, l));
}
