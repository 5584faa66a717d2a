// Committing a layer: one pass over an uncompressed tar gives the diffID, the compressed blob, its digest and size.
import type { Readable } from 'node:stream';
import { HashingStream } from '../model/digest.js';
import { compressStream } from '../compress/compress.js';
import { noSpace } from '../../sys/disk-full.js';
import type { Store } from './store.js';
import { type Compression, type Descriptor, type Digest, layerMediaType } from '../model/types.js';

export interface CommittedLayer {
  /** the stored blob (compressed), as a manifest lists it */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar, as config.rootfs.diff_ids lists it */
  diffId: Digest;
  /** bytes of the uncompressed tar */
  uncompressedSize: number;
}

export interface CommitOptions {
  compression?: Compression;
  level?: number;
  /** compressor threads (default: compressStream's, one per CPU); the blob's bytes do not depend on it */
  threads?: number;
  /** names the layer in a disk-full error: `the layer of ctx.tar` (default: a new layer blob) */
  what?: string;
}

/**
 * commitLayer stores an uncompressed layer tar (which it consumes) as a blob with the chosen compression
 * (gzip by default). The blob write is atomic: on any error nothing is left in the store.
 */
export async function commitLayer(store: Store, tar: Readable, opts: CommitOptions = {}): Promise<CommittedLayer> {
  const compression = opts.compression ?? 'gzip';
  const putBlob = (blob: Readable) =>
    store.putBlob(blob).catch((err: unknown) => {
      throw noSpace(err, store.blobDir, opts.what ?? 'a new layer blob');
    });
  if (compression === 'none') {
    // the blob is the tar itself: putBlob's own sha256 is the DiffID, so the bytes are hashed once and go straight
    // to the file (no hashing stage and no pass-through compressor in between)
    const put = await putBlob(tar);
    return {
      descriptor: { mediaType: layerMediaType(compression), digest: put.digest, size: put.size },
      diffId: put.digest,
      uncompressedSize: put.size,
    };
  }
  const diff = new HashingStream();
  tar.on('error', (err) => diff.destroy(err));
  const compressed = tar.pipe(diff).pipe(
    compressStream(compression, {
      ...(opts.level === undefined ? {} : { level: opts.level }),
      ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    }),
  );
  diff.on('error', (err) => compressed.destroy(err));
  const put = await putBlob(compressed);
  return {
    descriptor: { mediaType: layerMediaType(compression), digest: put.digest, size: put.size },
    diffId: diff.digest,
    uncompressedSize: diff.size,
  };
}

/**
 * commitUncompressed stores an uncompressed layer tar that `fill` hands to its `write` chunk by chunk (as
 * writeTarFromChanges does): each chunk is hashed and written before `write` returns, so the writer reuses one
 * chunk's memory and no stream stands in between. The blob's sha256 is the DiffID. Atomic as commitLayer.
 */
export async function commitUncompressed(
  store: Store,
  fill: (write: (chunk: Uint8Array) => void) => Promise<void>,
  opts: Pick<CommitOptions, 'what'> = {},
): Promise<CommittedLayer> {
  const put = await store.putBlobWith(fill).catch((err: unknown) => {
    throw noSpace(err, store.blobDir, opts.what ?? 'a new layer blob');
  });
  return {
    descriptor: { mediaType: layerMediaType('none'), digest: put.digest, size: put.size },
    diffId: put.digest,
    uncompressedSize: put.size,
  };
}
