// The types around the executor (builder/execute.ts): what it is given (ExecuteOptions) and what a stage gives back
// (StageResult). Kept apart so that execute.ts holds only the scheduling.
import type { Layer } from '../layers/model/layer.js';
import type { Compression } from '../layers/model/types.js';
import type { Image } from '../layers/store/image.js';
import type { Store } from '../layers/store/store.js';
import type { Host } from '../sys/host.js';
import type { RootfsSession } from '../unionfs/rootfs.js';
import type { StepCache } from './cache.js';
import type { BuildContext } from './context.js';
import type { BuildEvent } from './events.js';
import type { HistoryLog } from './history.js';
import type { BuildPlan } from './plan.js';
import type { StageImage } from './stage-base.js';
import type { RunSandbox } from './steps/run.js';

/** StageResult is a stage's final state. */
export interface StageResult {
  index: number;
  image: StageImage;
  layers: Layer[];
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
  host: Host;
  plan: BuildPlan;
  context: BuildContext | null;
  /** the Dockerfile's name in messages */
  file: string;
  escape: string;
  rootfs: RootfsSession;
  /** the build records (builder/cache.ts), and the shared caches behind them */
  cache: StepCache;
  /** false with --no-cache: nothing is looked up (records are still written) */
  useCache: boolean;
  secrets: ReadonlyMap<string, Uint8Array>;
  /** --network: RUN's default */
  network: 'default' | 'none' | 'host';
  /** limits and ulimits of every RUN */
  sandbox?: RunSandbox;
  compression: Compression;
  /** a private scratch directory */
  tmpDir: string;
  history: HistoryLog;
  onEvent: (e: BuildEvent) => void;
  signal: AbortSignal;
  /** resolves FROM / --from image names: the store first, then a pull */
  resolveImage: (ref: string) => Promise<Image>;
  /** called with the first failure of a stage, so that the others stop (aborting `signal`) */
  abort?: (reason: unknown) => void;
}
