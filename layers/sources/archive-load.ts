// `tsbuild load`: read an OCI-layout archive (tsbuild save, skopeo oci-archive, docker >= 25 save) or a
// legacy `docker save` archive (manifest.json + <id>/layer.tar) into the store.
//
// Contract: a load either names every image of the archive or fails with an InvalidInputError (or a NotFoundError,
// a DigestMismatchError) naming the archive entry, and then changes no name. Blobs are verified against their
// names while the archive is read (archive-collect.ts); every descriptor that reaches index.json is the one computed
// from the stored bytes, after every claim of the archive about them was checked (archive-check.ts). Names are given
// only once every image of the archive has been checked.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { tagImage } from '../store/image.js';
import type { Store } from '../store/store.js';
import { type Compression, type Descriptor, RefNameAnnotation } from '../model/types.js';
import type { PlannedImage } from './archive-check.js';
import { collect } from './archive-collect.js';
import { planDocker } from './archive-docker.js';
import { planOci } from './archive-oci.js';

export interface LoadOptions {
  /** archive path, or '-' with `stdin` */
  input: string;
  stdin?: Readable;
  /** compression for layers that arrive uncompressed (legacy docker archives) */
  compression?: Compression;
  onEvent?: (e: { type: 'blob' | 'layer'; name: string; size: number }) => void;
}

export interface LoadedImage {
  /** the names given, familiar (`debian:bookworm`, as docker prints them); empty for an unnamed image */
  names: string[];
  /** the manifest (or index) descriptor, as computed from its bytes */
  descriptor: Descriptor;
}

/** loadArchive reads the archive, stores its blobs (each verified), checks its images, and names them. */
export async function loadArchive(store: Store, opts: LoadOptions): Promise<LoadedImage[]> {
  const label = opts.input === '-' ? 'standard input' : opts.input;
  const lease = await store.beginWrite();
  try {
    const input =
      opts.input === '-' ? (opts.stdin ?? process.stdin) : createReadStream(opts.input, { highWaterMark: 1 << 20 });
    const got = await collect(store, input, {
      ...(opts.compression ? { compression: opts.compression } : {}),
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    }).catch((err) => {
      throw wrap(`loading ${label}`, err);
    });
    let planned: PlannedImage[];
    if (got.json.has('index.json')) planned = await planOci(store, got, label);
    else if (got.json.has('manifest.json')) planned = await planDocker(store, got, label);
    else
      throw new InvalidInputError(
        `${label} is neither an OCI image archive (index.json) nor a docker save archive (manifest.json)`,
      );
    const out: LoadedImage[] = [];
    for (const p of planned) out.push(await nameImage(store, p));
    return out;
  } finally {
    await lease.end();
  }
}

/** nameImage gives an image its names (or keeps it unnamed in index.json, so prune keeps it). */
async function nameImage(store: Store, p: PlannedImage): Promise<LoadedImage> {
  const names: string[] = [];
  for (const n of p.names) {
    const named = await tagImage(store, p.descriptor, n);
    names.push(named.annotations?.[RefNameAnnotation] ?? n);
  }
  if (p.names.length === 0) {
    await store.updateIndex((index) => {
      if (!index.manifests.some((m) => m.digest === p.descriptor.digest)) index.manifests.push(p.descriptor);
    });
  }
  return { names, descriptor: p.descriptor };
}
