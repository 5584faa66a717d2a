// A stage's steps whose layers are still being written. With the overlay driver a step's apply returns a
// PendingLayer (unionfs/rootfs.ts): its tree is done, its layer tar is being hashed and stored in the background, and
// the next RUN, COPY or WORKDIR opens its root over it (StageState.pending). execute.ts keeps one PendingSteps per
// stage and settles it, oldest first, whenever the layers themselves are needed: before a cache hit, before a step
// that reads the stage through a view, when MAX_PENDING are waiting, at the end of the stage, and after a failure
// (the steps that finished keep their cache records). Settling one makes it a layer of the stage and writes its
// cache record; a layer that could not be written fails the build at its own Dockerfile line.
import type { Layer } from '../layers/model/layer.js';
import type { PendingLayer, RootfsSession } from '../unionfs/rootfs.js';
import type { CacheRecord, StepCache } from './cache.js';
import type { Instruction } from './dockerfile/instructions.js';
import type { BuildEvent } from './events.js';

/**
 * MAX_PENDING: the most steps of a stage written in the background at once; the next step settles them first (each is
 * a lowerdir of every later step until then).
 */
export const MAX_PENDING = 8;

/** PendingStep is a step whose layer is being written, with what its cache record and a failure need. */
export interface PendingStep {
  p: PendingLayer;
  key: string;
  created: string;
  createdBy: string;
  ins: Instruction;
  onbuild: boolean;
  stepId: number;
}

/** isPending tells a PendingLayer from a Layer (what FsStep.apply returns). */
export function isPending(x: Layer | PendingLayer): x is PendingLayer {
  return 'layer' in x && 'dir' in x;
}

export class PendingSteps {
  private steps: PendingStep[] = [];

  constructor(
    private readonly o: {
      rootfs: Pick<RootfsSession, 'settle'>;
      cache: StepCache;
      stage: number;
      onEvent: (e: BuildEvent) => void;
      /** throws the step's failure as the build reports it (its Dockerfile line) */
      fail: (ins: Instruction, err: unknown, onbuild: boolean) => never;
    },
  ) {}

  /** the pending layers, oldest first, for the next step to open its root over */
  get layers(): PendingLayer[] {
    return this.steps.map((q) => q.p);
  }

  /** full tells whether the next step must settle them first */
  get full(): boolean {
    return this.steps.length >= MAX_PENDING;
  }

  add(step: PendingStep): void {
    this.steps.push(step);
  }

  /** settle waits for every pending layer, oldest first, appends each to `layers` and writes its cache record. */
  async settle(layers: Layer[]): Promise<void> {
    while (this.steps.length) {
      const q = this.steps[0]!;
      let layer: Layer;
      try {
        layer = await this.o.rootfs.settle(layers, q.p);
      } catch (err) {
        this.steps = []; // the later ones are not settled: the session waits for their writes when it closes
        this.o.onEvent({ type: 'error', id: q.stepId, message: err instanceof Error ? err.message : String(err) });
        this.o.fail(q.ins, err, q.onbuild);
      }
      this.steps.shift();
      layers.push(layer);
      const rec: CacheRecord = { version: 1, layer, created: q.created, createdBy: q.createdBy };
      await this.o.cache.put(q.key, rec);
      this.o.cache.used?.(this.o.stage, q.key, rec);
    }
  }
}
