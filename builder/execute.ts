// Executing a plan: each stage's instructions in order, metadata into the image config and history, filesystem
// steps (RUN, COPY, ADD, WORKDIR) into layers through builder/rootfs.ts, every filesystem step looked up in the
// build cache first. Stages are memoized promises: the ones the target needs start together, so independent
// stages run in parallel; a stage waits only for the stages it reads from.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { createWriteStream, lstatSync, mkdirSync, lutimesSync, lchownSync } from 'node:fs';
import { chainId } from '../layers/model/digest.js';
import { InvalidInputError, TsbuildError } from '../sys/errors.js';
import type { Image } from '../layers/store/image.js';
import type { Store } from '../layers/store/store.js';
import { type Compression, type ContainerConfig, type Descriptor, type HistoryEntry, MediaType } from '../layers/model/types.js';
import { secureJoin } from '../sys/secure-path.js';
import { type BuildCache, cacheKey, type LayerRef } from './cache.js';
import { applyConfigInstruction, type ConfigState, DEFAULT_SHELL, exposedPorts } from './steps/metadata.js';
import type { BuildContext } from './context.js';
import {
  copyInto,
  type CopyFrom,
  hashSelection,
  parseChmod,
  resolveChown,
  type Selected,
  selectSources,
  writeStagedFile,
} from './steps/copy.js';
import { DockerfileError } from './dockerfile/errors.js';
import { expandWord, expandWords, lexWord } from './dockerfile/expand.js';
import { goQuoteList, goList, healthString, HistoryLog } from './history.js';
import type { Instruction, RunInstruction, CopyInstruction, AddInstruction } from './dockerfile/instructions.js';
import {
  cacheMountDir,
  ensureCacheDir,
  lockCacheMount,
  mountStub,
  parseMount,
  type RunMount,
  writeSecretFile,
} from './steps/run-mounts.js';
import { parseDockerfile } from './dockerfile/parse.js';
import { type BuildPlan, PROXY_ARGS, type StagePlan, type StageStep } from './plan.js';
import type { BuildEvent } from './progress.js';
import type { Rootfs, Stub, View } from './rootfs.js';
import { runStep } from './steps/run.js';
import type { Mount } from '../runtime/spec.js';

/** StageImage is the image being built by a stage, without rootfs (layers are kept beside it). */
export interface StageImage {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  author?: string;
  config: ContainerConfig;
  history: HistoryEntry[];
}

/** StageResult is a stage's final state. */
export interface StageResult {
  index: number;
  image: StageImage;
  layers: LayerRef[];
  /** the cache key of the stage's filesystem */
  fsKey: string;
  /** the stage's environment: image Env plus ARG values (what RUN sees) */
  env: Map<string, string>;
  /** ARGs declared in the stage (and inherited from its base stage), with their values */
  buildArgs: Array<{ key: string; value?: string }>;
  /** how many of `layers` come from the base image at the root of the stage's FROM chain */
  baseLayers: number;
}

export interface ExecuteOptions {
  store: Store;
  plan: BuildPlan;
  context: BuildContext | null;
  /** the Dockerfile's name in messages */
  file: string;
  escape: string;
  rootfs: Rootfs;
  cache: BuildCache;
  /** false with --no-cache: nothing is looked up (records are still written) */
  useCache: boolean;
  secrets: ReadonlyMap<string, Uint8Array>;
  /** --network: RUN's default */
  network: 'default' | 'none' | 'host';
  compression: Compression;
  /** a private scratch directory */
  tmpDir: string;
  history: HistoryLog;
  onEvent: (e: BuildEvent) => void;
  signal: AbortSignal;
  /** resolves FROM / --from image names: the store first, then a pull */
  resolveImage: (ref: string) => Promise<Image>;
  /** now, as RFC 3339 (fixed for the whole build) */
  now: string;
  /** called with the first failure of a stage, so that the others stop (aborting `signal`) */
  abort?: (reason: unknown) => void;
}

/** RunFailedError is a RUN whose process exited non-zero. */
export class RunFailedError extends DockerfileError {
  constructor(
    file: string,
    ins: Instruction,
    readonly exitCode: number,
    readonly command: string[],
    readonly output: string,
  ) {
    super({
      file,
      line: ins.line,
      endLine: ins.endLine,
      reason: `RUN failed: process ${JSON.stringify(command.join(' '))} did not complete successfully: exit code: ${exitCode}`,
    });
  }
}

/** OCI_OF maps Docker layer media types to their OCI twins (same bytes): a built image is all OCI. */
const OCI_OF: Record<string, string> = {
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerLayer]: MediaType.OciLayer,
  [MediaType.DockerForeignLayerGzip]: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
};

/** baseLayers lists an image's layers (OCI media types) with their diffIDs. */
export function baseLayers(img: Image): LayerRef[] {
  return img.manifest.layers.map((d, i) => {
    const descriptor: Descriptor = { mediaType: OCI_OF[d.mediaType] ?? d.mediaType, digest: d.digest, size: d.size };
    if (d.urls) descriptor.urls = d.urls;
    return { descriptor, diffId: img.config.rootfs.diff_ids[i]! };
  });
}

const SCRATCH_KEY = cacheKey('', { op: 'scratch' });

/** Executor builds the stages of one plan. */
export class Executor {
  private readonly results = new Map<number, Promise<StageResult>>();
  private stepIds = 0;

  constructor(private readonly o: ExecuteOptions) {}

  nextId(): number {
    return ++this.stepIds;
  }

  /** reserveIds makes the next step ids start after `n` (ids the caller already used). */
  reserveIds(n: number): void {
    this.stepIds = Math.max(this.stepIds, n);
  }

  /** run builds every needed stage (in parallel where independent) and returns the target's result. */
  async run(): Promise<StageResult> {
    let first: { error: unknown } | undefined;
    const all = this.o.plan.needed.map((i) =>
      this.stage(i).catch((error: unknown) => {
        if (!first) {
          first = { error };
          this.o.abort?.(error);
        }
        throw error;
      }),
    );
    await Promise.allSettled(all);
    // the first failure is the cause; the others were stopped because of it
    if (first) throw first.error;
    return this.stage(this.o.plan.target);
  }

  /** stage returns the (memoized) build of stage `i`. */
  stage(i: number): Promise<StageResult> {
    let p = this.results.get(i);
    if (!p) {
      p = new StageRun(this, this.o, this.o.plan.stages[i]!).run();
      p.catch(() => {}); // observed by run()
      this.results.set(i, p);
    }
    return p;
  }
}

interface Step {
  id: number;
  name: string;
}

/** StageRun carries one stage's state through its instructions. */
class StageRun {
  private image!: StageImage;
  private layers: LayerRef[] = [];
  private fsKey = SCRATCH_KEY;
  private env = new Map<string, string>();
  private buildArgs: Array<{ key: string; value?: string }> = [];
  private cmdSet = false;
  private baseLayers = 0;
  private stepIndex = 0;
  /** a step of this stage failed (a later abort carrying its error is not a cancellation here) */
  private failedHere = false;
  /** progress steps of the stage: the plan's count plus the base image's ONBUILD triggers */
  private total: number;
  private readonly file: string;

  constructor(
    private readonly ex: Executor,
    private readonly o: ExecuteOptions,
    private readonly sp: StagePlan,
  ) {
    this.file = o.file;
    this.total = sp.total;
  }

  private prefix(onbuild: boolean): string {
    this.stepIndex++;
    const total = this.total;
    const width = Math.floor(Math.log10(Math.max(total, 1))) + 1;
    const num = `${String(this.stepIndex).padStart(width)}/${total}`;
    return `[${this.sp.displayName ? `${this.sp.displayName} ` : ''}${num}] ${onbuild ? 'ONBUILD ' : ''}`;
  }

  private begin(name: string): Step {
    const step = { id: this.ex.nextId(), name };
    this.o.onEvent({ type: 'step', id: step.id, name });
    return step;
  }

  private fail(ins: Instruction, err: unknown, onbuild: boolean): never {
    if (err instanceof DockerfileError || (err as Error)?.name === 'AbortError') throw err;
    const line = onbuild ? this.sp.from.line : ins.line;
    const msg = err instanceof Error ? err.message : String(err);
    const kw = ins.keyword.toUpperCase();
    throw new DockerfileError({
      file: this.file,
      line,
      endLine: onbuild ? this.sp.from.endLine : ins.endLine,
      reason: `${onbuild ? 'ONBUILD ' : ''}${kw}: ${msg}`,
      ...(err instanceof TsbuildError && err.hint ? { hint: err.hint } : {}),
      cause: err,
    });
  }

  private x(word: string): string {
    return expandWord(word, this.env, { escape: this.o.escape });
  }

  async run(): Promise<StageResult> {
    const sp = this.sp;
    let steps: StageStep[] = sp.steps;
    try {
      await this.init();
    } catch (err) {
      this.fail(sp.from, err, false);
    }
    // ONBUILD triggers of a base image run first, then are cleared.
    const triggers = this.image.config.OnBuild ?? [];
    if (sp.base.kind === 'image' && triggers.length) {
      const parsed: StageStep[] = [];
      for (const t of triggers) {
        try {
          const { instructions } = parseDockerfile(t, { file: this.file, fragment: true });
          for (const ins of instructions) parsed.push({ ins, onbuild: true });
        } catch (err) {
          this.fail(sp.from, err, true);
        }
      }
      steps = [...parsed, ...steps];
    }
    if (sp.base.kind !== 'scratch') this.image.config.OnBuild = null;
    for (const { ins, onbuild } of steps) {
      this.o.signal.throwIfAborted();
      try {
        await this.dispatch(ins, onbuild);
      } catch (err) {
        this.fail(ins, err, onbuild);
      }
    }
    return {
      index: sp.index,
      image: this.image,
      layers: this.layers,
      fsKey: this.fsKey,
      env: this.env,
      buildArgs: this.buildArgs,
      baseLayers: this.baseLayers,
    };
  }

  /** init sets up the stage from its base: scratch, an earlier stage, or an image. */
  private async init(): Promise<void> {
    const sp = this.sp;
    const platform = this.o.plan.targetPlatform;
    if (sp.platform !== undefined) checkPlatform(sp.platform, this.o.plan);
    switch (sp.base.kind) {
      case 'scratch':
        this.image = {
          architecture: platform.architecture,
          os: platform.os,
          ...(platform.variant ? { variant: platform.variant } : {}),
          config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: '/' },
          history: [],
        };
        this.fsKey = SCRATCH_KEY;
        break;
      case 'stage': {
        const parent = await this.ex.stage(sp.base.index);
        this.image = structuredClone(parent.image);
        this.image.history = [...parent.image.history]; // the same entry objects: their times are set at the end
        this.image.config.OnBuild = null;
        this.layers = [...parent.layers];
        this.fsKey = parent.fsKey;
        this.env = new Map(parent.env);
        this.buildArgs = parent.buildArgs.map((a) => ({ ...a }));
        this.baseLayers = parent.baseLayers;
        break;
      }
      case 'image': {
        let img: Image;
        try {
          img = await this.o.resolveImage(sp.base.ref);
        } catch (err) {
          const step = this.begin(`${this.prefix(false)}FROM ${sp.base.ref}`);
          this.o.onEvent({ type: 'error', id: step.id, message: (err as Error).message });
          throw err;
        }
        this.total += triggerSteps(img.config.config?.OnBuild ?? [], this.file);
        const step = this.begin(`${this.prefix(false)}FROM ${sp.base.ref}`);
        const c = img.config;
        this.image = {
          architecture: c.architecture,
          os: c.os,
          ...(c.variant ? { variant: c.variant } : {}),
          ...(c['os.version'] ? { 'os.version': c['os.version'] } : {}),
          ...(c.author ? { author: c.author } : {}),
          config: structuredClone(c.config ?? {}),
          history: structuredClone(c.history ?? []),
        };
        this.layers = baseLayers(img);
        this.baseLayers = this.layers.length;
        this.fsKey = this.layers.length ? cacheKey('', { op: 'layers', chain: chainId(this.layers.map((l) => l.diffId)) }) : SCRATCH_KEY;
        this.o.onEvent({ type: 'status', id: step.id, message: `resolve ${sp.base.ref} ${img.descriptor.digest}` });
        this.o.onEvent({ type: 'done', id: step.id });
        break;
      }
    }
    const config = this.image.config;
    if (!(config.Env ?? []).some((e) => e.startsWith('PATH='))) config.Env = [...(config.Env ?? []), `PATH=${DEFAULT_PATH}`];
    if (sp.base.kind !== 'stage') {
      for (const kv of config.Env ?? []) {
        const eq = kv.indexOf('=');
        this.env.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
      }
    } else if (!this.env.has('PATH')) this.env.set('PATH', DEFAULT_PATH);
  }

  private async dispatch(ins: Instruction, onbuild: boolean): Promise<void> {
    switch (ins.kind) {
      case 'arg':
        return this.arg(ins);
      case 'env':
        return this.envInstruction(ins);
      case 'label': {
        const labels = { ...(this.image.config.Labels ?? {}) };
        const parts: string[] = [];
        for (const p of ins.pairs) {
          const k = this.x(p.key);
          const v = this.x(p.value);
          labels[k] = v;
          parts.push(`${k}=${v}`);
        }
        this.image.config.Labels = labels;
        return this.meta(`LABEL ${parts.join(' ')}`);
      }
      case 'run':
        return this.runInstruction(ins, onbuild);
      case 'copy':
      case 'add':
        return this.copyInstruction(ins, onbuild);
      case 'workdir':
        return this.workdir(ins, onbuild);
      case 'onbuild':
        this.applyConfig(ins);
        return; // BuildKit writes no history entry for ONBUILD
      case 'cmd': {
        this.applyConfig(ins);
        this.image.config.ArgsEscaped = true;
        return this.meta(`CMD ${goQuoteList(this.image.config.Cmd ?? [])}`);
      }
      case 'entrypoint':
        this.applyConfig(ins);
        return this.meta(`ENTRYPOINT ${goQuoteList(this.image.config.Entrypoint ?? [])}`);
      case 'shell':
        this.applyConfig(ins);
        return this.meta(`SHELL ${goList(ins.shell)}`);
      case 'expose': {
        const ports: string[] = [];
        for (const raw of ins.ports) for (const w of expandWords(raw, this.env, { escape: this.o.escape })) ports.push(...exposedPorts(w));
        this.image.config.ExposedPorts = { ...(this.image.config.ExposedPorts ?? {}) };
        for (const p of ports) this.image.config.ExposedPorts[p] = {};
        return this.meta(`EXPOSE ${goList(ports)}`);
      }
      case 'user':
        this.applyConfig(ins);
        return this.meta(`USER ${this.image.config.User ?? ''}`);
      case 'volume': {
        const vols = ins.paths.map((p) => this.x(p));
        this.applyConfig(ins);
        return this.meta(`VOLUME ${goList(vols)}`);
      }
      case 'stopsignal':
        this.applyConfig(ins);
        return this.meta(`STOPSIGNAL ${this.image.config.StopSignal ?? ''}`);
      case 'healthcheck':
        this.applyConfig(ins);
        return this.meta(`HEALTHCHECK ${healthString(this.image.config.Healthcheck ?? {})}`);
      case 'maintainer': {
        this.image.author = ins.maintainer;
        return this.meta(`MAINTAINER ${ins.maintainer}`);
      }
      case 'from':
        throw new InvalidInputError('FROM inside a stage');
    }
  }

  /** applyConfig runs builder/config-changes on the stage's config (CMD/ENTRYPOINT state carried in cmdSet). */
  private applyConfig(ins: Instruction): void {
    const state: ConfigState = { config: this.image.config, cmdSet: this.cmdSet };
    applyConfigInstruction(state, ins, this.env, { escape: this.o.escape });
    this.image.config = state.config;
    this.cmdSet = state.cmdSet;
  }

  private meta(createdBy: string): void {
    this.image.history.push(this.o.history.add(createdBy, null));
  }

  /** arg is BuildKit's dispatchArg: --build-arg, else the default (expanded), else the global value. */
  private arg(ins: Extract<Instruction, { kind: 'arg' }>): void {
    const parts: string[] = [];
    for (const a of ins.args) {
      const given = this.o.plan.buildArgs.get(a.key);
      let value: string | undefined;
      if (given !== undefined) value = given;
      else if (a.value !== undefined) value = this.x(a.value);
      else if (this.o.plan.globalArgs.has(a.key)) value = this.o.plan.globalArgs.get(a.key);
      if (value !== undefined) this.env.set(a.key, value);
      this.buildArgs.push(value === undefined ? { key: a.key } : { key: a.key, value });
      parts.push(value === undefined ? a.key : `${a.key}=${value}`);
    }
    this.meta(`ARG ${parts.join(' ')}`);
  }

  /** envInstruction is BuildKit's dispatchEnv: values see the env before the instruction; a key keeps its place. */
  private envInstruction(ins: Extract<Instruction, { kind: 'env' }>): void {
    const snapshot = new Map(this.env);
    const parts: string[] = [];
    const list = [...(this.image.config.Env ?? [])];
    for (const p of ins.pairs) {
      const k = expandWord(p.key, snapshot, { escape: this.o.escape });
      const v = expandWord(p.value, snapshot, { escape: this.o.escape });
      this.env.set(k, v);
      const i = list.findIndex((e) => (e.indexOf('=') < 0 ? e : e.slice(0, e.indexOf('='))) === k);
      if (i >= 0) list[i] = `${k}=${v}`;
      else list.push(`${k}=${v}`);
      parts.push(`${k}=${v}`);
    }
    this.image.config.Env = list;
    this.meta(`ENV ${parts.join(' ')}`);
  }

  // ─── filesystem steps ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * fsStep runs one filesystem step through the cache: a hit reuses the recorded layer; a miss runs `work` and
   * records what it made. The history entry and the stage's layers and key are updated either way.
   */
  private async fsStep(
    step: Step,
    key: string,
    createdBy: string,
    work: () => Promise<LayerRef | null>,
  ): Promise<void> {
    const o = this.o;
    let rec = o.useCache ? await o.cache.get(key) : undefined;
    if (rec) {
      o.onEvent({ type: 'cached', id: step.id });
    } else {
      const layer = await work();
      const created = o.plan.epoch !== undefined ? epochTime(o.plan.epoch) : new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      rec = { version: 1, layer, created, createdBy };
      await o.cache.put(key, rec);
    }
    if (rec.layer) this.layers.push(rec.layer);
    this.fsKey = key;
    this.image.history.push(o.history.add(createdBy, rec.layer ? { time: rec.created } : null));
    o.onEvent({ type: 'done', id: step.id });
  }

  private async workdir(ins: Extract<Instruction, { kind: 'workdir' }>, onbuild: boolean): Promise<void> {
    this.applyConfig(ins);
    const wd = this.image.config.WorkingDir || '/';
    if (wd === '/') return this.meta(`WORKDIR ${wd}`);
    const user = this.image.config.User ?? '';
    const step = this.begin(`${this.prefix(onbuild)}WORKDIR ${wd}`);
    const key = cacheKey(this.fsKey, { op: 'mkdir', path: wd, user, epoch: this.o.plan.epoch ?? null });
    await this.guard(step, () =>
      this.fsStep(step, key, `WORKDIR ${wd}`, async () => {
        const root = await this.o.rootfs.openStep(this.layers);
        try {
          const owner = user === '' ? { uid: 0, gid: 0 } : resolveChown(root.dir, user.split(':')[0] === '' ? '0' : user);
          mkdirAllOwned(root.dir, wd, owner, this.o.plan.epoch);
          return await root.commit(this.commitOpts());
        } finally {
          await root.discard();
        }
      }),
    );
  }

  private commitOpts(): { compression: Compression; sourceDateEpoch?: number } {
    return { compression: this.o.compression, ...(this.o.plan.epoch === undefined ? {} : { sourceDateEpoch: this.o.plan.epoch }) };
  }

  /** guard reports a step's failure as an error event before rethrowing. */
  private async guard(step: Step, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const canceled = this.o.signal.aborted && err === this.o.signal.reason && !this.failedHere;
      this.failedHere = true;
      this.o.onEvent({ type: 'error', id: step.id, message: canceled ? 'CANCELED' : err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }

  private async runInstruction(ins: RunInstruction, onbuild: boolean): Promise<void> {
    const o = this.o;
    if (ins.security !== undefined && ins.security !== 'sandbox') {
      throw new InvalidInputError(`--security=${ins.security} is not allowed: tsbuild runs every step sandboxed`);
    }
    const config = this.image.config;
    const args = ins.exec.form === 'exec' ? [...ins.exec.args] : [...(config.Shell?.length ? config.Shell : DEFAULT_SHELL), ins.exec.script];
    if (args.length === 0) throw new InvalidInputError('RUN needs a command');
    const cwd = config.WorkingDir || '/';
    const user = config.User ?? '';
    let network: 'host' | 'none';
    const net = ins.network ?? o.network;
    if (net === 'none') network = 'none';
    else if (net === 'host' || net === 'default') network = 'host';
    else throw new InvalidInputError(`unsupported network mode ${JSON.stringify(net)} (default, none or host)`);

    // Environment: the stage env, plus proxy build args that no ARG declared (kept out of history and keys).
    const envList = [...this.env].map(([k, v]) => `${k}=${v}`);
    const proxies: string[] = [];
    for (const k of PROXY_ARGS) {
      const v = o.plan.buildArgs.get(k);
      if (v !== undefined && !this.env.has(k)) proxies.push(`${k}=${v}`);
    }
    const mounts = ins.mounts.map((m) => parseMount(m, (s) => this.x(s), cwd));
    const createdBy = `RUN ${runCommandString(args, this.buildArgs, this.env)} # buildkit`;
    const step = this.begin(`${this.prefix(onbuild)}RUN ${displayRun(ins)}`);

    await this.guard(step, async () => {
      // Sources of bind mounts and their cache-key parts.
      const prepared = await this.prepareMounts(mounts);
      try {
        const key = cacheKey(this.fsKey, {
          op: 'run',
          args,
          env: envList,
          cwd,
          user,
          network,
          mounts: prepared.keys,
          files: ins.files.map((f) => ({ path: f.path, mode: f.mode, sha: sha(f.content) })),
        });
        await this.fsStep(step, key, createdBy, async () => {
          const output: Buffer[] = [];
          let outputSize = 0;
          const stubs: Stub[] = [
            { path: '/proc', dir: true },
            { path: '/dev', dir: true },
            { path: '/sys', dir: true },
            { path: '/etc/hosts', dir: false },
            { path: '/etc/resolv.conf', dir: false },
            ...prepared.stubs,
          ];
          const root = await o.rootfs.openStep(this.layers, stubs);
          try {
            const runMounts = await prepared.materialize();
            const r = await runStep({
              rootfs: root.dir,
              args,
              env: [...envList, ...proxies, ...prepared.env],
              cwd,
              user,
              network,
              mounts: runMounts,
              files: ins.files,
              tmpDir: prepared.dir,
              signal: o.signal,
              onOutput: (stream, chunk) => {
                if (outputSize < 4 << 20) {
                  output.push(chunk);
                  outputSize += chunk.length;
                }
                o.onEvent({ type: 'log', id: step.id, stream, data: chunk.toString() });
              },
            });
            o.signal.throwIfAborted();
            if (r.exitCode !== 0) {
              throw new RunFailedError(this.file, ins, r.exitCode, args, Buffer.concat(output).toString());
            }
            return await root.commit(this.commitOpts());
          } finally {
            await root.discard();
          }
        });
      } finally {
        await prepared.release();
      }
    });
  }

  /** prepareMounts resolves RUN --mount sources, their cache-key parts, stubs and env (secrets). */
  private async prepareMounts(mounts: RunMount[]): Promise<{
    keys: unknown[];
    stubs: Stub[];
    env: string[];
    dir: string;
    materialize: () => Promise<Mount[]>;
    release: () => Promise<void>;
  }> {
    const o = this.o;
    const dir = await mkdtemp(join(o.tmpDir, 'run-'));
    const views: View[] = [];
    const releases: Array<() => void | Promise<void>> = [];
    const keys: unknown[] = [];
    const stubs: Stub[] = [];
    const env: string[] = [];
    const makers: Array<() => Promise<Mount | undefined>> = [];
    const release = async (): Promise<void> => {
      for (const r of releases.reverse()) await r();
      for (const v of views) await v.release();
      await rm(dir, { recursive: true, force: true });
    };
    try {
      for (const m of mounts) {
        switch (m.type) {
          case 'bind': {
            const src = await this.sourceFor(m.from, 'RUN --mount');
            if (src.view) views.push(src.view);
            const from = src.from;
            const sel = selectSources(from, [m.source]);
            const s = sel[0]!;
            const isDir = s.node.st.isDirectory();
            keys.push({ type: 'bind', target: m.target, readonly: m.readonly, source: m.source, from: m.from ?? null, content: await hashSelection(sel, from.resetOwner) });
            const st = mountStub(m, isDir);
            if (st) stubs.push(st);
            makers.push(async () => {
              // A copy: .dockerignore and ownership apply, and writes (rw) are thrown away.
              const copy = await mkdtemp(join(dir, 'bind-'));
              const target = isDir ? '/' : `/${s.node.name}`;
              await copyInto(copy, from, sel, { dest: isDir ? '/' : target, tmpDir: dir });
              return { source: isDir ? copy : join(copy, s.node.name), destination: m.target, readonly: m.readonly };
            });
            break;
          }
          case 'cache': {
            keys.push({ type: 'cache', target: m.target, readonly: m.readonly, mode: m.mode, uid: m.uid, gid: m.gid });
            stubs.push({ path: m.target, dir: true });
            const host = cacheMountDir(o.store.root, m.id);
            makers.push(async () => {
              if (m.sharing === 'locked') releases.push(await lockCacheMount(m.id));
              let seed: ((d: string) => Promise<void>) | undefined;
              if (m.from !== undefined) {
                const src = await this.sourceFor(m.from, 'RUN --mount');
                if (src.view) views.push(src.view);
                const sel = selectSources(src.from, [m.source]);
                seed = async (d) => copyInto(d, src.from, sel, { dest: '/', tmpDir: dir });
              }
              await ensureCacheDir(host, m, seed);
              return { source: host, destination: m.target, readonly: m.readonly };
            });
            break;
          }
          case 'tmpfs': {
            keys.push({ type: 'tmpfs', target: m.target, size: m.size ?? null });
            stubs.push({ path: m.target, dir: true });
            makers.push(async () => {
              const d = await mkdtemp(join(dir, 'tmpfs-'));
              return { source: d, destination: m.target, readonly: false };
            });
            break;
          }
          case 'secret': {
            keys.push({ type: 'secret', id: m.id, target: m.target ?? null, env: m.env ?? null, mode: m.mode, uid: m.uid, gid: m.gid, required: m.required });
            const value = o.secrets.get(m.id);
            if (value === undefined) {
              if (m.required) throw new InvalidInputError(`secret ${m.id}: not provided`, `pass it with --secret id=${m.id},src=FILE or --secret id=${m.id},env=VAR`);
              break;
            }
            if (m.env) env.push(`${m.env}=${Buffer.from(value).toString()}`);
            if (m.target) {
              stubs.push({ path: m.target, dir: false });
              makers.push(() => writeSecretFile(dir, m, value));
            }
            break;
          }
        }
      }
    } catch (err) {
      await release();
      throw err;
    }
    return {
      keys,
      stubs,
      env,
      dir,
      release,
      materialize: async () => {
        const out: Mount[] = [];
        for (const make of makers) {
          const m = await make();
          if (m) out.push(m);
        }
        return out;
      },
    };
  }

  /** sourceFor gives the filesystem a COPY or mount reads from: the context, a stage, or an image. */
  private async sourceFor(fromRef: string | undefined, what: string): Promise<{ from: CopyFrom; view?: View; key?: string }> {
    const o = this.o;
    if (fromRef === undefined || fromRef === '') {
      if (!o.context) throw new InvalidInputError(`${what}: this build has no context (it was given as -)`, 'give a context directory, or use --from');
      return { from: { root: o.context.root, filter: o.context.filter, label: 'the build context', resetOwner: true } };
    }
    let layers: LayerRef[];
    let label: string;
    let key: string;
    const idx = /^[0-9]+$/.test(fromRef) ? Number(fromRef) : o.plan.stages.findIndex((s) => s.name === fromRef.toLowerCase());
    if (idx >= 0 && idx < this.sp.index) {
      const r = await this.ex.stage(idx);
      layers = r.layers;
      label = `stage ${o.plan.stages[idx]!.displayName || idx}`;
      key = r.fsKey;
    } else {
      const img = await o.resolveImage(fromRef);
      layers = baseLayers(img);
      label = `image ${fromRef}`;
      key = cacheKey('', { op: 'layers', chain: layers.length ? chainId(layers.map((l) => l.diffId)) : '' });
    }
    const view = await o.rootfs.view(layers);
    return { from: { root: view.dir, label, resetOwner: false }, view, key };
  }

  private async copyInstruction(ins: CopyInstruction | AddInstruction, onbuild: boolean): Promise<void> {
    const o = this.o;
    const isAdd = ins.kind === 'add';
    const KW = isAdd ? 'ADD' : 'COPY';
    const sources = ins.sources.map((s) => this.x(s));
    const destRaw = this.x(ins.dest);
    const chown = ins.chown === undefined ? undefined : this.x(ins.chown);
    const chmodRaw = ins.chmod === undefined ? undefined : this.x(ins.chmod);
    const chmod = chmodRaw === undefined || chmodRaw === '' ? undefined : parseChmod(chmodRaw);
    const parents = ins.kind === 'copy' && ins.parents;
    const exclude = ins.exclude.map((e) => this.x(e));
    const from = ins.kind === 'copy' ? ins.from : undefined;
    if (isAdd && (ins as AddInstruction).checksum !== undefined && (sources.length !== 1 || !/^https?:\/\//.test(sources[0] ?? ''))) {
      throw new InvalidInputError('checksum requires a single HTTP(S) source');
    }
    const dest = destPath(destRaw, this.image.config.WorkingDir || '/');
    const inline = ins.inline.map((s) => ({
      name: s.name,
      content: s.expand ? lexWord(s.content, this.env, { skipProcessQuotes: true }).result : s.content,
    }));
    let createdBy = KW;
    if (parents) createdBy += ' --parents';
    if (chown) createdBy += ` --chown=${chown}`;
    if (chmodRaw) createdBy += ` --chmod=${chmodRaw}`;
    for (const s of sources) createdBy += ` ${s}`;
    for (const s of inline) createdBy += ` <<${s.name}`;
    createdBy += ` ${destRaw} # buildkit`;
    const step = this.begin(`${this.prefix(onbuild)}${displayCopy(ins)}`);
    const link = ins.link && !chmod;

    await this.guard(step, async () => {
      const staging = await mkdtemp(join(o.tmpDir, 'copy-'));
      const views: View[] = [];
      try {
        // What to copy: [from, selection] groups, in source order (URLs and heredocs come from a staging dir).
        const groups: Array<{ from: CopyFrom; sel: Selected[]; unpack: boolean }> = [];
        const keyParts: unknown[] = [];
        const local: string[] = [];
        const flushLocal = async (): Promise<void> => {
          if (!local.length) return;
          const src = await this.sourceFor(from, KW);
          if (src.view) views.push(src.view);
          const sel = selectSources(src.from, local, { exclude, parents });
          const unpack = isAdd && ((ins as AddInstruction).unpack ?? true);
          groups.push({ from: src.from, sel, unpack });
          keyParts.push({ sources: [...local], content: await hashSelection(sel, src.from.resetOwner), unpack });
          local.length = 0;
        };
        for (const s of sources) {
          if (isAdd && /^https?:\/\//i.test(s) && !isGitUrl(s)) {
            await flushLocal();
            const file = await this.download(s, staging, (ins as AddInstruction).checksum);
            const sfrom: CopyFrom = { root: staging, label: s, resetOwner: true };
            const sel = selectSources(sfrom, [file]);
            const unpack = (ins as AddInstruction).unpack === true;
            groups.push({ from: sfrom, sel, unpack });
            keyParts.push({ url: s, content: await hashSelection(sel, true), unpack });
          } else if (isGitUrl(s)) {
            throw new InvalidInputError(`${KW} from a git repository (${s}) is not supported by tsbuild`);
          } else local.push(s);
        }
        await flushLocal();
        for (const [i, s] of inline.entries()) {
          const dir = join(staging, `inline-${i}`);
          await mkdir(dir);
          await writeStagedFile(dir, posix.basename(s.name) || s.name, s.content, 0o644, o.plan.epoch);
          const sfrom: CopyFrom = { root: dir, label: `heredoc ${s.name}`, resetOwner: true };
          const sel = selectSources(sfrom, [posix.basename(s.name)]);
          groups.push({ from: sfrom, sel, unpack: false });
          keyParts.push({ heredoc: s.name, sha: sha(s.content) });
        }
        const spec = { op: KW.toLowerCase(), dest, chown: chown ?? null, chmod: chmodRaw ?? null, parents, exclude, parts: keyParts, epoch: o.plan.epoch ?? null };
        const key = link ? cacheKey(this.fsKey, { op: 'link', layer: cacheKey('', spec) }) : cacheKey(this.fsKey, spec);

        await this.fsStep(step, key, createdBy, async () => {
          if (link) return this.copyLinked(groups, dest, chown, staging);
          const root = await o.rootfs.openStep(this.layers);
          try {
            const owner = chown === undefined ? undefined : resolveChown(root.dir, chown);
            for (const g of groups) {
              await copyInto(root.dir, g.from, g.sel, {
                dest,
                ...(owner ? { chown: owner } : {}),
                ...(chmod ? { chmod } : {}),
                ...(o.plan.epoch === undefined ? {} : { mtime: o.plan.epoch }),
                unpack: g.unpack,
                tmpDir: staging,
              });
            }
            return await root.commit(this.commitOpts());
          } finally {
            await root.discard();
          }
        });
      } finally {
        for (const v of views) await v.release().catch(() => {});
        await rm(staging, { recursive: true, force: true });
      }
    });
  }

  /** copyLinked is COPY --link: the files are copied into an empty directory, which becomes the layer on its own. */
  private async copyLinked(
    groups: Array<{ from: CopyFrom; sel: Selected[]; unpack: boolean }>,
    dest: string,
    chown: string | undefined,
    staging: string,
  ): Promise<LayerRef | null> {
    const o = this.o;
    const scratch = await mkdtemp(join(staging, 'link-'));
    let owner: { uid: number; gid: number } | undefined;
    if (chown !== undefined) {
      const view = await o.rootfs.view(this.layers);
      try {
        owner = resolveChown(view.dir, chown);
      } finally {
        await view.release();
      }
    }
    for (const g of groups) {
      await copyInto(scratch, g.from, g.sel, {
        dest,
        ...(owner ? { chown: owner } : {}),
        ...(o.plan.epoch === undefined ? {} : { mtime: o.plan.epoch }),
        unpack: g.unpack,
        tmpDir: staging,
      });
    }
    if ((await readdir(scratch)).length === 0) return null;
    const [{ tarFromDirectory }, { commitLayer }] = await Promise.all([import('../layers/tar/create.js'), import('../layers/store/commit.js')]);
    const tar = tarFromDirectory(scratch, o.plan.epoch === undefined ? {} : { sourceDateEpoch: o.plan.epoch });
    const c = await commitLayer(o.store, tar, { compression: o.compression });
    return { descriptor: c.descriptor, diffId: c.diffId };
  }

  /** download fetches an ADD URL into `dir` (mode 0600, mtime from Last-Modified) and checks --checksum. */
  private async download(url: string, dir: string, checksum?: string): Promise<string> {
    let name = '__unnamed__';
    try {
      const base = posix.basename(new URL(url).pathname);
      if (base && base !== '.' && base !== '/') name = decodeURIComponent(base);
    } catch {
      // keep the default name
    }
    if (name.includes('/') || name === '..') name = '__unnamed__';
    const res = await fetch(url, { redirect: 'follow', signal: this.o.signal });
    if (!res.ok || !res.body) throw new InvalidInputError(`ADD ${url}: HTTP ${res.status} ${res.statusText}`);
    const sub = await mkdtemp(join(dir, 'url-'));
    const file = join(sub, name);
    const hash = createHash('sha256');
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (b: Buffer) => hash.update(b));
    await pipeline(body, createWriteStream(file, { mode: 0o600, flags: 'wx' }));
    const got = `sha256:${hash.digest('hex')}`;
    if (checksum !== undefined && checksum !== got) {
      throw new InvalidInputError(`ADD ${url}: checksum mismatch: expected ${checksum}, got ${got}`);
    }
    const lm = res.headers.get('last-modified');
    const t = lm ? Date.parse(lm) : NaN;
    const mtime = this.o.plan.epoch ?? (Number.isNaN(t) ? Date.now() / 1000 : t / 1000);
    lutimesSync(file, mtime, mtime);
    return `${posix.basename(sub)}/${name}`;
  }
}

/** triggerSteps counts the progress steps (RUN, COPY, ADD, WORKDIR) among ONBUILD triggers (0 for unreadable ones). */
function triggerSteps(triggers: string[], file: string): number {
  let n = 0;
  for (const t of triggers) {
    try {
      n += parseDockerfile(t, { file, fragment: true }).instructions.filter((i) => ['run', 'copy', 'add', 'workdir'].includes(i.kind)).length;
    } catch {
      // reported when the trigger runs
    }
  }
  return n;
}

/** epochTime formats SOURCE_DATE_EPOCH as RFC 3339. */
export function epochTime(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function sha(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

function isGitUrl(s: string): boolean {
  return /^git@|^git:\/\/|\.git(#.*)?$/.test(s) || /^https?:\/\/[^/]+\/.+\.git(\/|#|$)/.test(s);
}

/** checkPlatform accepts only the platform this machine builds (linux/amd64). */
function checkPlatform(p: string, plan: BuildPlan): void {
  const want = [plan.targetPlatform.os, plan.targetPlatform.architecture].join('/');
  const norm = p.toLowerCase().replace(/\/v?[0-9]+$/, '');
  if (norm !== want && norm !== [plan.buildPlatform.os, plan.buildPlatform.architecture].join('/')) {
    throw new InvalidInputError(`FROM --platform=${p}: only ${want} can be built here`);
  }
}

/**
 * destPath is BuildKit's pathRelativeToWorkingDir: an absolute destination is cleaned, a relative one is joined
 * to WORKDIR; a trailing `/` (or `/.`, `.`, '') is kept as `/`: the destination is a directory.
 */
export function destPath(dest: string, workdir: string): string {
  const dir = dest === '' || dest === '.' || dest.endsWith('/') || dest.endsWith('/.');
  const abs = posix.isAbsolute(dest) ? dest : posix.join('/', workdir, dest);
  let clean = posix.normalize(abs);
  if (clean.length > 1 && clean.endsWith('/')) clean = clean.slice(0, -1);
  return dir && clean !== '/' ? `${clean}/` : clean;
}

/** runCommandString is BuildKit's: `|N K=V … argv` when the stage declares ARGs (ENV values win). */
export function runCommandString(args: string[], buildArgs: Array<{ key: string; value?: string }>, env: ReadonlyMap<string, string>): string {
  const pairs: string[] = [];
  const index = new Map<string, number>();
  for (const a of buildArgs) {
    const v = env.get(a.key) ?? a.value ?? '';
    const at = index.get(a.key);
    if (at !== undefined) pairs[at] = `${a.key}=${v}`;
    else {
      index.set(a.key, pairs.length);
      pairs.push(`${a.key}=${v}`);
    }
  }
  const head = pairs.length ? [`|${pairs.length}`, ...pairs] : [];
  return [...head, ...args].join(' ');
}

function displayRun(ins: RunInstruction): string {
  const text = ins.raw.replace(/^\s*\S+\s*/, '');
  const oneLine = text.replace(/\s*\n\s*/g, ' ');
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}

function displayCopy(ins: CopyInstruction | AddInstruction): string {
  const text = ins.raw.replace(/^\s*\S+/, ins.kind === 'add' ? 'ADD' : 'COPY').replace(/\s*\n\s*/g, ' ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** mkdirAllOwned is WORKDIR's mkdir -p: missing directories are created 0755, owned by `owner`. */
function mkdirAllOwned(root: string, path: string, owner: { uid: number; gid: number }, epoch?: number): void {
  const parts = path.split('/').filter(Boolean);
  let cur = '';
  for (const p of parts) {
    cur = `${cur}/${p}`;
    const host = secureJoin(root, cur);
    const st = lstatSync(host, { throwIfNoEntry: false });
    if (st) {
      if (!st.isDirectory()) throw new InvalidInputError(`${cur} exists and is not a directory`);
      continue;
    }
    mkdirSync(host, 0o755);
    lchownSync(host, owner.uid, owner.gid);
    if (epoch !== undefined) lutimesSync(host, epoch, epoch);
  }
}

