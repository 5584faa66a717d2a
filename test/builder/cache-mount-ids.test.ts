// Which cache mounts `--cache-to …,mounts=true` carries (builder/cache-mounts.ts): the literal ids of the RUN
// instructions of the stages built; one whose id or target uses a variable is named, for a warning, not dropped
// silently.
import test from 'ava';
import { cacheMountIds } from '../../builder/cache-mounts.js';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild } from '../../builder/plan.js';

const plan = (text: string): ReturnType<typeof planBuild> =>
  planBuild({ instructions: parseDockerfile(text).instructions });

test('cache mount ids come from the stages built; a variable one is reported as skipped', (t) => {
  const skipped: string[] = [];
  const ids = cacheMountIds(
    plan(
      [
        'FROM busybox AS unused',
        'RUN --mount=type=cache,target=/never true',
        'FROM busybox',
        'ARG V=x',
        'RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,id=go,target=/go true',
        'RUN --mount=type=cache,target=/cache/$V true',
        'RUN --mount=type=bind,target=/b true',
        '',
      ].join('\n'),
    ),
    (m) => skipped.push(m),
  );
  t.deepEqual(ids, ['/var/cache/apt', 'go']);
  t.deepEqual(skipped, ['type=cache,target=/cache/$V']);
});
