// pushImage: an image from the store to a registry. Uncompressed layers (a build's) are compressed first, gzip by
// default (layers/store/compress-layers.ts: the manifest a build with --compression gzip would have written).
// Blobs next (config and layers, in parallel, each skipped when present, mounted when another repository of the
// registry is known to hold it, else uploaded as stored), then manifests: the children of an index before the
// index. Compressed layers are never recompressed, and an image without uncompressed layers is pushed byte for byte.
import { InvalidInputError, NotFoundError } from '../../sys/errors.js';
import { compressImageLayers } from '../store/compress-layers.js';
import { findImage } from '../store/image.js';
import { fullName, parseReference, type Reference } from '../model/names.js';
import type { Store } from '../store/store.js';
import {
  type Compression,
  type Descriptor,
  type Digest,
  type Index,
  type Manifest,
  isIndexMediaType,
  isManifestMediaType,
} from '../model/types.js';
import { repositoryScope } from './auth.js';
import { BlobSources } from './blob-sources.js';
import { connect, type RemoteOptions } from './connect.js';
import type { BlobOutcome } from './events.js';
import { putManifest } from './manifest.js';
import { forEachLimit } from './pool.js';
import { uploadBlob } from './upload.js';

export interface PushOptions extends RemoteOptions {
  /** blobs uploaded in parallel (default 3) */
  jobs?: number;
  /** PATCH in chunks of this many bytes (default: one PUT for small blobs, one streamed PATCH for large ones) */
  chunkSize?: number;
  /** what uncompressed layers become: gzip (default, as docker push), zstd, or none (pushed uncompressed) */
  compression?: Compression;
}

export interface PushResult {
  /** the pushed manifest's (or index's) digest */
  digest: Digest;
  mediaType: string;
  size: number;
  /** the destination, canonical: `registry/repository:tag` */
  name: string;
  /** how many blobs were uploaded, mounted, or already there */
  blobs: Record<'uploaded' | 'mounted' | 'exists', number>;
}

interface PushPlan {
  blobs: Descriptor[];
  /** manifests in push order: children, then the top one (last) */
  manifests: Array<{ descriptor: Descriptor; bytes: Buffer; mediaType: string }>;
}

const MAX_INDEX_CHILDREN = 256;
const MAX_MOUNT_SOURCES = 4;

/**
 * pushImage pushes the image `name` names in the store to `dest` (default: `name` itself), e.g.
 * `localhost:5000/app:1`. The destination is tagged; a destination by digest must equal the image's digest.
 */
export async function pushImage(
  store: Store,
  name: string,
  dest: string | undefined,
  opts: PushOptions = {},
): Promise<PushResult> {
  const entry = await findImage(store, name);
  const destInput = dest ?? (entry.fullName || undefined);
  if (!destInput)
    throw new InvalidInputError(
      `image ${name} has no name to push to`,
      'give a destination: tsbuild push IMAGE registry.example.com/repo:tag',
    );
  const ref = parseReference(destInput);
  const compression = opts.compression ?? 'gzip';
  const lease = await store.beginWrite(); // a concurrent prune spares the compressed copies until they are pushed
  try {
    const top =
      compression === 'none'
        ? entry.descriptor
        : (
            await compressImageLayers(store, entry.descriptor, compression, (l) =>
              opts.onEvent?.({ type: 'compress', digest: l.digest, size: l.size }),
            )
          ).descriptor;
    if (ref.digest && ref.digest !== top.digest) {
      throw new InvalidInputError(`cannot push ${name} (${top.digest}) to ${destInput}: the digests differ`);
    }
    return await pushPlanned(store, ref, top, opts);
  } finally {
    await lease.end();
  }
}

async function pushPlanned(store: Store, ref: Reference, topDesc: Descriptor, opts: PushOptions): Promise<PushResult> {
  const plan = await planPush(store, topDesc);
  const jobs = Math.max(1, Math.min(32, Math.floor(opts.jobs ?? 3)));
  const client = await connect(ref.registry, { ...opts, maxSockets: jobs + 2 });
  try {
    const sources = await BlobSources.load(store);
    const mountFrom = new Map<Digest, string[]>();
    const sourceRepos = new Set<string>();
    for (const b of plan.blobs) {
      const repos = sources.repositoriesOf(ref.registry, b.digest).filter((r) => r !== ref.repository);
      if (!repos.length) continue;
      mountFrom.set(b.digest, repos);
      for (const r of repos) if (sourceRepos.size < MAX_MOUNT_SOURCES) sourceRepos.add(r);
    }
    const scopes = [
      repositoryScope(ref.repository, ['pull', 'push']),
      ...[...sourceRepos].map((r) => repositoryScope(r, ['pull'])),
    ];
    const counts: PushResult['blobs'] = { uploaded: 0, mounted: 0, exists: 0 };
    await forEachLimit(
      plan.blobs,
      jobs,
      async (desc, signal) => {
        const outcome: BlobOutcome = await uploadBlob({
          client,
          store,
          repository: ref.repository,
          descriptor: desc,
          scopes,
          mountFrom: (mountFrom.get(desc.digest) ?? []).filter((r) => sourceRepos.has(r)),
          ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
          signal,
          ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        });
        if (outcome === 'uploaded' || outcome === 'mounted' || outcome === 'exists') counts[outcome]++;
        opts.onEvent?.({ type: 'blob-done', digest: desc.digest, size: desc.size, outcome });
      },
      opts.signal,
    );
    const top = plan.manifests[plan.manifests.length - 1] as PushPlan['manifests'][number];
    for (const m of plan.manifests) {
      const isTop = m === top;
      const reference = isTop ? (ref.tag ?? m.descriptor.digest) : m.descriptor.digest;
      await putManifest({
        client,
        repository: ref.repository,
        reference,
        bytes: m.bytes,
        mediaType: m.mediaType,
        scopes,
        ...(opts.signal ? { signal: opts.signal } : {}),
        onWarning: (message) => opts.onEvent?.({ type: 'warning', message }),
      });
      opts.onEvent?.({
        type: 'manifest',
        digest: m.descriptor.digest,
        mediaType: m.mediaType,
        reference,
        direction: 'up',
      });
    }
    sources.add(
      ref.registry,
      ref.repository,
      plan.blobs.map((b) => b.digest),
    );
    await sources.save();
    return {
      digest: top.descriptor.digest,
      mediaType: top.mediaType,
      size: top.bytes.length,
      name: fullName(destRef(ref, top.descriptor.digest)),
      blobs: counts,
    };
  } finally {
    client.close();
  }
}

function destRef(ref: Reference, digest: Digest): Reference {
  return ref.tag
    ? { registry: ref.registry, repository: ref.repository, tag: ref.tag }
    : { registry: ref.registry, repository: ref.repository, digest };
}

/** planPush lists the blobs and manifests to push, checking up front that the store has all of them. */
async function planPush(store: Store, top: Descriptor): Promise<PushPlan> {
  const blobs = new Map<Digest, Descriptor>();
  const manifests: PushPlan['manifests'] = [];
  const seen = new Set<Digest>();
  const visit = async (desc: Descriptor, depth: number): Promise<void> => {
    if (seen.has(desc.digest)) return;
    seen.add(desc.digest);
    if (depth > 2) throw new InvalidInputError(`index ${desc.digest} nests too deeply`);
    if (!(await store.hasBlob(desc.digest))) {
      throw new NotFoundError(
        `manifest ${desc.digest}`,
        depth ? 'the store lacks a platform of this index; push needs all of them' : undefined,
      );
    }
    const bytes = await store.readBlob(desc.digest, 8 << 20);
    const doc = JSON.parse(bytes.toString('utf8')) as (Manifest | Index) & { mediaType?: string };
    const mediaType = typeof doc.mediaType === 'string' && doc.mediaType ? doc.mediaType : desc.mediaType;
    if (isIndexMediaType(mediaType)) {
      const children = (doc as Index).manifests ?? [];
      if (children.length > MAX_INDEX_CHILDREN)
        throw new InvalidInputError(`index ${desc.digest} lists more than ${MAX_INDEX_CHILDREN} manifests`);
      for (const child of children) await visit(child, depth + 1);
    } else if (isManifestMediaType(mediaType)) {
      const m = doc as Manifest;
      for (const b of [m.config, ...(m.layers ?? [])]) {
        if (!b || typeof b.digest !== 'string' || typeof b.size !== 'number')
          throw new InvalidInputError(`manifest ${desc.digest} has a malformed descriptor`);
        if (/nondistributable|foreign/.test(b.mediaType) && !(await store.hasBlob(b.digest))) continue; // not ours to push
        if (!(await store.hasBlob(b.digest, b.size)))
          throw new NotFoundError(
            `blob ${b.digest} of manifest ${desc.digest}`,
            'the store is missing a blob; pull or build the image again',
          );
        blobs.set(b.digest, { mediaType: b.mediaType, digest: b.digest, size: b.size });
      }
    } else {
      throw new InvalidInputError(`${desc.digest}: cannot push media type ${JSON.stringify(mediaType)}`);
    }
    manifests.push({ descriptor: desc, bytes, mediaType });
  };
  await visit(top, 0);
  // the largest blobs first keeps the parallel jobs busy until the end
  return { blobs: [...blobs.values()].sort((a, b) => b.size - a.size), manifests };
}
