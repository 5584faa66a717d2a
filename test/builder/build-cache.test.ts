// The build cache and reproducibility: a second build hits the cache for every step, changing one context file
// re-runs only from the first step that reads it, mtimes never count, --no-cache runs everything, a pruned blob is
// a miss, and SOURCE_DATE_EPOCH makes two builds give the same image digest.
import type { ExecutionContext } from 'ava';
import { readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildOptions } from '../../builder/build.js';
import type { BuildEvent } from '../../builder/events.js';
import { untagImage } from '../../layers/store/image.js';
import { pruneBlobs } from '../../layers/store/gc.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { busyboxStore, verifiedBuild } from './build-harness.js';

async function context(t: ExecutionContext, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-cache-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}

interface Run {
  digest: string;
  /** step names that ran (not cached), without the [i/n] prefix */
  ran: string[];
  cached: string[];
}

async function run(t: ExecutionContext, opts: BuildOptions): Promise<Run> {
  const names = new Map<number, string>();
  const cached = new Set<number>();
  const done: number[] = [];
  const onEvent = (e: BuildEvent): void => {
    if (e.type === 'step') names.set(e.id, e.name.replace(/^\[[^\]]*\] /, ''));
    if (e.type === 'cached') cached.add(e.id);
    if (e.type === 'done') done.push(e.id);
  };
  const r = await verifiedBuild(t, { ...opts, onEvent });
  const fsSteps = done.filter((id) => /^(RUN|COPY|ADD|WORKDIR)/.test(names.get(id) ?? ''));
  return {
    digest: r.digest,
    ran: fsSteps.filter((id) => !cached.has(id)).map((id) => names.get(id)!),
    cached: fsSteps.filter((id) => cached.has(id)).map((id) => names.get(id)!),
  };
}

const DOCKERFILE = `FROM busybox:test
RUN echo one > /1
WORKDIR /app
COPY a.txt /app/a.txt
RUN echo two > /2
COPY b.txt /app/b.txt
RUN cat /app/a.txt /app/b.txt > /ab
`;
const STEPS = [
  'RUN echo one > /1',
  'WORKDIR /app',
  'COPY a.txt /app/a.txt',
  'RUN echo two > /2',
  'COPY b.txt /app/b.txt',
  'RUN cat /app/a.txt /app/b.txt > /ab',
];

rootTest('a second build with no change finds every step in the cache', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
  const first = await run(t, { store, context: ctx, tags: ['c:1'] });
  t.deepEqual(first.ran, STEPS);
  const second = await run(t, { store, context: ctx, tags: ['c:1'] });
  t.deepEqual(second.ran, []);
  t.deepEqual(second.cached, STEPS);
});

rootTest('changing one context file re-runs from the first COPY that includes it, nothing before', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
  await run(t, { store, context: ctx });
  await writeFile(join(ctx, 'b.txt'), 'b changed\n');
  const r = await run(t, { store, context: ctx, tags: ['c:2'] });
  t.deepEqual(r.cached, STEPS.slice(0, 4));
  t.deepEqual(r.ran, STEPS.slice(4));
  // and back: the old records are still there
  await writeFile(join(ctx, 'b.txt'), 'b\n');
  t.deepEqual((await run(t, { store, context: ctx })).ran, []);
});

rootTest('touching a context file (a new mtime, same content) keeps the cache', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
  await run(t, { store, context: ctx });
  const later = new Date(Date.now() + 3_600_000);
  await utimes(join(ctx, 'a.txt'), later, later);
  t.deepEqual((await run(t, { store, context: ctx })).ran, []);
});

rootTest('renaming a file inside a copied directory misses the cache (paths count, not only contents)', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: 'FROM busybox:test\nCOPY . /ctx/\n', 'x.txt': 'same\n' });
  await run(t, { store, context: ctx });
  await rm(join(ctx, 'x.txt'));
  await writeFile(join(ctx, 'y.txt'), 'same\n');
  t.deepEqual((await run(t, { store, context: ctx })).ran, ['COPY . /ctx/']);
});

rootTest('a changed build arg re-runs the RUN steps after its ARG, not those before', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, {
    Dockerfile: 'FROM busybox:test\nRUN echo before > /0\nARG V=1\nRUN echo unrelated > /1\nRUN echo $V > /v\n',
  });
  await run(t, { store, context: ctx, buildArgs: { V: '1' } });
  const r = await run(t, { store, context: ctx, buildArgs: { V: '2' } });
  // BuildKit keys RUN on its environment: every RUN after the ARG sees V, so both re-run; the one before does not
  t.deepEqual(r.cached, ['RUN echo before > /0']);
  // (step names show the values, as BuildKit's do)
  t.deepEqual(r.ran, ['RUN echo unrelated > /1', 'RUN echo 2 > /v']);
});

rootTest('a LABEL change does not invalidate the RUN after it (metadata is not in RUN keys)', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: 'FROM busybox:test\nLABEL v=1\nRUN echo x > /x\n' });
  await run(t, { store, context: ctx });
  await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox:test\nLABEL v=2\nRUN echo x > /x\n');
  t.deepEqual((await run(t, { store, context: ctx })).ran, []);
});

rootTest('--no-cache runs every step again', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
  await run(t, { store, context: ctx });
  const r = await run(t, { store, context: ctx, noCache: true });
  t.deepEqual(r.ran, STEPS);
  t.deepEqual(r.cached, []);
});

rootTest('a cache record whose blob was pruned is a miss, and the build still succeeds', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: 'FROM busybox:test\nRUN echo a > /a\nRUN echo b > /b\n', 'a.txt': 'a\n' });
  await run(t, { store, context: ctx, tags: ['p:1'] });
  await untagImage(store, 'p:1');
  const pruned = await pruneBlobs(store);
  t.true(pruned.removed.length >= 2);
  const r = await run(t, { store, context: ctx, tags: ['p:1'] });
  t.deepEqual(r.ran, ['RUN echo a > /a', 'RUN echo b > /b']);
});

rootTest('two builds with SOURCE_DATE_EPOCH give the same image digest, every step run again', async (t) => {
  const files = {
    Dockerfile:
      'FROM busybox:test\nWORKDIR /app\nCOPY a.txt .\nRUN echo built > /app/built && mkdir -p /var/x && touch /var/x/f\nENV E=1\nCMD ["cat", "/app/built"]\n',
    'a.txt': 'a\n',
  };
  const ctx1 = await context(t, files);
  const ctx2 = await context(t, files);
  await utimes(join(ctx2, 'a.txt'), new Date(0), new Date(0));
  const store = await busyboxStore(t);
  const r1 = await run(t, { store, context: ctx1, sourceDateEpoch: 1_234_567_890 });
  await new Promise((r) => setTimeout(r, 1100)); // a different wall-clock second
  await rm(join(store.root, 'snapshots'), { recursive: true, force: true });
  const r2 = await run(t, { store, context: ctx2, sourceDateEpoch: 1_234_567_890, noCache: true });
  t.deepEqual(r2.cached, []);
  t.is(r1.digest, r2.digest);
  const img = await verifiedBuild(t, { store, context: ctx2, sourceDateEpoch: 1_234_567_890 });
  t.is(img.digest as string, r1.digest);
  t.is(img.config.created, '2009-02-13T23:31:30Z');
  t.true((img.config.history ?? []).slice(1).every((h) => h.created === '2009-02-13T23:31:30Z'));
  // and without it, times differ
  const r3 = await verifiedBuild(t, { store, context: ctx2, noCache: true });
  t.not(r3.digest, r2.digest);
});

rootTest('the cache lives in the store as one file per key, and a record names its layer', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, { Dockerfile: 'FROM busybox:test\nRUN echo a > /a\nRUN true\n' });
  await run(t, { store, context: ctx });
  const files = (await readdir(join(store.root, 'cache'))).filter((f) => f.endsWith('.json'));
  t.is(files.length, 2);
  const records = await Promise.all(
    files.map(
      async (f) =>
        JSON.parse(await readFile(join(store.root, 'cache', f), 'utf8')) as { layer: unknown; created: string },
    ),
  );
  t.is(records.filter((r) => r.layer !== null).length, 2, 'RUN true made a layer too: an empty one, as BuildKit');
});
