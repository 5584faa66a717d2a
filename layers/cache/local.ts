// `type=local`: a cache in an OCI image layout directory (oci-layout, index.json, blobs/sha256/), the cache
// manifest named by `org.opencontainers.image.ref.name` = the tag. Export copies the blobs in (verified from the
// store, written temp file → rename, existing ones kept) and replaces the tag's entry in index.json; the other
// entries stay. Import reads index.json, the manifest and the config; a layer blob is copied into the store only
// when fetched.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InvalidInputError, NotFoundError, wrap } from '../../sys/errors.js';
import { sha256 } from '../model/digest.js';
import { type Descriptor, type Digest, type Index, MediaType, RefNameAnnotation } from '../model/types.js';
import type { Store } from '../store/store.js';
import {
  type CacheEntry,
  cacheManifest,
  type CacheMountLayer,
  decodeCache,
  encodeCache,
  mountDescriptor,
  mountLayers,
  parseCacheDocument,
} from './format.js';
import type { CacheSource, ExportResult } from './source.js';

const JSON_LIMIT = 16 << 20;

function blobPath(dir: string, d: Digest): string {
  return join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
}

async function writeAtomic(path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function has(path: string, size: number): Promise<boolean> {
  return stat(path).then(
    (st) => st.size === size,
    () => false,
  );
}

/** exportLocalCache writes `entries` as the cache tagged `tag` in the layout directory `dir` (created if absent). */
export async function exportLocalCache(
  store: Store,
  dir: string,
  tag: string,
  entries: readonly CacheEntry[],
  mounts: readonly CacheMountLayer[] = [],
): Promise<ExportResult> {
  const name = `type=local,dest=${dir}`;
  try {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const { config, layers } = encodeCache(entries);
    layers.push(...mounts.map(mountDescriptor));
    const configBytes = Buffer.from(JSON.stringify(config));
    const configDesc: Descriptor = { mediaType: '', digest: sha256(configBytes), size: configBytes.length };
    const manifestBytes = Buffer.from(JSON.stringify(cacheManifest(configDesc, layers)));
    const manifestDigest = sha256(manifestBytes);
    for (const l of layers) {
      const path = blobPath(dir, l.digest);
      if (await has(path, l.size)) continue;
      const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
      try {
        await pipeline(store.openBlob(l.digest, { expectedSize: l.size }), createWriteStream(tmp, { flags: 'wx' }));
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
    }
    for (const [d, bytes] of [
      [configDesc.digest, configBytes],
      [manifestDigest, manifestBytes],
    ] as const)
      if (!(await has(blobPath(dir, d), bytes.length))) await writeAtomic(blobPath(dir, d), bytes);
    await writeAtomic(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    const index = await readIndex(dir).catch(() => undefined);
    const manifests = (index?.manifests ?? []).filter((m) => m.annotations?.[RefNameAnnotation] !== tag);
    manifests.push({
      mediaType: MediaType.OciManifest,
      digest: manifestDigest,
      size: manifestBytes.length,
      annotations: { [RefNameAnnotation]: tag },
    });
    await writeAtomic(
      join(dir, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }),
    );
    return {
      name,
      digest: manifestDigest,
      records: config.records?.length ?? 0,
      layers: layers.length,
      ...(mounts.length ? { mounts: mounts.length } : {}),
    };
  } catch (err) {
    throw wrap(`exporting the build cache to ${dir}`, err);
  }
}

async function readIndex(dir: string): Promise<Index> {
  const doc = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Index;
  if (!doc || !Array.isArray(doc.manifests)) throw new InvalidInputError(`${dir}/index.json has no manifests list`);
  return doc;
}

async function readVerified(dir: string, d: Descriptor, what: string): Promise<Buffer> {
  if (d.size > JSON_LIMIT) throw new InvalidInputError(`${what}: ${d.size} bytes, too large`);
  let buf: Buffer;
  try {
    buf = await readFile(blobPath(dir, d.digest));
  } catch {
    throw new NotFoundError(`${what} (blob ${d.digest} in ${dir})`);
  }
  if (buf.length !== d.size || sha256(buf) !== d.digest)
    throw new InvalidInputError(`${what}: blob ${d.digest} in ${dir} does not match its digest or size`);
  return buf;
}

/** openLocalCache reads the cache tagged `tag` in `dir`. Throws when it is missing or unreadable. */
export async function openLocalCache(store: Store, dir: string, tag: string): Promise<CacheSource> {
  const name = `type=local,src=${dir}`;
  let index: Index;
  try {
    index = await readIndex(dir);
  } catch (err) {
    throw wrap(`reading the build cache ${dir}`, err);
  }
  const top =
    index.manifests.find((m) => m.annotations?.[RefNameAnnotation] === tag) ??
    (index.manifests.length === 1 && tag === 'latest' ? index.manifests[0] : undefined);
  if (!top) throw new NotFoundError(`a cache tagged ${tag} in ${dir}`);
  const bytes = await readVerified(dir, top, `the cache manifest of ${dir}`);
  const doc = parseCacheDocument(bytes, top.mediaType, `cache ${dir} manifest ${top.digest}`);
  const configBytes = await readVerified(dir, doc.config, `the cache config of ${dir}`);
  let config: unknown;
  try {
    config = JSON.parse(configBytes.toString('utf8'));
  } catch (err) {
    throw new InvalidInputError(`cache config ${doc.config.digest} in ${dir}: ${(err as Error).message}`);
  }
  const entries = decodeCache(config, doc, `cache config ${doc.config.digest} in ${dir}`);
  return {
    name,
    entries,
    mounts: mountLayers(doc),
    fetch: async (layer) => {
      try {
        await store.putBlob(createReadStream(blobPath(dir, layer.digest)), { digest: layer.digest, size: layer.size });
      } catch (err) {
        throw wrap(`copying cache blob ${layer.digest} from ${dir}`, err);
      }
    },
    close: () => {},
  };
}
