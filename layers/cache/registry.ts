// `type=registry,ref=REG/REPO:TAG`: a cache in a registry, through the distribution client (saved credentials,
// retries, the transfer floor). Export uploads the layer blobs (skipped when present, mounted from another
// repository of the registry that is known to hold them, registry-blobs.json), then the config, then the manifest
// under the tag. Import fetches the manifest and the config only; a layer blob is downloaded into the store when
// fetched, and recorded in registry-blobs.json, so that pushing the image to the same registry mounts it from the
// cache's repository instead of uploading it again.
//
// What the reference names decides how it is read: a cache manifest (or BuildKit's older cache index), or an image
// (a manifest, or an index whose linux/amd64 manifest is taken) whose config carries an inline cache (inline.ts);
// the layers of such a cache are the image's own, fetched lazily the same way.
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import { sha256 } from '../model/digest.js';
import { fullName, parseReference } from '../model/names.js';
import {
  type Descriptor,
  type Digest,
  type Index,
  isIndexMediaType,
  isManifestMediaType,
  type Manifest,
  MediaType,
} from '../model/types.js';
import { pickPlatform } from '../store/image.js';
import type { Store } from '../store/store.js';
import { repositoryScope } from '../registry/auth.js';
import { BlobSources } from '../registry/blob-sources.js';
import { connect, type RemoteOptions } from '../registry/connect.js';
import { downloadBlob } from '../registry/download.js';
import { readBody } from '../registry/http-exchange.js';
import { type FetchedManifest, fetchManifest, putManifest } from '../registry/manifest.js';
import { forEachLimit } from '../registry/pool.js';
import { uploadBlob } from '../registry/upload.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  type CacheEntry,
  cacheManifest,
  type CacheMountLayer,
  decodeCache,
  encodeCache,
  mountDescriptor,
  mountLayers,
  parseCacheDocument,
} from './format.js';
import { decodeInlineCache } from './inline.js';
import type { CacheSource, ExportResult } from './source.js';

const CONFIG_LIMIT = 16 << 20;
const MAX_MOUNT_SOURCES = 4;

/** exportRegistryCache pushes `entries` as the cache `ref` (its tag; `latest` when none). */
export async function exportRegistryCache(
  store: Store,
  ref: string,
  entries: readonly CacheEntry[],
  opts: RemoteOptions & { jobs?: number } = {},
  mounts: readonly CacheMountLayer[] = [],
): Promise<ExportResult> {
  const r = parseReference(ref);
  if (r.digest && !r.tag)
    throw new InvalidInputError(`--cache-to ref=${ref}: a cache is pushed to a tag, not a digest`);
  const tag = r.tag ?? 'latest';
  const jobs = Math.max(1, Math.min(32, Math.floor(opts.jobs ?? 3)));
  const client = await connect(r.registry, { ...opts, maxSockets: jobs + 2 });
  try {
    const { config, layers } = encodeCache(entries);
    layers.push(...mounts.map(mountDescriptor));
    const configDesc = await store.putJson(config, 'application/vnd.buildkit.cacheconfig.v0');
    const sources = await BlobSources.load(store);
    const mountFrom = new Map<Digest, string[]>();
    const sourceRepos = new Set<string>();
    for (const l of layers) {
      const repos = sources.repositoriesOf(r.registry, l.digest).filter((x) => x !== r.repository);
      if (!repos.length) continue;
      mountFrom.set(l.digest, repos);
      for (const x of repos) if (sourceRepos.size < MAX_MOUNT_SOURCES) sourceRepos.add(x);
    }
    const scopes = [
      repositoryScope(r.repository, ['pull', 'push']),
      ...[...sourceRepos].map((x) => repositoryScope(x, ['pull'])),
    ];
    await forEachLimit(
      [...layers, configDesc],
      jobs,
      async (desc, signal) => {
        await uploadBlob({
          client,
          store,
          repository: r.repository,
          descriptor: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size },
          scopes,
          mountFrom: (mountFrom.get(desc.digest) ?? []).filter((x) => sourceRepos.has(x)),
          signal,
          ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        });
      },
      opts.signal,
    );
    const bytes = Buffer.from(JSON.stringify(cacheManifest(configDesc, layers)));
    await putManifest({
      client,
      repository: r.repository,
      reference: tag,
      bytes,
      mediaType: MediaType.OciManifest,
      scopes,
      ...(opts.signal ? { signal: opts.signal } : {}),
      onWarning: (message) => opts.onEvent?.({ type: 'warning', message }),
    });
    sources.add(
      r.registry,
      r.repository,
      layers.map((l) => l.digest),
    );
    await sources.save();
    return {
      name: fullName({ registry: r.registry, repository: r.repository, tag }),
      digest: sha256(bytes),
      records: config.records?.length ?? 0,
      layers: layers.length,
      ...(mounts.length ? { mounts: mounts.length } : {}),
    };
  } catch (err) {
    throw wrap(`exporting the build cache to ${ref}`, err);
  } finally {
    client.close();
  }
}

/** openRegistryCache reads the cache manifest and config of `ref`. Throws when it is missing or unreadable. */
export async function openRegistryCache(store: Store, ref: string, opts: RemoteOptions = {}): Promise<CacheSource> {
  const r = parseReference(ref);
  const scopes = [repositoryScope(r.repository, ['pull'])];
  const client = await connect(r.registry, { ...opts, maxSockets: 4 });
  const base = { client, repository: r.repository, scopes };
  try {
    const fetched = await fetchManifest({
      ...base,
      reference: r.digest ?? r.tag ?? 'latest',
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const where = `cache ${ref} (${fetched.digest})`;
    // a cache manifest (or the older index), else an image that carries its cache inline (docker's --cache-from IMAGE)
    const image = await imageManifest(base, fetched, ref, opts.signal);
    let entries: Map<Digest, CacheEntry>;
    let mounts: CacheMountLayer[] = [];
    if (image) {
      const config = await readConfig(base, image.manifest.config, opts.signal);
      entries = decodeInlineCache(image.manifest, config, `image ${ref} (${image.digest})`).entries;
    } else {
      const doc = parseCacheDocument(fetched.bytes, fetched.mediaType, where);
      const config = await readConfig(base, doc.config, opts.signal);
      entries = decodeCache(config, doc, `${where} config`);
      mounts = mountLayers(doc);
    }
    return {
      name: ref,
      entries,
      mounts,
      fetch: async (layer: Descriptor, signal?: AbortSignal) => {
        await downloadBlob({
          ...base,
          store,
          descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size },
          ...(signal ? { signal } : {}),
          ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        });
        // a BlobSources of its own per blob: save() forgets additions made while it holds the lock
        const sources = await BlobSources.load(store);
        sources.add(r.registry, r.repository, [layer.digest]);
        await sources.save();
      },
      close: () => client.close(),
    };
  } catch (err) {
    client.close();
    throw err;
  }
}

type Base = { client: Awaited<ReturnType<typeof connect>>; repository: string; scopes: string[] };

/**
 * imageManifest tells an image from a cache by what the registry returned: an image manifest (its config is not a
 * cache config), or an index of images (the linux/amd64 one is fetched). Undefined for a cache manifest or index.
 */
async function imageManifest(
  base: Base,
  fetched: FetchedManifest,
  ref: string,
  signal: AbortSignal | undefined,
): Promise<{ manifest: Manifest; digest: Digest } | undefined> {
  if (isIndexMediaType(fetched.mediaType)) {
    const index = fetched.doc as Index;
    if (!Array.isArray(index.manifests) || index.manifests.some((m) => m?.mediaType === CACHE_CONFIG_MEDIA_TYPE))
      return undefined;
    const pick = pickPlatform(index, { os: 'linux', architecture: 'amd64' });
    if (!pick) throw new InvalidInputError(`image ${ref} has no linux/amd64 manifest to read an inline cache from`);
    const one = await fetchManifest({
      ...base,
      reference: pick.digest,
      expectedSize: pick.size,
      ...(signal ? { signal } : {}),
    });
    if (!isManifestMediaType(one.mediaType))
      throw new InvalidInputError(`image ${ref}: ${pick.digest} is not an image manifest`);
    return { manifest: one.doc as Manifest, digest: one.digest };
  }
  const m = fetched.doc as Manifest;
  if (!isManifestMediaType(fetched.mediaType) || !m?.config || m.config.mediaType === CACHE_CONFIG_MEDIA_TYPE)
    return undefined;
  return { manifest: m, digest: fetched.digest };
}

async function readConfig(base: Base, desc: Descriptor, signal: AbortSignal | undefined): Promise<unknown> {
  const what = `pulling cache config ${desc.digest} from ${base.client.registry}/${base.repository}`;
  if (desc.size > CONFIG_LIMIT) throw new InvalidInputError(`${what}: ${desc.size} bytes, too large`);
  const res = await base.client.request({
    method: 'GET',
    url: `/v2/${base.repository}/blobs/${desc.digest}`,
    scopes: base.scopes,
    expect: [200],
    what,
    ...(signal ? { signal } : {}),
  });
  const bytes = await readBody(res.body, desc.size, base.client.floor);
  if (bytes.length !== desc.size || sha256(bytes) !== desc.digest)
    throw new TsbuildError('E_DIGEST_MISMATCH', `${what}: the registry served bytes that do not match the digest`);
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidInputError(`${what}: not valid JSON (${(err as Error).message})`);
  }
}
