// Compression when an image leaves the store. A build keeps its layers uncompressed (as buildah and docker's image
// store do: compressing a layer at every commit cost more than any other part of a cold build), and `push` gives the
// registry compressed ones: compressImageLayers returns a manifest (or index) whose uncompressed layers are replaced
// by compressed copies, written to the store beside the original (not named in index.json).
//
// The copy is exactly what a build with `--compression gzip|zstd` writes: the same compressor (deterministic bytes),
// the same manifest built the same way (layer descriptors {mediaType, digest, size}, store.putJson), so a pushed
// digest is the one a build that compressed at commit would have had. An image without uncompressed layers comes back
// as it is, byte for byte. Each layer is compressed once per store: `<store>/compressed/<hex>.<compression>` remembers
// the copy's digest and size (checked against the blob before use; prune may have removed it).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import { compressStream } from '../compress/compress.js';
import { hexOf } from '../model/digest.js';
import {
  type Compression,
  type Descriptor,
  type Digest,
  type Index,
  type Manifest,
  isIndexMediaType,
  isManifestMediaType,
  MediaType,
} from '../model/types.js';
import type { Store } from './store.js';

/** COMPRESSED_TYPES: the media type an uncompressed layer takes once compressed, by family. */
const COMPRESSED_TYPES: Record<string, Partial<Record<Compression, string>>> = {
  [MediaType.OciLayer]: { gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd },
  [MediaType.DockerLayer]: { gzip: MediaType.DockerLayerGzip },
};

export interface CompressedImage {
  /** the manifest or index to push (the original when nothing needed compressing) */
  descriptor: Descriptor;
  /** layers compressed now (not found in the memo) */
  compressed: number;
}

/**
 * compressImageLayers gives the manifest or index `top` with every uncompressed layer compressed with `c` (gzip or
 * zstd). `onLayer` hears each layer as its compression starts (for progress).
 */
export async function compressImageLayers(
  store: Store,
  top: Descriptor,
  c: Exclude<Compression, 'none'>,
  onLayer?: (layer: Descriptor) => void,
): Promise<CompressedImage> {
  let compressed = 0;
  const layer = (d: Descriptor): Promise<Descriptor> =>
    compressLayer(store, d, c, (l) => {
      compressed++;
      onLayer?.(l);
    });
  const visit = async (d: Descriptor, depth: number): Promise<Descriptor> => {
    if (depth > 2) return d;
    if (isIndexMediaType(d.mediaType)) {
      const idx = await store.readJson<Index>(d.digest);
      const children = await Promise.all((idx.manifests ?? []).map((m) => visit(m, depth + 1)));
      if (children.every((m, i) => m === idx.manifests[i])) return d;
      const next: Index = { ...idx, manifests: children };
      return { ...d, ...(await store.putJson(next, d.mediaType)) };
    }
    if (!isManifestMediaType(d.mediaType)) return d;
    const m = await store.readJson<Manifest>(d.digest);
    const layers: Descriptor[] = [];
    for (const l of m.layers ?? []) layers.push(await layer(l));
    if (layers.every((l, i) => l === m.layers[i])) return d;
    const next: Manifest = { ...m, layers };
    const written = await store.putJson(next, d.mediaType);
    // an index names its children with annotations and platform: keep them, with the new digest and size
    return { ...d, digest: written.digest, size: written.size };
  };
  const descriptor = await visit(top, 0);
  return { descriptor, compressed };
}

/**
 * compressLayer gives the compressed copy of an uncompressed layer blob (made once per store, see the top of this
 * file), or `d` itself when it is compressed already. `onCompress` hears when the work is really done.
 */
export async function compressLayer(
  store: Store,
  d: Descriptor,
  c: Exclude<Compression, 'none'>,
  onCompress?: (layer: Descriptor) => void,
): Promise<Descriptor> {
  const mediaType = COMPRESSED_TYPES[d.mediaType]?.[c];
  if (!mediaType) return d;
  const memo = await readMemo(store, d.digest, c);
  if (memo) return { ...d, mediaType, digest: memo.digest, size: memo.size };
  onCompress?.(d);
  const out = new PassThrough();
  const [put] = await Promise.all([
    store.putBlob(out),
    pipeline(store.openBlob(d.digest, { expectedSize: d.size }), compressStream(c), out),
  ]);
  await writeMemo(store, d.digest, c, { digest: put.digest, size: put.size });
  return { ...d, mediaType, digest: put.digest, size: put.size };
}

function memoPath(store: Store, d: Digest, c: Compression): string {
  return join(store.root, 'compressed', `${hexOf(d)}.${c}`);
}

async function readMemo(
  store: Store,
  d: Digest,
  c: Compression,
): Promise<{ digest: Digest; size: number } | undefined> {
  try {
    const m = JSON.parse(await readFile(memoPath(store, d, c), 'utf8')) as { digest?: unknown; size?: unknown };
    if (typeof m.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(m.digest)) return undefined;
    if (typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size < 0) return undefined;
    if (!(await store.hasBlob(m.digest as Digest, m.size))) return undefined;
    return { digest: m.digest as Digest, size: m.size };
  } catch {
    return undefined;
  }
}

async function writeMemo(store: Store, d: Digest, c: Compression, v: { digest: Digest; size: number }): Promise<void> {
  const path = memoPath(store, d, c);
  await mkdir(join(store.root, 'compressed'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, JSON.stringify(v), { mode: 0o600 });
    await rename(tmp, path);
  } catch {
    await rm(tmp, { force: true }); // only a memo: the next push compresses again
  }
}

/** pruneCompressedMemos removes the memos whose compressed copy is gone from the store (prune removed it). */
export async function pruneCompressedMemos(store: Store): Promise<void> {
  const dir = join(store.root, 'compressed');
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const [hex, c] = name.split('.');
    if (!hex || !/^[a-f0-9]{64}$/.test(hex) || (c !== 'gzip' && c !== 'zstd')) continue;
    if (!(await readMemo(store, `sha256:${hex}`, c))) await rm(join(dir, name), { force: true });
  }
}
