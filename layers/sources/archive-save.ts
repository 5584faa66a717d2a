// `tsbuild save`: images → one tar that is an OCI image layout and that `docker load` also reads (manifest.json).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { hexOf } from '../model/digest.js';
import { wrap } from '../../sys/errors.js';
import { type Image, nameDescriptor } from '../store/image.js';
import type { Store } from '../store/store.js';
import { type Descriptor, type Digest, type Index, MediaType } from '../model/types.js';

export interface SaveOptions {
  /** resolved images with the names to record (an image saved by digest has no name) */
  images: Array<{ image: Image; names: string[] }>;
  /** output file (written atomically), or a stream such as stdout */
  output: string | Writable;
  /** mtime of the archive's entries (SOURCE_DATE_EPOCH); 0 by default, so the same images give the same bytes */
  mtime?: number;
}

/** saveImages writes the archive; a file output appears only once complete. Returns the blobs written. */
export async function saveImages(store: Store, opts: SaveOptions): Promise<{ blobs: number; bytes: number }> {
  const mtime = new Date((opts.mtime ?? 0) * 1000);
  const blobs = new Map<Digest, number>();
  const indexEntries: Descriptor[] = [];
  const dockerManifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
  for (const { image, names } of opts.images) {
    const m = image.manifest;
    blobs.set(image.descriptor.digest, image.descriptor.size);
    blobs.set(m.config.digest, m.config.size);
    for (const l of m.layers) blobs.set(l.digest, l.size);
    const plain: Descriptor = {
      mediaType: image.descriptor.mediaType,
      digest: image.descriptor.digest,
      size: image.descriptor.size,
    };
    if (names.length === 0) indexEntries.push(plain);
    for (const n of names) indexEntries.push(nameDescriptor(plain, n));
    dockerManifest.push({
      Config: `blobs/sha256/${hexOf(m.config.digest)}`,
      RepoTags: names,
      Layers: m.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
    });
  }
  const index: Index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: indexEntries };

  const pack = tar.pack();
  const dir = (name: string): void => {
    pack.entry({ name, type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0 });
  };
  const file = (name: string, body: string): void => {
    pack.entry({ name, mode: 0o644, mtime, uid: 0, gid: 0 }, body);
  };
  let bytes = 0;
  const produce = async (): Promise<void> => {
    dir('blobs/');
    dir('blobs/sha256/');
    for (const [d, size] of [...blobs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const entry = pack.entry({ name: `blobs/sha256/${hexOf(d)}`, size, mode: 0o644, mtime, uid: 0, gid: 0 });
      await pipeline(store.openBlob(d, { expectedSize: size }), entry);
      bytes += size;
    }
    file('index.json', `${JSON.stringify(index)}\n`);
    file('manifest.json', `${JSON.stringify(dockerManifest)}\n`);
    file('oci-layout', `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
    pack.finalize();
  };

  if (typeof opts.output !== 'string') {
    const producing = produce().catch((err) => {
      pack.destroy(err);
      throw err;
    });
    await Promise.all([pipeline(pack, opts.output), producing]);
    return { blobs: blobs.size, bytes };
  }
  const target = opts.output;
  const tmp = `${target}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const producing = produce().catch((err) => {
      pack.destroy(err);
      throw err;
    });
    await Promise.all([pipeline(pack, createWriteStream(tmp, { flags: 'wx' })), producing]);
    const fh = await open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw wrap(`writing ${target}`, err);
  }
  return { blobs: blobs.size, bytes };
}
