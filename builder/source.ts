// Where a COPY --from or a RUN --mount from= reads: the build context, an earlier stage's filesystem (a read-only
// view of its layers), or an image by name. The executor hands each step this resolver.
import type { Layer } from '../layers/model/layer.js';
import { InvalidInputError } from '../sys/errors.js';
import type { ExecuteOptions, StageResult } from './execute.js';
import { baseLayers, layersKey } from './stage-base.js';
import type { Source } from './steps/step.js';

/** SourceScope is what a stage knows to resolve a source: the build's options, its own index, the other stages. */
export interface SourceScope {
  o: ExecuteOptions;
  /** the index of the stage asking: only earlier stages may be read */
  stageIndex: number;
  stage(i: number): Promise<StageResult>;
}

/** sourceFor gives the filesystem a COPY or mount reads from: the context, a stage, or an image. */
export async function sourceFor(scope: SourceScope, fromRef: string | undefined, what: string): Promise<Source> {
  const o = scope.o;
  if (fromRef === undefined || fromRef === '') {
    if (!o.context)
      throw new InvalidInputError(
        `${what}: this build has no context (it was given as -)`,
        'give a context directory, or use --from',
      );
    return {
      from: {
        root: o.context.root,
        filter: o.context.filter,
        label: 'the build context',
        resetOwner: true,
        ...(o.context.digests ? { digests: o.context.digests } : {}),
      },
    };
  }
  let layers: Layer[];
  let label: string;
  let key: string;
  const idx = /^[0-9]+$/.test(fromRef)
    ? Number(fromRef)
    : o.plan.stages.findIndex((s) => s.name === fromRef.toLowerCase());
  if (idx >= 0 && idx < scope.stageIndex) {
    const r = await scope.stage(idx);
    layers = r.layers;
    label = `stage ${o.plan.stages[idx]!.displayName || idx}`;
    key = r.fsKey;
  } else {
    const img = await o.resolveImage(fromRef);
    layers = baseLayers(img);
    label = `image ${fromRef}`;
    key = layersKey(layers);
  }
  const view = await o.rootfs.view(layers);
  return { from: { root: view.dir, label, resetOwner: false }, view, key };
}
