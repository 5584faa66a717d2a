// The contract between builder/execute.ts and the filesystem steps (RUN, COPY, ADD, WORKDIR): what a step is given
// (StepEnv: the build's store, host, root filesystems and sources; StageState: where the stage stands) and what it
// gives back (FsStep: its cache key, its history created_by, and `apply`, the filesystem work in a step root).
// execute.ts looks the key up in the build cache and calls `apply` only on a miss; every step module is free of
// scheduling, caching and progress.
import type { ContainerConfig, Compression } from '../../layers/model/types.js';
import type { Layer } from '../../layers/model/layer.js';
import type { Store } from '../../layers/store/store.js';
import type { Host } from '../../sys/host.js';
import type { PendingLayer, RootfsSession, StepRoot, View } from '../../unionfs/rootfs.js';
import type { CopyFrom } from './copy-select.js';

/** Source is a filesystem a step reads from (the context, a stage, an image), with its cache key when not the context. */
export interface Source {
  from: CopyFrom;
  /** a view to release when the step is over */
  view?: View;
  /** the cache key of the stage or image filesystem */
  key?: string;
}

/** StepOutput receives what a step's process writes (RUN), chunk by chunk. */
export type StepOutput = (stream: 'stdout' | 'stderr', chunk: Buffer) => void;

/** StepEnv is what the build gives every filesystem step. */
export interface StepEnv {
  store: Store;
  host: Host;
  rootfs: Pick<RootfsSession, 'openStep' | 'view'>;
  compression: Compression;
  /** SOURCE_DATE_EPOCH */
  epoch?: number;
  /** a private scratch directory */
  tmpDir: string;
  signal: AbortSignal;
  /** the Dockerfile's name in messages */
  file: string;
  /** resolves a `--from` (undefined or '': the build context) to the filesystem it names; `what` is for messages */
  source: (fromRef: string | undefined, what: string) => Promise<Source>;
}

/** StageState is where a stage stands when a step starts. */
export interface StageState {
  /** the stage's layers, base first (read when the step's root is opened: see `pending`) */
  readonly layers: readonly Layer[];
  /**
   * the stage's layers still being written, on top of `layers`, oldest first: a step opens its root over both. Both
   * are read when the root is opened, not when the step is made: pending layers may be settled in between.
   */
  readonly pending: readonly PendingLayer[];
  /** the cache key of the stage's filesystem */
  fsKey: string;
  config: ContainerConfig;
  /** the stage's environment: image Env plus ARG values */
  env: ReadonlyMap<string, string>;
  /** ARGs declared in the stage, with their values */
  buildArgs: ReadonlyArray<{ key: string; value?: string }>;
}

/**
 * FsStep is one filesystem step, made before it is shown (so that a malformed instruction fails first). The cache
 * key may need to read sources (COPY hashes them), so it is computed once the step is shown.
 */
export interface FsStep {
  /** the progress line after the `[stage i/n]` prefix */
  display: string;
  /** the history entry's created_by */
  createdBy: string;
  /** the cache key, chained on the stage's filesystem key */
  cacheKey(): Promise<string>;
  /**
   * the work on a cache miss: the layer it made (or is still writing), or null when it changed nothing; `output`
   * gets a process's output
   */
  apply(output: StepOutput): Promise<Layer | PendingLayer | null>;
  /**
   * takesPending: the step opens its root over the stage's pending layers. Otherwise they are settled before
   * `apply` (a step that reads the stage through a view, as COPY --link does).
   */
  takesPending?: boolean;
  /** releases what the key and the work held (views, staging directories); called once, hit or miss */
  release(): Promise<void>;
}

/** commitOptions are the options every step commits its root with. */
export function commitOptions(env: StepEnv): { compression: Compression; sourceDateEpoch?: number } {
  return { compression: env.compression, ...(env.epoch === undefined ? {} : { sourceDateEpoch: env.epoch }) };
}

/**
 * commitStep ends a step root: with the overlay driver the layer is written in the background (a PendingLayer the
 * executor settles), with vfs at once.
 */
export function commitStep(
  root: StepRoot,
  opts: ReturnType<typeof commitOptions> & { keepEmpty?: boolean },
): Promise<Layer | PendingLayer | null> {
  return root.commitLater ? root.commitLater(opts) : root.commit(opts);
}
