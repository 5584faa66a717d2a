// build(): the library entry of `tsbuild build`. Context + Dockerfile → plan → stages → one image in the store.
//
// The whole build holds a store write lease (a concurrent `tsbuild prune` spares the blobs it writes before they
// are named). The image is named only once everything is stored: a failed build leaves no index entry, only
// layer blobs and cache records that later builds can reuse (and prune can remove).
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { NotFoundError, TsbuildError } from '../sys/errors.js';
import { getImage, type Image, keepUntagged, loadImage, tagImage, writeImage } from '../layers/store/image.js';
import { fullName, parseReference } from '../layers/model/names.js';
import type { Store } from '../layers/store/store.js';
import type { Compression, Descriptor, Digest, ImageConfig, Platform } from '../layers/model/types.js';
import { Records } from '../layers/store/records.js';
import { defaultHost, type Host } from '../sys/host.js';
import { networkStacksGone } from '../sys/namespaces.js';
import { RootfsSession, type StorageDriver } from '../unionfs/rootfs.js';
import { cleanStale } from '../unionfs/stale.js';
import type { CacheSource, CacheSpec, ExportResult } from '../layers/cache/index.js';
import type { RemoteOptions } from '../layers/registry/connect.js';
import { type CacheRecord, exportCaches, inlineCache, openSources, SharedCache } from './cache.js';
import { lowercaseDockerfile, openContext } from './context.js';
import { FileDigests } from './context-digests.js';
import { Executor, type StageResult } from './execute.js';
import type { BuildEvent } from './events.js';
import { epochTime, HistoryLog } from './history.js';
import { parseDockerfile } from './dockerfile/parse.js';
import { DEFAULT_PLATFORM, planBuild, type PlanPlatform } from './plan.js';
import { parseNamedContexts } from './named-contexts.js';
import { type Prefetch, prefetchContext, prefetchRoots } from './context-prefetch.js';
import { buildArgsWithEpoch, resolvePlanEpoch } from './source-epoch.js';
import { checkEntitlements, type ExtraHost, type RunSandbox, writeHostsFile } from './steps/run.js';
import type { Limits, Rlimit } from '../runtime/spec.js';

export interface BuildOptions {
  store: Store;
  /** a directory, a tar archive (plain or compressed), or '-' (the Dockerfile on stdin, no context) */
  context: string;
  /** -f: the Dockerfile (default <context>/Dockerfile; '-' reads stdin) */
  dockerfile?: string;
  /** where '-' reads from (default process.stdin) */
  stdin?: Readable;
  /** names to give the image (NAME[:TAG]) */
  tags?: string[];
  /** --build-arg values */
  buildArgs?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** --target */
  target?: string;
  /** --no-cache: run every step (results are still recorded) */
  noCache?: boolean;
  /** --pull: fetch base images from their registry even when the store has them */
  pull?: boolean;
  /** --secret values by id */
  secrets?: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>;
  /** RUN's network: default (own namespace, outbound through slirp4netns/pasta), none, or host (needs `allow`) */
  network?: 'default' | 'none' | 'host';
  /** --allow entitlements (network.host: root has it anyway; security.insecure), --ssh, --shm-size (bytes) */
  allow?: readonly string[];
  ssh?: readonly import('./ssh-forward.js').SshSource[];
  shmSize?: number;
  /** --memory / --pids-limit of every RUN step (default DEFAULT_RUN_LIMITS, applied where cgroups allow) */
  limits?: Limits;
  /** --ulimit of every RUN step */
  ulimits?: readonly Rlimit[];
  /** --platform (only linux/amd64) */
  platform?: string;
  /**
   * how the build's layers are stored: none (default; as buildah and docker's image store keep them: `push`
   * compresses, with the bytes a compressing build would have written), gzip or zstd (compressed at each commit)
   */
  compression?: Compression;
  /** --squash: the new layers become one */
  squash?: boolean;
  /** --label: set on the final image's config, over what LABEL set (BuildKit's --label) */
  labels?: Readonly<Record<string, string>>;
  buildContexts?: Readonly<Record<string, string>>; // --build-context NAME=VALUE (builder/named-contexts.ts)
  /** --add-host: extra /etc/hosts entries every RUN sees (and keys on) */
  addHosts?: readonly ExtraHost[];
  /** SOURCE_DATE_EPOCH from the environment (a --build-arg SOURCE_DATE_EPOCH wins) */
  sourceDateEpoch?: number;
  /** 'auto' (default): overlay when the host may mount, else the userspace fallback */
  storageDriver?: StorageDriver | 'auto';
  /** the host privileged work goes through (default: this process's, defaultHost()) */
  host?: Host;
  onEvent?: (e: BuildEvent) => void;
  signal?: AbortSignal;
  /** for relative paths (default process.cwd()) */
  cwd?: string;
  /** fetches an image the store lacks (default: layers/registry pullImage) */
  pullImage?: (store: Store, ref: string) => Promise<{ descriptor: Descriptor }>;
  /** --cache-from: shared caches to look keys up in after the store's records, in order (layers/cache/spec.ts) */
  cacheFrom?: readonly CacheSpec[];
  /** --cache-to: where to export the build's cache records once the image is written */
  cacheTo?: readonly CacheSpec[];
  /** registry options of the shared caches (credentials, TLS, retries) */
  cacheRemote?: RemoteOptions;
}

export interface BuildResult {
  /** the image written (manifest descriptor, manifest, config) */
  image: Image;
  /** the manifest's descriptor: its digest is the image's digest */
  descriptor: Descriptor;
  digest: Digest;
  /** the image ID (config digest) */
  configDigest: Digest;
  config: ImageConfig;
  /** the names given, canonical */
  tags: string[];
  /** warnings (unused build args, Dockerfile lint) */
  warnings: string[];
  /** with --cache-from/--cache-to: the caches exported, and the layer blobs fetched from shared caches */
  cache?: { exported: ExportResult[]; fetched: { blobs: number; bytes: number } };
}

/** BuildError is a failed build that is not about a Dockerfile line (context, store, base image). */
export class BuildError extends TsbuildError {
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super('E_BUILD', message, opts);
  }
}

/**
 * build builds the image and names it. Throws DockerfileError (`Dockerfile:12: …`) for a problem with an
 * instruction (including a failing RUN: RunFailedError with the exit code and output), NotFoundError for a
 * missing context, Dockerfile or base image, other TsbuildErrors for the rest. Nothing is named on failure.
 */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  const store = opts.store;
  const host = opts.host ?? defaultHost();
  const onEvent = opts.onEvent ?? (() => {});
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    onEvent({ type: 'warning', message });
  };
  const platform = parsePlatform(opts.platform);
  const tags = (opts.tags ?? []).map((t) => {
    const ref = parseReference(t);
    if (ref.digest && !ref.tag) throw new BuildError(`cannot tag an image with a digest reference: ${t}`);
    return t;
  });
  const abort = new AbortController();
  const onOuterAbort = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const lease = await store.beginWrite();
  // the scratch that killed builds and exports left (mounts detached first, unionfs/stale.ts); stale containers
  // are the RootfsSession's to clean, when it opens its work directory
  await cleanStale(store.root, ['build', 'export'], { host }).catch(() => undefined);
  const tmpDir = join(await store.privateDir('tmp'), `build-${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(tmpDir, { mode: 0o700 });
  if (opts.addHosts?.length) await writeHostsFile(tmpDir, opts.addHosts);
  let ids = 0;
  const step = (name: string): number => {
    const id = ++ids;
    onEvent({ type: 'step', id, name });
    return id;
  };
  let opened: Awaited<ReturnType<typeof openContext>> | undefined;
  let rootfs: RootfsSession | undefined;
  let prefetch: Prefetch | undefined;
  let sources: CacheSource[] = [];
  let ssh: import('./ssh-forward.js').SshForwarder | undefined;
  try {
    if (opts.ssh?.length) ssh = await (await import('./ssh-forward.js')).SshForwarder.open(opts.ssh);
    // The Dockerfile and the context.
    const dfName = opts.dockerfile === '-' || opts.context === '-' ? 'Dockerfile' : (opts.dockerfile ?? 'Dockerfile');
    const loadId = step(`[internal] load build definition from ${dfName.split('/').pop()}`);
    const dockerfile = opts.dockerfile ?? lowercaseDockerfile(opts.context, opts.cwd);
    opened = await openContext({
      context: opts.context,
      ...(dockerfile === undefined ? {} : { dockerfile }),
      ...(opts.stdin ? { stdin: opts.stdin } : {}),
      tmpDir,
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    onEvent({
      type: 'status',
      id: loadId,
      message: `transferring dockerfile: ${Buffer.byteLength(opened.dockerfileText)}B done`,
    });
    onEvent({ type: 'done', id: loadId });
    if (opened.context) {
      // the digests of unchanged context files come from the last build's memo instead of being read again
      if (!opened.context.extracted) opened.context.digests = await FileDigests.open(store.root, opened.context.root);
      const ignId = step('[internal] load .dockerignore');
      onEvent({
        type: 'status',
        id: ignId,
        message: opened.context.ignoreFile
          ? `${opened.context.patterns.length} patterns from ${opened.context.ignoreFile.split('/').pop()}`
          : 'no ignore file',
      });
      onEvent({ type: 'done', id: ignId });
    }
    const parsed = parseDockerfile(opened.dockerfileText, { file: opened.dockerfileName });
    for (const w of parsed.warnings) warn(`${w.file}:${w.line}: ${w.message} (${w.code})`);

    const buildArgs = buildArgsWithEpoch(opts.buildArgs, opts.sourceDateEpoch);
    const planned = planBuild({
      instructions: parsed.instructions,
      buildArgs,
      ...(opts.target ? { target: opts.target } : {}),
      targetPlatform: platform,
      buildPlatform: DEFAULT_PLATFORM,
      escape: parsed.directives.escape,
      file: opened.dockerfileName,
      namedContexts: await parseNamedContexts(opts.buildContexts ?? {}, opts.cwd ?? process.cwd()),
    });
    const plan = await resolvePlanEpoch(planned, { tmpDir, signal: abort.signal, step, onEvent }); // SDE=<stage>
    if (plan.unusedBuildArgs.length)
      warn(`one or more build-args [${plan.unusedBuildArgs.join(' ')}] were not consumed`);

    rootfs = new RootfsSession({ store, host, driver: opts.storageDriver ?? 'auto' });
    // A context without digests in this store is read while the first steps run, as BuildKit transfers it; with a
    // memo, a COPY only stats the files, and reading ahead would add work (context-prefetch.ts).
    const digests = opened.context?.digests;
    if (opened.context && digests && digests.size === 0) {
      const roots = prefetchRoots(plan.needed.flatMap((i) => plan.stages[i]!.steps.map((st) => st.ins)));
      if (roots.length) prefetch = prefetchContext(opened.context, roots);
    }
    // --cache-from / --cache-to: the shared caches behind the store's records (builder/cache.ts)
    let cacheStep = (name: string): number => step(name);
    const cacheIo = {
      warn,
      step: (name: string) => cacheStep(name),
      onEvent,
      ...(opts.cacheRemote ? { remote: opts.cacheRemote } : {}),
    };
    const shared =
      opts.cacheFrom?.length || opts.cacheTo?.length
        ? new SharedCache({
            store,
            local: new Records<CacheRecord>(store, 'build'),
            sources: (sources = await openSources(store, opts.noCache ? [] : (opts.cacheFrom ?? []), cacheIo)),
            ...cacheIo,
            signal: abort.signal,
          })
        : undefined;
    if (shared) shared.rootfs(rootfs);
    await shared?.importMounts(plan, host); // the cache mounts a --cache-from carries, where the local ones are empty
    let history = new HistoryLog();
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const secrets = new Map<string, Uint8Array>(
      opts.secrets instanceof Map ? opts.secrets : Object.entries((opts.secrets ?? {}) as Record<string, Uint8Array>),
    );
    // A pull shows as a step of its own (`#N [internal] pull REF`); its id is taken from the executor's sequence.
    let pullStep = (name: string): number => step(name);
    const resolveImage = imageResolver(store, {
      pull: opts.pull ?? false,
      pullImage: opts.pullImage ?? defaultPull,
      onStatus: (message) => warn(message),
      onPull: (ref) => {
        const id = pullStep(`[internal] pull ${ref}`);
        const started = Date.now();
        return {
          done: (digest) => {
            onEvent({
              type: 'status',
              id,
              message: `pulled ${ref} ${digest} in ${((Date.now() - started) / 1000).toFixed(1)}s`,
            });
            onEvent({ type: 'done', id });
          },
          failed: (message) => onEvent({ type: 'error', id, message }),
        };
      },
    });
    // The stages; once more without a shared cache that fails mid-import (SharedCache.withFallback).
    let executor!: Executor;
    const [ctx, session] = [opened, rootfs];
    const attempt = async (): Promise<StageResult> => {
      const stop = new AbortController();
      const signal = AbortSignal.any([abort.signal, stop.signal]);
      history = new HistoryLog();
      const previous = executor as Executor | undefined;
      executor = new Executor({
        store,
        host,
        plan,
        context: ctx.context,
        file: ctx.dockerfileName,
        escape: parsed.directives.escape,
        rootfs: session,
        cache: shared ?? new Records<CacheRecord>(store, 'build'),
        useCache: !opts.noCache,
        secrets,
        network: opts.network ?? 'default',
        sandbox: { ...runSandbox(opts, onEvent, host), ...(ssh ? { ssh } : {}) },
        compression: opts.compression ?? 'none',
        tmpDir,
        history,
        onEvent,
        signal,
        resolveImage,
        abort: (reason) => stop.abort(reason),
      });
      executor.reserveIds(previous ? previous.nextId() : ids);
      const r = await executor.run();
      await shared?.ensure(r.layers); // the image's layer blobs that a shared cache only promised
      return r;
    };
    pullStep = (name) => {
      const id = executor.nextId();
      onEvent({ type: 'step', id, name });
      return id;
    };
    cacheStep = pullStep;
    let result: StageResult;
    try {
      result = await (shared ? shared.withFallback(attempt, abort.signal) : attempt());
    } catch (err) {
      if (!abort.signal.aborted) abort.abort(err);
      throw err;
    }

    const exportId = executor.nextId();
    onEvent({ type: 'step', id: exportId, name: 'exporting to image' });
    const epoch = plan.epoch === undefined ? undefined : epochTime(plan.epoch);
    let layers = result.layers;
    let hist = history.finalize(result.image.history, now, epoch);
    if (opts.squash) {
      const { squash } = await import('./squash.js');
      const sq = await squash(store, await rootfs.driver(), result, result.baseLayers, hist, {
        compression: opts.compression ?? 'none',
        ...(plan.epoch === undefined ? {} : { sourceDateEpoch: plan.epoch }),
        tmpDir,
        host,
      });
      layers = sq.layers;
      hist = sq.history;
    }
    const config = result.image.config;
    if (!config.OnBuild || config.OnBuild.length === 0) config.OnBuild = null;
    if (opts.labels && Object.keys(opts.labels).length) config.Labels = { ...config.Labels, ...opts.labels };
    const imageConfig: Omit<ImageConfig, 'rootfs'> = {
      // BuildKit's exporter: the epoch, else the last history entry's time (a cached rebuild is the same image)
      created: epoch ?? hist.findLast((h) => h.created !== undefined)?.created ?? now,
      ...(result.image.author ? { author: result.image.author } : {}),
      architecture: result.image.architecture,
      os: result.image.os,
      ...(result.image.variant ? { variant: result.image.variant } : {}),
      ...(result.image['os.version'] ? { 'os.version': result.image['os.version'] } : {}),
      config,
      history: hist,
    };
    // --cache-to type=inline: the records ride in the config (BuildKit's moby.buildkit.cache.v0)
    const inline = shared ? await inlineCache(shared, plan, layers, opts.cacheTo ?? [], warn) : undefined;
    if (inline) (imageConfig as Record<string, unknown>)[inline.key] = inline.value;
    const image = await writeImage(store, { config: imageConfig, layers });
    const descriptor = image.descriptor;
    const named: string[] = [];
    for (const t of tags) {
      await tagImage(store, descriptor, t);
      named.push(fullName(parseReference(t)));
    }
    if (tags.length === 0) await keepUntagged(store, descriptor);
    onEvent({ type: 'status', id: exportId, message: `writing image ${descriptor.digest} done` });
    for (const n of named) onEvent({ type: 'status', id: exportId, message: `naming to ${n} done` });
    onEvent({ type: 'done', id: exportId });
    // cache mount layers exist only to be exported: compressed unless asked otherwise
    const layerOpts = { compression: opts.compression ?? 'gzip', created: epoch ?? now } as const;
    const exported = shared
      ? await exportCaches(store, shared, plan, opts.cacheTo ?? [], { ...cacheIo, ...layerOpts })
      : [];
    return {
      ...(shared ? { cache: { exported, fetched: { ...shared.fetched } } } : {}),
      descriptor,
      digest: descriptor.digest,
      configDigest: image.manifest.config.digest,
      config: image.config,
      tags: named,
      warnings,
      image,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
    await rootfs?.close().catch(() => {});
    for (const s of sources) s.close();
    await prefetch?.stop();
    await opened?.context?.digests?.save().catch(() => {}); // a memo that cannot be written is only a slower next build
    await opened?.cleanup().catch(() => {});
    await rm(tmpDir, { recursive: true, force: true }).catch(() => {});
    await Promise.all([ssh?.close(), networkStacksGone()]); // the RUN steps' network stacks (deferred teardown)
    await lease.end();
  }
}

function parsePlatform(p: string | undefined): PlanPlatform {
  if (p === undefined || p === '') return DEFAULT_PLATFORM;
  const [os, architecture, variant] = p.split('/');
  if (os !== 'linux' || architecture !== 'amd64' || (variant !== undefined && variant !== '')) {
    throw new BuildError(`--platform ${p}: only linux/amd64 can be built on this machine`);
  }
  return DEFAULT_PLATFORM;
}

async function defaultPull(store: Store, ref: string): Promise<{ descriptor: Descriptor }> {
  const { pullImage } = await import('../layers/registry/pull.js');
  return pullImage(store, ref, {});
}

/**
 * imageResolver resolves FROM / --from image names: the local store first (unless --pull), else a pull. Each name
 * is resolved once per build.
 */
function imageResolver(
  store: Store,
  o: {
    pull: boolean;
    pullImage: (store: Store, ref: string) => Promise<{ descriptor: Descriptor }>;
    onStatus: (m: string) => void;
    onPull: (ref: string) => { done(digest: string): void; failed(message: string): void };
  },
): (ref: string) => Promise<Image> {
  const memo = new Map<string, Promise<Image>>();
  const platform: Platform = { os: 'linux', architecture: 'amd64' };
  const pull = async (ref: string): Promise<Image> => {
    const shown = o.onPull(ref);
    try {
      const r = await o.pullImage(store, ref);
      const img = await loadImage(store, r.descriptor, platform);
      shown.done(r.descriptor.digest);
      return img;
    } catch (err) {
      shown.failed((err as Error)?.message ?? String(err));
      throw err;
    }
  };
  const resolve = async (ref: string): Promise<Image> => {
    if (o.pull) {
      try {
        return await pull(ref);
      } catch (err) {
        const local = await getImage(store, ref, platform).catch(() => undefined);
        if (!local) throw pullError(ref, err);
        o.onStatus(`--pull: pulling ${ref} failed (${(err as Error).message}); using the local image`);
        return local;
      }
    }
    try {
      return await getImage(store, ref, platform);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    try {
      return await pull(ref);
    } catch (err) {
      throw pullError(ref, err);
    }
  };
  return (ref) => {
    let p = memo.get(ref);
    if (!p) {
      p = resolve(ref);
      memo.set(ref, p);
    }
    return p;
  };
}

function pullError(ref: string, err: unknown): Error {
  return new TsbuildError(
    'E_NOT_FOUND',
    `image ${ref} not found in the store, and pulling it failed: ${(err as Error)?.message ?? String(err)}`,
    { hint: `pull it (tsbuild pull ${ref}) or bootstrap it (tsbuild bootstrap)`, cause: err },
  );
}

/**
 * DEFAULT_RUN_LIMITS: what a RUN step may use unless --memory/--pids-limit say otherwise, so that a fork bomb or a
 * runaway process stops at the step: 8192 tasks (a parallel compile uses a few hundred) and three quarters of the
 * machine's memory.
 */
export function defaultRunLimits(): Limits {
  return { pids: 8192, memory: Math.floor((totalmem() * 3) / 4) };
}

function runSandbox(opts: BuildOptions, onEvent: (e: BuildEvent) => void, host: Host): RunSandbox {
  checkEntitlements(opts.allow ?? []);
  const asked = opts.limits !== undefined && Object.values(opts.limits).some((v) => v !== undefined);
  let warned = false;
  return {
    limits: asked ? { ...defaultRunLimits(), ...opts.limits } : defaultRunLimits(),
    bestEffort: !asked,
    rlimits: [...(opts.ulimits ?? [])],
    allowNetworkHost: host.caps().root || (opts.allow ?? []).includes('network.host'),
    allowInsecure: (opts.allow ?? []).includes('security.insecure'),
    freshCacheMounts: opts.noCache === true,
    ...(opts.shmSize === undefined ? {} : { shmSize: opts.shmSize }),
    onLimitsSkipped: (reason) => {
      if (warned) return;
      warned = true;
      onEvent({ type: 'warning', message: `RUN steps run without the default limits: ${reason}` });
    },
  };
}
