// WORKDIR's filesystem step: BuildKit makes the directory (mkdir -p, 0755, owned by USER) in a layer of its own.
// The config change (WorkingDir) is builder/steps/metadata.ts's; WORKDIR / makes no layer and no step.
import { lstatSync, lutimesSync, mkdirSync } from 'node:fs';
import { InvalidInputError } from '../../sys/errors.js';
import type { Host } from '../../sys/host.js';
import { secureJoin } from '../../sys/secure-path.js';
import { cacheKey } from '../cache.js';
import { resolveChown } from './copy-write.js';
import { commitOptions, commitStep, type FsStep, type StageState, type StepEnv } from './step.js';

/** workdirStep makes `wd` (already absolute, from the config) in a step root owned by the stage's USER. */
export function workdirStep(env: StepEnv, stage: StageState, wd: string): FsStep {
  const user = stage.config.User ?? '';
  const key = cacheKey(stage.fsKey, { op: 'mkdir', path: wd, user, epoch: env.epoch ?? null });
  return {
    display: `WORKDIR ${wd}`,
    takesPending: true,
    createdBy: `WORKDIR ${wd}`,
    cacheKey: async () => key,
    apply: async () => {
      const root = await env.rootfs.openStep(stage.layers, [], stage.pending);
      try {
        const owner = user === '' ? { uid: 0, gid: 0 } : resolveChown(root.dir, user.split(':')[0] === '' ? '0' : user);
        mkdirAllOwned(env.host, root.dir, wd, owner, env.epoch);
        return await commitStep(root, commitOptions(env));
      } finally {
        await root.discard();
      }
    },
    release: async () => {},
  };
}

/** mkdirAllOwned is WORKDIR's mkdir -p: missing directories are created 0755, owned by `owner`. */
function mkdirAllOwned(
  host: Host,
  root: string,
  path: string,
  owner: { uid: number; gid: number },
  epoch?: number,
): void {
  const parts = path.split('/').filter(Boolean);
  let cur = '';
  for (const p of parts) {
    cur = `${cur}/${p}`;
    const at = secureJoin(root, cur);
    const st = lstatSync(at, { throwIfNoEntry: false });
    if (st) {
      if (!st.isDirectory()) throw new InvalidInputError(`${cur} exists and is not a directory`);
      continue;
    }
    mkdirSync(at, 0o755);
    host.lchown(at, owner.uid, owner.gid);
    if (epoch !== undefined) lutimesSync(at, epoch, epoch);
  }
}
