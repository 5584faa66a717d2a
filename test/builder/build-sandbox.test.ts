// RUN steps run in docker's default sandbox (issue 14, part 2): the seccomp filter, the device allow-list, default
// and asked-for cgroup limits, ulimits; as root, on a busybox base.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { build, defaultRunLimits } from '../../builder/build.js';
import type { BuildEvent } from '../../builder/events.js';
import { RunFailedError } from '../../builder/steps/run.js';
import { imageLayers } from '../../layers/model/layer.js';
import { parseUlimit } from '../../runtime/spec.js';
import { flatten } from '../../unionfs/flatten.js';
import { makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';
import { busyboxStore, treeOf, verifiedBuild } from './build-harness.js';

async function context(t: { teardown(fn: () => unknown): void }, dockerfile: string): Promise<string> {
  const dir = await makeTempDir('tsbuild-sandbox-ctx-');
  t.teardown(() => removeDir(dir));
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

rootTest('a RUN step runs under the default seccomp filter and cannot open device nodes it makes', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(
    t,
    [
      'FROM busybox:test',
      'RUN grep "^Seccomp:" /proc/self/status > /seccomp',
      'RUN (unshare -U true 2>&1 || echo refused) > /unshare',
      'RUN mknod /made c 1 3 && (head -c 1 /made 2>/dev/null && echo open || echo denied) > /open',
      '',
    ].join('\n'),
  );
  const r = await verifiedBuild(t, { store, context: ctx, tags: ['sandbox:1'] });
  const out = await makeTempDir('tsbuild-sandbox-out-');
  t.teardown(() => removeDir(out));
  await flatten({ store, layers: imageLayers(r.image), dir: out, method: 'apply' });
  const read = (p: string): string => readFileSync(join(out, p), 'utf8');
  t.regex(read('seccomp'), /^Seccomp:\s+2$/m);
  t.regex(read('unshare'), /Operation not permitted[\s\S]*refused/);
  t.is(read('open'), 'denied\n');
  t.regex(treeOf(out).made ?? '', /^char /, 'the node itself is in the layer');
});

rootTest(
  '--pids-limit stops a step that forks past it; the default limits are 8192 tasks and a memory ceiling',
  async (t) => {
    const store = await busyboxStore(t);
    const ctx = await context(
      t,
      'FROM busybox:test\nRUN i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done; wait; echo forked\n',
    );
    const err = await t.throwsAsync(build({ store, context: ctx, limits: { pids: 15 } }), {
      instanceOf: RunFailedError,
    });
    t.regex((err as RunFailedError).output, /can't fork|Resource temporarily unavailable/);
    // the same step under the defaults completes
    await verifiedBuild(t, { store, context: ctx });
    const d = defaultRunLimits();
    t.is(d.pids, 8192);
    t.true((d.memory ?? 0) > 256 * 1024 * 1024);
  },
);

rootTest('--ulimit reaches every RUN step and is not part of the cache key', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, 'FROM busybox:test\nRUN ulimit -n > /nofile\n');
  const first = await verifiedBuild(t, { store, context: ctx, ulimits: [parseUlimit('nofile=77:88')] });
  const out = await makeTempDir('tsbuild-sandbox-out-');
  t.teardown(() => removeDir(out));
  await flatten({ store, layers: imageLayers(first.image), dir: out, method: 'apply' });
  t.is(readFileSync(join(out, 'nofile'), 'utf8'), '77\n');
  const again: BuildEvent[] = [];
  await build({ store, context: ctx, onEvent: (e) => again.push(e) });
  t.true(
    again.some((e) => e.type === 'cached'),
    'a rebuild without --ulimit hits the cache',
  );
});

rootTest('build refuses malformed limit flags with one line, before building', async (t) => {
  const ctx = mkdtempSync(join(tmpdir(), 'tsbuild-sandbox-cli-'));
  t.teardown(() => removeDir(ctx));
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\n');
  const root = await makeTempDir('tsbuild-sandbox-root-');
  t.teardown(() => removeDir(root));
  for (const [flags, want] of [
    [['--pids-limit', 'lots'], /--pids-limit must be a positive integer/],
    [['--memory', '12 parsecs'], /invalid size/],
    [['--ulimit', 'files=10'], /invalid ulimit "files=10"/],
    [['--ulimit', 'nofile=10:5'], /soft limit is above the hard limit/],
  ] as const) {
    const r = await tsbuild(['--root', root, 'build', ...flags, ctx]);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, want);
  }
});
