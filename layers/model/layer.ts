// Layer: one layer of an image, as every consumer needs it: the blob (compressed, content-addressed) and the DiffID
// (the digest of the uncompressed tar). go-containerregistry's contract: digest names the blob, diffID the tar.
import { InvalidInputError } from '../../sys/errors.js';
import type { Descriptor, Digest, ImageConfig, Manifest } from './types.js';

/** Layer is one image layer: its blob descriptor and its DiffID. Lists of layers are always base first. */
export interface Layer {
  descriptor: Descriptor;
  diffId: Digest;
}

/**
 * imageLayers pairs `manifest.layers` with `config.rootfs.diff_ids`, base first. An image whose two lists differ in
 * length is refused with an error naming the manifest (when the caller gives its digest).
 */
export function imageLayers(img: { manifest: Manifest; config: ImageConfig; descriptor?: Descriptor }): Layer[] {
  const blobs = img.manifest.layers;
  const diffIds = img.config.rootfs.diff_ids;
  if (blobs.length !== diffIds.length) {
    const what = img.descriptor ? `image ${img.descriptor.digest}` : 'image';
    throw new InvalidInputError(
      `${what}: ${blobs.length} layers in the manifest but ${diffIds.length} diff_ids in the config`,
    );
  }
  return blobs.map((descriptor, i) => ({ descriptor, diffId: diffIds[i]! }));
}
