// pullImage: an image from a registry into the store. The manifest (or index → the platform's manifest) is
// fetched and verified, config and layers are downloaded in parallel and verified, manifests and configs are
// stored byte-exact, and only when everything is in the store is the image named in index.json.
import { InvalidInputError, NotFoundError } from '../../sys/errors.js';
import { DEFAULT_PLATFORM, loadImage, pickPlatform, tagImage } from '../store/image.js';
import { fullName, parseReference } from '../model/names.js';
import type { Store } from '../store/store.js';
import {
  type Descriptor,
  type Digest,
  type Index,
  type Manifest,
  type Platform,
  isIndexMediaType,
} from '../model/types.js';
import { repositoryScope } from './auth.js';
import { BlobSources } from './blob-sources.js';
import { connect, type RemoteOptions } from './connect.js';
import { downloadBlob } from './download.js';
import { fetchManifest, type FetchedManifest } from './manifest.js';
import { forEachLimit } from './pool.js';
import { checkBlobSize, checkRoom } from '../limits.js';

export interface PullOptions extends RemoteOptions {
  /** the platform to pick from an index (default linux/amd64) */
  platform?: Platform;
  /** blobs downloaded in parallel (default 3) */
  jobs?: number;
}

export interface PullResult {
  /** the stored manifest's descriptor (the image's digest) */
  descriptor: Descriptor;
  /** canonical name pulled: `registry/repository:tag` or `registry/repository@digest` */
  name: string;
}

const MAX_LAYERS = 1000;
/** configs larger than this are refused (the store reads JSON blobs up to 64 MiB) */
const CONFIG_LIMIT = 64 << 20;

/**
 * pullImage pulls `ref` (a docker-style reference: `debian` is docker.io/library/debian:latest) into the store and
 * names it there (a pull by digest is recorded untagged). On any failure the index is left as it was.
 */
export async function pullImage(store: Store, ref: string, opts: PullOptions = {}): Promise<PullResult> {
  const r = parseReference(ref);
  const platform = opts.platform ?? DEFAULT_PLATFORM;
  const jobs = Math.max(1, Math.min(32, Math.floor(opts.jobs ?? 3)));
  const scopes = [repositoryScope(r.repository, ['pull'])];
  const client = await connect(r.registry, { ...opts, maxSockets: jobs + 2 });
  const lease = await store.beginWrite();
  try {
    const base = { client, repository: r.repository, scopes, ...(opts.signal ? { signal: opts.signal } : {}) };
    let fetched = await fetchManifest({ ...base, reference: r.digest ?? (r.tag as string) });
    let platformOf: Platform | undefined;
    if (isIndexMediaType(fetched.mediaType)) {
      const index = fetched.doc as Index;
      if (!Array.isArray(index.manifests))
        throw new InvalidInputError(`index ${fetched.digest} from ${r.registry}/${r.repository} has no manifests list`);
      const child = pickPlatform(index, platform);
      if (!child) {
        const have = index.manifests
          .map((m) =>
            m.platform ? [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/') : '',
          )
          .filter(Boolean)
          .slice(0, 12);
        throw new NotFoundError(
          `a ${platformText(platform)} manifest in ${fullName(r)}`,
          have.length ? `it has: ${[...new Set(have)].join(', ')}; pick one with --platform` : undefined,
        );
      }
      if (isIndexMediaType(child.mediaType))
        throw new InvalidInputError(`index ${fetched.digest} nests another index; not supported`);
      fetched = await fetchManifest({
        ...base,
        reference: checkDigest(child.digest, fetched),
        expectedSize: child.size,
      });
      if (isIndexMediaType(fetched.mediaType))
        throw new InvalidInputError(`index ${fetched.digest} nests another index; not supported`);
      platformOf = child.platform;
    }
    opts.onEvent?.({
      type: 'manifest',
      digest: fetched.digest,
      mediaType: fetched.mediaType,
      reference: r.digest ?? (r.tag as string),
      direction: 'down',
    });
    const blobs = blobsOf(fetched);
    // declared sizes are checked (ceiling, free space: each blob, then all together) before a byte is asked for
    const missing = [];
    for (const b of blobs) if (!(await store.hasBlob(b.digest, b.size))) missing.push(b);
    for (const b of missing)
      await checkBlobSize(`blob ${b.digest} of ${r.registry}/${r.repository}`, b.size, store.blobDir, client.env);
    const total = missing.reduce((n, b) => n + b.size, 0);
    if (missing.length > 1)
      await checkRoom(
        `the ${missing.length} blobs of ${fullName(r)} to download declare ${total} bytes`,
        total,
        store.blobDir,
      );
    await forEachLimit(
      blobs,
      jobs,
      async (desc, signal) => {
        const outcome = await downloadBlob({
          ...base,
          store,
          descriptor: desc,
          signal,
          ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        });
        opts.onEvent?.({ type: 'blob-done', digest: desc.digest, size: desc.size, outcome });
      },
      opts.signal,
    );
    const stored = await store.putBlobBytes(fetched.bytes, fetched.mediaType);
    const descriptor: Descriptor = platformOf ? { ...stored, platform: platformOf } : stored;
    // the oracle of the store: refuses a malformed manifest or config before anything is named
    await loadImage(store, descriptor, platform);
    if (r.tag) {
      await tagImage(store, descriptor, fullName({ registry: r.registry, repository: r.repository, tag: r.tag }));
    } else {
      await store.updateIndex((index) => {
        if (!index.manifests.some((d) => d.digest === descriptor.digest)) index.manifests.push(descriptor);
      });
    }
    const sources = await BlobSources.load(store);
    sources.add(
      r.registry,
      r.repository,
      blobs.map((b) => b.digest),
    );
    await sources.save();
    return { descriptor, name: fullName(r) };
  } finally {
    await lease.end();
    client.close();
  }
}

function platformText(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

function checkDigest(d: string, index: FetchedManifest): Digest {
  if (!/^sha256:[a-f0-9]{64}$/.test(d))
    throw new InvalidInputError(
      `index ${index.digest} names an invalid or unsupported digest ${JSON.stringify(String(d).slice(0, 80))}`,
    );
  return d as Digest;
}

/** blobsOf checks a manifest's descriptors and returns its config and layers, each once. */
function blobsOf(m: FetchedManifest): Descriptor[] {
  const doc = m.doc as Manifest;
  if (!doc.config || !Array.isArray(doc.layers))
    throw new InvalidInputError(`manifest ${m.digest} has no config or no layers list`);
  if (doc.layers.length > MAX_LAYERS)
    throw new InvalidInputError(`manifest ${m.digest} lists more than ${MAX_LAYERS} layers`);
  const out = new Map<Digest, Descriptor>();
  for (const [i, d] of [doc.config, ...doc.layers].entries()) {
    if (!d || typeof d !== 'object' || typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest)) {
      throw new InvalidInputError(
        `manifest ${m.digest} has an invalid or unsupported digest in ${i === 0 ? 'its config' : `layer ${i - 1}`}`,
      );
    }
    if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
      throw new InvalidInputError(`manifest ${m.digest} has an invalid size for ${d.digest}`);
    if (i === 0 && d.size > CONFIG_LIMIT)
      throw new InvalidInputError(`manifest ${m.digest}: config ${d.digest} is ${d.size} bytes, too large`);
    const prev = out.get(d.digest);
    if (prev && prev.size !== d.size) throw new InvalidInputError(`manifest ${m.digest} gives ${d.digest} two sizes`);
    out.set(d.digest, { mediaType: String(d.mediaType), digest: d.digest, size: d.size });
  }
  return [...out.values()];
}
