// Reading a stored layer back as an uncompressed tar stream.
import type { Readable } from 'node:stream';
import { decompressStream } from '../compress/compress.js';
import { InvalidInputError } from '../../sys/errors.js';
import type { Store } from './store.js';
import { compressionOfMediaType, type Descriptor } from '../model/types.js';

/**
 * openLayer streams a layer blob uncompressed. The blob's digest and size are verified at EOF: a corrupt
 * blob fails the stream with an error naming it. The caller consumes or destroys the stream.
 */
export function openLayer(store: Store, desc: Descriptor): Readable {
  const compression = compressionOfMediaType(desc.mediaType);
  if (!compression) throw new InvalidInputError(`layer ${desc.digest}: unsupported media type ${desc.mediaType}`);
  const blob = store.openBlob(desc.digest, { expectedSize: desc.size });
  if (compression === 'none') return blob;
  const out = decompressStream(compression);
  blob.on('error', (err) => out.destroy(err));
  out.on('close', () => blob.destroy());
  return blob.pipe(out);
}
