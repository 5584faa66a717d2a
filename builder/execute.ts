// Executing a plan: the scheduler. Stages are memoized promises: the ones the target needs start together, so
// independent stages run in parallel; a stage waits only for the stages it reads from. Within a stage, each
// instruction is dispatched to its step module (builder/steps/): metadata instructions change the image config and
// add a history entry; filesystem steps (RUN, COPY, ADD, WORKDIR) give a cache key, a created_by and the work,
// and the executor looks the key up in the build records, runs the work on a miss, and reports progress.
import type { Layer } from '../layers/model/layer.js';
import type { Image } from '../layers/store/image.js';
import { InvalidInputError, TsbuildError } from '../sys/errors.js';
import type { PendingLayer } from '../unionfs/rootfs.js';
import { isCacheRecord } from './cache.js';
import { DockerfileError } from './dockerfile/errors.js';
import type { Instruction } from './dockerfile/instructions.js';
import { epochTime } from './history.js';
import type { StagePlan, StageStep } from './plan.js';
import {
  baseLayers,
  checkPlatform,
  imageStart,
  layersKey,
  onbuildSteps,
  SCRATCH_KEY,
  scratchImage,
  seedEnv,
  type StageImage,
  triggerSteps,
} from './stage-base.js';
import { addStep } from './steps/add.js';
import { copyStep } from './steps/copy.js';
import { metadataStep, type StageMeta } from './steps/metadata.js';
import { runStep } from './steps/run.js';
import type { FsStep, StageState, StepEnv } from './steps/step.js';
import { workdirStep } from './steps/workdir.js';
import { namedFor, sourceFor } from './source.js';
import { isPending, PendingSteps } from './pending.js';
import type { ExecuteOptions, StageResult } from './execute-options.js';

export type { ExecuteOptions, StageResult };

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
    await namedFor(this.o).save(); // the digest memos of local named contexts (builder/named-contexts.ts)
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
  private layers: Layer[] = [];
  /** steps on top of `layers` whose layers are still being written (builder/pending.ts) */
  private readonly pending: PendingSteps;
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
  private readonly stepEnv: StepEnv;

  constructor(
    private readonly ex: Executor,
    private readonly o: ExecuteOptions,
    private readonly sp: StagePlan,
  ) {
    this.file = o.file;
    this.total = sp.total;
    this.pending = new PendingSteps({
      ...o,
      stage: sp.index,
      fail: (ins, err, onbuild) => this.fail(ins, err, onbuild),
    });
    this.stepEnv = {
      store: o.store,
      host: o.host,
      rootfs: o.rootfs,
      compression: o.compression,
      ...(o.plan.epoch === undefined ? {} : { epoch: o.plan.epoch }),
      tmpDir: o.tmpDir,
      signal: o.signal,
      file: o.file,
      source: (fromRef, what) =>
        sourceFor({ o: this.o, stageIndex: this.sp.index, stage: (i) => this.ex.stage(i) }, fromRef, what),
    };
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
    if (sp.base.kind === 'image' && triggers.length && !sp.replaced) {
      try {
        steps = [...onbuildSteps(triggers, this.file), ...steps];
      } catch (err) {
        this.fail(sp.from, err, true);
      }
    }
    if (sp.base.kind !== 'scratch') this.image.config.OnBuild = null;
    for (const { ins, onbuild } of steps) {
      if (this.o.signal.aborted) {
        await this.pending.settle(this.layers).catch(() => {});
        this.o.signal.throwIfAborted();
      }
      try {
        await this.dispatch(ins, onbuild);
      } catch (err) {
        // the steps before the failure keep their cache records, as when every layer was written at once
        await this.pending.settle(this.layers).catch(() => {});
        this.fail(ins, err, onbuild);
      }
    }
    await this.pending.settle(this.layers);
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

  /** init sets up the stage from its base: scratch, an earlier stage, or an image (builder/stage-base.ts). */
  private async init(): Promise<void> {
    const sp = this.sp;
    if (sp.platform !== undefined) checkPlatform(sp.platform, this.o.plan);
    switch (sp.base.kind) {
      case 'scratch':
        this.image = scratchImage(this.o.plan.targetPlatform);
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
          img = await namedFor(this.o).resolveImage(sp.base.ref); // a named context first
        } catch (err) {
          const step = this.begin(`${this.prefix(false)}FROM ${sp.base.ref}`);
          this.o.onEvent({ type: 'error', id: step.id, message: (err as Error).message });
          throw err;
        }
        this.total += triggerSteps(img.config.config?.OnBuild ?? [], this.file);
        const step = this.begin(`${this.prefix(false)}FROM ${sp.base.ref}`);
        this.image = imageStart(img);
        this.layers = baseLayers(img);
        this.baseLayers = this.layers.length;
        this.fsKey = this.layers.length ? layersKey(this.layers) : SCRATCH_KEY;
        this.o.onEvent({ type: 'status', id: step.id, message: `resolve ${sp.base.ref} ${img.descriptor.digest}` });
        this.o.onEvent({ type: 'done', id: step.id });
        break;
      }
    }
    seedEnv(this.image.config, this.env, sp.base.kind === 'stage');
  }

  private async dispatch(ins: Instruction, onbuild: boolean): Promise<void> {
    const o = this.o;
    switch (ins.kind) {
      case 'from':
        throw new InvalidInputError('FROM inside a stage');
      case 'run':
        return this.fs(
          runStep(this.stepEnv, this.state(), ins, {
            network: o.network,
            ...(o.sandbox ? { sandbox: o.sandbox } : {}),
            secrets: o.secrets,
            buildArgs: o.plan.buildArgs,
            escape: o.escape,
          }),
          onbuild,
          ins,
        );
      case 'copy':
        return this.fs(copyStep(this.stepEnv, this.state(), ins, { escape: o.escape }), onbuild, ins);
      case 'add':
        return this.fs(addStep(this.stepEnv, this.state(), ins, { escape: o.escape }), onbuild, ins);
      case 'workdir': {
        const createdBy = this.metadata(ins);
        const wd = this.image.config.WorkingDir || '/';
        if (wd === '/') return this.record(createdBy);
        return this.fs(workdirStep(this.stepEnv, this.state(), wd), onbuild, ins);
      }
      default:
        return this.record(this.metadata(ins));
    }
  }

  /** metadata applies a metadata instruction to the stage (builder/steps/metadata.ts); returns its created_by. */
  private metadata(ins: Instruction): string | null {
    const st: StageMeta = { config: this.image.config, cmdSet: this.cmdSet, env: this.env, buildArgs: this.buildArgs };
    const createdBy = metadataStep(st, ins, {
      escape: this.o.escape,
      buildArgs: this.o.plan.buildArgs,
      globalArgs: this.o.plan.globalArgs,
    });
    this.image.config = st.config;
    this.cmdSet = st.cmdSet;
    if (st.author !== undefined) this.image.author = st.author;
    return createdBy;
  }

  /** record adds an empty-layer history entry (none for null). */
  private record(createdBy: string | null): void {
    if (createdBy !== null) this.image.history.push(this.o.history.add(createdBy, null));
  }

  /** state is where the stage stands, for the next filesystem step. */
  private state(): StageState {
    // layers and pending are read when the step opens its root: fs() may settle pending layers in between
    const layers = (): Layer[] => [...this.layers];
    const pending = (): PendingLayer[] => this.pending.layers;
    return {
      get layers() {
        return layers();
      },
      get pending() {
        return pending();
      },
      fsKey: this.fsKey,
      config: this.image.config,
      env: this.env,
      buildArgs: this.buildArgs,
    };
  }

  /**
   * fs runs one filesystem step through the cache: a hit reuses the recorded layer; a miss runs its work and
   * records what it made. The history entry and the stage's layers and key are updated either way.
   */
  private async fs(s: FsStep, onbuild: boolean, ins: Instruction): Promise<void> {
    const o = this.o;
    const step = this.begin(`${this.prefix(onbuild)}${s.display}`);
    await this.guard(step, async () => {
      try {
        const key = await s.cacheKey();
        let rec = o.useCache ? await o.cache.get(key, isCacheRecord) : undefined;
        if (rec) {
          o.onEvent({ type: 'cached', id: step.id });
          await this.pending.settle(this.layers); // the recorded layer goes on top of the pending ones
        } else {
          if (!s.takesPending || this.pending.full) await this.pending.settle(this.layers);
          const made = await s.apply((stream, chunk) =>
            o.onEvent({ type: 'log', id: step.id, stream, data: chunk.toString() }),
          );
          const created =
            o.plan.epoch !== undefined ? epochTime(o.plan.epoch) : new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
          if (made && isPending(made)) {
            // written in the background: its record and its place in the stage's layers come when it is settled
            this.pending.add({ p: made, key, created, createdBy: s.createdBy, ins, onbuild, stepId: step.id });
            this.fsKey = key;
            this.image.history.push(o.history.add(s.createdBy, { time: created }));
            o.onEvent({ type: 'done', id: step.id });
            return;
          }
          rec = { version: 1, layer: made, created, createdBy: s.createdBy };
          await o.cache.put(key, rec);
        }
        if (rec.layer) this.layers.push(rec.layer);
        o.cache.used?.(this.sp.index, key, rec);
        this.fsKey = key;
        this.image.history.push(o.history.add(s.createdBy, rec.layer ? { time: rec.created } : null));
        o.onEvent({ type: 'done', id: step.id });
      } finally {
        await s.release();
      }
    });
  }

  /** guard reports a step's failure as an error event before rethrowing. */
  private async guard(step: Step, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const canceled = this.o.signal.aborted && err === this.o.signal.reason && !this.failedHere;
      this.failedHere = true;
      this.o.onEvent({
        type: 'error',
        id: step.id,
        message: canceled ? 'CANCELED' : err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
  }
}
