// What an imported cache gives a build: its entries by key, read from the cache config alone, and a way to fetch
// one layer blob into the store when a step needs its files (or the image is written). Opening a cache reads the
// manifest and the config, never a layer blob: a build that hits on every step knows it before a byte of layer
// is downloaded.
import type { Descriptor, Digest } from '../model/types.js';
import type { CacheEntry, CacheMountLayer } from './format.js';

export interface CacheSource {
  /** the cache as the user named it (`type=local,src=…`, a registry reference) */
  readonly name: string;
  readonly entries: ReadonlyMap<Digest, CacheEntry>;
  /** the cache mount layers it carries (mounts=true), fetched like the others */
  readonly mounts: readonly CacheMountLayer[];
  /** fetch stores a layer blob of this cache in the store (verified; idempotent) */
  fetch(layer: Descriptor, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** ExportResult is what a cache export wrote. */
export interface ExportResult {
  /** where: the directory or the registry reference */
  name: string;
  /** the cache manifest's digest */
  digest: Digest;
  /** how many records and layer blobs it holds */
  records: number;
  layers: number;
  /** how many of those layers are cache mounts */
  mounts?: number;
}
