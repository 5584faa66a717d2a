// Where a COPY --from or a RUN --mount from= reads: the build context, a named context (--build-context), an earlier
// stage's filesystem (a read-only view of its layers), or an image by name. The executor hands each step this
// resolver.
import type { Layer } from '../layers/model/layer.js';
import type { Image } from '../layers/store/image.js';
import { InvalidInputError } from '../sys/errors.js';
import type { ExecuteOptions, StageResult } from './execute.js';
import { NamedContexts } from './named-contexts.js';
import { baseLayers, layersKey } from './stage-base.js';
import type { Source } from './steps/step.js';

/** SourceScope is what a stage knows to resolve a source: the build's options, its own index, the other stages. */
export interface SourceScope {
  o: ExecuteOptions;
  /** the index of the stage asking: only earlier stages may be read */
  stageIndex: number;
  stage(i: number): Promise<StageResult>;
}

const named = new WeakMap<ExecuteOptions, NamedContexts>();

/**
 * namedFor gives the named contexts of one executor's build (made once per ExecuteOptions): FROM and `--from` image
 * names resolve through them first.
 */
export function namedFor(o: ExecuteOptions): NamedContexts {
  let n = named.get(o);
  if (!n) {
    n = new NamedContexts(o.plan.namedContexts, {
      store: o.store,
      host: o.host,
      tmpDir: o.tmpDir,
      compression: o.compression,
      ...(o.plan.epoch === undefined ? {} : { epoch: o.plan.epoch }),
      useCache: o.useCache,
      resolveImage: o.resolveImage,
    });
    named.set(o, n);
  }
  return n;
}

/** sourceFor gives the filesystem a COPY or mount reads from: the context, a named context, a stage, or an image. */
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
  const numeric = /^[0-9]+$/.test(fromRef);
  const idx = numeric ? Number(fromRef) : o.plan.stages.findIndex((s) => s.name === fromRef.toLowerCase());
  // a stage replaced by a named context is that context, by the stage's name (an index never names a context)
  const replaced = o.plan.stages[idx]?.replaced === true;
  const ref = replaced ? o.plan.stages[idx]!.name! : fromRef;
  const local = numeric && !replaced ? undefined : await namedFor(o).localSource(ref);
  if (local) return { from: local };
  if (idx >= 0 && idx < scope.stageIndex && !replaced) {
    const r = await scope.stage(idx);
    layers = r.layers;
    label = `stage ${o.plan.stages[idx]!.displayName || idx}`;
    key = r.fsKey;
  } else {
    const img: Image = await namedFor(o).resolveImage(ref);
    layers = baseLayers(img);
    label = `image ${ref}`;
    key = layersKey(layers);
  }
  const view = await o.rootfs.view(layers);
  return { from: { root: view.dir, label, resetOwner: false }, view, key };
}
