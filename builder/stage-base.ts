// Where a stage starts: scratch, an image (its config, history and layers with OCI media types), or an earlier
// stage (builder/execute.ts clones it); the stage's env seeded from the config; the base image's ONBUILD
// triggers as steps; and the filesystem cache keys of these starting points.
import { chainId } from '../layers/model/digest.js';
import { imageLayers, type Layer } from '../layers/model/layer.js';
import { type ContainerConfig, type HistoryEntry, MediaType } from '../layers/model/types.js';
import type { Image } from '../layers/store/image.js';
import { InvalidInputError } from '../sys/errors.js';
import { cacheKey } from './cache.js';
import { parseDockerfile } from './dockerfile/parse.js';
import type { BuildPlan, PlanPlatform, StageStep } from './plan.js';

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

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** SCRATCH_KEY is the cache key of the empty filesystem. */
export const SCRATCH_KEY = cacheKey('', { op: 'scratch' });

/** layersKey is the cache key of a filesystem made of image layers. */
export function layersKey(layers: readonly Layer[]): string {
  return cacheKey('', { op: 'layers', chain: layers.length ? chainId(layers.map((l) => l.diffId)) : '' });
}

/** OCI_OF maps Docker layer media types to their OCI twins (same bytes): a built image is all OCI. */
const OCI_OF: Record<string, string> = {
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerLayer]: MediaType.OciLayer,
  [MediaType.DockerForeignLayerGzip]: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
};

/** baseLayers lists an image's layers with OCI media types (and only the descriptor fields a manifest keeps). */
export function baseLayers(img: Image): Layer[] {
  return imageLayers(img).map(({ descriptor: d, diffId }) => ({
    descriptor: {
      mediaType: OCI_OF[d.mediaType] ?? d.mediaType,
      digest: d.digest,
      size: d.size,
      ...(d.urls ? { urls: d.urls } : {}),
    },
    diffId,
  }));
}

/** scratchImage is the start of `FROM scratch`. */
export function scratchImage(platform: PlanPlatform): StageImage {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: '/' },
    history: [],
  };
}

/** imageStart is the start of `FROM image`: its platform, author, config and history (copies). */
export function imageStart(img: Image): StageImage {
  const c = img.config;
  return {
    architecture: c.architecture,
    os: c.os,
    ...(c.variant ? { variant: c.variant } : {}),
    ...(c['os.version'] ? { 'os.version': c['os.version'] } : {}),
    ...(c.author ? { author: c.author } : {}),
    config: structuredClone(c.config ?? {}),
    history: structuredClone(c.history ?? []),
  };
}

/**
 * seedEnv gives the config a PATH when it has none, and fills the stage's env from the config's Env (a stage
 * based on another stage keeps the env it inherited, PATH included).
 */
export function seedEnv(config: ContainerConfig, env: Map<string, string>, fromStage: boolean): void {
  if (!(config.Env ?? []).some((e) => e.startsWith('PATH=')))
    config.Env = [...(config.Env ?? []), `PATH=${DEFAULT_PATH}`];
  if (!fromStage) {
    for (const kv of config.Env ?? []) {
      const eq = kv.indexOf('=');
      env.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
    }
  } else if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
}

/** onbuildSteps parses a base image's ONBUILD triggers into steps (they run first in the stage). */
export function onbuildSteps(triggers: readonly string[], file: string): StageStep[] {
  const parsed: StageStep[] = [];
  for (const t of triggers) {
    const { instructions } = parseDockerfile(t, { file, fragment: true });
    for (const ins of instructions) parsed.push({ ins, onbuild: true });
  }
  return parsed;
}

/** triggerSteps counts the progress steps (RUN, COPY, ADD, WORKDIR) among ONBUILD triggers (0 for unreadable ones). */
export function triggerSteps(triggers: string[], file: string): number {
  let n = 0;
  for (const t of triggers) {
    try {
      n += parseDockerfile(t, { file, fragment: true }).instructions.filter((i) =>
        ['run', 'copy', 'add', 'workdir'].includes(i.kind),
      ).length;
    } catch {
      // reported when the trigger runs
    }
  }
  return n;
}

/** checkPlatform accepts only the platform this machine builds (linux/amd64). */
export function checkPlatform(p: string, plan: BuildPlan): void {
  const want = [plan.targetPlatform.os, plan.targetPlatform.architecture].join('/');
  const norm = p.toLowerCase().replace(/\/v?[0-9]+$/, '');
  if (norm !== want && norm !== [plan.buildPlatform.os, plan.buildPlatform.architecture].join('/')) {
    throw new InvalidInputError(`FROM --platform=${p}: only ${want} can be built here`);
  }
}
