// `tsbuild load`: read an OCI-layout archive (tsbuild save, skopeo oci-archive, docker >= 25 save) or a
// legacy `docker save` archive (manifest.json + <id>/layer.tar) into the store.
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { autoDecompress } from '../compress/compress.js';
import { commitLayer, type CommittedLayer } from '../store/commit.js';
import { parseDigest, sha256 } from '../model/digest.js';
import { InvalidInputError, NotFoundError, wrap } from '../../sys/errors.js';
import { reachableBlobs, tagImage } from '../store/image.js';
import type { Store } from '../store/store.js';
import {
  type Compression,
  ContainerdNameAnnotation,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Index,
  type Manifest,
  MediaType,
  RefNameAnnotation,
} from '../model/types.js';

const MAX_JSON = 32 << 20;

export interface LoadOptions {
  /** archive path, or '-' with `stdin` */
  input: string;
  stdin?: Readable;
  /** compression for layers that arrive uncompressed (legacy docker archives) */
  compression?: Compression;
  onEvent?: (e: { type: 'blob' | 'layer'; name: string; size: number }) => void;
}

export interface LoadedImage {
  names: string[];
  descriptor: Descriptor;
}

interface Collected {
  json: Map<string, Buffer>;
  blobs: Set<Digest>;
  legacyLayers: Map<string, CommittedLayer>;
}

/** loadArchive reads the archive, stores its blobs (each verified), and names its images. */
export async function loadArchive(store: Store, opts: LoadOptions): Promise<LoadedImage[]> {
  const label = opts.input === '-' ? 'standard input' : opts.input;
  const lease = await store.beginWrite();
  try {
    const input =
      opts.input === '-' ? (opts.stdin ?? process.stdin) : createReadStream(opts.input, { highWaterMark: 1 << 20 });
    const got = await collect(store, input, opts).catch((err) => {
      throw wrap(`loading ${label}`, err);
    });
    if (got.json.has('index.json')) return await loadOci(store, got, label);
    if (got.json.has('manifest.json')) return await loadLegacy(store, got, label);
    throw new InvalidInputError(
      `${label} is neither an OCI image archive (index.json) nor a docker save archive (manifest.json)`,
    );
  } finally {
    await lease.end();
  }
}

function collect(store: Store, input: Readable, opts: LoadOptions): Promise<Collected> {
  const got: Collected = { json: new Map(), blobs: new Set(), legacyLayers: new Map() };
  const extract = tar.extract();
  return new Promise<Collected>((resolve, reject) => {
    const fail = (err: Error): void => {
      input.destroy();
      extract.destroy();
      reject(err);
    };
    extract.on('entry', (header, body, next) => {
      const done = (err?: unknown): void => {
        if (err) fail(err as Error);
        else next();
      };
      // tar-stream bodies are streamx streams: adapt them once to Node streams
      const nodeBody = (): Readable => Readable.from(body as AsyncIterable<Buffer>, { objectMode: false });
      const name = posix.normalize(header.name).replace(/^\.\//, '').replace(/\/$/, '');
      if (header.type !== 'file' && header.type !== 'contiguous-file') {
        body.resume();
        body.on('end', () => done());
        return;
      }
      const blob = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
      if (blob) {
        if (blob[1] !== 'sha256') return done(new InvalidInputError(`blob ${name}: unsupported digest algorithm`));
        let digest: Digest;
        try {
          digest = parseDigest(`sha256:${blob[2]}`, name);
        } catch (err) {
          return done(err);
        }
        store
          .putBlob(nodeBody(), { digest, size: header.size ?? 0 })
          .then(() => {
            got.blobs.add(digest);
            opts.onEvent?.({ type: 'blob', name: digest, size: header.size ?? 0 });
            done();
          })
          .catch((err) => done(wrap(`blob ${digest}`, err)));
        return;
      }
      if (/^[^/]+\/layer\.tar$/.test(name)) {
        commitLayer(store, nodeBody(), { compression: opts.compression ?? 'gzip' })
          .then((layer) => {
            got.legacyLayers.set(name, layer);
            opts.onEvent?.({ type: 'layer', name, size: layer.uncompressedSize });
            done();
          })
          .catch((err) => done(wrap(`layer ${name}`, err)));
        return;
      }
      if (name.endsWith('.json') || name === 'oci-layout' || name === 'repositories') {
        if ((header.size ?? 0) > MAX_JSON)
          return done(new InvalidInputError(`${name} is too large (${header.size} bytes)`));
        const parts: Buffer[] = [];
        body.on('data', (b: unknown) => parts.push(b as Buffer));
        body.on('end', () => {
          got.json.set(name, Buffer.concat(parts));
          done();
        });
        body.on('error', done);
        return;
      }
      body.resume();
      body.on('end', () => done());
    });
    extract.on('finish', () => resolve(got));
    extract.on('error', (err: Error) => fail(new InvalidInputError(`not a valid tar archive: ${err.message}`)));
    const plain = autoDecompress();
    input.on('error', fail);
    plain.on('error', fail);
    input.pipe(plain).pipe(extract);
  });
}

function parseJson<T>(got: Collected, name: string, label: string): T {
  const buf = got.json.get(name);
  if (!buf) throw new InvalidInputError(`${label}: ${name} is missing`);
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (err) {
    throw new InvalidInputError(`${label}: ${name} is not valid JSON: ${(err as Error).message}`);
  }
}

async function loadOci(store: Store, got: Collected, label: string): Promise<LoadedImage[]> {
  const index = parseJson<Index>(got, 'index.json', label);
  const manifests = Array.isArray(index.manifests) ? index.manifests : [];
  // names recorded only in docker's manifest.json (RepoTags), keyed by config path
  const repoTags = new Map<string, string[]>();
  if (got.json.has('manifest.json')) {
    for (const e of parseJson<Array<{ Config?: string; RepoTags?: string[] | null }>>(got, 'manifest.json', label) ??
      []) {
      if (e.Config) repoTags.set(posix.basename(e.Config).replace(/\.json$/, ''), e.RepoTags ?? []);
    }
  }
  const out: LoadedImage[] = [];
  for (const raw of manifests) {
    const d: Descriptor = {
      mediaType: raw.mediaType,
      digest: parseDigest(raw.digest, `${label}: index.json entry`),
      size: raw.size,
    };
    if (raw.platform) d.platform = raw.platform;
    const needed = await reachableBlobs(store, [d]);
    for (const b of needed) {
      if (!(await store.hasBlob(b))) throw new NotFoundError(`blob ${b} (referenced by ${d.digest}) in ${label}`);
    }
    const names = new Set<string>();
    const full = raw.annotations?.[ContainerdNameAnnotation];
    const ref = raw.annotations?.[RefNameAnnotation];
    if (full) names.add(full);
    else if (ref && /[:/]/.test(ref)) names.add(ref);
    if (names.size === 0 && d.mediaType !== MediaType.OciIndex) {
      const m = await store.readJson<Manifest>(d.digest);
      for (const t of repoTags.get(m.config.digest.slice(7)) ?? []) names.add(t);
    }
    for (const n of names) await tagImage(store, d, n);
    if (names.size === 0) await keepUntagged(store, d);
    out.push({ names: [...names], descriptor: d });
  }
  return out;
}

async function loadLegacy(store: Store, got: Collected, label: string): Promise<LoadedImage[]> {
  const entries = parseJson<Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>>(
    got,
    'manifest.json',
    label,
  );
  if (!Array.isArray(entries)) throw new InvalidInputError(`${label}: manifest.json is not a list`);
  const out: LoadedImage[] = [];
  for (const e of entries) {
    const configPath = posix.normalize(e.Config ?? '');
    const configBytes = got.json.get(configPath);
    if (!configBytes) throw new InvalidInputError(`${label}: config ${e.Config} is missing`);
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    } catch (err) {
      throw new InvalidInputError(`${label}: ${configPath} is not valid JSON: ${(err as Error).message}`);
    }
    const layers = (e.Layers ?? []).map((p) => {
      const l = got.legacyLayers.get(posix.normalize(p));
      if (!l) throw new InvalidInputError(`${label}: layer ${p} is missing`);
      return l;
    });
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== layers.length || layers.some((l, i) => l.diffId !== diffIds[i])) {
      throw new InvalidInputError(`${label}: the layers of ${configPath} do not match its rootfs.diff_ids`);
    }
    // keep the config bytes as they are, so the image ID stays the one docker showed
    const configDesc = await store.putBlobBytes(configBytes, MediaType.OciConfig);
    if (configDesc.digest !== sha256(configBytes)) throw new InvalidInputError(`${label}: config digest mismatch`);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: layers.map((l) => l.descriptor),
    };
    const d = await store.putJson(manifest, MediaType.OciManifest);
    const names = e.RepoTags ?? [];
    for (const n of names) await tagImage(store, d, n);
    if (names.length === 0) await keepUntagged(store, d);
    out.push({ names, descriptor: d });
  }
  return out;
}

/** keepUntagged records an unnamed image in index.json (so prune keeps it), once. */
async function keepUntagged(store: Store, d: Descriptor): Promise<void> {
  await store.updateIndex((index) => {
    if (!index.manifests.some((m) => m.digest === d.digest)) index.manifests.push(d);
  });
}
