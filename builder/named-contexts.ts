// Named contexts (`build --build-context NAME=VALUE`, docker buildx): more inputs a Dockerfile reaches by name, with
// BuildKit's rules (frontend/dockerui/namedcontext.go, dockerfile2llb/convert.go) and buildx's value forms:
//
//   DIR                         a local directory (relative to the cwd): read with its own `.dockerignore`, files
//                               owned by 0:0 (buildx resets owners). `COPY --from=NAME` and `RUN --mount from=NAME`
//                               read it in place, its file digests keyed as the main context's are; `FROM NAME` has
//                               it as the stage's one layer and no image config (BuildKit's empty image).
//   docker-image://REF[@DIG]    an image, resolved as FROM resolves one (the store, else a pull); `scratch` is empty.
//   oci-layout://PATH[:TAG|@DIG] an image in an OCI image layout on disk, copied into the store (blobs verified).
//   target:…, git and HTTP(S)   refused: `target:` is bake's, and tsbuild has no remote contexts.
//
// A name is normalized as buildx does (a reference's familiar form without `:latest`, so `alpine`,
// `docker.io/library/alpine:latest` and `alpine:latest` are one name; uppercase is refused). FROM X, `--from=X` and
// `--mount from=X` look X up the same way; a stage named like a context is replaced by it (its instructions never
// run, its image's ONBUILD triggers neither), `scratch` and `context` are never looked up. Contexts are loaded only
// when a build reaches them. SOURCE_DATE_EPOCH=NAME of a local or image context leaves the epoch unset (no HTTP or
// git metadata to read a time from).
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { InvalidInputError, NotFoundError, TsbuildError, wrap } from '../sys/errors.js';
import type { Host } from '../sys/host.js';
import { parseDigest } from '../layers/model/digest.js';
import type { Layer } from '../layers/model/layer.js';
import {
  type Compression,
  ContainerdNameAnnotation,
  type Descriptor,
  type Digest,
  type Index,
  isIndexMediaType,
  type Manifest,
  RefNameAnnotation,
} from '../layers/model/types.js';
import { type Image, loadImage, pickPlatform, writeImage } from '../layers/store/image.js';
import { Records } from '../layers/store/records.js';
import type { Store } from '../layers/store/store.js';
import { type CacheRecord, cacheKey, isCacheRecord } from './cache.js';
import { makeFilter, readIgnorePatterns } from './context.js';
import { FileDigests } from './context-digests.js';
import { epochTime } from './history.js';
import { DEFAULT_PATH } from './stage-base.js';
import { contextName, lookupName } from './context-names.js';
import { type CopyFrom, hashSelection, selectSources } from './steps/copy-select.js';
import { copyInto } from './steps/copy-write.js';

export { contextName, lookupName, splitBuildContexts } from './context-names.js';

export type NamedSource =
  | { kind: 'local'; dir: string }
  | { kind: 'image'; ref: string }
  | { kind: 'scratch' }
  | { kind: 'oci-layout'; dir: string; tag?: string; digest?: Digest };

export interface NamedContext {
  /** the normalized name */
  name: string;
  /** the value as given */
  value: string;
  source: NamedSource;
}

/**
 * parseNamedContexts checks every name and value before a build, as buildx does: local directories must exist,
 * remote and bake values are refused. Images and OCI layouts are read only when a stage reaches them.
 */
export async function parseNamedContexts(
  given: Readonly<Record<string, string>>,
  cwd: string,
): Promise<Map<string, NamedContext>> {
  const out = new Map<string, NamedContext>();
  for (const [rawName, value] of Object.entries(given)) {
    const name = contextName(rawName);
    const flag = `--build-context ${rawName}=${value}`;
    let source: NamedSource;
    if (value.startsWith('target:')) {
      throw new InvalidInputError(
        `${flag}: a target: context names a bake target (docker buildx bake); tsbuild has no bake`,
        'build that target first (tsbuild --target STAGE -t NAME), then give docker-image://NAME',
      );
    } else if (isRemote(value)) {
      throw new InvalidInputError(
        `${flag}: remote contexts (git repositories, HTTP(S) URLs) are not supported by tsbuild`,
        'clone or download it, then give its directory',
      );
    } else if (value.startsWith('docker-image://')) {
      const ref = value.slice('docker-image://'.length);
      source = ref === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref };
    } else if (value.startsWith('oci-layout://')) {
      source = parseOciLayout(value, cwd);
    } else {
      const dir = resolve(cwd, value);
      const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
        throw new InvalidInputError(`failed to get build context ${name}: stat ${value}: ${errnoText(err)}`);
      });
      if (!st.isDirectory()) throw new InvalidInputError(`failed to get build context path ${value}: not a directory`);
      source = { kind: 'local', dir };
    }
    out.set(name, { name, value, source });
  }
  return out;
}

function errnoText(err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return 'no such file or directory';
  if (err.code === 'EACCES') return 'permission denied';
  return err.message;
}

/** isRemote is buildx's urlutil.IsRemoteURL: HTTP(S) and git URLs, `git@…`, and github.com paths. */
function isRemote(v: string): boolean {
  return /^(https?|git|ssh):\/\//i.test(v) || /^git@/.test(v) || /^github\.com\//.test(v);
}

/** parseOciLayout reads `oci-layout://PATH[:TAG][@sha256:…]` (buildx util/ocilayout): the tag defaults to latest. */
function parseOciLayout(value: string, cwd: string): NamedSource {
  let path = value.slice('oci-layout://'.length);
  let digest: Digest | undefined;
  let tag: string | undefined;
  const at = path.lastIndexOf('@');
  if (at >= 0 && /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/.test(path.slice(at + 1))) {
    digest = parseDigest(path.slice(at + 1), `the digest of ${value}`);
    path = path.slice(0, at);
  }
  const colon = path.lastIndexOf(':');
  if (colon >= 0 && /^[\w][\w.-]{0,127}$/.test(path.slice(colon + 1))) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  if (path === '') throw new InvalidInputError(`invalid context value ${value}: the OCI layout path is empty`);
  return {
    kind: 'oci-layout',
    dir: isAbsolute(path) ? path : resolve(cwd, path),
    ...(tag === undefined && digest === undefined ? { tag: 'latest' } : tag === undefined ? {} : { tag }),
    ...(digest ? { digest } : {}),
  };
}

export interface NamedContextsOptions {
  store: Store;
  host: Host;
  /** the build's private scratch */
  tmpDir: string;
  compression: Compression;
  /** SOURCE_DATE_EPOCH: the times of a local context's layer */
  epoch?: number;
  /** false with --no-cache: a local context's layer is made again */
  useCache: boolean;
  /** FROM's resolver: the store first, then a pull */
  resolveImage: (ref: string) => Promise<Image>;
}

/** NamedContexts answers the lookups of one build; each context is loaded once, when first used. */
export class NamedContexts {
  private readonly images = new Map<string, Promise<Image>>();
  private readonly locals = new Map<string, Promise<CopyFrom>>();
  private readonly memos: FileDigests[] = [];

  constructor(
    readonly contexts: ReadonlyMap<string, NamedContext>,
    private readonly o: NamedContextsOptions,
  ) {}

  /** find is the context `ref` names (FROM X, --from=X), if any. */
  find(ref: string): NamedContext | undefined {
    if (this.contexts.size === 0) return undefined;
    const name = lookupName(ref);
    return name === undefined ? undefined : this.contexts.get(name);
  }

  /** resolveImage is FROM's resolver with the named contexts first. */
  resolveImage = (ref: string): Promise<Image> => {
    const nc = this.find(ref);
    if (!nc) return this.o.resolveImage(ref);
    let p = this.images.get(nc.name);
    if (!p) {
      p = this.image(nc).catch((err: unknown) => {
        throw err instanceof TsbuildError ? wrap(`--build-context ${nc.name}=${nc.value}`, err) : err;
      });
      this.images.set(nc.name, p);
    }
    return p;
  };

  /** localSource is the directory of a local context that `ref` names, as COPY and mounts read it; else undefined. */
  async localSource(ref: string): Promise<CopyFrom | undefined> {
    const nc = this.find(ref);
    return nc?.source.kind === 'local' ? this.local(nc, nc.source.dir) : undefined;
  }

  /** save writes back the digest memos of the local contexts read. */
  async save(): Promise<void> {
    for (const m of this.memos) await m.save().catch(() => {});
  }

  private local(nc: NamedContext, dir: string): Promise<CopyFrom> {
    let p = this.locals.get(nc.name);
    if (!p) {
      p = (async () => {
        const text = await readFile(join(dir, '.dockerignore'), 'utf8').catch(() => '');
        const digests = await FileDigests.open(this.o.store.root, dir);
        this.memos.push(digests);
        const from: CopyFrom = {
          root: dir,
          filter: makeFilter(dir, readIgnorePatterns(text)),
          label: `context ${nc.name}`,
          resetOwner: true,
          digests,
        };
        return from;
      })();
      this.locals.set(nc.name, p);
    }
    return p;
  }

  private async image(nc: NamedContext): Promise<Image> {
    const s = nc.source;
    switch (s.kind) {
      case 'image':
        return this.o.resolveImage(s.ref);
      case 'scratch':
        return this.synthetic(null, nc.name);
      case 'oci-layout':
        return importFromLayout(this.o.store, s.dir, s.tag, s.digest, nc.value);
      case 'local':
        return this.synthetic(await this.localLayer(nc, s.dir), nc.name);
    }
  }

  /**
   * localLayer is a local context as one layer, keyed by its files' content (as a COPY of the whole directory is):
   * an unchanged directory reuses the recorded layer.
   */
  private async localLayer(nc: NamedContext, dir: string): Promise<CacheRecord> {
    const { store, epoch } = this.o;
    const from = await this.local(nc, dir);
    const sel = selectSources(from, ['/']);
    const key = cacheKey('', { op: 'named-context', content: await hashSelection(sel, true, from.digests), epoch });
    const records = new Records<CacheRecord>(store, 'build');
    const hit = this.o.useCache ? await records.get(key, isCacheRecord) : undefined;
    if (hit) return hit;
    const scratch = await mkdtemp(join(this.o.tmpDir, 'named-'));
    const mtime = epoch === undefined ? {} : { mtime: epoch };
    await copyInto(scratch, from, sel, {
      dest: '/',
      unpack: false,
      tmpDir: this.o.tmpDir,
      host: this.o.host,
      ...mtime,
    });
    let layer: Layer | null = null;
    if ((await readdir(scratch)).length) {
      const [{ tarFromDirectory }, { commitLayer }] = await Promise.all([
        import('../layers/tar/create.js'),
        import('../layers/store/commit.js'),
      ]);
      const tar = tarFromDirectory(scratch, epoch === undefined ? {} : { sourceDateEpoch: epoch });
      const c = await commitLayer(store, tar, { compression: this.o.compression });
      layer = { descriptor: c.descriptor, diffId: c.diffId };
    }
    const created = epoch === undefined ? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') : epochTime(epoch);
    const rec: CacheRecord = { version: 1, layer, created, createdBy: `local source for ${nc.name}` };
    await records.put(key, rec);
    return rec;
  }

  /** synthetic is BuildKit's empty image (PATH, WorkingDir /) with the layer of a local context, if any. */
  private async synthetic(rec: CacheRecord | null, name: string): Promise<Image> {
    const created = rec?.created ?? epochTime(this.o.epoch ?? 0);
    return writeImage(this.o.store, {
      config: {
        created,
        architecture: 'amd64',
        os: 'linux',
        config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: '/' },
        history: rec?.layer
          ? [{ created, created_by: `local source for ${name}`, comment: 'buildkit.exporter.image.v0' }]
          : [],
      },
      layers: rec?.layer ? [rec.layer] : [],
    });
  }
}

/**
 * importFromLayout copies the linux/amd64 image that `tag` or `digest` names in the OCI layout `dir` into the store
 * (each blob verified) and loads it. A tag is matched on io.containerd.image.name, then on
 * org.opencontainers.image.ref.name; without a match, the layout's only image (buildx resolveDigest).
 */
async function importFromLayout(
  store: Store,
  dir: string,
  tag: string | undefined,
  digest: Digest | undefined,
  value: string,
): Promise<Image> {
  const unresolved = (why: string): InvalidInputError =>
    new InvalidInputError(`oci-layout reference ${JSON.stringify(value)} could not be resolved: ${why}`);
  let index: Index;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Index;
  } catch (err) {
    throw unresolved((err as Error).message);
  }
  if (!index || !Array.isArray(index.manifests)) throw unresolved(`${join(dir, 'index.json')} lists no manifests`);
  let top: Descriptor | undefined;
  if (digest) {
    top = index.manifests.find((m) => m.digest === digest);
    if (!top) {
      // any manifest or index of the layout, by digest: its media type is in its own bytes
      const bytes = await readFile(blobFile(dir, digest)).catch(() => undefined);
      if (!bytes) throw new NotFoundError(`${digest} in the OCI layout ${dir}`);
      let doc: { mediaType?: string };
      try {
        doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
      } catch {
        throw unresolved(`${digest} is not a manifest`);
      }
      top = { mediaType: doc?.mediaType ?? '', digest, size: bytes.length };
    }
  } else {
    const named = (k: string): Descriptor | undefined => index.manifests.find((m) => m.annotations?.[k] === tag);
    top =
      named(ContainerdNameAnnotation) ??
      named(RefNameAnnotation) ??
      (index.manifests.length === 1 ? index.manifests[0] : undefined);
    if (!top)
      throw new NotFoundError(
        `an image tagged ${tag} in the OCI layout ${dir}`,
        `give its digest: oci-layout://${dir}@sha256:…`,
      );
  }
  await copyBlob(store, dir, top);
  if (isIndexMediaType(top.mediaType)) {
    const child = pickPlatform(await store.readJson<Index>(top.digest), { os: 'linux', architecture: 'amd64' });
    if (!child) throw new NotFoundError(`a linux/amd64 image in ${value}`);
    await copyBlob(store, dir, child);
    top = child;
  }
  const manifest = await store.readJson<Manifest>(top.digest);
  for (const d of [manifest.config, ...(manifest.layers ?? [])]) await copyBlob(store, dir, d);
  return loadImage(store, top);
}

/** blobFile is where the layout keeps a blob; a digest the layout's JSON gives is checked first (no `../` in it). */
function blobFile(dir: string, d: Digest): string {
  const [alg, hex] = parseDigest(d, `a digest in the OCI layout ${dir}`).split(':');
  return join(dir, 'blobs', alg!, hex!);
}

async function copyBlob(store: Store, dir: string, d: Descriptor): Promise<void> {
  if (await store.hasBlob(d.digest, d.size)) return;
  try {
    await store.putBlob(createReadStream(blobFile(dir, d.digest)), { digest: d.digest, size: d.size });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${d.digest} in ${dir}`);
    throw wrap(`copying blob ${d.digest} from the OCI layout ${dir}`, err);
  }
}
